"""The Kneser-Ney n-gram against a plain dictionary implementation of the same formulas."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import torch

from lm.models import NGram, NGramConfig
from lm.models.ngram import PAD
from lm.scoring import evaluate, lane_logprobs
from lm.vocab import BOUNDARY, VOCAB_SIZE, encode_messages


def own_history(tokens: list[int], i: int, order: int) -> tuple[int, ...]:
    """The order-1 symbols before tokens[i + 1], as a message read alone sees them: from its
    own start (the last boundary), padded before it."""
    start = max(j for j in range(i + 1) if tokens[j] == BOUNDARY)
    hist = [PAD] * (order - 1) + tokens[start : i + 1]
    return tuple(hist[len(hist) - order + 1 :])


def reference_kn(tokens: list[int], order: int):
    """Interpolated modified Kneser-Ney, written the slow and obvious way; every message is
    counted from its own start context (KenLM's <s>)."""
    grams = Counter()
    for i in range(len(tokens) - 1):
        grams[own_history(tokens, i, order), tokens[i + 1]] += 1
    counts = {order - 1: grams}
    for length in range(order - 2, -1, -1):
        cont = Counter()
        for (ctx, _x) in counts[length + 1]:
            cont[ctx[1:], _x] += 1
        counts[length] = cont
    tables = {}
    for length, c in counts.items():
        n = [sum(1 for v in c.values() if v == k) for k in range(1, 5)]
        if min(n[:3]) == 0:  # too few distinct counts: the fixed discounts
            d = [0.0, 0.5, 1.0, 1.5]
        else:
            y = n[0] / (n[0] + 2 * n[1])
            d = [0, 1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
            d = [0.0] + [min(max(v, 0.1), k) for k, v in enumerate(d[1:], start=1)]
        rows = defaultdict(dict)
        for (ctx, x), v in c.items():
            rows[ctx][x] = v
        tables[length] = (rows, d)

    def prob(history: list[int]) -> np.ndarray:
        p = np.full(VOCAB_SIZE, 1.0 / VOCAB_SIZE)
        hist = [PAD] * (order - 1) + history
        for length in range(order):
            ctx = tuple(hist[len(hist) - length :]) if length else ()
            rows, d = tables[length]
            if ctx not in rows:
                continue
            row = rows[ctx]
            total = sum(row.values())
            left = sum(d[min(v, 3)] for v in row.values()) / total
            new = p * left
            for x, v in row.items():
                new[x] += (v - d[min(v, 3)]) / total
            p = new
        return p

    return prob


def test_matches_reference_implementation():
    tokens = encode_messages(["abracadabra", "abraham", "cadabra", "barbara", "ab"] * 3)
    order = 4
    ref = reference_kn(tokens, order)
    m = NGram(NGramConfig(order=order)).fit(tokens)
    for text in ["abrac", "zz", "barb"]:
        probe = encode_messages([text])  # [B, text, B]
        with torch.inference_mode():
            logp, _ = m(torch.tensor([probe]), m.initial_state(1))
        for t in range(len(probe)):
            np.testing.assert_allclose(logp[0, t].exp().numpy(), ref(probe[: t + 1]),
                                       atol=1e-6)


def test_every_message_starts_from_its_own_start_context():
    # Most messages start with "b"; the first counted starts with "a". Counted as one stream
    # with a padded history, the start context would occur once and predict "a" alone.
    m = NGram(NGramConfig(order=4)).fit(encode_messages(["abc"] + ["bcd", "bce", "bde"] * 5))
    with torch.inference_mode():
        logp, _ = m(torch.tensor([[BOUNDARY]]), m.initial_state(1))
    first = logp[0, 0].exp()
    assert first[ord("b")] > 0.8 and first[ord("a")] < 0.1


def test_no_symbol_ever_gets_probability_zero():
    # A corpus whose discount estimates come out <= 0 (many 2s, few 1s).
    tokens = encode_messages(["ab", "ab", "cd", "cd", "ab", "ef", "ef", "gh", "gh", "ab"] * 3)
    m = NGram(NGramConfig(order=3)).fit(tokens)
    with torch.inference_mode():
        logp, _ = m(torch.tensor([tokens[:12]]), m.initial_state(1))
    assert torch.isfinite(logp).all()


def test_parallel_lanes_are_exact_for_ngrams():
    text = "the quick brown fox jumps over the lazy dog. " * 40
    m = NGram(NGramConfig(order=5)).fit(encode_messages([text[:900]]))
    ids = encode_messages([text])
    one = lane_logprobs(m, ids, lanes=1, warmup=0)
    many = lane_logprobs(m, ids, lanes=4, warmup=16)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=0)
    assert evaluate(m, text).nats_per_char < 1.0
