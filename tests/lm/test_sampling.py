"""Sampling: reproducible, valid UTF-8, length caps, greedy = top-k 1, options checked."""

from __future__ import annotations

import pytest

from lm import LmError, SampleConfig, sample
from tests.lm.conftest import make


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
