"""The compiled CPU kernels (lm/native.c) behind typed Python functions: the only module of lm
that touches ctypes or raw addresses.

The library is built with the package: setup.py compiles lm/native.c into lm/_native*.so when
the package is installed or built, `pip install -e .` included (run that again after editing
the C). Its GRU kernel exists once per instruction set, and the copy the running CPU supports
best is chosen here when the library is loaded, so one build runs on any x86-64 machine.
Nothing here changes the process's float mode. Where the library was not built (no compiler at
install time), cannot be loaded, or `LM_NATIVE=0` is set, `available()` is false and every
model runs its torch path.

Which kernel serves a model is decided once, when its inference runner is built
(lm/runners.py); the functions below only check and convert their arguments and call C. Each
call releases the GIL, so inference threads of the bot's worker pool run on both cores at once.
Arguments are checked at this boundary: arrays must be C-contiguous with the stated dtype, and
symbol ids out of range raise IndexError (as torch's embedding does) instead of reading out of
bounds.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import logging
import os
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch

log = logging.getLogger(__name__)

ISAS = {"avx512": 4, "avx2": 2, "generic": 1}  # bits of cpu_kernels(), best first
_BAD_ID = 1  # KERNEL_BAD_ID in native.c
_I, _P, _D = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double
_SIGNATURES = {  # name: (argument types, result type)
    "cpu_kernels": ([], _I),
    "gru_forward": ([_I] * 5 + [_P] * 10, _I),
    "ngram_index": ([_I, _P, _I, _P], None),
    "ngram_forward": ([_I] * 6 + [_P, _I] + [_P] * 8, _I),
    "mix_forward": ([_I, _I, _I, _P, _I, _P, _P, _P, _P], None),
    "draw": ([_I, _P, _P, _D, _D, _P], _I),
}


class _Library(NamedTuple):
    cdll: ctypes.CDLL
    isas: tuple[str, ...]  # the GRU kernel's copies this CPU runs, best first


def library_file() -> Path | None:
    """The built library next to this module, or None where the package was built without it."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = Path(__file__).with_name("_native" + suffix)
        if path.is_file():
            return path
    return None


@functools.cache
def _load() -> _Library | None:
    if os.environ.get("LM_NATIVE", "1") == "0":
        return None
    path = library_file()
    if path is None:
        log.info("lm's kernels were not built with the package: models run on their torch path")
        return None
    try:
        cdll = ctypes.CDLL(str(path))
        for name, (args, result) in _SIGNATURES.items():
            fn = getattr(cdll, name)
            fn.argtypes, fn.restype = args, result
    except (OSError, AttributeError) as e:  # a foreign or truncated build
        log.warning("lm's kernels in %s cannot be loaded (%s): torch path used", path, e)
        return None
    bits = cdll.cpu_kernels()
    return _Library(cdll, tuple(name for name, bit in ISAS.items() if bits & bit))


def available() -> bool:
    """Whether the compiled kernels can be used in this process."""
    return _load() is not None


def isas() -> tuple[str, ...]:
    """The GRU kernel's copies this CPU can run, best first (empty without the library)."""
    lib = _load()
    return () if lib is None else lib.isas


def _lib() -> _Library:
    lib = _load()
    if lib is None:
        raise RuntimeError("lm's compiled kernels are not available")
    return lib


_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16,
                 np.dtype(np.int64): torch.int64}


def _addr(a: np.ndarray | torch.Tensor, dtype: type) -> int:
    """Address of a C-contiguous CPU array (numpy or torch) of numpy `dtype`, for a call that
    follows at once; anything else is refused rather than read wrongly."""
    want = np.dtype(dtype)
    if isinstance(a, torch.Tensor):
        if a.dtype != _TORCH_DTYPES.get(want) or not a.is_contiguous() or a.device.type != "cpu":
            raise ValueError(f"kernel argument: need a contiguous CPU {want} tensor, got "
                             f"{a.dtype} on {a.device}")
        return a.data_ptr()
    if a.dtype != want or not a.flags.c_contiguous:
        raise ValueError(f"kernel argument: need a contiguous {want} array, got {a.dtype}")
    return a.ctypes.data


def memory_block(a: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """The address and size in bytes of the memory block that an array (numpy or torch) is a
    view of: what counts memory shared by several arrays once."""
    if isinstance(a, torch.Tensor):
        storage = a.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.ctypes.data, a.nbytes


def _check(status: int, vocab: int) -> None:
    if status == _BAD_ID:
        raise IndexError(f"symbol id out of range: ids must lie in 0..{vocab - 1}")


class GRUTables(NamedTuple):
    """What the GRU kernel reads, made once per model (lm/models/recurrent.py)."""

    gi: torch.Tensor  # [V, 3H] float32: the input projection of every symbol, bias included
    whh: torch.Tensor  # [H, 3H] float16: recurrent weights, transposed
    bhh: torch.Tensor  # [3H] float32
    wout: torch.Tensor  # [H, V] float16: output weights, transposed
    bout: torch.Tensor  # [V] float32

    def addresses(self) -> tuple[int, ...]:
        return (_addr(self.gi, np.float32), _addr(self.whh, np.float16),
                _addr(self.bhh, np.float32), _addr(self.wout, np.float16),
                _addr(self.bout, np.float32))


def gru_work(batch: int, hidden: int, vocab: int) -> torch.Tensor:
    """Scratch for gru_forward, in floats (see lm/native.c)."""
    return torch.empty(batch * 3 * hidden + 4 * max(3 * hidden, vocab))


def gru_forward(tables: GRUTables, ids: torch.Tensor, h: torch.Tensor,
                logp: torch.Tensor | None = None, hs: torch.Tensor | None = None,
                isa: str | None = None) -> None:
    """Read ids [B, T] (int64) from state h [B, H] (float32, updated in place), writing
    log-probs in nats into logp [B, T, V] or, given hs [B, T, H] instead, the state after each
    step. `isa` picks a copy of the kernel (default: the best this CPU runs)."""
    b, t = ids.shape
    hidden, vocab = h.shape[1], tables.bout.shape[0]
    if hidden % 4 or tables.whh.shape != (hidden, 3 * hidden) or h.shape[0] != b:
        raise ValueError(f"gru kernel: state {tuple(h.shape)} does not fit the tables")
    if (logp is None) == (hs is None):
        raise ValueError("gru kernel: give logp or hs, not both")
    out, out_shape = (logp, (b, t, vocab)) if hs is None else (hs, (b, t, hidden))
    if tuple(out.shape) != out_shape:
        raise ValueError(f"gru kernel: output {tuple(out.shape)}, need {out_shape}")
    work = gru_work(b, hidden, vocab)
    lib = _lib()
    status = lib.cdll.gru_forward(
        ISAS[isa or lib.isas[0]], b, t, hidden, vocab, _addr(ids, np.int64), *tables.addresses(),
        _addr(h, np.float32), work.data_ptr(),
        None if logp is None else _addr(logp, np.float32),
        None if hs is None else _addr(hs, np.float32))
    _check(status, vocab)


class GRUStep:
    """One step of gru_forward for `batch` sequences with every argument bound once (sampling
    calls it for every symbol): the ids it reads go to its own buffer, h [B, H] is updated in
    place and out [B, V] (float32) receives the log-probs."""

    def __init__(self, tables: GRUTables, h: torch.Tensor, out: np.ndarray) -> None:
        batch, hidden = h.shape
        vocab = tables.bout.shape[0]
        if out.shape != (batch, vocab):
            raise ValueError(f"gru step: output {out.shape}, need {(batch, vocab)}")
        self.ids = np.zeros((batch, 1), dtype=np.int64)
        work = gru_work(batch, hidden, vocab)
        self.keep = (tables, h, out, work)  # alive while bound
        lib = _lib()
        self.call = functools.partial(
            lib.cdll.gru_forward, ISAS[lib.isas[0]], batch, 1, hidden, vocab,
            self.ids.ctypes.data, *tables.addresses(), _addr(h, np.float32), work.data_ptr(),
            _addr(out, np.float32), None)
        self.vocab = vocab

    def __call__(self, ids: np.ndarray) -> None:
        """Read one symbol per sequence, ids [B, 1]."""
        self.ids[:] = ids
        _check(self.call(), self.vocab)


class NGramArrays(Protocol):
    """The count tables of an n-gram (lm/models/ngram.py), as the kernel reads them."""

    ctx: np.ndarray  # [C] int64 sorted context keys
    start: np.ndarray  # [C + 1] int64
    gamma: np.ndarray  # [C] float64
    sym: np.ndarray  # [E] int64
    disc: np.ndarray  # [E] float64


class NGramIndex(NamedTuple):
    """A hash index of an n-gram's context keys: slot -> row of ctx, -1 where empty."""

    bits: int
    slots: np.ndarray  # [2^bits] int32


def ngram_index(ctx: np.ndarray) -> NGramIndex:
    """Index the sorted context keys ctx [C] (int64) at a load factor of at most 1/2 (about
    10 ms per 100,000 contexts)."""
    bits = max(4, (2 * len(ctx) - 1).bit_length())
    slots = np.empty(1 << bits, dtype=np.int32)
    _lib().cdll.ngram_index(len(ctx), _addr(ctx, np.int64), bits, slots.ctypes.data)
    return NGramIndex(bits, slots)


class NGramKernel(NamedTuple):
    """An n-gram's packing constants, tables and index: everything ngram_forward reads."""

    order: int
    vocab: int
    base: int
    len_offset: int
    tables: NGramArrays
    index: NGramIndex

    def table_args(self) -> tuple[int, ...]:
        tab, idx = self.tables, self.index
        return (idx.bits, _addr(idx.slots, np.int32), _addr(tab.ctx, np.int64),
                _addr(tab.start, np.int64), _addr(tab.gamma, np.float64),
                _addr(tab.sym, np.int64), _addr(tab.disc, np.float64))


def ngram_forward(kernel: NGramKernel, full: np.ndarray, out: np.ndarray | torch.Tensor) -> None:
    """Log-probs in nats into out [B, T, V] (float32) for full [B, order-1+T] (int64): the
    context each sequence carries, then the T symbols it reads."""
    b, width = full.shape
    t = width - kernel.order + 1
    if tuple(out.shape) != (b, t, kernel.vocab):
        raise ValueError(f"ngram kernel: output {tuple(out.shape)}, need {(b, t, kernel.vocab)}")
    work = np.empty(kernel.vocab)
    status = _lib().cdll.ngram_forward(
        b, t, kernel.order, kernel.vocab, kernel.base, kernel.len_offset, _addr(full, np.int64),
        *kernel.table_args(), work.ctypes.data, _addr(out, np.float32))
    _check(status, kernel.vocab)


class NGramStep:
    """One step of ngram_forward for `batch` sequences with every argument bound once: the
    caller's full [B, order] (context, then the symbol read) goes to its own buffer, and out
    [B, V] (float32) receives the log-probs."""

    def __init__(self, kernel: NGramKernel, out: np.ndarray) -> None:
        if out.shape[1] != kernel.vocab:
            raise ValueError(f"ngram step: output {out.shape}, need (B, {kernel.vocab})")
        self.full = np.zeros((out.shape[0], kernel.order), dtype=np.int64)
        work = np.empty(kernel.vocab)
        self.keep = (kernel, out, work)
        self.call = functools.partial(
            _lib().cdll.ngram_forward, out.shape[0], 1, kernel.order, kernel.vocab, kernel.base,
            kernel.len_offset, self.full.ctypes.data, *kernel.table_args(), work.ctypes.data,
            _addr(out, np.float32))
        self.vocab = kernel.vocab

    def __call__(self, full: np.ndarray) -> None:
        self.full[:] = full
        _check(self.call(), self.vocab)


def mix_forward(lps: np.ndarray | torch.Tensor, edges: np.ndarray, table: np.ndarray,
                out: np.ndarray | torch.Tensor) -> None:
    """The entropy-gated mixture (lm/models/mix.py) of lps [K, N, V] (float32 log-probs) into
    out [N, V]; edges [E] and table [(E+1)^K, K] are float64."""
    k, n, v = lps.shape
    if tuple(out.shape) != (n, v) or table.shape != ((len(edges) + 1) ** k, k):
        raise ValueError("mix kernel: shapes of lps, table and out do not agree")
    work = np.empty(k * v, dtype=np.float32)
    _lib().cdll.mix_forward(k, n, v, _addr(lps, np.float32), len(edges), _addr(edges, np.float64),
                       _addr(table, np.float64), work.ctypes.data, _addr(out, np.float32))


class MixStep:
    """mix_forward of lps [K, B, V] into out [B, V] (both float32 arrays) with every argument
    bound once: sampling mixes the parts' latest log-probs after each step."""

    def __init__(self, lps: np.ndarray, edges: np.ndarray, table: np.ndarray,
                 out: np.ndarray) -> None:
        k, n, v = lps.shape
        if out.shape != (n, v) or table.shape != ((len(edges) + 1) ** k, k):
            raise ValueError("mix step: shapes of lps, table and out do not agree")
        work = np.empty(k * v, dtype=np.float32)
        self.keep = (lps, edges, table, out, work)
        self.call = functools.partial(
            _lib().cdll.mix_forward, k, n, v, _addr(lps, np.float32), len(edges),
            _addr(edges, np.float64), _addr(table, np.float64), work.ctypes.data,
            _addr(out, np.float32))

    def __call__(self) -> None:
        self.call()


class Drawer:
    """Draws one symbol from a row of logp [B, V] (float32) under a row of masks [S, V] (uint8,
    1 = allowed), both bound once: the C twin of lm/runners.py's numpy draw (same arithmetic:
    softmax(logp / temperature) over the allowed symbols, inverse CDF at u in [0, 1))."""

    def __init__(self, logp: np.ndarray, masks: np.ndarray) -> None:
        if logp.shape[1] != masks.shape[1]:
            raise ValueError("draw: log-probs and masks differ in vocabulary size")
        self.vocab = logp.shape[1]
        self.work = np.empty(self.vocab)
        self.keep = (logp, masks)
        self.logp, self.masks = _addr(logp, np.float32), _addr(masks, np.uint8)
        self.row_bytes, self.at_work = 4 * self.vocab, self.work.ctypes.data
        self.rows, self.states = logp.shape[0], masks.shape[0]
        self.call = _lib().cdll.draw

    def __call__(self, row: int, state: int, temperature: float, u: float) -> int:
        """The symbol drawn from logp[row] under masks[state] with uniform number u."""
        if not (0 <= row < self.rows and 0 <= state < self.states):
            raise IndexError(f"draw: row {row} or mask {state} out of range")
        return self.call(self.vocab, self.logp + self.row_bytes * row,
                         self.masks + self.vocab * state, temperature, u, self.at_work)
