"""Recurrent character models (vanilla tanh RNN, GRU, LSTM) on torch's fused layers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lm import native
from lm.models.base import LanguageModel, State
from lm.vocab import VOCAB_SIZE


@dataclass(frozen=True)
class RecurrentConfig:
    """Sizes of a recurrent model; dropout is a probability applied only in training."""

    hidden: int = 512
    layers: int = 1
    embed: int = 64
    dropout: float = 0.0


NATIVE_MAX_BATCH = 4  # beyond this, torch's batched matrix products are faster

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
        version counter: that is the cache key, cheap enough to check at every step.
        """
        fast = self._fast
        if fast is not None and all(t._version == v for t, v in fast[0]):
            return fast[1]
        rnn = self.rnn
        srcs = (self.embed.weight, rnn.weight_ih_l0, rnn.bias_ih_l0, rnn.weight_hh_l0,
                rnn.bias_hh_l0, self.head.weight, self.head.bias)
        with torch.no_grad():
            gi = F.linear(self.embed.weight, rnn.weight_ih_l0, rnn.bias_ih_l0)  # [V, 3H]
            w_hh = rnn.weight_hh_l0.detach().t().contiguous()  # [H, 3H]
            w_out = self.head.weight.detach().t().contiguous()  # [H, V]
            gi, b_hh, b_out = (t.detach().contiguous() for t in (gi, rnn.bias_hh_l0,
                                                                   self.head.bias))
            kernel = None  # the compiled kernel's arrays and their addresses
            if w_hh.device.type == "cpu" and half_exact(w_hh) and half_exact(w_out):
                keep = (gi, w_hh.half(), b_hh, w_out.half(), b_out)
                kernel = (keep, tuple(t.data_ptr() for t in keep))
        tables = (gi, w_hh, b_hh, w_out, b_out, kernel)
        self._fast = (tuple((t, t._version) for t in srcs), tables)
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

    def _native(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State] | None:
        """The whole sequence in the compiled kernel (lm/native.c), for a few sequences."""
        hid = self.config.hidden
        if (self.config.layers != 1 or hid % 4 or ids.shape[0] > NATIVE_MAX_BATCH
                or not native.usable(ids)):
            return None
        kernel = self._tables()[-1]
        if kernel is None:
            return None
        b, t = ids.shape
        ids = ids.contiguous()
        h = state[0].clone(memory_format=torch.contiguous_format)  # the caller's is kept
        work = torch.empty(3 * hid)
        logp = torch.empty(b, t, VOCAB_SIZE)
        native.library().gru_forward(b, t, hid, VOCAB_SIZE, ids.data_ptr(), *kernel[1],
                                     h.data_ptr(), work.data_ptr(), logp.data_ptr())
        return logp, h.unsqueeze(0)


def half_exact(t: torch.Tensor) -> bool:
    """Whether every value of `t` is exactly representable in float16."""
    return bool(torch.equal(t.half().float(), t))
