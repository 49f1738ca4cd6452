"""Recurrent character models (vanilla tanh RNN, GRU, LSTM) on torch's fused layers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lm import native
from lm.models.base import LanguageModel, State, Stepper, half_exact, map_state2
from lm.runners import Runner, TorchRunner
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

    def initial_state(self, batch: int) -> State:
        c = self.config
        h = torch.zeros(c.layers, batch, c.hidden, device=self.head.weight.device)
        return (h, h.clone()) if self.cell == "lstm" else h

    def reset_state(self, state: State, fresh: torch.Tensor) -> State:
        init = self.initial_state(fresh.shape[0])
        keep = fresh.view(1, -1, 1)  # states are [layers, B, H]
        return map_state2(lambda s, i: torch.where(keep, i, s), state, init)

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state = self.logits(ids, state)
        return F.log_softmax(logits, dim=-1), state

    def logits(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x = self.drop(self.embed(ids))  # [B, T, E]
        h, state = self.rnn(x, state)  # [B, T, H]
        return self.head(self.drop(h)).float(), state  # [B, T, V]


class RNN(Recurrent):
    """Vanilla tanh RNN, as in the tutorial."""

    kind = cell = "rnn"


class LSTM(Recurrent):
    """Long short-term memory."""

    kind = cell = "lstm"


class GRU(Recurrent):
    """Gated recurrent unit, with a compiled inference kernel for a few sequences on a CPU."""

    kind = cell = "gru"

    def make_runner(self) -> Runner:
        """How scoring and sampling read this model (lm/runners.py): the compiled kernel
        (GRURunner) where it applies, torch's fused layer everywhere else; no third path."""
        tables = self.kernel_tables()
        return TorchRunner(self) if tables is None else GRURunner.of(self, tables)

    def kernel_tables(self) -> native.GRUTables | None:
        """The compiled kernel's copies of the weights, or None where it does not apply: one
        layer, a hidden size divisible by 4, on a CPU, kernels built, and recurrent and output
        matrices exactly representable in float16 (as `lm train` leaves them), so that the
        kernel's float16 copies lose nothing."""
        rnn, c = self.rnn, self.config
        if (c.layers != 1 or c.hidden % 4 or not native.available()
                or self.head.weight.device.type != "cpu"
                or not (half_exact(rnn.weight_hh_l0) and half_exact(self.head.weight))):
            return None
        with torch.no_grad():
            gi = F.linear(self.embed.weight, rnn.weight_ih_l0, rnn.bias_ih_l0)  # [V, 3H]
            return native.GRUTables(
                gi=gi.float().contiguous(),
                whh=rnn.weight_hh_l0.detach().t().half().contiguous(),  # [H, 3H]
                bhh=rnn.bias_hh_l0.detach().float().clone(),  # [3H]
                wout=self.head.weight.detach().t().half().contiguous(),  # [H, V]
                bout=self.head.bias.detach().float().clone())  # [V]


@dataclass(frozen=True)
class GRURunner(Runner):
    """A single-layer GRU on the compiled kernel, for up to NATIVE_MAX_BATCH sequences on a
    CPU; larger batches go through the model's fused layer. `wout` is the output matrix
    [H, V] in float32 (the exact values of tables.wout), for reading many steps at once."""

    model: GRU
    tables: native.GRUTables
    wout: torch.Tensor

    @classmethod
    def of(cls, model: GRU, tables: native.GRUTables) -> GRURunner:
        return cls(model, tables, tables.wout.float())

    def logprobs(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if ids.shape[0] > NATIVE_MAX_BATCH or ids.device.type != "cpu":
            return TorchRunner(self.model).logprobs(ids, state)
        h = state[0].clone(memory_format=torch.contiguous_format)  # the caller's is kept
        return self.read(ids.contiguous(), h), h.unsqueeze(0)

    def read(self, ids: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Read ids [B, T] from state h [B, H] (updated in place); log-probs [B, T, V]."""
        b, t = ids.shape
        hid = h.shape[1]
        if t == 1:  # one step: the kernel's own output layer
            out = torch.empty(b, t, VOCAB_SIZE)
            native.gru_forward(self.tables, ids, h, logp=out)
            return out
        # many steps: the states from the kernel, then one matrix product for the outputs
        hs = torch.empty(b, t, hid)
        native.gru_forward(self.tables, ids, h, hs=hs)
        logits = torch.addmm(self.tables.bout, hs.view(b * t, hid), self.wout)  # [B*T, V]
        return F.log_softmax(logits, dim=-1).view(b, t, VOCAB_SIZE)

    def stepper(self, batch: int, out: np.ndarray | None = None) -> Stepper:
        if batch > NATIVE_MAX_BATCH:
            return Stepper(self.model, batch, out)
        return _GRUStepper(self, batch, out)


class _GRUStepper(Stepper):
    """Sampling's reader on the compiled kernel: state, buffers and arguments bound once."""

    def __init__(self, runner: GRURunner, batch: int, out: np.ndarray | None) -> None:
        super().__init__(runner.model, batch, out)
        self.runner = runner
        self.h = self.state[0]  # [B, H], updated in place by the kernel
        self.step = native.GRUStep(runner.tables, self.h, self.out)

    def feed(self, ids: np.ndarray) -> np.ndarray:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape[1] > 1:  # a prefix: read it whole
            with torch.inference_mode():
                logp = self.runner.read(torch.from_numpy(ids), self.h)
            self.out[:] = logp[:, -1].numpy()
        else:
            self.step(ids)
        return self.out
