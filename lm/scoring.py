"""Exact sentence scores and corpus evaluation, written once against the model interface."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from lm.errors import LmError
from lm.models.base import LanguageModel
from lm.runners import runner
from lm.vocab import (
    BOUNDARY,
    LOG_MASK,
    char_spans,
    decoder_states,
    encode,
    split_messages,
)

LN2 = math.log(2.0)
MAX_SCORE_CHARS = 100_000


def restrict(logp: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Renormalise log-probs [..., V] over the symbols legal in each UTF-8 decoder state [...]."""
    masked = logp + LOG_MASK.to(logp.device)[states]
    return masked - torch.logsumexp(masked, dim=-1, keepdim=True)


def restricted_nll(scores: torch.Tensor, states: torch.Tensor,
                   targets: torch.Tensor) -> torch.Tensor:
    """-log P(target) in nats [B, T] from unnormalised scores [B, T, V], restricted to the
    symbols legal in each decoder state [B, T] (what training minimises)."""
    mask = LOG_MASK.to(scores.device)
    if bool((states == states.flatten()[0]).all()):  # one state everywhere (plain ASCII)
        lse = torch.logsumexp(scores + mask[states.flatten()[0]], dim=-1)
    else:
        lse = torch.logsumexp(scores + mask[states], dim=-1)
    return lse - scores.gather(-1, targets[..., None])[..., 0]


class CharScore(NamedTuple):
    """One character and its surprisal in bits (the sum over its UTF-8 bytes). A named tuple:
    a score makes one per character, five times faster than a frozen dataclass."""

    char: str
    bits: float


@dataclass(frozen=True)
class Score:
    """A message's log-probability. `chars` counts the end symbol when `include_end` is true."""

    text: str
    nats: float  # total negative log-probability, in nats
    chars: int
    include_end: bool
    per_char: tuple[CharScore, ...]

    @property
    def bits(self) -> float:
        """Total surprisal in bits."""
        return self.nats / LN2

    @property
    def bits_per_char(self) -> float:
        """Average surprisal per character in bits."""
        return self.bits / max(self.chars, 1)

    @property
    def nats_per_char(self) -> float:
        """Average surprisal per character in nats."""
        return self.nats / max(self.chars, 1)

    @property
    def perplexity(self) -> float:
        """exp(nats per character)."""
        return math.exp(self.nats_per_char)

    def to_dict(self) -> dict:
        """JSON-ready form, the keys `lm score --json` documents."""
        return {
            "text": self.text, "nats": self.nats, "bits": self.bits, "chars": self.chars,
            "bits_per_char": self.bits_per_char, "perplexity": self.perplexity,
            "includes_end": self.include_end,
            "per_char": [{"char": c.char, "bits": c.bits} for c in self.per_char],
        }


def score(model: LanguageModel, text: str, include_end: bool = True) -> Score:
    """Score `text` as one message: log P(its bytes [, end] | start), exactly."""
    return score_many(model, [text], include_end)[0]


def score_many(model: LanguageModel, texts: Sequence[str], include_end: bool = True) -> list[Score]:
    """Score several messages in one batched pass; each Score is what `score` gives alone."""
    for text in texts:
        if not text.strip():
            raise LmError("nothing to score: the text is empty")
        if len(text) > MAX_SCORE_CHARS:
            raise LmError(f"text too long to score: {len(text)} characters "
                          f"(limit {MAX_SCORE_CHARS})")
    rows = [[BOUNDARY, *encode(text), BOUNDARY] for text in texts]
    got = rows_logprobs(model, rows, [decoder_states(r)[:-1] for r in rows])
    return [_score(text, -got[i, : len(r) - 1].double().numpy(), include_end)
            for i, (text, r) in enumerate(zip(texts, rows, strict=True))]


def _score(text: str, nll: np.ndarray, include_end: bool) -> Score:
    """A Score from the surprisal in nats of each byte of `text` and of the end symbol."""
    spans = char_spans(text)
    starts = np.cumsum([0] + [n for _, n in spans])  # byte offset of each character; last: end
    bits = np.add.reduceat(nll[:-1], starts[:-1]) / LN2 if spans else np.zeros(0)
    per_char = [CharScore(ch, b) for (ch, _), b in zip(spans, bits.tolist(), strict=True)]
    if include_end:
        per_char.append(CharScore("<end>", float(nll[-1]) / LN2))
    nats = float(nll.sum()) if include_end else float(nll[:-1].sum())
    return Score(text, nats, len(text) + int(include_end), include_end, tuple(per_char))


@dataclass(frozen=True)
class Evaluation:
    """Average surprisal of a text in nats per character (characters, not bytes).

    Exact when `lanes` is 1. Read in more lanes it is an approximation, and `lane_error`
    (where asked for) estimates how far off, in nats per character (lanes minus exact): the
    cost of a lane's fresh start, measured on a sample of the text read both ways, times the
    lanes after the first.
    """

    nats: float
    chars: int
    lanes: int = 1
    lane_error: float | None = None

    @property
    def nats_per_char(self) -> float:
        return self.nats / max(self.chars, 1)

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / LN2

    def to_dict(self) -> dict:
        """JSON-ready form, the keys `lm eval --json` documents."""
        return {"nats": self.nats, "chars": self.chars, "nats_per_char": self.nats_per_char,
                "bits_per_char": self.bits_per_char, "lanes": self.lanes,
                "lane_error": self.lane_error}


def stream_ids(text: str) -> list[int]:
    """A whole file as one message: start symbol, bytes (no end symbol scored)."""
    return [BOUNDARY, *encode(text)]


def messages_nll(model: LanguageModel, messages: Sequence[str],
                 max_symbols: int = 16_384) -> tuple[float, int]:
    """Total surprisal in nats of the messages, each read from a fresh start with its end
    symbol (what `score` gives, summed), and the number of symbols scored.

    Messages of similar length are read side by side, up to `max_symbols` a pass.
    """
    nats, count = 0.0, 0
    for group in message_groups(messages, max_symbols):
        got = rows_logprobs(model, group, [decoder_states(r)[:-1] for r in group])
        for k, r in enumerate(group):
            nats -= float(got[k, : len(r) - 1].double().sum())
            count += len(r) - 1
    return nats, count


def message_groups(messages: Sequence[str], max_symbols: int) -> list[list[list[int]]]:
    """The messages as [B m B] rows, sorted by length and grouped so that a group, padded to
    its longest row, holds at most `max_symbols` symbols (a longer row is a group alone)."""
    rows = sorted(([BOUNDARY, *encode(m), BOUNDARY] for m in messages), key=len)
    groups, i = [], 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and len(rows[j]) * (j + 1 - i) <= max_symbols:
            j += 1
        groups.append(rows[i:j])
        i = j
    return groups


def evaluate(model: LanguageModel, text: str, split: str = "stream", lanes: int = 1,
             warmup: int = 256, check: bool = False) -> Evaluation:
    """Surprisal of `text` per character, exactly: one stream (start symbol, no end), or its
    messages (`split` as in `split_messages`: "lines" or "paragraphs"), each scored from a
    fresh start with its end symbol counted, exactly as `score` scores each (the end counts
    as a character).

    lanes > 1 is a speed option for a stream, and an approximation: the stream is cut into
    that many pieces read side by side (fewer where a piece would be under `warmup` symbols),
    each re-reading the `warmup` symbols before its start without counting them. A model that
    needs more context than that to recover from a fresh state scores worse than it is. With
    `check`, the result's `lane_error` measures the difference on a sample of the text.
    """
    if split != "stream":
        if lanes != 1:
            raise LmError("lanes apply to a stream; messages are always read exactly")
        msgs = split_messages(text, split)
        if not msgs:
            raise LmError("nothing to evaluate: the text is empty")
        nats, _ = messages_nll(model, msgs)
        return Evaluation(nats, sum(len(m) + 1 for m in msgs))
    if not text:
        raise LmError("nothing to evaluate: the text is empty")
    if lanes < 1:
        raise LmError(f"lanes must be at least 1, got {lanes}")
    ids = stream_ids(text)
    used = lane_count(len(ids) - 1, lanes, warmup)
    nats = float(-lane_logprobs(model, ids, used, warmup).double().sum())
    error = _lane_error(model, text, used, warmup) if check and used > 1 else None
    return Evaluation(nats, len(text), used, error)


def _lane_error(model: LanguageModel, text: str, lanes: int, warmup: int,
                most: int = 4) -> float | None:
    """What reading `text` in `lanes` lanes adds, in nats per character, estimated on its
    start: the first `most` lanes' worth of text read in that many lanes and in one pass
    gives the cost of a lane's fresh start, counted once per lane after the first."""
    k = min(lanes, most)
    sample = text[: -(-len(text) * k // lanes)]  # k lanes as long as the text's lanes
    ids = stream_ids(sample)
    k = lane_count(len(ids) - 1, k, warmup)
    if k < 2:
        return None
    approx = -lane_logprobs(model, ids, k, warmup).double().sum()
    exact = -lane_logprobs(model, ids, 1, warmup).double().sum()
    return float(approx - exact) / (k - 1) * (lanes - 1) / len(text)


def lane_count(symbols: int, lanes: int, warmup: int) -> int:
    """The lanes a stream of `symbols` is read in when `lanes` are asked for: no lane shorter
    than `warmup` symbols, at least one."""
    return max(1, min(lanes, symbols // max(warmup, 1)))


def lane_logprobs(model: LanguageModel, ids: list[int], lanes: int, warmup: int,
                  chunk: int = 1024) -> torch.Tensor:
    """Restricted log-probs of ids[1:], computed in `lanes` parallel pieces (see `evaluate`);
    one lane is the exact single pass."""
    n = len(ids) - 1
    lanes = lane_count(n, lanes, warmup)
    bounds = np.linspace(0, n, lanes + 1).astype(int)
    starts = [max(0, b - warmup) for b in bounds[:-1]]
    dstates = decoder_states(ids)
    rows = [ids[s : bounds[i + 1] + 1] for i, s in enumerate(starts)]
    states = [dstates[s : bounds[i + 1] + 1] for i, s in enumerate(starts)]
    got = rows_logprobs(model, rows, states, chunk)
    parts = [got[i, bounds[i] - starts[i] : bounds[i + 1] - starts[i]] for i in range(lanes)]
    return torch.cat(parts).cpu()


def rows_logprobs(model: LanguageModel, rows: list[list[int]], states: list[list[int]],
                  chunk: int = 1024) -> torch.Tensor:
    """Restricted log-probs [B, L-1] of each row's symbols after its first, the rows read side
    by side from a fresh state; states[i][t] is the UTF-8 decoder state before rows[i][t].

    Shorter rows are padded at their end, which no earlier position of theirs ever reads; rows
    are read in chunks with the state carried, so the result is exact and memory bounded.
    """
    length = max(len(r) for r in rows) - 1
    xs = np.full((len(rows), length + 1), BOUNDARY, dtype=np.int64)
    sts = np.zeros((len(rows), length + 1), dtype=np.int64)
    for i, (row, state) in enumerate(zip(rows, states, strict=True)):
        xs[i, : len(row)] = row
        sts[i, : len(row)] = state
    dev = model.device
    x, st = torch.from_numpy(xs).to(dev), torch.from_numpy(sts).to(dev)
    got = torch.empty(len(rows), length, device=dev)
    run = runner(model)
    with torch.inference_mode():
        state = run.initial_state(len(rows))
        for s in range(0, length, chunk):
            e = min(s + chunk, length)
            logp, state = run.logprobs(x[:, s:e], state)  # [B, T, V]
            got[:, s:e] = -restricted_nll(logp, st[:, s + 1 : e + 1], x[:, s + 1 : e + 1])
    return got.cpu()
