"""A chat message is a message everywhere: trained, counted, evaluated and sampled from a fresh
start with its end counted."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lm import TrainConfig, evaluate, fit_mix, sample, score, train
from lm.batches import MessageBatches
from lm.sampling import SampleConfig
from lm.vocab import BOUNDARY, split_messages
from tests.lm.conftest import make

WORDS = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "big", "red", "sun"]
FIRST = {"Tom": 0.5, "Ann": 0.3, "Bob": 0.15, "Zed": 0.05}  # who speaks first in a line


def chat(n: int, seed: int) -> list[str]:
    """Short chat lines whose first word follows FIRST; the very first is a rare speaker."""
    rng = random.Random(seed)
    lines = ["Zed: " + " ".join(rng.choices(WORDS, k=3))]
    for _ in range(n - 1):
        who = rng.choices(list(FIRST), weights=list(FIRST.values()))[0]
        lines.append(f"{who}: " + " ".join(rng.choices(WORDS, k=rng.randint(2, 5))))
    return lines


LINES = chat(600, 0)
HELD_OUT = chat(40, 1)[1:]
TINY = dict(hidden=48, embed=16, batch=16, bptt=32, lr=1e-2, warmup=10, eval_every=50,
            minutes=None, max_steps=100, seed=0)


@pytest.fixture(scope="module")
def on_lines():
    """A small GRU trained on the lines as messages, with a 4-gram and their mix."""
    rnn = train(LINES, TrainConfig(kind="gru", **TINY)).model
    ngram = train(LINES, TrainConfig(kind="ngram", order=4)).model
    return {"rnn": rnn, "ngram": ngram, "mix": fit_mix([rnn, ngram], HELD_OUT)}


@pytest.mark.parametrize("kind", ["gru", "ngram", "mix"])
def test_each_reading_is_the_sum_of_message_scores(kind):
    m = make(kind)
    text = "To be, or not\nto be\n\nthat is\nthe question:\n\n\nWhether 'tis nobler\n"
    for fmt in ("lines", "paragraphs"):
        msgs = split_messages(text, fmt)
        ev = evaluate(m, text, fmt)
        scores = [score(m, t) for t in msgs]
        assert ev.chars == sum(s.chars for s in scores)
        assert ev.nats == pytest.approx(sum(s.nats for s in scores), rel=1e-5)
    stream = evaluate(m, text, "stream")  # one message, no end symbol
    assert stream.nats == pytest.approx(score(m, text, include_end=False).nats, rel=1e-5)


def test_training_windows_start_every_message_fresh():
    msgs = ["ab" * 5, "c" * 100, "d" * 300, "e" * 3]
    batches = MessageBatches(msgs, window=32, tokens=64, seed=0)
    seen = 0
    for _ in range(40):
        b = next(batches)
        starts = b.x[:, 0] == BOUNDARY
        if b.reset is None:  # short rows: each is a whole message from its start
            assert bool(starts.all())
        else:  # lanes: a window starting with a boundary begins a message from a fresh state
            assert bool((b.reset | ~starts | ~b.mask[:, 0]).all())
            assert bool((b.reset[starts & b.mask[:, 0]]).all())
        seen += int(b.mask.sum())
    assert seen > 0


def test_training_on_lines_makes_the_end_of_a_line_cheap(on_lines):
    stream = train("\n".join(LINES), TrainConfig(kind="gru", **TINY)).model
    line = HELD_OUT[0]
    end_lines = score(on_lines["rnn"], line).per_char[-1].bits
    end_stream = score(stream, line).per_char[-1].bits
    assert end_lines < 3.0 and end_stream > end_lines + 5, (end_lines, end_stream)


@pytest.mark.parametrize("which", ["rnn", "ngram", "mix"])
def test_first_character_follows_the_training_messages(on_lines, which):
    m = on_lines[which]
    with torch.inference_mode():
        logp, _ = m(torch.tensor([[BOUNDARY]]), m.initial_state(1))
    p = logp[0, 0].exp().double().numpy()
    empirical = np.zeros_like(p)
    for line in LINES:
        empirical[ord(line[0])] += 1 / len(LINES)
    assert 0.5 * np.abs(p - empirical).sum() < 0.15


def test_babbles_end_by_themselves(on_lines):
    texts = sample(on_lines["mix"], SampleConfig(max_chars=200, n=20, seed=0))
    lengths = sorted(len(t) for t in texts)
    assert sum(n < 200 for n in lengths) >= 18 and lengths[len(lengths) // 2] < 60
