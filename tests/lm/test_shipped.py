"""The shipped base model (data/base.pt) is what data/README.md says it is."""

from __future__ import annotations

import lm
from lm.hub import BASE_PATH
from lm.models.base import half_exact

SPEECH = "First Citizen:\nBefore we proceed any further, hear me speak."


def test_base_is_a_mix_of_a_float16_gru_and_a_7gram_within_10_mb():
    base = lm.load("base")
    assert [p.kind for p in base.parts] == ["gru", "ngram"]
    assert base.parts[1].config.order == 7
    assert all(half_exact(p) for p in base.parts[0].parameters())
    assert BASE_PATH.stat().st_size <= 10 * 2**20


def test_base_knows_where_a_message_ends():
    """Its n-gram counts the corpus as speeches (blank-line paragraphs), each a message, so the
    end of a complete speech is likely; mid-word it is not."""
    base = lm.load("base")
    assert lm.score(base, SPEECH).per_char[-1].bits < 6
    assert lm.score(base, SPEECH[:-8]).per_char[-1].bits > 12
