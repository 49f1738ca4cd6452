"""The command line through a real subprocess: documented JSON keys, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lm import save
from tests.lm.conftest import TEXT, make

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "lm", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(save(make("mix"), tmp_path_factory.mktemp("ck") / "mix.pt"))


def test_sample_json(ckpt):
    out = json.loads(run("sample", "--model", ckpt, "--n", "2", "--seed", "1", "--json",
                         "--max-chars", "20", "--prefix", "To").stdout)
    assert set(out) == {"samples"} and len(out["samples"]) == 2


def test_score_json_has_documented_keys(ckpt):
    out = json.loads(run("score", "--model", ckpt, "--json", "To be 😀").stdout)
    for key in ("nats", "bits", "chars", "bits_per_char", "perplexity", "per_char"):
        assert key in out
    assert out["chars"] == len("To be 😀") + 1
    assert out["per_char"][6] == {"char": "😀", "bits": pytest.approx(out["per_char"][6]["bits"])}


def test_eval_json_lines(ckpt, tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT)
    out = json.loads(run("eval", "--model", ckpt, "--file", str(f), "--lines", "--json").stdout)
    assert {"nats_per_char", "bits_per_char", "chars"} <= set(out)
    assert out["chars"] == sum(len(line) + 1 for line in TEXT.split("\n") if line)


def test_train_then_info(tmp_path):
    data = tmp_path / "d.txt"
    data.write_text(TEXT * 3)
    out = tmp_path / "m.pt"
    run("train", "--data", str(data), "--kind", "gru", "--hidden", "16", "--steps", "3",
        "--batch", "4", "--bptt", "16", "--eval-every", "3", "--quiet", "--out", str(out))
    info = json.loads(run("info", "--model", str(out)).stdout)
    assert info["model"]["kind"] == "gru" and info["summary"]["steps"] == 3


@pytest.mark.parametrize("args, message", [
    (["score", "--model", "uniform", ""], "empty"),
    (["score", "--model", "uniform", "   \n "], "empty"),
    (["sample", "--model", "uniform", "--temperature", "0"], "temperature"),
    (["sample", "--model", "uniform", "--top-k", "0"], "top-k"),
    (["sample", "--model", "missing.pt"], "missing.pt"),
    (["eval", "--model", "uniform", "--file", "nope.txt"], "nope.txt"),
    (["sample", "--model", "uniform", "--max-chars", "ten"], "invalid int"),
])
def test_user_errors_are_one_line_without_traceback(args, message):
    p = run(*args, ok=False)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert message in p.stderr


def test_corrupt_checkpoint_and_invalid_utf8_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    p = run("score", "--model", str(bad), "hello", ok=False)
    assert p.returncode == 2 and "bad.pt" in p.stderr and "Traceback" not in p.stderr
    txt = tmp_path / "latin1.txt"
    txt.write_bytes("caf\xe9\n".encode("latin-1"))
    p = run("eval", "--model", "uniform", "--file", str(txt), ok=False)
    assert p.returncode == 2 and "not valid UTF-8" in p.stderr


def test_ngram_train_then_mix(tmp_path):
    data = tmp_path / "d.txt"
    data.write_text(TEXT * 3)
    ng = tmp_path / "ng.pt"
    run("train", "--data", str(data), "--kind", "ngram", "--order", "4", "--out", str(ng))
    mix = tmp_path / "mix.pt"
    out = json.loads(run("mix", "--models", str(ng), "uniform", "--data", str(data),
                         "--val-split", "--static", "--out", str(mix)).stdout)
    assert len(out["weights"]) == 1 and out["weights"][0][0] > 0.5
    info = json.loads(run("info", "--model", str(mix)).stdout)
    assert [c["kind"] for c in info["model"]["config"]["components"]] == ["ngram", "uniform"]


SPEECHES = "".join(f"{who}:\nI speak of {what}, and of nothing else.\n\n"
                   for who, what in [("ANNE", "roses"), ("BOB", "kings"), ("CAT", "the sea")] * 20)


def test_paragraphs_are_messages_for_train_eval_and_mix(tmp_path):
    data = tmp_path / "play.txt"
    data.write_text(SPEECHES)
    ngrams = {}
    for fmt in ("stream", "paragraphs"):
        ngrams[fmt] = tmp_path / f"{fmt}.pt"
        out = json.loads(run("train", "--data", str(data), "--kind", "ngram", "--format", fmt,
                             "--out", str(ngrams[fmt])).stdout)
        assert 0 < out["val_chars"] < out["train_chars"]
    info = json.loads(run("info", "--model", str(ngrams["paragraphs"])).stdout)
    assert info["summary"]["formats"] == ["paragraphs"]
    end = {fmt: json.loads(run("score", "--model", str(path), "--json",
                               "BOB:\nI speak of kings, and of nothing else.").stdout)
           ["per_char"][-1]["bits"] for fmt, path in ngrams.items()}
    assert end["paragraphs"] < 1 < 8 < end["stream"]  # only speeches as messages learn ends
    ev = json.loads(run("eval", "--model", "uniform", "--file", str(data), "--format",
                        "paragraphs", "--json").stdout)
    speeches = [s for s in SPEECHES.split("\n\n") if s]
    assert ev["chars"] == sum(len(s) + 1 for s in speeches)
    mix = tmp_path / "mix.pt"
    run("mix", "--models", str(ngrams["paragraphs"]), "uniform", "--data", str(data),
        "--format", "stream", "paragraphs", "--static", "--out", str(mix))
    assert json.loads(run("info", "--model", str(mix)).stdout)["summary"]["formats"] == [
        "stream", "paragraphs"]
