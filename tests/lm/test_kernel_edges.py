"""The compiled kernels' sharp edges: ids out of range, NaN where torch is finite, tables gone
stale after an in-place weight edit, and ctypes outside lm/native.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lm import native, score, scoring
from lm.models import Mix, round_to_half
from lm.models.recurrent import GRURunner
from lm.runners import TorchRunner, ready, runner
from tests.lm.conftest import make
from tests.lm.test_native import IDS, half_gru

ROOT = Path(__file__).resolve().parents[2]
needs_kernels = pytest.mark.skipif(not native.available(), reason="kernels not built")


def torch_score(model, text: str) -> float:
    """The score in nats that the model's own forward gives, with no runner built."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scoring, "runner", TorchRunner)
        return score(model, text).nats


@pytest.mark.parametrize("kind", ["half-gru", "ngram", "half-mix"])
@pytest.mark.parametrize("bad", [5000, -1, 257])
def test_ids_out_of_range_raise_like_torch(kind, bad):
    """Out-of-range ids raise IndexError through the model's forward and through its runner,
    whole or one step at a time, never reading past the tables (a crash, before)."""
    m = {"half-gru": half_gru, "ngram": lambda: make("ngram"),
         "half-mix": lambda: Mix([half_gru(), make("ngram")], [0.5, 0.5]).eval()}[kind]()
    ids = torch.tensor([[256, bad]])
    with pytest.raises(IndexError), torch.no_grad():
        m(ids, m.initial_state(1))
    r = runner(m)
    with pytest.raises(IndexError):
        r.logprobs(ids, r.initial_state(1))
    step = r.stepper(1)
    with pytest.raises(IndexError):
        step.feed(np.array([[bad]]))
    assert np.isfinite(step.feed(np.array([[65]]))).all()  # nothing was half written


@needs_kernels
def test_large_float16_weights_give_what_torch_gives_not_nan():
    """Weights of large magnitude saturate the gates: torch gives 0, 1 or -1 there, and so
    must the kernel, whole or step by step (built with -ffast-math it gave NaN)."""
    for scale in (10.0, 1000.0):
        m = half_gru()
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(scale)
        round_to_half(m)
        r = runner(m)
        assert isinstance(r, GRURunner)
        with torch.no_grad():
            ref, _ = m(IDS, m.initial_state(3))
        got, _ = r.logprobs(IDS, r.initial_state(3))
        step, _ = r.logprobs(IDS[:, :1], r.initial_state(3))
        assert torch.isfinite(ref).all() and torch.isfinite(got).all()
        # saturated dynamics amplify rounding over many steps; the first step must agree
        assert torch.allclose(step, ref[:, :1], rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("kind", ["half-gru", "half-mix"])
def test_a_weight_edited_in_place_is_never_read_stale(kind):
    """p.data.mul_(0) bumps no version counter; the next score still reads the new weights
    (a stale kernel table gave 63.996 nats where 98.666 was right)."""
    m = half_gru() if kind == "half-gru" else Mix([half_gru(), make("ngram")], [0.5, 0.5]).eval()
    text = "Wherefore art thou, Romeo?"
    before = score(m, text).nats
    gru = m if kind == "half-gru" else m.parts[0]
    gru.rnn.weight_hh_l0.data.mul_(0)
    after = score(m, text).nats
    assert after != pytest.approx(before, abs=1e-3)
    assert after == pytest.approx(torch_score(m, text), abs=1e-3)


@needs_kernels
def test_a_runner_is_built_once_and_again_only_after_an_edit():
    m = Mix([half_gru(), make("ngram")], [0.5, 0.5]).eval()
    r = runner(m)
    assert runner(m) is r and runner(m.parts[0]) is r.parts[0]  # parts: their own runners
    m.parts[1].fit_messages(["a new corpus"])  # a part changed: the mix's runner too
    fresh = runner(m)
    assert fresh is not r and fresh.parts[0] is r.parts[0] and fresh.parts[1] is not r.parts[1]
    assert isinstance(runner(m.train()), TorchRunner)  # training mode: the forward, uncached


def test_a_sparse_edit_is_read_after_ready():
    """A few single elements can fall between the fingerprint's samples: ready() builds the
    runner again from the weights as they are."""
    m = half_gru()
    text = "To be, or not to be"
    score(m, text)
    with torch.no_grad():
        m.head.bias.data[ord("o")] = 8.0  # one element, in place
    assert score(ready(m), text).nats == pytest.approx(torch_score(m, text), abs=1e-3)


def test_only_lm_native_imports_ctypes():
    imports = re.compile(r"^\s*(import ctypes|from ctypes)", re.MULTILINE)
    found = {str(p.relative_to(ROOT)) for folder in ("lm", "bot")
             for p in (ROOT / folder).rglob("*.py") if imports.search(p.read_text())}
    assert found == {"lm/native.py"}
