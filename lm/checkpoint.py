"""Self-describing checkpoints: format version, model spec, vocabulary, weights, summary, and
a SHA-256 checksum of the model spec, weights and summary.

Written atomically (temporary file, then rename), private to the owner (mode 0600), and read
with torch.load(weights_only=True), so loading never runs code from the file. Reading is
defensive: whatever a file holds, it either loads exactly as it was saved or raises
CheckpointError, never another exception.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch

from lm.errors import CheckpointError, LmError
from lm.models import LanguageModel, build
from lm.models.base import half_exact
from lm.vocab import VOCAB_NAME, VOCAB_SIZE

FORMAT = "babble-lm"
FORMAT_VERSION = 2  # 2 added the "sha256" checksum; 1 had none
READABLE_VERSIONS = (1, 2)
CHECKSUM_FROM = 2  # a checkpoint of this format version or later must carry its checksum
MAX_DEPTH = 32  # nesting of lists and dicts; the unpickler builds any depth, even cycles
FILE_MODE = 0o600  # checkpoints hold what a model learned from private chats


def save(model: LanguageModel, path: str | os.PathLike, summary: dict[str, Any] | None = None,
         half: bool = False) -> Path:
    """Write `model` to `path` atomically, with a checksum, readable by the owner only.

    A float tensor whose values are all float16 values (what `lm train` returns) is stored as
    float16, which loses nothing and halves the file; half=True stores every float tensor so.
    Weights holding NaN or infinity are refused (LmError): such a file would not load, and the
    rename would replace a good checkpoint with it.
    """
    path = Path(path)
    weights = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if v.is_floating_point() and (half or half_exact(v)):
            v = v.half()
        weights[k] = v.clone()
    bad = _non_finite(weights)
    if bad is not None:
        raise LmError(f"not saved: weight {bad} holds NaN or infinite values")
    spec, summary = model.spec(), dict(summary or {})
    data = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "vocab": {"name": VOCAB_NAME, "size": VOCAB_SIZE},
        "model": spec, "weights": weights, "summary": summary,
        "sha256": checksum(spec, weights, summary),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp's mode already; stated so a rewrite keeps it
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def checksum(spec: dict[str, Any], weights: dict[str, torch.Tensor],
             summary: dict[str, Any]) -> str:
    """SHA-256 (64 hex digits) of a checkpoint's model spec, weights and summary.

    Each value is fed with its type and length, tensors with dtype, shape and raw bytes, floats
    as their 8 bytes (not a decimal rendering, which float modes could change), dict items sorted
    by key, so equal contents hash equal and a flipped bit anywhere does not.
    """
    h = hashlib.sha256()
    for part in (spec, weights, summary):
        _feed(h, part)
    return h.hexdigest()


def _put(h: Any, tag: bytes, payload: Any = b"") -> None:
    """One tagged, length-prefixed field, so no two different contents feed the same bytes."""
    h.update(tag + memoryview(payload).nbytes.to_bytes(8, "little"))
    h.update(payload)


def _feed(h: Any, x: Any) -> None:
    """Feed `x` (nested at most MAX_DEPTH deep, as read() checks) into the hash `h`."""
    if x is None or isinstance(x, bool):
        _put(h, b"B", repr(x).encode())
    elif isinstance(x, int):
        _put(h, b"I", int(x).to_bytes((int(x).bit_length() + 8) // 8, "little", signed=True))
    elif isinstance(x, float):
        _put(h, b"F", struct.pack("<d", x))
    elif isinstance(x, str):
        _put(h, b"S", x.encode("utf-8", "surrogatepass"))
    elif isinstance(x, bytes):
        _put(h, b"Y", x)
    elif isinstance(x, torch.Tensor):
        # dtype and shape too: the same bytes read as another dtype or shape are another model
        _put(h, b"T", f"{x.dtype}{tuple(x.shape)}".encode())
        _put(h, b"", x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    elif isinstance(x, dict):
        _put(h, b"D", str(len(x)).encode())
        for k in sorted(x, key=repr):
            _feed(h, k)
            _feed(h, x[k])
    elif isinstance(x, list | tuple):  # one tag: a spec's tuple may be a list once saved
        _put(h, b"L", str(len(x)).encode())
        for v in x:
            _feed(h, v)
    elif isinstance(x, set | frozenset):  # sorted: a set's order changes between processes
        _put(h, b"E", str(len(x)).encode())
        for v in sorted(x, key=repr):
            _feed(h, v)
    else:  # what else torch.load allows (dtypes, devices, complex) repeats by its repr
        _put(h, b"?", f"{type(x).__qualname__}:{x!r}".encode())


def _non_finite(weights: dict[str, torch.Tensor]) -> str | None:
    """The name of the first float weight holding NaN or infinity; None if all are finite."""
    for k, v in weights.items():
        if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all()):
            return k
    return None


def _too_deep(x: Any) -> bool:
    """Whether lists, tuples, sets and dicts nest deeper than MAX_DEPTH (a cycle does)."""
    stack = [(x, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children = [*v.keys(), *v.values()]
        elif isinstance(v, list | tuple | set | frozenset):
            children = list(v)
        else:
            continue
        if depth >= MAX_DEPTH:
            return True
        stack += [(c, depth + 1) for c in children]
    return False


def _plain(x: Any) -> bool:
    """Whether `x` is JSON-like data (what a model spec is): no tensors or other objects."""
    if x is None or isinstance(x, bool | int | float | str):
        return True
    if isinstance(x, list | tuple):
        return all(_plain(v) for v in x)
    return isinstance(x, dict) and all(isinstance(k, str) and _plain(v) for k, v in x.items())


def _load_raw(path: Path) -> Any:
    """The unpickled contents of `path`, code never run; CheckpointError if unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt bytes surface as any error the unpickler or zip reader
        # hits (IndexError: pop from empty list, KeyError, UnicodeDecodeError, ...); all mean
        # the same to a caller
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt)") from e


def _check_header(data: Any, path: Path) -> None:
    """Ours, of a version this code reads, over the same vocabulary."""
    # type checks before comparisons: comparing a tensor with == raises or gives a tensor
    if not isinstance(data, dict) or not isinstance(data.get("format"), str) \
            or data["format"] != FORMAT:
        raise CheckpointError(f"{path}: not a babble lm checkpoint")
    version = data.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        shown = version if type(version) is int else "unknown"
        raise CheckpointError(f"{path}: checkpoint format {shown} is not supported (this "
                              f"version reads {', '.join(map(str, READABLE_VERSIONS))})")
    vocab = data.get("vocab")
    if not (isinstance(vocab, dict) and len(vocab) == 2 and isinstance(vocab.get("name"), str)
            and type(vocab.get("size")) is int and vocab["name"] == VOCAB_NAME
            and vocab["size"] == VOCAB_SIZE):
        raise CheckpointError(f"{path}: checkpoint has a different vocabulary")


def _check_content(data: dict, path: Path) -> None:
    """A model spec of plain data, a table of named dense tensors, a summary dict, a depth
    that recursion can walk."""
    if _too_deep(data):
        raise CheckpointError(f"{path}: checkpoint nests too deep (corrupt)")
    spec = data.get("model")
    if not (isinstance(spec, dict) and isinstance(spec.get("kind"), str)
            and isinstance(spec.get("config"), dict)
            and isinstance(spec.get("extra"), dict | None) and _plain(spec)):
        raise CheckpointError(f"{path}: checkpoint has no valid model description")
    weights = data.get("weights")
    if not (isinstance(weights, dict) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) and v.layout == torch.strided
            and not v.is_quantized for k, v in weights.items())):
        raise CheckpointError(f"{path}: checkpoint weights are not a table of named tensors")
    if not isinstance(data.get("summary", {}), dict):
        raise CheckpointError(f"{path}: checkpoint summary is not a dict")


def _check_integrity(data: dict, path: Path) -> None:
    """The stored checksum matches (required from CHECKSUM_FROM on); every weight finite."""
    stored = data.get("sha256")
    if stored is None and data["format_version"] >= CHECKSUM_FROM:
        raise CheckpointError(f"{path}: checkpoint has no checksum (format "
                              f"{data['format_version']} requires one)")
    try:
        got = None if stored is None else checksum(data["model"], data["weights"],
                                                   data.get("summary", {}))
        bad = _non_finite(data["weights"])
    except Exception as e:  # a tensor torch.load accepts but cannot view as bytes or test
        raise CheckpointError(f"{path}: checkpoint holds tensors that cannot be checked") from e
    if stored is not None and (not isinstance(stored, str) or stored != got):
        raise CheckpointError(f"{path}: checksum mismatch, the checkpoint is corrupt "
                              f"(its content hashes to sha256 {got[:16]}...)")
    if bad is not None:
        raise CheckpointError(f"{path}: weight {bad} holds NaN or infinite values")


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's raw data, checked; CheckpointError names the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    data = _load_raw(path)
    _check_header(data, path)
    _check_content(data, path)
    _check_integrity(data, path)
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
    except Exception as e:  # the spec is data from a file: a wrong type or size anywhere in
        # it fails wherever it is first used, as whatever error that code raises
        # an LmError's reason helps ("unknown model kind"); kept to one short line
        reason = f": {' '.join(str(e).split())[:200]}" if isinstance(e, LmError) else ""
        raise CheckpointError(f"{path}: checkpoint does not match its model "
                              f"description{reason}") from e
    model.summary = data.get("summary", {})
    return model.eval()


def summary(path: str | os.PathLike) -> dict[str, Any]:
    """What `lm info` prints: spec, parameter count, training summary, file size in bytes."""
    data = read(path)
    n = sum(v.numel() for v in data["weights"].values() if v.is_floating_point())
    return {"file": str(path), "bytes": Path(path).stat().st_size, "model": data["model"],
            "parameters": n, "summary": data.get("summary", {})}
