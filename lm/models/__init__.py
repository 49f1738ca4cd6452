"""The model registry: the only place that knows every kind by name.

Generic code asks it what a kind is (`kinds`, `training_of`, `config_from`, `kinds_named`)
and builds models through `build`; nothing else names a kind or checks a model's class.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from lm.errors import LmError
from lm.models.base import LanguageModel, State, detach_state, map_state, round_to_half
from lm.models.mix import Mix, MixConfig
from lm.models.ngram import NGram, NGramConfig
from lm.models.recurrent import GRU, LSTM, RNN, RecurrentConfig
from lm.models.uniform import Uniform, UniformConfig

COUNTING = "counting"  # trained by counting the messages (`fit_messages`)
GRADIENT = "gradient"  # trained by gradient descent on its parameters


@dataclass(frozen=True)
class Kind:
    """What the registry knows about a kind: its class, its config dataclass, and how it
    trains (None: it has nothing to learn)."""

    model: type[LanguageModel]
    config: type
    training: str | None


KINDS: dict[str, Kind] = {
    "uniform": Kind(Uniform, UniformConfig, None),
    "ngram": Kind(NGram, NGramConfig, COUNTING),
    "rnn": Kind(RNN, RecurrentConfig, GRADIENT),
    "gru": Kind(GRU, RecurrentConfig, GRADIENT),
    "lstm": Kind(LSTM, RecurrentConfig, GRADIENT),
}
# Made of other models, built from their specs (`build`); never trained from scratch.
COMPOSITE = "mix"
# Names that stand for several kinds where a part of a mixture is asked for.
FAMILIES: dict[str, tuple[str, ...]] = {"rnn": ("rnn", "gru", "lstm")}


def kinds(trainable: bool = False) -> tuple[str, ...]:
    """Every kind a model is made from, or only those `lm train` can train from scratch."""
    return tuple(k for k, v in KINDS.items() if v.training or not trainable)


def training_of(kind: str) -> str | None:
    """How a model of `kind` trains: COUNTING, GRADIENT, or None (nothing to learn)."""
    return KINDS[kind].training if kind in KINDS else None


def kinds_named(name: str) -> tuple[str, ...]:
    """The kinds a part name stands for: a family ("rnn": any recurrent kind) or one kind."""
    return FAMILIES.get(name, (name,))


def _config_class(kind: str) -> type:
    if kind not in KINDS:
        raise LmError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)} "
                      f"or {COMPOSITE}")
    return KINDS[kind].config


def make_config(kind: str, values: dict[str, Any]):
    """The config dataclass of `kind`, from a dict; unknown keys are an error."""
    cls = _config_class(kind)
    names = {f.name for f in fields(cls)}
    extra = set(values) - names
    if extra:
        raise LmError(f"{kind} has no option(s) {', '.join(sorted(extra))}")
    return cls(**values)


def config_from(kind: str, source: object) -> dict[str, Any]:
    """The config of `kind` as a dict, each of its fields taken from the same-named attribute
    of `source` (a TrainConfig, say) where it has one."""
    return {f.name: getattr(source, f.name) for f in fields(_config_class(kind))
            if hasattr(source, f.name)}


def build(kind: str, config: dict[str, Any], extra: dict[str, Any] | None = None) -> LanguageModel:
    """A fresh model of `kind` with the given config (a mix needs its `extra` components)."""
    if kind == COMPOSITE:
        parts = [build(c["kind"], c["config"], c.get("extra")) for c in config["components"]]
        return Mix(parts, config["weights"], config.get("edges", ()))
    cfg = make_config(kind, config)  # raises for an unknown kind
    return KINDS[kind].model(cfg, **(extra or {}))


__all__ = [
    "COMPOSITE", "COUNTING", "GRADIENT", "GRU", "KINDS", "LSTM", "RNN", "Kind",
    "LanguageModel", "Mix", "MixConfig", "NGram", "NGramConfig", "RecurrentConfig", "State",
    "Uniform", "UniformConfig", "build", "config_from", "detach_state", "kinds", "kinds_named",
    "make_config", "map_state", "round_to_half", "training_of",
]
