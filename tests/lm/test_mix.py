"""Mixtures: fitted weights beat their parts on held-out text; weights are validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from lm import LmError, evaluate, fit_mix
from lm.models import Mix, NGram, NGramConfig, Uniform
from lm.vocab import encode_messages
from tests.lm.conftest import TEXT, make

CORPORA = Path(__file__).resolve().parents[2] / "data" / "corpora"  # in the repository


def test_fitted_mix_beats_each_part_on_held_out_text():
    def lines(book: str) -> list[str]:
        return (CORPORA / f"{book}_kjv.txt").read_text(encoding="utf-8").split("\n")

    john = NGram(NGramConfig(order=5)).fit(encode_messages(lines("john")[:400]))
    mark = NGram(NGramConfig(order=5)).fit(encode_messages(lines("mark")[:400]))
    luke = lines("luke")
    held_out = "\n".join(luke[100:200])
    for edges in ((), (1.0, 2.0)):
        mix = fit_mix([john, mark], luke[:100], edges=edges)
        got = evaluate(mix, held_out, split="lines").nats_per_char
        assert got < evaluate(john, held_out, split="lines").nats_per_char - 0.01
        assert got < evaluate(mark, held_out, split="lines").nats_per_char - 0.01


def test_uniform_gets_almost_no_weight_against_a_good_model():
    ngram = make("ngram")
    mix = fit_mix([ngram, Uniform()], TEXT.split("\n"), edges=())
    assert mix.config.weights[0][0] > 0.9


@pytest.mark.parametrize("weights, edges", [([0.5, 0.6], ()), ([1.0], ()),
                                            ([[0.5, 0.5]] * 3, (1.0,))])
def test_bad_weights_are_refused(weights, edges):
    with pytest.raises(ValueError):
        Mix([make("gru"), make("ngram")], weights, edges)


def test_too_little_validation_text():
    with pytest.raises(LmError):
        fit_mix([make("gru"), make("ngram")], "short")
