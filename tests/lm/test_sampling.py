"""Sampling: reproducible, valid UTF-8, length caps, greedy = top-k 1, options checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lm import LmError, SampleConfig, native, sample, sample_many
from lm.models import Mix
from lm.runners import _ReferenceDrawer
from lm.sampling import _MASKS, MAX_SEED, MIN_TEMPERATURE, _filtered
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
    {"max_chars": 0}, {"n": 0}, {"n": 1000}, {"temperature": 1e-320}, {"temperature": 1e-4},
    {"temperature": float("inf")}, {"temperature": float("nan")}, {"temperature": "1"},
    {"temperature": True}, {"top_p": float("nan")}, {"seed": -1}, {"seed": 2**63},
    {"seed": 1.5}, {"seed": True}, {"seed": "7"},
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


def drawers(logp: np.ndarray) -> list:
    """Every implementation of the draw bound to logp [B, V]: the numpy reference, and the
    compiled one where the kernels are built."""
    out = [_ReferenceDrawer(logp, _MASKS)]
    return out + [native.Drawer(logp, _MASKS)] if native.available() else out


def test_compiled_draw_equals_the_numpy_draw():
    if not native.available():
        pytest.skip("kernels not built")
    rng = np.random.default_rng(0)
    logp = np.empty((1, VOCAB_SIZE), dtype=np.float32)
    reference, compiled = drawers(logp)
    for trial in range(200):
        logp[0] = rng.normal(size=VOCAB_SIZE) * 3
        state = trial % len(_MASKS)  # with and without the end symbol allowed
        u = rng.random()
        temp = [0.5, 1.0, 1.7][trial % 3]
        assert compiled(0, state, temp, u) == reference(0, state, temp, u)


@pytest.mark.parametrize(("bad", "shown"), [
    ({"temperature": 1e-5}, "got 1e-05"), ({"temperature": 2.5e-4}, "got 0.00025"),
    ({"temperature": np.float64(1e-7)}, "got 1e-07"), ({"seed": -1}, "got -1"),
    ({"seed": 2**63}, f"got {2**63}"), ({"seed": np.int64(-3)}, "got -3"),
])
def test_a_refusal_shows_the_value_as_typed(bad, shown):
    with pytest.raises(LmError, match=shown) as e:
        SampleConfig(**bad).validate()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("ok", [{"temperature": MIN_TEMPERATURE}, {"temperature": 1e6},
                                {"seed": 0}, {"seed": MAX_SEED}, {"seed": np.int64(5)}])
def test_the_edges_of_the_ranges_are_accepted(ok):
    assert len(sample(make("uniform"), SampleConfig(max_chars=3, **ok))) == 1


def test_the_coldest_temperature_draws_the_likeliest_symbol_in_every_state():
    """At MIN_TEMPERATURE, a symbol 1 nat likelier than the rest always wins, with or without
    filtering, in numpy and in the compiled draw, whatever the other log-probs (down to
    float32's lowest) and u: no overflow to NaN and no fall-through to symbol 0 (a NUL byte)."""
    rng = np.random.default_rng(5)
    logp = np.empty((2, VOCAB_SIZE), dtype=np.float32)
    configs = [SampleConfig(temperature=MIN_TEMPERATURE, **o)
               for o in ({}, {"top_k": 3}, {"top_p": 0.9})]
    for trial in range(300):
        state = trial % N_STATES
        legal = np.flatnonzero(_MASKS[state])
        logp[0] = rng.normal(size=VOCAB_SIZE) * 30 - 40
        logp[0, rng.choice(VOCAB_SIZE, 20)] = np.finfo(np.float32).min
        best = rng.choice(legal[legal != 0]) if trial % 2 else rng.choice(legal)
        logp[0, best] = logp[0, legal].max() + 1
        logp[1] = _filtered(logp[0], _MASKS[state] != 0, configs[trial % 3])
        for draw in drawers(logp):
            for u in (0.0, 0.5, 1 - 2**-53):
                assert draw(0, state, MIN_TEMPERATURE, u) == best
                assert draw(1, state, MIN_TEMPERATURE, u) == best


def test_filtering_keeps_the_top_k_and_the_nucleus_of_the_allowed_symbols():
    ok = np.ones(VOCAB_SIZE, dtype=bool)
    ok[5] = False  # the likeliest symbol, but not allowed here
    logp = np.log(np.full(VOCAB_SIZE, 1e-6, dtype=np.float32))
    logp[[5, 7, 9, 11]] = np.log([0.5, 0.3, 0.15, 0.04])

    def kept(**options) -> set[int]:
        z = _filtered(logp, ok, SampleConfig(**options))
        return set(np.flatnonzero(np.isfinite(z)).tolist())

    assert kept(top_k=2) == {7, 9}
    assert kept(greedy=True) == {7}
    assert kept(top_p=0.6) == {7}  # 0.3 of the allowed 0.49 is over 0.6 of it
    assert kept(top_p=0.7) == {7, 9}
    assert kept(top_p=0.7, top_k=1) == {7}
    assert kept(top_k=VOCAB_SIZE) == set(np.flatnonzero(ok))  # never an illegal symbol


@pytest.mark.parametrize("options", [{}, {"top_k": 3}, {"top_p": 0.9}])
def test_sampling_at_the_coldest_temperature_is_greedy(options):
    m = make("ngram")
    cold = SampleConfig(temperature=MIN_TEMPERATURE, seed=1, max_chars=40, n=3, **options)
    greedy = sample(m, SampleConfig(greedy=True, max_chars=40), prefix="To be")
    assert sample(m, cold, prefix="To be") == greedy * 3
    assert "\x00" not in greedy[0]


@pytest.mark.parametrize("kind", ["gru", "mix"])
def test_a_model_with_nan_weights_is_refused_not_sampled_as_nul_bytes(kind):
    m = make(kind)
    head = m.parts[0].head if kind == "mix" else m.head
    with torch.no_grad():
        head.bias[65] = float("nan")
    with pytest.raises(LmError, match="NaN"):
        sample(m, SampleConfig(seed=0, max_chars=20))
