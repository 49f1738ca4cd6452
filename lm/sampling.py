"""Sampling, written once against the model interface: the state is carried, so the cost is
linear in the length and the context is never re-read."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lm.errors import LmError
from lm.models.base import LanguageModel
from lm.runners import drawer, runner
from lm.vocab import BOUNDARY, LOG_MASK, NEXT_STATE_ROWS, decode, decoder_states, encode

MAX_SAMPLE_CHARS = 10_000
MAX_SAMPLES = 32
# Below this, sampling is greedy in all but name (a gap of 0.01 nats between the two likeliest
# symbols already gives odds of e**-10), and tinier values break the arithmetic: a log-prob
# over a subnormal temperature overflows, and inf - inf is NaN, which a draw would turn into
# symbol 0, a NUL byte. From 1e-3 up, log-probs (float32, so
# > -3.4e38) over the temperature stay far inside float64, and the likeliest symbol always
# weighs exp(0) = 1, so the total is at least 1.
MIN_TEMPERATURE = 1e-3
MAX_SEED = 2**63 - 1  # a seed fits a signed 64-bit integer (an SQLite INTEGER, a C int64_t)
NEG_INF = -np.inf
LOG_ALLOWED = LOG_MASK.double().numpy()  # [states, V]: 0 where legal, -inf elsewhere
_NO_END = LOG_ALLOWED.copy()
_NO_END[:, BOUNDARY] = NEG_INF  # for stop_at_end=False: the end symbol is never drawn


@dataclass(frozen=True)
class SampleConfig:
    """How to draw: a finite temperature of at least MIN_TEMPERATURE, optional top-k / top-p
    (nucleus) filtering or greedy, at most `max_chars` characters per sample, `n` samples drawn
    together in one batch, a seed in 0..MAX_SEED (None: fresh randomness).

    A sample stops when it draws the end symbol or reaches `max_chars` characters, so one of
    exactly `max_chars` characters was cut there and a shorter one ended by itself (with
    `stop_at_end` false, the end symbol is never drawn and every sample is cut)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    max_chars: int = 200
    seed: int | None = None
    n: int = 1
    stop_at_end: bool = True

    def validate(self) -> None:
        """Raise LmError with a one-line reason for a bad value."""
        t = self.temperature
        if not (_real(t) and MIN_TEMPERATURE <= t < math.inf):
            raise LmError(f"temperature must be a finite number of at least {MIN_TEMPERATURE:g} "
                          f"(greedy draws the likeliest text), got {_shown(t)}")
        s = self.seed
        if s is not None and not (isinstance(s, int | np.integer) and not isinstance(s, bool)
                                  and 0 <= s <= MAX_SEED):
            raise LmError(f"seed must be an integer 0..2**63-1, got {_shown(s)}")
        if self.top_k is not None and self.top_k < 1:
            raise LmError(f"top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LmError(f"top-p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.max_chars <= MAX_SAMPLE_CHARS:
            raise LmError(f"length must be 1..{MAX_SAMPLE_CHARS} characters, got {self.max_chars}")
        if not 1 <= self.n <= MAX_SAMPLES:
            raise LmError(f"number of samples must be 1..{MAX_SAMPLES}, got {self.n}")


def _real(x: object) -> bool:
    """Whether `x` is a real number (bool is not, though Python counts it as one)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _shown(x: object) -> str:
    """`x` as the user typed it: repr, so 1e-320 is not rounded to 0.0 (numpy scalars as
    plain numbers)."""
    if isinstance(x, np.integer):
        return repr(int(x))
    return repr(float(x)) if isinstance(x, np.floating) else repr(x)


def _filtered(logp: np.ndarray, ok: np.ndarray, cfg: SampleConfig) -> np.ndarray:
    """Log-probs logp [V] with -inf for every symbol that greedy, top-k or top-p (nucleus)
    filtering drops, among the allowed ones ok [V] (bool); the draw then weighs what is left
    as it weighs every symbol in plain sampling."""
    z = np.where(ok, logp.astype(np.float64), NEG_INF)
    if cfg.greedy or (cfg.top_k is not None and cfg.top_k < len(z)):
        # exactly k symbols (greedy: one); ties go to the lower id, so top-k 1 == greedy
        keep = np.argsort(-z, kind="stable")[: 1 if cfg.greedy else cfg.top_k]
        kept = np.full_like(z, NEG_INF)
        kept[keep] = z[keep]
        z = kept
    if cfg.top_p is not None and cfg.top_p < 1 and not cfg.greedy:
        p = np.exp((z - z.max()) / cfg.temperature)
        order = np.argsort(-p, kind="stable")
        sp = p[order] / p.sum()
        dropped = order[np.cumsum(sp) - sp >= cfg.top_p]  # keep the smallest set reaching p
        z[dropped] = NEG_INF
    return z.astype(np.float32)


# Which symbols may come next in each UTF-8 decoder state: [2 * states, V] (1 = legal); the
# second half forbids the end symbol too, for stop_at_end=False.
_MASKS = np.ascontiguousarray(np.concatenate([np.isfinite(LOG_ALLOWED), np.isfinite(_NO_END)]),
                              dtype=np.uint8)


class _Row:
    """One sequence being drawn: its settings, its own random stream, the prefix symbols it
    still has to read, and what it has drawn."""

    def __init__(self, cfg: SampleConfig, rng: np.random.Generator, prefix: list[int]) -> None:
        self.cfg, self.rng, self.prefix = cfg, rng, prefix
        self.pos = 0  # prefix symbols read so far
        self.dstate = 0
        self.out: list[int] = []
        self.chars = 0
        self.done = False
        self.filters = cfg.greedy or cfg.top_k is not None or cfg.top_p is not None
        self.masks = 0 if cfg.stop_at_end else len(LOG_ALLOWED)  # first row of its masks

    def next_symbol(self, i: int, draw: _Draw) -> int:
        """The symbol this row (row i of the batch) feeds next: a prefix symbol, a draw, or
        (once done) the end symbol as filler."""
        if self.pos < len(self.prefix):
            s = self.prefix[self.pos]
            self.pos += 1
            self.dstate = max(0, NEXT_STATE_ROWS[self.dstate][s])
            return s
        if self.done:
            return BOUNDARY
        mask = self.masks + self.dstate
        if self.filters:
            draw.filtered[i] = _filtered(draw.logp[i], _MASKS[mask] != 0, self.cfg)
            s = draw.from_filtered(i, mask, self.cfg.temperature, self.rng.random())
        else:
            s = draw.from_logp(i, mask, self.cfg.temperature, self.rng.random())
        if s == BOUNDARY:
            self.done = True
            return s
        self.out.append(s)
        self.dstate = NEXT_STATE_ROWS[self.dstate][s]
        if self.dstate == 0:
            self.chars += 1
            self.done = self.chars >= self.cfg.max_chars
        return s


class _Draw:
    """The draw (lm.runners.drawer) bound to the batch's log-probs [B, V] and to a buffer of
    filtered rows of the same shape."""

    def __init__(self, logp: np.ndarray) -> None:
        self.logp = logp
        self.filtered = np.empty_like(logp)
        self.from_logp = drawer(logp, _MASKS)
        self.from_filtered = drawer(self.filtered, _MASKS)


def sample(model: LanguageModel, cfg: SampleConfig, prefix: str = "") -> list[str]:
    """Draw cfg.n continuations of `prefix` (each without the prefix), valid UTF-8."""
    return sample_many(model, [(cfg, prefix)])[0]


def sample_many(model: LanguageModel,
                requests: Sequence[tuple[SampleConfig, str]]) -> list[list[str]]:
    """Several requests in one batched pass: for each (cfg, prefix), cfg.n continuations.

    Each sample has its own random stream, spawned from its request's seed, so a request draws
    the same text alone or batched with others. Rows read the prefix they share at once, then
    one symbol per step: their own prefix's next symbol, or a draw.
    """
    rows: list[_Row] = []
    for cfg, prefix in requests:
        cfg.validate()
        ids = encode(prefix)
        rows += [_Row(cfg, np.random.default_rng(seq), ids)
                 for seq in np.random.SeedSequence(cfg.seed).spawn(cfg.n)]
    if not rows:
        return []
    shared = os.path.commonprefix([r.prefix for r in rows])
    start = [BOUNDARY, *shared]
    dstate = decoder_states(start)[-1]
    for r in rows:
        r.pos, r.dstate = len(shared), dstate
    step = runner(model).stepper(len(rows))  # its `out` [B, V]: log-probs after each feed
    draw = _Draw(step.out)
    ids = np.zeros((len(rows), 1), dtype=np.int64)
    logp = step.feed(np.array([start] * len(rows), dtype=np.int64))
    # NaN weights give NaN from the first step, and a draw from NaN is symbol 0: refuse then
    # (checked once, not in the loop: checkpoints with such weights are refused at load)
    if np.isnan(logp).any():
        raise LmError("the model gave NaN probabilities: its weights are not finite")
    while True:
        ids[:, 0] = [r.next_symbol(i, draw) for i, r in enumerate(rows)]
        if all(r.done for r in rows):
            break
        step.feed(ids)
    out = iter(decode(r.out) for r in rows)
    return [[next(out) for _ in range(cfg.n)] for cfg, _ in requests]
