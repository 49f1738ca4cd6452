"""Sampling, written once against the model interface: the state is carried, so the cost is
linear in the length and the context is never re-read."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lm import native
from lm.errors import LmError
from lm.models.base import LanguageModel
from lm.vocab import BOUNDARY, LOG_MASK, NEXT_STATE_ROWS, VOCAB_SIZE, decode, decoder_states, encode

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


def _pick(logits: np.ndarray, cfg: SampleConfig, rng: np.random.Generator) -> np.ndarray:
    """One symbol per row from restricted log-probs [n, V] (illegal symbols are -inf)."""
    if cfg.greedy:
        return logits.argmax(axis=1)
    z = logits / cfg.temperature if cfg.temperature != 1 else logits
    if cfg.top_k is not None and cfg.top_k < z.shape[1]:
        # exactly k symbols; ties go to the lower id, as argmax does, so top-k 1 == greedy
        keep = np.argsort(-z, axis=1, kind="stable")[:, : cfg.top_k]
        kept = np.full_like(z, NEG_INF)
        np.put_along_axis(kept, keep, np.take_along_axis(z, keep, axis=1), axis=1)
        z = kept
    p = np.exp(z - z.max(axis=1, keepdims=True))
    if cfg.top_p is not None and cfg.top_p < 1:
        order = np.argsort(-p, axis=1)
        sp = np.take_along_axis(p, order, axis=1)
        sp /= sp.sum(axis=1, keepdims=True)
        sp[np.cumsum(sp, axis=1) - sp >= cfg.top_p] = 0.0  # keep the smallest set reaching p
        p = np.zeros_like(p)
        np.put_along_axis(p, order, sp, axis=1)
    cum = p.cumsum(axis=1)
    u = rng.random(len(p)) * cum[:, -1]
    return np.minimum((cum <= u[:, None]).sum(axis=1), p.shape[1] - 1)


_ALLOWED = {end: np.ascontiguousarray(np.isfinite(m), dtype=np.uint8)
            for end, m in ((True, LOG_ALLOWED), (False, _NO_END))}  # [states, V], 1 = legal
_ALLOWED_AT = {end: m.ctypes.data for end, m in _ALLOWED.items()}  # for the compiled draw


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
        # the compiled draw serves plain temperature sampling; numpy (_pick) the rest
        self.plain = not cfg.greedy and cfg.top_k is None and cfg.top_p is None
        self.allowed = _ALLOWED_AT[cfg.stop_at_end]
        self.log_allowed = LOG_ALLOWED if cfg.stop_at_end else _NO_END

    def next_symbol(self, logp: np.ndarray, i: int, kernel) -> int:
        """The symbol this row feeds next: a prefix symbol, a draw from row i of logp, or (once
        done) the end symbol as filler."""
        if self.pos < len(self.prefix):
            s = self.prefix[self.pos]
            self.pos += 1
            self.dstate = max(0, NEXT_STATE_ROWS[self.dstate][s])
            return s
        if self.done:
            return BOUNDARY
        if kernel is not None and self.plain:
            addr, work = kernel[1], kernel[2]
            s = kernel[0](VOCAB_SIZE, addr + i * VOCAB_SIZE * 4,
                          self.allowed + self.dstate * VOCAB_SIZE,
                          self.cfg.temperature, self.rng.random(), work)
        else:
            row = logp[i : i + 1].astype(np.float64) + self.log_allowed[self.dstate]
            s = int(_pick(row, self.cfg, self.rng)[0])
        if s == BOUNDARY:
            self.done = True
            return s
        self.out.append(s)
        self.dstate = NEXT_STATE_ROWS[self.dstate][s]
        if self.dstate == 0:
            self.chars += 1
            self.done = self.chars >= self.cfg.max_chars
        return s


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
    lib = native.library()
    work = np.empty(VOCAB_SIZE)
    step = model.stepper(len(rows))  # its `out` [B, V] holds the log-probs after each feed
    kernel = None if lib is None else (lib.draw, step.out.ctypes.data, work.ctypes.data)
    ids = np.zeros((len(rows), 1), dtype=np.int64)
    logp = step.feed(np.array([start] * len(rows), dtype=np.int64))
    # NaN weights give NaN from the first step, and a draw from NaN is symbol 0: refuse then
    # (checked once, not in the loop: checkpoints with such weights are refused at load)
    if np.isnan(logp).any():
        raise LmError("the model gave NaN probabilities: its weights are not finite")
    while True:
        ids[:, 0] = [r.next_symbol(logp, i, kernel) for i, r in enumerate(rows)]
        if all(r.done for r in rows):
            break
        logp = step.feed(ids)
    out = iter(decode(r.out) for r in rows)
    return [[next(out) for _ in range(cfg.n)] for cfg, _ in requests]
