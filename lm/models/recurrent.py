"""Recurrent character models (vanilla tanh RNN, GRU, LSTM) on torch's fused layers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lm import native
from lm.models.base import LanguageModel, State, Stepper, half_exact, map_state2
from lm.vocab import VOCAB_SIZE


@dataclass(frozen=True)
class RecurrentConfig:
    """Sizes of a recurrent model; dropout is a probability applied only in training."""

    hidden: int = 512
    layers: int = 1
    embed: int = 64
    dropout: float = 0.0


NATIVE_MAX_BATCH = 8  # beyond this, torch's batched matrix products are faster

_LAYERS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class Recurrent(LanguageModel):
    """Embedding, recurrent layers, linear output; the cell type comes from the subclass."""

    cell = "gru"

    def __init__(self, config: RecurrentConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or RecurrentConfig()
        self.embed = nn.Embedding(VOCAB_SIZE, c.embed)
        self.drop = nn.Dropout(c.dropout)
        self.rnn = _LAYERS[self.cell](
            c.embed, c.hidden, num_layers=c.layers, batch_first=True,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        self.head = nn.Linear(c.hidden, VOCAB_SIZE)
        self._fast: tuple | None = None  # cached inference tables, keyed by weight versions

    def initial_state(self, batch: int) -> State:
        c = self.config
        h = torch.zeros(c.layers, batch, c.hidden, device=self.head.weight.device)
        return (h, h.clone()) if self.cell == "lstm" else h

    def reset_state(self, state: State, fresh: torch.Tensor) -> State:
        init = self.initial_state(fresh.shape[0])
        keep = fresh.view(1, -1, 1)  # states are [layers, B, H]
        return map_state2(lambda s, i: torch.where(keep, i, s), state, init)

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if not self.training and not torch.is_grad_enabled():
            fast = self._native(ids, state)
            if fast is None and ids.shape[1] == 1:
                fast = self._fast_step(ids, state)
            if fast is not None:
                return fast
        logits, state = self.logits(ids, state)
        return F.log_softmax(logits, dim=-1), state

    def logits(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x = self.drop(self.embed(ids))  # [B, T, E]
        h, state = self.rnn(x, state)  # [B, T, H]
        return self.head(self.drop(h)).float(), state  # [B, T, V]

    def _fast_step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State] | None:
        """One step at inference without the fused layer's per-call overhead (same arithmetic)."""
        return None

    def _native(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State] | None:
        """Inference in compiled code, where a kernel exists for this cell."""
        return None


class RNN(Recurrent):
    """Vanilla tanh RNN, as in the tutorial."""

    kind = cell = "rnn"


class LSTM(Recurrent):
    """Long short-term memory."""

    kind = cell = "lstm"


class GRU(Recurrent):
    """Gated recurrent unit, with a fast single-step path for sampling on a CPU."""

    kind = cell = "gru"

    def _tables(self) -> tuple:
        """Inference tables, rebuilt when weights change: the input projection folded into a
        per-symbol table, and the transposed recurrent and output matrices. Float16 copies of
        those matrices (for the compiled kernel) exist only when the weights are exactly
        representable in float16, as `lm train` leaves them, so the kernel's products are exact.

        Weights change in place (optimizer steps, load_state_dict), which bumps each tensor's
        version counter: that and each tensor's address (new in a copy) are the cache key,
        cheap enough to check at every step.
        """
        fast = self._fast
        if fast is not None and all(t._version == v and t.data_ptr() == a for t, v, a in fast[0]):
            return fast[1]  # (the address check catches a deep copy, which keeps versions)
        rnn = self.rnn
        srcs = (self.embed.weight, rnn.weight_ih_l0, rnn.bias_ih_l0, rnn.weight_hh_l0,
                rnn.bias_hh_l0, self.head.weight, self.head.bias)
        with torch.no_grad():
            gi = F.linear(self.embed.weight, rnn.weight_ih_l0, rnn.bias_ih_l0)  # [V, 3H]
            w_hh = rnn.weight_hh_l0.detach().t().contiguous()  # [H, 3H]
            w_out = self.head.weight.detach().t().contiguous()  # [H, V]
            gi, b_hh, b_out = (t.detach().contiguous() for t in (gi, rnn.bias_hh_l0,
                                                                   self.head.bias))
            kernel = None  # the compiled kernel's arrays (kept alive) and their addresses
            if w_hh.device.type == "cpu" and half_exact(w_hh) and half_exact(w_out):
                keep = (gi, w_hh.half(), b_hh, w_out.half(), b_out)
                kernel = (keep, tuple(t.data_ptr() for t in keep))
        tables = (gi, w_hh, b_hh, w_out, b_out, kernel)
        self._fast = (tuple((t, t._version, t.data_ptr()) for t in srcs), tables)
        return tables

    def _fast_step(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State] | None:
        if self.config.layers != 1:
            return None
        gi_table, w_hh, b_hh, w_out, b_out, _ = self._tables()  # [V,3H],[H,3H],[3H],[H,V],[V]
        h = state[0]  # [B, H]
        gi = gi_table[ids[:, 0]]  # [B, 3H]
        gh = torch.addmm(b_hh, h, w_hh)  # [B, 3H]
        hid = h.shape[1]
        rz = torch.sigmoid(gi[:, : 2 * hid] + gh[:, : 2 * hid])
        r, z = rz[:, :hid], rz[:, hid:]
        n = torch.tanh(torch.addcmul(gi[:, 2 * hid:], r, gh[:, 2 * hid:]))
        h = torch.lerp(n, h, z)  # (1 - z) * n + z * h
        logp = F.log_softmax(torch.addmm(b_out, h, w_out), dim=-1)  # [B, V]
        return logp.unsqueeze(1), h.unsqueeze(0)

    def _kernel(self, batch: int) -> tuple | None:
        """The inference tables, where the compiled kernel applies to `batch` sequences."""
        if (self.config.layers != 1 or self.config.hidden % 4 or batch > NATIVE_MAX_BATCH
                or native.library() is None or self.head.weight.device.type != "cpu"):
            return None
        tables = self._tables()
        return tables if tables[-1] is not None else None

    def _native(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State] | None:
        """The whole sequence in the compiled kernel (lm/native.c), for a few sequences."""
        tables = self._kernel(ids.shape[0]) if native.usable(ids) else None
        if tables is None:
            return None
        h = state[0].clone(memory_format=torch.contiguous_format)  # the caller's is kept
        logp = self._run(tables, ids.contiguous(), h)
        return logp, h.unsqueeze(0)

    def _run(self, tables: tuple, ids: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Read ids [B, T] from state h [B, H] (updated in place); log-probs [B, T, V]."""
        b, t = ids.shape
        hid = self.config.hidden
        _, _, _, w_out, b_out, (_, addresses) = tables
        work = torch.empty(_work_size(b, hid))
        if t == 1:  # one step: the kernel's own output layer
            out = torch.empty(b, t, VOCAB_SIZE)
            native.library().gru_forward(b, t, hid, VOCAB_SIZE, ids.data_ptr(), *addresses,
                                         h.data_ptr(), work.data_ptr(), out.data_ptr(), None)
            return out
        # many steps: the states from the kernel, then one matrix product for the outputs
        hs = torch.empty(b, t, hid)
        native.library().gru_forward(b, t, hid, VOCAB_SIZE, ids.data_ptr(), *addresses,
                                     h.data_ptr(), work.data_ptr(), None, hs.data_ptr())
        return F.log_softmax(torch.addmm(b_out, hs.view(b * t, hid), w_out), dim=-1).view(
            b, t, VOCAB_SIZE)

    def stepper(self, batch: int, out: np.ndarray | None = None) -> Stepper:
        tables = self._kernel(batch)
        if tables is None:
            return Stepper(self, batch, out)
        return _GRUStepper(self, batch, tables, out)


def _work_size(batch: int, hidden: int) -> int:
    """Floats of scratch the GRU kernel needs (see lm/native.c)."""
    return batch * 3 * hidden + 4 * max(3 * hidden, VOCAB_SIZE)


class _GRUStepper(Stepper):
    """Sampling's reader on the compiled kernel: state, buffers and arguments bound once."""

    def __init__(self, model: GRU, batch: int, tables: tuple, out: np.ndarray | None) -> None:
        super().__init__(model, batch, out)
        self.tables = tables  # keeps the kernel's arrays alive
        hid = model.config.hidden
        self.h = self.state[0]  # [B, H], updated in place by the kernel
        self.work = torch.empty(_work_size(batch, hid))
        self.call = partial(native.library().gru_forward, batch, 1, hid, VOCAB_SIZE)
        self.args = (*tables[-1][1], self.h.data_ptr(), self.work.data_ptr(),
                     self.out.ctypes.data, None)

    def feed(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape[1] > 1:  # a prefix: read it whole
            logp = self.model._run(self.tables, torch.from_numpy(ids), self.h)
            self.out[:] = logp[:, -1].numpy()
        else:
            self.call(ids.ctypes.data, *self.args)
        return self.out
