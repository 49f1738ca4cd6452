"""The command line, called in-process through `lm.cli.main`: documented JSON keys, exit
statuses, one-line errors; one real `python -m lm` launch checks the entry point."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import lm
from lm import save
from lm.cli import main
from tests.lm.conftest import TEXT, make

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *args: str) -> str:
    """stdout of a command that must succeed."""
    status = main(list(args))
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def run_json(capsys, *args: str) -> dict:
    return json.loads(run(capsys, *args))


def fails(capsys, *args: str) -> str:
    """stderr of a command that must fail as a user error: status 2, one line, no traceback."""
    status = main(list(args))
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(save(make("mix"), tmp_path_factory.mktemp("ck") / "mix.pt"))


def test_python_dash_m_lm_runs_a_command():
    p = subprocess.run([sys.executable, "-m", "lm", "score", "--model", "uniform", "--json",
                        "hi"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["nats"] == pytest.approx(3 * math.log(180))  # h, i, end


def test_sample_json(capsys, ckpt):
    out = run_json(capsys, "sample", "--model", ckpt, "--n", "2", "--seed", "1", "--json",
                   "--max-chars", "20", "--prefix", "To")
    assert set(out) == {"samples"} and len(out["samples"]) == 2
    again = run_json(capsys, "sample", "--model", ckpt, "--n", "2", "--seed", "1", "--json",
                     "--max-chars", "20", "--prefix", "To")
    assert again == out


def test_score_json_has_documented_keys(capsys, ckpt):
    out = run_json(capsys, "score", "--model", ckpt, "--json", "To be 😀")
    assert set(out) == {"text", "nats", "bits", "chars", "bits_per_char", "perplexity",
                        "includes_end", "per_char"}
    assert out["chars"] == len("To be 😀") + 1
    assert out["per_char"][6]["char"] == "😀"
    assert out["nats"] == pytest.approx(lm.score(lm.load(ckpt), "To be 😀").nats)


def test_score_text_output_lists_each_character(capsys):
    out = run(capsys, "score", "--model", "uniform", "ab", "--no-end").splitlines()
    assert "excluding the end symbol" in out[0] and len(out) == 3


def test_eval_is_exact_by_default_and_lanes_say_so(capsys, ckpt, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT * 3)
    exact = run_json(capsys, "eval", "--model", ckpt, "--file", str(f), "--json")
    assert exact["lanes"] == 1 and exact["lane_error"] is None
    assert exact["nats"] == pytest.approx(lm.evaluate(lm.load(ckpt), TEXT * 3).nats)
    fast = run_json(capsys, "eval", "--model", ckpt, "--file", str(f), "--lanes", "4",
                    "--warmup", "32", "--check", "--json")
    assert fast["lanes"] == 4 and isinstance(fast["lane_error"], float)
    long = tmp_path / "long.txt"
    long.write_text(TEXT * 30)
    warm = run_json(capsys, "eval", "--model", ckpt, "--file", str(long), "--lanes", "4",
                    "--warmup", "4", "--json")
    model = lm.load(ckpt)
    asked, default = (lm.evaluate(model, TEXT * 30, lanes=4, warmup=w).nats for w in (4, 256))
    assert abs(asked - default) > 1e-3  # the warm-up matters on this text, if only a little
    assert warm["nats"] == pytest.approx(asked, rel=0, abs=1e-6)
    text = run(capsys, "eval", "--model", ckpt, "--file", str(f), "--lanes", "4")
    assert "approximate: read in 4 lanes" in text


def test_eval_lines_counts_each_end(capsys, ckpt, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT)
    out = run_json(capsys, "eval", "--model", ckpt, "--file", str(f), "--lines", "--json")
    assert out["chars"] == sum(len(line) + 1 for line in TEXT.split("\n") if line)
    assert "lanes apply to a stream" in fails(capsys, "eval", "--model", ckpt, "--file",
                                              str(f), "--lines", "--lanes", "2")


def test_train_then_info(capsys, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text(TEXT * 3)
    out = tmp_path / "m.pt"
    run(capsys, "train", "--data", str(data), "--kind", "gru", "--hidden", "16", "--steps",
        "3", "--batch", "4", "--bptt", "16", "--eval-every", "3", "--quiet", "--out", str(out))
    info = run_json(capsys, "info", "--model", str(out))
    assert info["model"]["kind"] == "gru" and info["summary"]["steps"] == 3
    assert info["summary"]["formats"] == ["stream"]


def test_train_refuses_a_kind_the_registry_does_not_train(capsys, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text(TEXT * 3)
    err = fails(capsys, "train", "--data", str(data), "--kind", "uniform", "--out",
                str(tmp_path / "u.pt"))
    assert "invalid choice" in err and "ngram" in err
    err = fails(capsys, "train", "--data", str(data), "--init", "uniform", "--out",
                str(tmp_path / "u.pt"))
    assert "not trained" in err and not (tmp_path / "u.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["score", "--model", "uniform", ""], "empty"),
    (["score", "--model", "uniform", "   \n "], "empty"),
    (["sample", "--model", "uniform", "--temperature", "0"], "temperature"),
    (["sample", "--model", "uniform", "--top-k", "0"], "top-k"),
    (["sample", "--model", "missing.pt"], "missing.pt"),
    (["eval", "--model", "uniform", "--file", "nope.txt"], "nope.txt"),
    (["sample", "--model", "uniform", "--max-chars", "ten"], "invalid int"),
    (["eval", "--model", "uniform", "--file", "x", "--lanes", "0"], "at least 1"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_user_errors_are_one_line_without_traceback(capsys, args, message):
    assert message in fails(capsys, *args)


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out


def test_corrupt_checkpoint_and_invalid_utf8_file(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert "bad.pt" in fails(capsys, "score", "--model", str(bad), "hello")
    txt = tmp_path / "latin1.txt"
    txt.write_bytes("caf\xe9\n".encode("latin-1"))
    assert "not valid UTF-8" in fails(capsys, "eval", "--model", "uniform", "--file", str(txt))


def test_ngram_train_then_mix(capsys, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text(TEXT * 3)
    ng = tmp_path / "ng.pt"
    run(capsys, "train", "--data", str(data), "--kind", "ngram", "--order", "4", "--out",
        str(ng))
    mix = tmp_path / "mix.pt"
    out = run_json(capsys, "mix", "--models", str(ng), "uniform", "--data", str(data),
                   "--val-split", "--static", "--out", str(mix))
    assert len(out["weights"]) == 1 and out["weights"][0][0] > 0.5
    info = run_json(capsys, "info", "--model", str(mix))
    assert [c["kind"] for c in info["model"]["config"]["components"]] == ["ngram", "uniform"]


SPEECHES = "".join(f"{who}:\nI speak of {what}, and of nothing else.\n\n"
                   for who, what in [("ANNE", "roses"), ("BOB", "kings"), ("CAT", "the sea")] * 20)


def test_paragraphs_are_messages_for_train_eval_and_mix(capsys, tmp_path):
    data = tmp_path / "play.txt"
    data.write_text(SPEECHES)
    ngrams = {}
    for fmt in ("stream", "paragraphs"):
        ngrams[fmt] = tmp_path / f"{fmt}.pt"
        out = run_json(capsys, "train", "--data", str(data), "--kind", "ngram", "--format",
                       fmt, "--out", str(ngrams[fmt]))
        assert 0 < out["val_chars"] < out["train_chars"]
    info = run_json(capsys, "info", "--model", str(ngrams["paragraphs"]))
    assert info["summary"]["formats"] == ["paragraphs"]
    end = {fmt: run_json(capsys, "score", "--model", str(path), "--json",
                         "BOB:\nI speak of kings, and of nothing else.")["per_char"][-1]["bits"]
           for fmt, path in ngrams.items()}
    assert end["paragraphs"] < 1 < 8 < end["stream"]  # only speeches as messages learn ends
    ev = run_json(capsys, "eval", "--model", "uniform", "--file", str(data), "--format",
                  "paragraphs", "--json")
    speeches = [s for s in SPEECHES.split("\n\n") if s]
    assert ev["chars"] == sum(len(s) + 1 for s in speeches)
    mix = tmp_path / "mix.pt"
    run(capsys, "mix", "--models", str(ngrams["paragraphs"]), "uniform", "--data", str(data),
        "--format", "stream", "paragraphs", "--static", "--out", str(mix))
    assert run_json(capsys, "info", "--model", str(mix))["summary"]["formats"] == [
        "stream", "paragraphs"]
