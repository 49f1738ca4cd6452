"""The compiled kernels (lm/native.c) compute what the torch and numpy paths compute."""

from __future__ import annotations

import copy
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lm import native, score
from lm.models import GRU, Mix, NGram, NGramConfig, RecurrentConfig, round_to_half
from lm.vocab import encode_messages
from tests.bot.helpers import SHAKESPEARE
from tests.lm.conftest import make

pytestmark = pytest.mark.skipif(native.library() is None, reason="no C compiler here")

IDS = torch.tensor([[256, *"Wherefore art thou 😀 Ω? to be".encode()]] * 3)


def kernels_off(monkeypatch) -> None:
    """Switch the kernels off from here on: models take their torch path."""
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_tried", True)


@pytest.fixture
def no_kernels(monkeypatch):
    """Switch the kernels off for the code under test."""
    kernels_off(monkeypatch)


def run(model, ids, state=None, steps=False):
    """Log-probs [B, T, V] and the final state, reading ids whole or one symbol at a time."""
    with torch.inference_mode():
        state = model.initial_state(ids.shape[0]) if state is None else state
        if not steps:
            return model(ids, state)
        outs = []
        for t in range(ids.shape[1]):
            lp, state = model(ids[:, t : t + 1], state)
            outs.append(lp)
        return torch.cat(outs, dim=1), state


def half_gru(hidden=32):
    torch.manual_seed(0)
    m = GRU(RecurrentConfig(hidden=hidden, embed=8)).eval()
    for p in m.parameters():  # weights of a trained size, so the gates are not all saturated
        torch.nn.init.normal_(p, std=0.3)
    round_to_half(m)
    return m


@pytest.mark.parametrize("batch", [1, 3])
def test_gru_kernel_matches_the_fused_layer(batch):
    m = half_gru()
    ids = IDS[:batch]
    with torch.inference_mode():
        assert m._native(ids, m.initial_state(batch)) is not None  # the kernel is what runs
    got, h = run(m, ids)
    with torch.no_grad():  # autograd on: the fused nn.GRU, never the kernel
        ref, h_ref = m(ids, m.initial_state(batch))
    assert torch.allclose(got, ref, atol=1e-4) and torch.allclose(h, h_ref, atol=1e-5)
    step, h_step = run(m, ids, steps=True)  # carrying the state gives the same numbers
    assert torch.allclose(step, got, atol=1e-5) and torch.allclose(h_step, h, atol=1e-6)


def test_gru_kernel_needs_float16_weights():
    m = half_gru()
    with torch.no_grad():
        m.rnn.weight_hh_l0[0, 0] += 1e-4  # no longer a float16 value
    with torch.inference_mode():
        assert m._native(IDS[:1], m.initial_state(1)) is None
    got, _ = run(m, IDS[:1], steps=True)  # the torch step path still answers
    with torch.no_grad():
        ref, _ = m(IDS[:1], m.initial_state(1))
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("kind", ["ngram", "gated-mix"])
def test_ngram_and_mix_kernels_match_numpy(kind, monkeypatch):
    m = make(kind)
    if kind == "gated-mix":
        m = Mix([half_gru(24), m.parts[1]], [list(w) for w in m.config.weights],
                m.config.edges).eval()
    got, state = run(m, IDS)
    step, _ = run(m, IDS, steps=True)
    kernels_off(monkeypatch)
    ref, ref_state = run(m, IDS)
    assert torch.allclose(got, ref, atol=1e-4) and torch.allclose(step, ref, atol=1e-4)
    flat = [s for s in (state if isinstance(state, tuple) else (state,))]
    flat_ref = [s for s in (ref_state if isinstance(ref_state, tuple) else (ref_state,))]
    assert all(torch.allclose(a.float(), b.float(), atol=1e-5) for a, b in zip(flat, flat_ref,
                                                                            strict=True))


def test_ngram_index_finds_every_context_of_a_real_corpus(monkeypatch):
    """The kernel's hash index, on tens of thousands of contexts (probing chains included),
    gives the distributions numpy's binary search gives, for seen and unseen contexts."""
    text = SHAKESPEARE.read_text(encoding="utf-8")[:40_000]
    m = NGram(NGramConfig(order=7)).fit(encode_messages(text.split("\n\n"))).eval()
    assert len(m.tables().ctx) > 20_000
    ids = torch.tensor([[256, *text[5_000:5_300].encode(), *"Zyzzyva 😀 qq".encode()]])
    got, _ = run(m, ids)
    kernels_off(monkeypatch)
    ref, _ = run(m, ids)
    assert torch.allclose(got, ref, atol=1e-5)


def test_scores_agree_with_and_without_kernels(no_kernels):
    m = Mix([half_gru(), make("ngram")], [0.4, 0.6]).eval()
    ref = score(m, "Wherefore art thou, Ω?")
    native._lib, native._tried = None, False  # build (or reuse) the library again
    got = score(m, "Wherefore art thou, Ω?")
    assert native._lib is not None
    assert got.nats == pytest.approx(ref.nats, abs=1e-3)


def test_a_copy_never_reads_the_original_s_memory():
    """Kernel tables are cached with addresses: a deep copy (fine-tuning starts from one) must
    build its own, or it reads freed memory once the original is gone."""
    m = Mix([half_gru(), make("ngram")], [0.4, 0.6]).eval()
    want, _ = run(m, IDS[:1])  # builds and caches the tables of m
    twin = copy.deepcopy(m)
    with torch.no_grad():  # version counters as the original's (a copy starts at 0)
        for a, b in zip(m.parameters(), twin.parameters(), strict=True):
            for _ in range(a._version - b._version):
                b.add_(0)
    del m
    gc.collect()
    for _ in range(3):  # whatever reuses the freed memory, the copy reads its own
        torch.randn(1 << 20)
        got, _ = run(twin, IDS[:1])
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("env", [{"LM_NATIVE": "0"}, {"CC": "false"}])
def test_without_kernels_the_models_still_answer(env, tmp_path):
    """Switched off, or no working compiler (a fresh cache, so nothing built is reused):
    no library, a warning at most, and scoring and sampling still work on the torch path."""
    code = ("import lm; from lm import native; print(native.library() is None); "
            "m = lm.load('base-ngram'); print(round(lm.score(m, 'To be').nats, 3)); "
            "print(len(lm.sample(m, lm.SampleConfig(seed=1, max_chars=5))))")
    env = {**os.environ, "LM_CACHE_DIR": str(tmp_path / "cache"), **env}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2])
    none, nats, count = out.stdout.split()
    assert none == "True" and float(nats) > 0 and count == "1"
    assert "Traceback" not in out.stderr


def test_only_the_newest_builds_are_kept(tmp_path):
    for i in range(native.KEEP_BUILDS + 2):
        f = tmp_path / f"native-{i:016x}.so"
        f.write_bytes(b"")
        os.utime(f, (1000 + i, 1000 + i))
    (tmp_path / "notes.txt").write_text("not a build")
    native._prune(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [f"native-{i:016x}.so" for i in range(2, native.KEEP_BUILDS + 2)] + [
        "notes.txt"]
