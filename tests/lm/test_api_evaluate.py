"""Evaluation is exact unless lanes are asked for; lanes say so and report their error."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

import lm
from lm.models import LanguageModel, Uniform
from lm.vocab import BOUNDARY, VOCAB_SIZE
from tests.lm.conftest import TEXT, make

STREAM = TEXT * 4  # about 4,200 ASCII characters


@dataclass(frozen=True)
class _Nothing:
    """No options."""


class RemembersItsStart(LanguageModel):
    """Uniform once it has read a start symbol, which it remembers for ever; before that, sure
    that a NUL byte comes next. What lanes misjudge most: every lane but the first starts
    from a fresh state in mid-text (a weak RNN that never recovers from its zero state)."""

    kind = "remembers-start"

    def __init__(self) -> None:
        super().__init__()
        self.config = _Nothing()

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, dtype=torch.bool)

    def forward(self, ids: torch.Tensor, state: torch.Tensor):
        seen = state[:, None] | (ids == BOUNDARY).cumsum(1).bool()  # [B, T]
        sure = torch.full((VOCAB_SIZE,), math.log(1e-6 / (VOCAB_SIZE - 1)))
        sure[0] = math.log(1 - 1e-6)
        flat = torch.full((VOCAB_SIZE,), -math.log(VOCAB_SIZE))
        logp = torch.where(seen[..., None], flat, sure)  # [B, T, V]
        return logp, seen[:, -1]


def test_evaluation_is_exact_by_default():
    model = RemembersItsStart()
    ev = lm.evaluate(model, STREAM)
    assert ev.lanes == 1 and ev.lane_error is None
    assert ev.nats == pytest.approx(lm.evaluate(Uniform(), STREAM).nats, rel=1e-6)


def test_lanes_are_an_approximation_that_says_so_and_measures_its_error():
    model = RemembersItsStart()
    exact = lm.evaluate(model, STREAM).nats_per_char
    fast = lm.evaluate(model, STREAM, lanes=8, warmup=16, check=True)
    assert fast.lanes == 8
    assert fast.nats_per_char > exact + 5  # seven lanes of eight never saw the start
    assert fast.lane_error == pytest.approx(fast.nats_per_char - exact, rel=0.05)
    assert lm.evaluate(model, STREAM, lanes=8, warmup=16).lane_error is None  # not asked


def test_lanes_are_capped_so_that_each_holds_its_warmup():
    ev = lm.evaluate(make("ngram"), STREAM, lanes=1000, warmup=512, check=True)
    assert ev.lanes == len(STREAM) // 512
    assert ev.lane_error == pytest.approx(0.0, abs=1e-4)  # a 4-gram needs 3 symbols back


@pytest.mark.parametrize("fmt", ["lines", "paragraphs"])
def test_messages_are_always_read_exactly(fmt):
    with pytest.raises(lm.LmError, match="lanes apply to a stream"):
        lm.evaluate(make("gru"), STREAM, split=fmt, lanes=4)
    assert lm.evaluate(make("gru"), STREAM, split=fmt).lanes == 1
