"""Self-describing checkpoints: format version, model spec, vocabulary, weights, summary.

Written atomically (temporary file, then rename) and read with torch.load(weights_only=True),
so loading never runs code from the file.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from lm.errors import CheckpointError, LmError
from lm.models import LanguageModel, build
from lm.models.base import half_exact
from lm.vocab import VOCAB_NAME, VOCAB_SIZE

FORMAT = "babble-lm"
FORMAT_VERSION = 1


def save(model: LanguageModel, path: str | os.PathLike, summary: dict[str, Any] | None = None,
         half: bool = False) -> Path:
    """Write `model` to `path` atomically.

    A float tensor whose values are all float16 values (what `lm train` returns) is stored as
    float16, which loses nothing and halves the file; half=True stores every float tensor so.
    """
    path = Path(path)
    weights = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if v.is_floating_point() and (half or half_exact(v)):
            v = v.half()
        weights[k] = v.clone()
    data = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "vocab": {"name": VOCAB_NAME, "size": VOCAB_SIZE},
        "model": model.spec(), "weights": weights, "summary": dict(summary or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's raw data, checked; CheckpointError names the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt)") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a babble lm checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {data.get('format_version')} "
                              f"is not supported (this version reads {FORMAT_VERSION})")
    if data.get("vocab") != {"name": VOCAB_NAME, "size": VOCAB_SIZE}:
        raise CheckpointError(f"{path}: checkpoint has a different vocabulary")
    return data


def load(path: str | os.PathLike) -> LanguageModel:
    """Rebuild the model stored at `path` (in eval mode)."""
    data = read(path)
    spec = data["model"]
    try:
        model = build(spec["kind"], spec["config"], spec.get("extra"))
        weights = {k: v.float() if v.is_floating_point() else v
                   for k, v in data["weights"].items()}
        model.load_state_dict(weights)
    except (LmError, KeyError, TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{path}: checkpoint does not match its model description") from e
    model.summary = data.get("summary", {})
    return model.eval()


def summary(path: str | os.PathLike) -> dict[str, Any]:
    """What `lm info` prints: spec, parameter count, training summary, file size."""
    data = read(path)
    n = sum(v.numel() for v in data["weights"].values() if v.is_floating_point())
    return {"file": str(path), "bytes": Path(path).stat().st_size, "model": data["model"],
            "parameters": n, "summary": data["summary"]}
