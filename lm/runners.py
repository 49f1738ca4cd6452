"""Inference runners: the one door through which scoring and sampling read a model.

A model's `forward` is the pure torch (or numpy) reference that training and the tests use. A
runner serves inference: it is built from the model by the model's `make_runner()` (the GRU,
the n-gram and the mixture build one on lm's compiled kernels, lm/native.py, where those apply;
every other model, and every model when the kernels are not available, gets `TorchRunner`, its
own forward) and is immutable afterwards: the tables it converted from the weights are its own
copies, held in frozen tuples, so a runner is a function of the weights it was built from.

Models are swapped, never changed in place, while they are shared. An edit in place still does
not leave a stale runner in use: `runner(model)` keeps the runner it built together with
a fingerprint of the weights it was built from (shape, dtype and `FINGERPRINT_VALUES` values
spread evenly over every parameter and buffer) and builds a new runner when the fingerprint
differs. An optimizer step, `load_state_dict`, `copy_` or `p.data.mul_(0)` changes the sampled
values and is caught. The check costs about 3 microseconds per tensor (40 for the shipped
`base`) once per scoring or sampling call, where comparing every weight would cost about 3% of
scoring a sentence; the price is that an edit of a few single elements can fall between the
samples: after one, call `ready(model)`, which builds the runner again from the weights as they
are. A model in training mode is read through its forward, with nothing cached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lm import native
from lm.models.base import LanguageModel, State, Stepper

FINGERPRINT_VALUES = 256  # values sampled per tensor


class Runner:
    """Reads symbols for inference: scoring reads whole rows, sampling one symbol at a time.

    Subclasses are frozen dataclasses with a `model` field (memory accounting walks their
    fields, and a deep copy of a model copies its runner's tables with it)."""

    model: LanguageModel

    def initial_state(self, batch: int) -> State:
        """The state before any symbol has been read, for `batch` parallel sequences."""
        return self.model.initial_state(batch)

    def logprobs(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Read ids [B, T]; log-probs [B, T, V] in nats of the next symbol at each position
        (the numbers the model's forward gives, up to float summation order), and the state."""
        raise NotImplementedError

    def stepper(self, batch: int, out: np.ndarray | None = None) -> Stepper:
        """A reader that feeds `batch` sequences and keeps their state (what sampling drives);
        its log-probs go to `out` [B, V] (float32) when given."""
        raise NotImplementedError


@dataclass(frozen=True)
class TorchRunner(Runner):
    """The model's own forward, under inference mode: the reference, on any device."""

    model: LanguageModel

    def logprobs(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        with torch.inference_mode():
            return self.model(ids, state)

    def stepper(self, batch: int, out: np.ndarray | None = None) -> Stepper:
        return Stepper(self.model, batch, out)


@dataclass(frozen=True)
class _Built:
    """A runner and the fingerprint of the weights it was built from."""

    key: tuple
    runner: Runner


def fingerprint(tensors: list[torch.Tensor]) -> tuple:
    """Shape, dtype and about FINGERPRINT_VALUES evenly spaced values of each tensor: equal
    for equal tensors, and different after any edit that touches a good share of a tensor."""
    key = []
    for t in tensors:
        step = t.numel() // FINGERPRINT_VALUES + 1
        if t.is_cpu and t.dtype != torch.bfloat16:
            sample = t.data.numpy().ravel()[::step]  # numpy: a third of torch's overhead
        else:  # the sample alone leaves the device; float32 holds a bfloat16 exactly
            sample = t.data.reshape(-1)[::step].float().cpu().numpy()
        key.append((t.shape, t.dtype, sample.tobytes()))
    return tuple(key)


def _weights(model: LanguageModel) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


def _build(model: LanguageModel) -> Runner:
    make = getattr(model, "make_runner", None)  # models without kernels have no hook
    return TorchRunner(model) if make is None else make()


def runner(model: LanguageModel) -> Runner:
    """The runner scoring and sampling read `model` through: the one built last if the weights
    still match its fingerprint, else a new one (kept on the model for the next call)."""
    if model.training:
        return TorchRunner(model)
    key = fingerprint(_weights(model))
    built = model.__dict__.get("_runner")
    if isinstance(built, _Built) and built.key == key:
        return built.runner
    new = _build(model)
    model._runner = _Built(key, new)  # replaced whole: a thread holding the old one keeps it
    return new


def ready(model: LanguageModel) -> LanguageModel:
    """Put `model` in eval mode and build its runners now from its weights as they are (after
    an in-place edit, or before other threads share it); returns the model."""
    model.eval()
    for m in model.modules():
        if isinstance(m, LanguageModel):
            m.__dict__.pop("_runner", None)
    runner(model)
    return model


class _ReferenceDrawer:
    """The numpy draw that native.Drawer computes in C (see there): the reference, and what
    runs where the kernels are not available."""

    def __init__(self, logp: np.ndarray, masks: np.ndarray) -> None:
        self.logp, self.ok = logp, masks.astype(bool)

    def __call__(self, row: int, state: int, temperature: float, u: float) -> int:
        z = self.logp[row].astype(np.float64)
        ok = self.ok[state]
        weights = np.zeros_like(z)
        weights[ok] = np.exp((z[ok] - z[ok].max()) / temperature)
        cum = np.cumsum(weights)
        return min(int((cum <= u * cum[-1]).sum()), len(z) - 1)


Draw = Callable[[int, int, float, float], int]  # (row, mask row, temperature, u) -> symbol


def drawer(logp: np.ndarray, masks: np.ndarray) -> Draw:
    """The one way a symbol is drawn: `drawer(logp, masks)(row, state, temperature, u)` draws
    from softmax(logp[row] / temperature) over the symbols masks[state] allows, by inverse CDF
    at u in [0, 1). logp [B, V] float32 and masks [S, V] uint8 are bound once (read at each
    call); compiled where the kernels are available."""
    if native.available():
        return native.Drawer(logp, masks)
    return _ReferenceDrawer(logp, masks)
