"""Awkward text: empty, huge, emoji, right-to-left, zero-width, NUL bytes."""

from __future__ import annotations

import math

import pytest

from lm import LmError, SampleConfig, sample, score
from lm.cli import main
from lm.scoring import MAX_SCORE_CHARS
from lm.vocab import split_messages, split_messages_at
from tests.lm.conftest import make


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_is_refused(text):
    with pytest.raises(LmError, match="empty"):
        score(make("gru"), text)


def test_100kb_text_scores_and_longer_is_refused():
    s = score(make("ngram"), "a" * MAX_SCORE_CHARS)
    assert s.chars == MAX_SCORE_CHARS + 1 and math.isfinite(s.nats)
    with pytest.raises(LmError, match="too long"):
        score(make("ngram"), "a" * (MAX_SCORE_CHARS + 1))


@pytest.mark.parametrize("text", ["👍🏽🎉 família", "שלום עולם", "مرحبا", "a\u200bb\u200d",
                                  "nul\x00byte", "\U0010ffff"])
def test_any_unicode_scores_finitely_per_character(text):
    s = score(make("mix"), text)
    assert len(s.per_char) == len(text) + 1
    assert all(math.isfinite(c.bits) and c.bits > 0 for c in s.per_char)


def test_prefix_with_emoji_and_nul_continues():
    out = sample(make("gru"), SampleConfig(seed=0, max_chars=10), prefix="nul\x00 👍")
    assert len(out[0]) <= 10


def test_lone_surrogate_does_not_crash():
    s = score(make("uniform"), "a\ud800b")
    assert s.chars == 4


def test_message_formats_split_as_documented():
    text = "A:\nhi\n\n\nB:\nyo\n \t\nC: x\n"
    assert split_messages(text) == [text]
    assert split_messages(text, "lines") == ["A:", "hi", "B:", "yo", " \t", "C: x"]
    assert split_messages(text, "paragraphs") == ["A:\nhi", "B:\nyo", "C: x"]
    with pytest.raises(ValueError, match="paragraphs"):
        split_messages(text, "verses")


def test_a_split_point_moves_back_to_the_last_message_boundary():
    text = "A:\nhi\n \nB:\nyo there\n\nC: x"
    cut = text.index("there")
    assert split_messages_at(text, cut, "paragraphs") == (["A:\nhi"], ["B:\nyo there", "C: x"])
    assert split_messages_at(text, cut, "lines") == (["A:", "hi", " ", "B:"],
                                                      ["yo there", "C: x"])
    assert split_messages_at(text, cut, "stream") == ([text[:cut]], [text[cut:]])


@pytest.mark.parametrize(("args", "shown"), [
    (["--seed", "-1"], "seed must be an integer 0..2**63-1, got -1"),
    (["--seed", str(2**63)], f"got {2**63}"),
    (["--temperature", "1e-5"], "got 1e-05"),
    (["--temperature", "1e-320"], "temperature must be a finite number of at least 0.001"),
    (["--temperature", "inf"], "got inf"),
    (["--temperature", "nan"], "got nan"),
])
def test_bad_sample_options_are_one_line_and_status_2(capsys, args, shown):
    assert main(["sample", "--model", "base", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and shown in err
