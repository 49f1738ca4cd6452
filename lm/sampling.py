"""Sampling, written once against the model interface: the state is carried, so the cost is
linear in the length and the context is never re-read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lm.errors import LmError
from lm.models.base import LanguageModel
from lm.vocab import BOUNDARY, LOG_MASK, NEXT_STATE, decode, decoder_states, encode

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


def sample(model: LanguageModel, cfg: SampleConfig, prefix: str = "") -> list[str]:
    """Draw cfg.n continuations of `prefix` (each without the prefix), valid UTF-8."""
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    start = [BOUNDARY, *encode(prefix)]
    allowed = LOG_ALLOWED if cfg.stop_at_end else _NO_END
    dstate = np.full(cfg.n, decoder_states(start)[-1])
    out = np.zeros((cfg.n, 4 * cfg.max_chars), dtype=np.int64)  # a character is <= 4 bytes
    length = np.zeros(cfg.n, dtype=np.int64)  # bytes drawn so far
    chars = np.zeros(cfg.n, dtype=np.int64)
    done = np.zeros(cfg.n, dtype=bool)
    rows = np.arange(cfg.n)
    with torch.inference_mode():
        dev = model.device
        x = torch.tensor([start] * cfg.n, dtype=torch.long, device=dev)  # [n, P]
        state = model.initial_state(cfg.n)
        while True:
            logp, state = model(x, state)
            logits = logp[:, -1].cpu().numpy().astype(np.float64) + allowed[dstate]  # [n, V]
            sym = _pick(logits, cfg, rng)
            live = ~done
            ended = live & (sym == BOUNDARY)
            grow = live & ~ended
            out[rows[grow], length[grow]] = sym[grow]
            length += grow
            dstate = np.where(grow, NEXT_STATE[dstate, np.minimum(sym, BOUNDARY)], dstate)
            chars += grow & (dstate == 0)
            done |= ended | (chars >= cfg.max_chars)
            if done.all():
                break
            x = torch.from_numpy(sym.reshape(-1, 1)).to(dev)
    return [decode(out[i, : length[i]].tolist()) for i in range(cfg.n)]
