"""Interpolated Kneser-Ney character n-gram (modified discounts, Chen & Goodman 1998).

This is what Markov-chain chat bots do, done properly. "Training" is counting: the model keeps
its training symbols as a buffer (the checkpoint) and rebuilds its count tables from them on
first use. A context key packs up to order-1 symbols in base 258 (symbol 257 pads the start of
a stream, so padded contexts never match real ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lm import native
from lm.models.base import LanguageModel, State, Stepper
from lm.runners import Runner, TorchRunner, fingerprint
from lm.vocab import BOUNDARY, VOCAB_SIZE, encode_messages

PAD = 257
BASE = 258
# Contexts of different lengths live in one sorted key array, offset by length.
LEN_OFFSET = BASE**6  # > any packed context of up to 6 symbols


@dataclass(frozen=True)
class NGramConfig:
    """Order of the model: it conditions on the previous order-1 symbols (2..7)."""

    order: int = 7


@dataclass(frozen=True)
class _Tables:
    """Count tables, built once from the counted symbols and read-only afterwards: contiguous
    int64 / float64 arrays, which the compiled kernel reads too."""

    ctx: np.ndarray  # [C] sorted context keys (length offset included)
    start: np.ndarray  # [C + 1] row starts into the entry arrays
    gamma: np.ndarray  # [C] weight left for the lower order
    sym: np.ndarray  # [E] next symbol of each entry
    disc: np.ndarray  # [E] discounted probability max(c - D, 0) / total


def context_keys(full: np.ndarray, order: int) -> np.ndarray:
    """Keys of the contexts of length 0..order-1 ending at each position.

    full: [B, order-1+T] symbols (state then new ids). Returns [B, T, order] int64 keys.
    """
    k = order - 1
    b, t = full.shape[0], full.shape[1] - k
    keys = np.zeros((b, t, order), dtype=np.int64)
    acc = np.zeros((b, t), dtype=np.int64)
    for length in range(1, order):
        # the symbol `length` places back from each position: full[:, k - length + 1 + t]
        acc = acc + full[:, k - length + 1 : k - length + 1 + t] * BASE ** (length - 1)
        keys[..., length] = acc + length * LEN_OFFSET
    return keys


MIN_DISCOUNT = 0.1  # keeps some mass for lower orders, so no symbol ever has probability 0


def _discounts(counts: np.ndarray) -> np.ndarray:
    """Modified Kneser-Ney discounts D[0..3] (D[0] = 0) from counts-of-counts.

    Each D[k] is kept within [MIN_DISCOUNT, k]: the estimate can fall to zero or below on
    small or odd corpora, which would leave unseen symbols no probability at all.
    """
    n = [np.count_nonzero(counts == i) for i in range(1, 5)]
    if min(n[:3]) == 0:  # too few distinct counts to estimate: fixed, conventional discounts
        return np.array([0.0, 0.5, 1.0, 1.5])
    y = n[0] / (n[0] + 2 * n[1])
    d = [0.0, 1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2]]
    return np.concatenate([[0.0], np.clip(d[1:], MIN_DISCOUNT, [1.0, 2.0, 3.0])])


def _order_table(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows of one context length from sorted (context*258+symbol) keys and their counts."""
    ctx, sym = np.divmod(keys, BASE)
    uctx, first = np.unique(ctx, return_index=True)
    total = np.add.reduceat(counts, first).astype(np.float64)
    d = _discounts(counts)
    dc = d[np.minimum(counts, 3)]
    left = np.add.reduceat(dc, first)
    disc = (counts - dc) / np.repeat(total, np.diff(np.append(first, len(keys))))
    return uctx, first, left / total, sym, disc


def message_context_keys(tokens: np.ndarray, order: int) -> np.ndarray:
    """Keys [L-1, order] of the contexts before tokens[1:], each message counted from its own
    start context: what lies before the last boundary symbol reads as padding, as a message
    scored alone sees it (KenLM's <s>); the boundary itself stays in the context."""
    n = len(tokens)
    at = np.where(tokens == BOUNDARY, np.arange(n), -1)
    last = np.maximum.accumulate(at)[:-1]  # [L-1] last boundary at or before each context end
    j = np.arange(1, n)  # target positions
    keys = np.zeros((n - 1, order), dtype=np.int64)
    acc = np.zeros(n - 1, dtype=np.int64)
    for length in range(1, order):
        idx = j - length
        sym = np.where((idx >= 0) & (idx >= last), tokens[np.maximum(idx, 0)], PAD)
        acc = acc + sym * BASE ** (length - 1)
        keys[:, length] = acc + length * LEN_OFFSET
    return keys


def build_tables(tokens: np.ndarray, order: int) -> _Tables:
    """Count a symbol stream B m1 B m2 B ... into interpolated Kneser-Ney tables."""
    tokens = np.asarray(tokens, dtype=np.int64)
    keys = message_context_keys(tokens, order)  # [L-1, order]: context before each target
    nxt = tokens[1:].astype(np.int64)
    parts = []
    higher = None
    for length in range(order - 1, -1, -1):
        if higher is None:  # highest order: raw counts
            k, c = np.unique(keys[:, length] * BASE + nxt, return_counts=True)
        else:  # lower orders: number of distinct symbols seen before (context, symbol)
            hk, _ = higher
            ctx, s = np.divmod(hk, BASE)
            body = (ctx - (length + 1) * LEN_OFFSET) % (BASE**length) + length * LEN_OFFSET
            k, c = np.unique(body * BASE + s, return_counts=True)
        higher = (k, c)
        parts.append(_order_table(k, c))
    return _merge(parts)


def _merge(parts: list[tuple[np.ndarray, ...]]) -> _Tables:
    """Concatenate per-length tables into one sorted table."""
    parts = sorted(parts, key=lambda p: p[0][0])  # lengths occupy disjoint key ranges
    ctx = np.concatenate([p[0] for p in parts])
    offsets = np.cumsum([0] + [len(p[3]) for p in parts])
    start = np.concatenate([p[1] + o for p, o in zip(parts, offsets[:-1], strict=True)])
    start = np.append(start, offsets[-1])
    return _Tables(
        ctx=ctx.astype(np.int64), start=start.astype(np.int64),
        gamma=np.concatenate([p[2] for p in parts]).astype(np.float64),
        sym=np.concatenate([p[3] for p in parts]).astype(np.int64),
        disc=np.concatenate([p[4] for p in parts]).astype(np.float64),
    )


def distributions(tab: _Tables, keys: np.ndarray) -> np.ndarray:
    """Interpolated probabilities [P, 257] for contexts keys [P, order] (lengths 0..order-1)."""
    p, order = keys.shape
    idx = np.searchsorted(tab.ctx, keys)  # [P, order]
    idx = np.minimum(idx, len(tab.ctx) - 1)
    found = tab.ctx[idx] == keys
    gamma = np.where(found, tab.gamma[idx], 1.0)  # [P, order]
    # weight of length L's own entries = product of gammas of the longer contexts
    w = np.cumprod(gamma[:, ::-1], axis=1)[:, ::-1]  # w[:, L] = prod gamma[L:]
    own = np.concatenate([w[:, 1:], np.ones((p, 1))], axis=1)  # prod gamma[L+1:]
    rows = idx[found]
    lo, hi = tab.start[rows], tab.start[rows + 1]
    n = hi - lo
    pos = np.repeat(np.nonzero(found)[0], n)
    ent = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
    vals = np.repeat(own[found], n) * tab.disc[ent]
    out = np.bincount(pos * BASE + tab.sym[ent], weights=vals, minlength=p * BASE)
    out = out.reshape(p, BASE)[:, :VOCAB_SIZE]
    return out + w[:, :1] / VOCAB_SIZE


class NGram(LanguageModel):
    """Character n-gram with interpolated modified Kneser-Ney smoothing."""

    kind = "ngram"

    def __init__(self, config: NGramConfig | None = None, n_tokens: int = 0) -> None:
        super().__init__()
        self.config = config or NGramConfig()
        if not 2 <= self.config.order <= 7:
            raise ValueError(f"n-gram order must be 2..7, got {self.config.order}")
        self.register_buffer("tokens", torch.zeros(n_tokens, dtype=torch.int16))
        self._tables: tuple[tuple, _Tables] | None = None  # (fingerprint of tokens, tables)

    def fit(self, tokens: list[int] | np.ndarray) -> NGram:
        """Count a symbol stream B m1 B m2 B ... (each message from its own start context)."""
        self.tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int16))
        self._tables = None
        return self

    def fit_messages(self, messages: list[str], keep: bool = False) -> NGram:
        """Count messages; with `keep`, added to the messages already counted."""
        new = encode_messages(messages)
        old = self.tokens.numpy().astype(np.int64).tolist() if keep else []
        if old and old[-1] == BOUNDARY:  # one boundary ends the old and starts the new
            new = new[1:]
        return self.fit(old + new)

    def build_args(self) -> dict:
        return {"n_tokens": len(self.tokens)}

    def tables(self) -> _Tables:
        """Count tables, built on first use from the stored tokens, and again when the tokens'
        fingerprint changes (lm/runners.py: a checkpoint loads its tokens in place)."""
        key = fingerprint([self.tokens])
        if self._tables is None or self._tables[0] != key:
            toks = self.tokens.numpy().astype(np.int64)
            if len(toks) < 2:
                toks = np.array([256, 256])
            self._tables = (key, build_tables(toks, self.config.order))
        return self._tables[1]

    def initial_state(self, batch: int) -> State:
        return torch.full((batch, self.config.order - 1), PAD, dtype=torch.long)

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        order = self.config.order
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= VOCAB_SIZE):
            raise IndexError(f"symbol id out of range: ids must lie in 0..{VOCAB_SIZE - 1}")
        # [B, order-1+T]: the context carried in the state, then the new symbols
        full = np.concatenate([state.cpu().numpy(), ids.cpu().numpy()], axis=1)  # [B, order-1+T]
        b, t = ids.shape
        keys = context_keys(full, order)  # [B, T, order]
        probs = distributions(self.tables(), keys.reshape(b * t, order))
        logp = torch.from_numpy(np.log(probs).astype(np.float32)).view(b, t, VOCAB_SIZE)
        return logp.to(ids.device), torch.from_numpy(full[:, full.shape[1] - order + 1:])

    def make_runner(self) -> Runner:
        """How scoring and sampling read this model (lm/runners.py): the compiled kernel, a
        hash lookup per context length where numpy does vectorised binary searches (3x faster
        for 4,096 positions, 6x for 20,000, 30x for the few of a sampling step); numpy where
        the kernels are not available."""
        if not native.available():
            return TorchRunner(self)
        tab = self.tables()
        return NGramRunner(self, native.NGramKernel(self.config.order, VOCAB_SIZE, BASE,
                                                    LEN_OFFSET, tab, native.ngram_index(tab.ctx)))

    def recounted(self, messages: list[str], cache: dict) -> NGram:
        """A new n-gram of this config counted on `messages` alone (see LanguageModel)."""
        if self.config not in cache:
            cache[self.config] = NGram(self.config).fit_messages(messages).eval()
        return cache[self.config]


@dataclass(frozen=True)
class NGramRunner(Runner):
    """An n-gram on the compiled kernel: its tables and their hash index, built once."""

    model: NGram
    kernel: native.NGramKernel

    def logprobs(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        full = np.concatenate([state.cpu().numpy(), ids.cpu().numpy()], axis=1,
                              dtype=np.int64)  # [B, order-1+T]
        out = torch.empty(*ids.shape, VOCAB_SIZE)
        native.ngram_forward(self.kernel, full, out)
        return out.to(ids.device), torch.from_numpy(full[:, ids.shape[1]:])

    def stepper(self, batch: int, out: np.ndarray | None = None) -> Stepper:
        return _NGramStepper(self, batch, out)


class _NGramStepper(Stepper):
    """Sampling's reader on the compiled kernel: the context kept as an array, the tables and
    buffers bound once."""

    def __init__(self, runner: NGramRunner, batch: int, out: np.ndarray | None) -> None:
        super().__init__(runner.model, batch, out)
        self.runner = runner
        self.ctx = self.state.numpy()  # [B, order-1] int64: the last symbols read
        self.step = native.NGramStep(runner.kernel, self.out)

    def feed(self, ids: np.ndarray) -> np.ndarray:
        t = ids.shape[1]
        full = np.concatenate([self.ctx, ids], axis=1, dtype=np.int64)
        if t > 1:  # a prefix: read it whole
            out = np.empty((len(ids), t, VOCAB_SIZE), dtype=np.float32)
            native.ngram_forward(self.runner.kernel, full, out)
            self.out[:] = out[:, -1]
        else:
            self.step(full)
        self.ctx = full[:, t:]
        return self.out
