"""Sampling: reproducible, valid UTF-8, length caps, greedy = top-k 1, options checked."""

from __future__ import annotations

import numpy as np
import pytest

from lm import LmError, SampleConfig, native, sample, sample_many
from lm.models import Mix
from lm.sampling import _ALLOWED, LOG_ALLOWED, _pick
from lm.vocab import N_STATES, VOCAB_SIZE
from tests.lm.conftest import make
from tests.lm.test_native import half_gru


def test_same_seed_same_samples(model):
    cfg = SampleConfig(seed=7, max_chars=40, n=3)
    assert sample(model, cfg, prefix="To be") == sample(model, cfg, prefix="To be")


def test_top_k_one_equals_greedy(model):
    greedy = sample(model, SampleConfig(greedy=True, max_chars=30), prefix="The ")
    topk = sample(model, SampleConfig(top_k=1, seed=3, max_chars=30), prefix="The ")
    assert greedy == topk


@pytest.mark.parametrize("kind", ["uniform", "gru", "lstm", "rnn"])
def test_untrained_samples_are_valid_utf8_and_capped(kind):
    texts = sample(make(kind), SampleConfig(seed=1, max_chars=25, n=8, temperature=2.0))
    assert len(texts) == 8
    for t in texts:
        t.encode("utf-8").decode("utf-8", errors="strict")
        assert "\ufffd" not in t
        assert len(t) <= 25


def test_no_end_symbol_runs_to_the_cap():
    texts = sample(make("uniform"), SampleConfig(seed=2, max_chars=50, n=4, stop_at_end=False))
    assert [len(t) for t in texts] == [50] * 4


def test_top_p_keeps_only_likely_symbols():
    # A trained n-gram after "slings and arrows of outrageou" is sure of "s".
    m = make("ngram")
    got = sample(m, SampleConfig(top_p=0.5, seed=0, max_chars=1, n=6), prefix="outrageou")
    assert got == ["s"] * 6


@pytest.mark.parametrize("bad", [
    {"temperature": 0}, {"temperature": -1}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5},
    {"max_chars": 0}, {"n": 0}, {"n": 1000},
])
def test_bad_options_are_refused_clearly(bad):
    with pytest.raises(LmError):
        sample(make("uniform"), SampleConfig(**bad))


@pytest.mark.parametrize("kind", ["ngram", "half-gru", "half-mix"])
def test_a_request_draws_the_same_alone_or_batched(kind):
    m = {"ngram": make("ngram"), "half-gru": half_gru(),
         "half-mix": Mix([half_gru(), make("ngram")], [0.5, 0.5]).eval()}[kind]
    mine = (SampleConfig(seed=11, max_chars=30, temperature=0.8), "To be")  # alone: batch 1
    others = [(SampleConfig(seed=3, max_chars=12, n=2), ""),
              (SampleConfig(seed=4, max_chars=40, top_k=5), "Whether 'tis nobler"),
              (SampleConfig(greedy=True, max_chars=8), "The sl")]
    alone = sample_many(m, [mine])[0]
    batched = sample_many(m, [others[0], mine, *others[1:]])
    assert batched[1] == alone == sample(m, mine[0], prefix=mine[1])
    assert [len(texts) for texts in batched] == [2, 1, 1, 1]
    assert batched[3] == sample(m, others[2][0], prefix="The sl")  # greedy: no randomness


class Fixed:
    """A stand-in generator whose uniform numbers are all `u`."""

    def __init__(self, u: float) -> None:
        self.u = u

    def random(self, n: int) -> np.ndarray:
        return np.full(n, self.u)


def test_compiled_draw_equals_the_numpy_draw():
    lib = native.library()
    if lib is None:
        pytest.skip("no C compiler here")
    rng = np.random.default_rng(0)
    work = np.empty(VOCAB_SIZE)
    for trial in range(200):
        logp = (rng.normal(size=(1, VOCAB_SIZE)) * 3).astype(np.float32)
        state = trial % N_STATES
        u = rng.random()
        temp = [0.5, 1.0, 1.7][trial % 3]
        got = lib.draw(VOCAB_SIZE, logp.ctypes.data,
                       _ALLOWED[True].ctypes.data + state * VOCAB_SIZE, temp, u, work.ctypes.data)

        want = _pick(logp.astype(np.float64) + LOG_ALLOWED[state], SampleConfig(temperature=temp),
                     Fixed(u))
        assert got == int(want[0])
