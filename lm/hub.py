"""Model names a user can type: a checkpoint path, `uniform`, or the shipped `base` models."""

from __future__ import annotations

from pathlib import Path

from lm.checkpoint import load as load_checkpoint
from lm.errors import CheckpointError
from lm.models import LanguageModel, build, kinds_named


def _base_path() -> Path:
    """Where the shipped base model is: inside the package when lm is installed (setup.py
    copies it to lm/data/), in the checkout's data/ folder when lm runs from one."""
    here = Path(__file__).resolve().parent
    installed = here / "data" / "base.pt"
    return installed if installed.is_file() else here.parent / "data" / "base.pt"


BASE_PATH = _base_path()
BASE_NAMES = {"base": None, "base-rnn": "rnn", "base-ngram": "ngram"}  # name -> part of base
NAMES = ("uniform", *BASE_NAMES)


def component(model: LanguageModel, which: str) -> LanguageModel:
    """The first part of a mixture whose kind `which` names ("rnn": any recurrent kind, or a
    kind such as "ngram"); a model that is not made of parts is returned itself."""
    parts = model.components()
    if not parts:
        return model
    wanted = kinds_named(which)
    for part in parts:
        if part.kind in wanted:
            return part
    raise CheckpointError(f"the model has no {which} part")


def load(name: str | Path) -> LanguageModel:
    """Resolve a model name or checkpoint path to a model in eval mode."""
    name = str(name)
    if name == "uniform":
        return build("uniform", {}).eval()
    if name in BASE_NAMES:
        if not BASE_PATH.is_file():
            raise CheckpointError(f"{BASE_PATH}: the shipped base model is missing")
        model = load_checkpoint(BASE_PATH)
        part = BASE_NAMES[name]
        return model if part is None else component(model, part).eval()
    return load_checkpoint(name)
