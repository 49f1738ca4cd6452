"""Sampling, written once against the model interface: the state is carried, so the cost is
linear in the length and the context is never re-read."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from lm import native
from lm.errors import LmError
from lm.models.base import LanguageModel
from lm.vocab import BOUNDARY, LOG_MASK, NEXT_STATE, VOCAB_SIZE, decode, decoder_states, encode

MAX_SAMPLE_CHARS = 10_000
MAX_SAMPLES = 32
NEG_INF = -np.inf
LOG_ALLOWED = LOG_MASK.double().numpy()  # [states, V]: 0 where legal, -inf elsewhere
_NO_END = LOG_ALLOWED.copy()
_NO_END[:, BOUNDARY] = NEG_INF  # for stop_at_end=False: the end symbol is never drawn


@dataclass(frozen=True)
class SampleConfig:
    """How to draw: temperature > 0, optional top-k / top-p (nucleus) filtering or greedy,
    at most `max_chars` characters per sample, `n` samples drawn together in one batch."""

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
        if not self.temperature > 0:
            raise LmError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise LmError(f"top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LmError(f"top-p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.max_chars <= MAX_SAMPLE_CHARS:
            raise LmError(f"length must be 1..{MAX_SAMPLE_CHARS} characters, got {self.max_chars}")
        if not 1 <= self.n <= MAX_SAMPLES:
            raise LmError(f"number of samples must be 1..{MAX_SAMPLES}, got {self.n}")


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


class _Drawer:
    """Draws one symbol per row from log-probs [n, V] under the decoder states [n]: the
    compiled `draw` kernel for plain temperature sampling, numpy (`_pick`) otherwise. Both
    take one uniform number per row from `rng` and invert the same cumulative sum."""

    def __init__(self, cfg: SampleConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = cfg, rng
        self.log_allowed = LOG_ALLOWED if cfg.stop_at_end else _NO_END
        lib = native.library()
        self.kernel = None
        if lib is not None and not cfg.greedy and cfg.top_k is None and cfg.top_p is None:
            self.allowed = np.ascontiguousarray(np.isfinite(self.log_allowed), dtype=np.uint8)
            self.work, self.sym = np.empty(VOCAB_SIZE), np.zeros(cfg.n, dtype=np.int64)
            self.kernel = partial(lib.draw, cfg.n, VOCAB_SIZE)
            self.tail = (self.work.ctypes.data, self.sym.ctypes.data)

    def __call__(self, logp: np.ndarray, dstate: np.ndarray) -> np.ndarray:
        if self.kernel is None:
            return _pick(logp + self.log_allowed[dstate], self.cfg, self.rng)
        logp = np.ascontiguousarray(logp, dtype=np.float32)
        u = self.rng.random(self.cfg.n)
        self.kernel(logp.ctypes.data, self.allowed.ctypes.data, dstate.ctypes.data,
                    self.cfg.temperature, u.ctypes.data, *self.tail)
        return self.sym


_NEXT = NEXT_STATE.tolist()  # plain lists: indexing them per symbol is cheaper than numpy's


def sample(model: LanguageModel, cfg: SampleConfig, prefix: str = "") -> list[str]:
    """Draw cfg.n continuations of `prefix` (each without the prefix), valid UTF-8."""
    cfg.validate()
    draw = _Drawer(cfg, np.random.default_rng(cfg.seed))
    start = [BOUNDARY, *encode(prefix)]
    dstate = np.full(cfg.n, decoder_states(start)[-1], dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(cfg.n)]
    chars = [0] * cfg.n
    live = list(range(cfg.n))
    step = model.stepper(cfg.n)
    logp = step.feed(np.array([start] * cfg.n, dtype=np.int64))  # [n, V]
    while True:
        sym = draw(logp, dstate).tolist()
        for i in list(live):
            s = sym[i]
            if s == BOUNDARY:
                live.remove(i)
                continue
            out[i].append(s)
            d = dstate[i] = _NEXT[dstate[i]][s]
            if d == 0:
                chars[i] += 1
                if chars[i] >= cfg.max_chars:
                    live.remove(i)
        if not live:
            break
        logp = step.feed(np.array(sym, dtype=np.int64)[:, None])
    return [decode(o) for o in out]
