"""Invariants every model must keep: normalisation, step-by-step equivalence, exact uniform."""

from __future__ import annotations

import math

import pytest
import torch

from lm.models import Uniform
from lm.scoring import restrict, score, score_many
from lm.vocab import BOUNDARY, VOCAB_SIZE, decoder_states, encode

IDS = [BOUNDARY, *encode("héllo wörld 😀 שלום\x00!")]


def test_next_symbol_probabilities_sum_to_one(model):
    x = torch.tensor([IDS, IDS[::-1]])
    with torch.inference_mode():
        logp, _ = model(x, model.initial_state(2))
    assert logp.shape == (2, len(IDS), VOCAB_SIZE)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(2, len(IDS)), atol=1e-5, rtol=0)
    states = torch.tensor([decoder_states(IDS)[1:]] * 2)
    r = restrict(logp, states).exp()
    torch.testing.assert_close(r.sum(-1), torch.ones(2, len(IDS)), atol=1e-5, rtol=0)


def test_step_by_step_equals_whole_sequence(model):
    x = torch.tensor([IDS, IDS[::-1]])
    with torch.inference_mode():
        whole, _ = model(x, model.initial_state(2))
        state, steps = model.initial_state(2), []
        for t in range(x.shape[1]):
            lp, state = model(x[:, t : t + 1], state)
            steps.append(lp)
        chunked, state2 = model(x[:, :7], model.initial_state(2))
        rest, _ = model(x[:, 7:], state2)
    torch.testing.assert_close(torch.cat(steps, 1), whole, atol=2e-5, rtol=0)
    torch.testing.assert_close(torch.cat([chunked, rest], 1), whole, atol=2e-5, rtol=0)


def test_uniform_closed_form_is_exact():
    # ASCII: 180 legal symbols at every character boundary, end symbol included.
    s = score(Uniform(), "hello")
    assert math.isclose(s.nats, 6 * math.log(180), rel_tol=1e-6)
    # é = C3 A9: 180 choices for the lead byte, then 64 continuation bytes.
    s = score(Uniform(), "é", include_end=False)
    assert math.isclose(s.nats, math.log(180) + math.log(64), rel_tol=1e-6)
    # 😀 = F0 9F 98 80: after F0 only 90..BF (48), then 64, 64.
    s = score(Uniform(), "😀", include_end=False)
    assert math.isclose(s.nats, math.log(180 * 48 * 64 * 64), rel_tol=1e-6)


def test_sentence_bits_are_the_sum_of_character_bits(model):
    s = score(model, "Wherefore art thou 😀 Ω?")
    assert len(s.per_char) == s.chars == len("Wherefore art thou 😀 Ω?") + 1
    assert math.isclose(sum(c.bits for c in s.per_char), s.bits, rel_tol=1e-6)
    assert math.isclose(s.bits, s.nats / math.log(2), rel_tol=1e-9)
    assert math.isclose(s.perplexity, 2 ** s.bits_per_char, rel_tol=1e-6)
    no_end = score(model, "Wherefore art thou 😀 Ω?", include_end=False)
    assert no_end.chars == s.chars - 1
    assert math.isclose(no_end.bits + s.per_char[-1].bits, s.bits, rel_tol=1e-6)


def test_training_loss_equals_restricted_log_probs(model):
    from lm.scoring import restricted_nll

    x, y = torch.tensor([IDS[:-1]]), torch.tensor([IDS[1:]])  # valid UTF-8: legal targets
    states = torch.tensor([decoder_states(IDS)[1:-1]])
    with torch.inference_mode():
        logp, _ = model(x, model.initial_state(1))
        scores, _ = model.logits(x, model.initial_state(1))
    want = -restrict(logp, states).gather(2, y[..., None])[..., 0]
    torch.testing.assert_close(restricted_nll(scores, states, y), want, atol=1e-4, rtol=0)
    # plain ASCII: one decoder state everywhere, the shortcut path
    a = torch.tensor([[BOUNDARY, *encode("plain ascii text")]])
    st = torch.zeros(1, a.shape[1] - 1, dtype=torch.long)
    with torch.inference_mode():
        logp, _ = model(a[:, :-1], model.initial_state(1))
        scores, _ = model.logits(a[:, :-1], model.initial_state(1))
    want = -restrict(logp, st).gather(2, a[:, 1:, None])[..., 0]
    torch.testing.assert_close(restricted_nll(scores, st, a[:, 1:]), want, atol=1e-4, rtol=0)


def test_scores_in_a_batch_equal_scores_alone(model):
    texts = ["To be", "Wherefore art thou 😀 Ω? A longer one, to pad the others.", "ab\ncd"]
    together = score_many(model, texts)
    for text, got in zip(texts, together, strict=True):
        alone = score(model, text)
        assert got.text == text and got.chars == alone.chars
        assert got.nats == pytest.approx(alone.nats, rel=1e-5, abs=1e-4)
        assert [c.char for c in got.per_char] == [c.char for c in alone.per_char]
