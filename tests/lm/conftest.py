"""Small models of every kind, shared by the lm tests."""

from __future__ import annotations

import pytest
import torch

from lm.models import GRU, LSTM, RNN, Mix, NGram, NGramConfig, RecurrentConfig, Uniform
from lm.vocab import encode_messages

TEXT = ("To be, or not to be, that is the question:\n"
        "Whether 'tis nobler in the mind to suffer\n"
        "The slings and arrows of outrageous fortune,\n") * 8
SMALL = RecurrentConfig(hidden=24, layers=1, embed=8)


def make(kind: str):
    """A small untrained model of `kind` (n-gram counted on TEXT), in eval mode."""
    torch.manual_seed(0)
    if kind == "uniform":
        return Uniform().eval()
    if kind == "ngram":
        return NGram(NGramConfig(order=4)).fit(encode_messages(TEXT.split("\n"))).eval()
    if kind == "gru2":
        return GRU(RecurrentConfig(hidden=16, layers=2, embed=8)).eval()
    if kind == "mix":
        return Mix([make("gru"), make("ngram")], [0.3, 0.7]).eval()
    if kind == "gated-mix":  # weights depend on each part's entropy: 3 bins each, 9 buckets
        weights = [[(i + 1) / 10, 1 - (i + 1) / 10] for i in range(9)]
        return Mix([make("gru"), make("ngram")], weights, edges=(1.0, 3.0)).eval()
    return {"gru": GRU, "lstm": LSTM, "rnn": RNN}[kind](SMALL).eval()


KINDS = ["uniform", "ngram", "rnn", "gru", "gru2", "lstm", "mix", "gated-mix"]


@pytest.fixture(params=KINDS)
def model(request):
    return make(request.param)
