"""The one interface every language model answers, and helpers written once against it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lm.vocab import VOCAB_SIZE

HALF_MAX = 65504.0  # the largest finite float16

# A model's recurrent state: None, a tensor, or a (nested) tuple of tensors.
State = Any


class LanguageModel(nn.Module):
    """Next-symbol distributions over the 257-symbol vocabulary.

    Subclasses set `kind`, keep their frozen config dataclass in `self.config`, and implement
    `initial_state` and `forward`. Nothing outside a model's own module knows its kind.
    """

    kind: ClassVar[str] = ""
    vocab_size: int = VOCAB_SIZE
    config: Any

    def initial_state(self, batch: int) -> State:
        """The state before any symbol has been read, for `batch` parallel sequences."""
        raise NotImplementedError

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Read ids [B, T]; return log-probs [B, T, 257] of the symbol after each, and the state.

        Log-probabilities are in nats and normalised over all 257 symbols (before the UTF-8
        restriction that scoring and sampling apply).
        """
        raise NotImplementedError

    def reset_state(self, state: State, fresh: torch.Tensor) -> State:
        """`state` with the sequences where fresh [B] (bool) is true back at the initial state
        (training's lanes start a new message there). Models trained by gradient implement it."""
        raise NotImplementedError(f"a {self.kind} model is not trained in lanes")

    def logits(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Unnormalised scores [B, T, 257] whose log-softmax is `forward`'s output.

        Training uses them to skip a normalisation that the UTF-8 restriction redoes anyway;
        log-probabilities are valid scores, so this default is right for every model.
        """
        return self.forward(ids, state)

    @property
    def device(self) -> torch.device:
        """Where the model's tensors live (CPU for models without any)."""
        for t in self.parameters():
            return t.device
        return torch.device("cpu")

    @property
    def trainable(self) -> bool:
        """Whether gradient training applies (false for counting and closed-form models)."""
        return any(p.requires_grad for p in self.parameters())

    def spec(self) -> dict[str, Any]:
        """What rebuilds this model's shape: kind, config as a dict, extra constructor args."""
        return {"kind": self.kind, "config": asdict(self.config), "extra": self.build_args()}

    def build_args(self) -> dict[str, Any]:
        """Constructor arguments beyond the config (sizes of buffers a checkpoint restores)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """Kind, configuration and size, for `lm info` and the bot's `!model`."""
        n = sum(p.numel() for p in self.parameters())
        return {"kind": self.kind, "config": asdict(self.config), "parameters": n}

    def components(self) -> tuple[LanguageModel, ...]:
        """The models this one is made of (a mixture's parts, in order); empty for a model of
        its own. Found generically: the LanguageModel submodules not inside another one."""
        found: list[LanguageModel] = []
        # _modules, not children(): children() skips a module met twice, and a mixture may
        # hold one part twice (recounting gives equal n-grams one object)
        todo = list(self._modules.values())
        while todo:
            m = todo.pop(0)
            if isinstance(m, LanguageModel):
                found.append(m)
            elif m is not None:
                todo[:0] = list(m._modules.values())
        return tuple(found)

    def recounted(self, messages: list[str], cache: dict[Any, LanguageModel]) -> LanguageModel:
        """This model with every part that stores counted text counted again on `messages`
        (each from its own start), other parts shared. `cache` maps what a part was counted
        with to the recounted part, so equal parts are counted once. Models that store no
        text (weights learned by gradient, closed forms) return themselves."""
        return self


class Stepper:
    """Feeds symbols to a model, `batch` sequences at once, carrying the state between calls.

    Results go to `out` [B, V] (float32), given by the caller (a mixture hands each part a
    slice of its own buffer) or made here, and stay there until the next call.
    """

    def __init__(self, model: LanguageModel, batch: int, out: np.ndarray | None = None) -> None:
        self.model = model
        self.state = model.initial_state(batch)
        self.out = np.empty((batch, VOCAB_SIZE), dtype=np.float32) if out is None else out

    def feed(self, ids: np.ndarray) -> np.ndarray:
        """Read ids [B, T] (int64); return `out`: log-probs [B, V] (nats) of the next symbol."""
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(self.model.device)
            logp, self.state = self.model(x, self.state)
        self.out[:] = logp[:, -1].float().cpu().numpy()
        return self.out


def map_state(fn, state: State) -> State:
    """Apply `fn` to every tensor of a (nested) state."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return fn(state)
    return tuple(map_state(fn, s) for s in state)


def map_state2(fn, a: State, b: State) -> State:
    """Apply `fn` to the matching tensors of two states of the same structure."""
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return fn(a, b)
    return tuple(map_state2(fn, x, y) for x, y in zip(a, b, strict=True))


def detach_state(state: State) -> State:
    """Cut the autograd graph behind a state (truncated backprop through time)."""
    return map_state(lambda t: t.detach(), state)


def half_exact(t: torch.Tensor) -> bool:
    """Whether every value of `t` is exactly a float16 value."""
    return t.numel() > 0 and bool(torch.equal(t.half().float(), t.float()))


def round_to_half(model: nn.Module) -> None:
    """Round every floating-point parameter to the nearest float16 value, kept in float32.

    `lm train` does this to the weights it returns: the change in loss is far below the
    validation noise, a checkpoint stored in float16 then loses nothing, and the compiled GRU
    kernel can keep its matrices in float16, small enough for a core's L2 cache.
    """
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and p.abs().max() <= HALF_MAX:  # else kept as it is
                p.copy_(p.half().float())
