"""The model registry: the only place that knows every kind by name."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from lm.errors import LmError
from lm.models.base import LanguageModel, State, detach_state, map_state, round_to_half
from lm.models.mix import Mix, MixConfig
from lm.models.ngram import NGram, NGramConfig
from lm.models.recurrent import GRU, LSTM, RNN, RecurrentConfig
from lm.models.uniform import Uniform, UniformConfig

KINDS: dict[str, tuple[type, type]] = {
    "uniform": (Uniform, UniformConfig),
    "ngram": (NGram, NGramConfig),
    "rnn": (RNN, RecurrentConfig),
    "gru": (GRU, RecurrentConfig),
    "lstm": (LSTM, RecurrentConfig),
}


def make_config(kind: str, values: dict[str, Any]):
    """The config dataclass of `kind`, from a dict; unknown keys are an error."""
    if kind not in KINDS:
        raise LmError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)} or mix")
    cls = KINDS[kind][1]
    names = {f.name for f in fields(cls)}
    extra = set(values) - names
    if extra:
        raise LmError(f"{kind} has no option(s) {', '.join(sorted(extra))}")
    return cls(**values)


def build(kind: str, config: dict[str, Any], extra: dict[str, Any] | None = None) -> LanguageModel:
    """A fresh model of `kind` with the given config (a mix needs its `extra` components)."""
    if kind == "mix":
        parts = [build(c["kind"], c["config"], c.get("extra")) for c in config["components"]]
        return Mix(parts, config["weights"], config.get("edges", ()))
    cfg = make_config(kind, config)  # raises for an unknown kind
    return KINDS[kind][0](cfg, **(extra or {}))


__all__ = [
    "GRU", "KINDS", "LSTM", "RNN", "LanguageModel", "Mix", "MixConfig",
    "NGram", "NGramConfig", "RecurrentConfig", "State", "Uniform", "UniformConfig", "build",
    "detach_state", "make_config", "map_state", "round_to_half",
]
