"""Model names a user can type: a checkpoint path, `uniform`, or the shipped `base` models."""

from __future__ import annotations

from pathlib import Path

from lm.checkpoint import load as load_checkpoint
from lm.errors import CheckpointError
from lm.models import LanguageModel, Mix, Uniform

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BASE_PATH = DATA_DIR / "base.pt"
NAMES = ("uniform", "base", "base-rnn", "base-ngram")
_RECURRENT = ("gru", "lstm", "rnn")


def component(model: LanguageModel, which: str) -> LanguageModel:
    """The recurrent ("rnn") or n-gram ("ngram") part of a mix; the model itself otherwise."""
    if not isinstance(model, Mix):
        return model
    for part in model.parts:
        if (which == "rnn" and part.kind in _RECURRENT) or part.kind == which:
            return part
    raise CheckpointError(f"the model has no {which} part")


def load(name: str | Path) -> LanguageModel:
    """Resolve a model name or checkpoint path to a model in eval mode."""
    name = str(name)
    if name == "uniform":
        return Uniform().eval()
    if name in ("base", "base-rnn", "base-ngram"):
        if not BASE_PATH.is_file():
            raise CheckpointError(f"{BASE_PATH}: the shipped base model is missing")
        model = load_checkpoint(BASE_PATH)
        return model if name == "base" else component(model, name.removeprefix("base-")).eval()
    return load_checkpoint(name)
