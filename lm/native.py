"""Compiled CPU kernels for small-batch inference (lm/native.c), built on first use.

The kernels replace, on a CPU, the torch and numpy code of three models' forward passes (a
single-layer GRU for up to 8 sequences; the Kneser-Ney n-gram and the entropy-gated mix for any
number of positions) and the draw of a symbol in sampling. They compute the same numbers up to
float summation order (the tests check both paths against each other).
A C compiler is needed once: the library is cached in `LM_CACHE_DIR` (default
`~/.cache/babble-lm`) under a name that hashes the source, the flags and this CPU. Without a
compiler, or with `LM_NATIVE=0`, `library()` returns None and the models keep their torch path.

Each kernel runs through ctypes, which releases the GIL for the call: inference threads in the
bot's worker pool run their kernels on both cores at once.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native.c")
# Compiled with -ffast-math but linked without it: at link time it adds crtfastmath.o, which
# turns on flush-to-zero for the whole process (numpy, torch and Python floats too).
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fPIC")
LINK_FLAGS = ("-shared",)
BUILD_TIMEOUT_S = 120  # about a second is usual
KEEP_BUILDS = 4  # cached builds kept: a few checkouts of different versions can share the cache
_I, _P = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {
    "gru_forward": [_I, _I, _I, _I] + [_P] * 10,
    "ngram_index": [_I, _P, _I, _P],
    "ngram_forward": [_I] * 6 + [_P, _I] + [_P] * 8,
    "mix_forward": [_I, _I, _I, _P, _I, _P, _P, _P, _P],
    "draw": [_I, _P, _P, ctypes.c_double, ctypes.c_double, _P],
}
_RESULTS = {"draw": ctypes.c_int64}
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False


def _cpu_id() -> str:
    """What -march=native depends on: the CPU's model name and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(lines[:2])


def _cache_dir() -> Path:
    return Path(os.environ.get("LM_CACHE_DIR") or Path.home() / ".cache" / "babble-lm")


def _build() -> ctypes.CDLL | None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        log.info("no C compiler found: models run on their torch path")
        return None
    src = SOURCE.read_bytes()
    flags = " ".join(FLAGS + LINK_FLAGS)
    digest = hashlib.sha256(src + flags.encode() + _cpu_id().encode()).hexdigest()
    target = _cache_dir() / f"native-{digest[:16]}.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        obj = tmp + ".o"
        compile_ = [cc, *FLAGS, "-c", "-o", obj, str(SOURCE)]
        link = [cc, *LINK_FLAGS, "-o", tmp, obj, "-lm"]
        try:
            done = subprocess.run(compile_, capture_output=True, text=True, check=False,
                                  timeout=BUILD_TIMEOUT_S)
            if done.returncode == 0:
                done = subprocess.run(link, capture_output=True, text=True, check=False,
                                      timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            Path(tmp).unlink(missing_ok=True)
            Path(obj).unlink(missing_ok=True)
            log.warning("building lm/native.c took over %d s: models run on their torch path",
                        BUILD_TIMEOUT_S)
            return None
        Path(obj).unlink(missing_ok=True)
        if done.returncode != 0:
            Path(tmp).unlink(missing_ok=True)
            log.warning("building lm/native.c failed, models run on their torch path: %s",
                        done.stderr.strip()[-500:])
            return None
        os.replace(tmp, target)  # atomic: another process may be building the same file
        _prune(target.parent)
    lib = ctypes.CDLL(str(target))
    for name, args in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, _RESULTS.get(name)
    return lib


def _prune(folder: Path, keep: int = KEEP_BUILDS) -> None:
    """Delete all but the `keep` newest builds (older sources, other CPUs). A process that has
    one loaded keeps its mapping: Linux frees the file only when the last user is gone."""
    builds = []
    for p in folder.glob("native-*.so"):
        try:
            builds.append((p.stat().st_mtime, p))
        except OSError:  # another process pruned it meanwhile
            continue
    for _, old in sorted(builds, reverse=True)[keep:]:
        old.unlink(missing_ok=True)


def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they are disabled or cannot be built."""
    global _lib, _tried
    if _tried:
        return _lib
    with _lock:
        if not _tried:
            if os.environ.get("LM_NATIVE", "1") != "0":
                try:
                    _lib = _build()
                except OSError as e:
                    log.warning("lm native kernels unavailable (%s): torch path used", e)
            _tried = True
    return _lib


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels apply: library built, tensors on the CPU, no autograd."""
    return (library() is not None and not torch.is_grad_enabled()
            and all(t.device.type == "cpu" for t in tensors))
