"""How much memory a model holds, in bytes: what a cache of models weighs them by."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lm import native
from lm.models.base import LanguageModel

MAX_DEPTH = 6  # containers nested deeper than this inside a module are not looked into


def memory_bytes(model: LanguageModel | None) -> int:
    """Bytes a model holds: parameters, buffers, and the arrays its modules keep beside them
    (count tables, hash indexes, inference tables, in tuples, lists, dicts, dataclasses or
    plain objects), each block of memory counted once however many views share it."""
    if model is None:
        return 0
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        for t in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            total += _held(t, seen, 0)
        total += sum(_held(v, seen, 0) for k, v in vars(module).items()
                     if k not in ("_modules", "_parameters", "_buffers"))
    return total


def _held(value: Any, seen: set[int], depth: int) -> int:
    """Bytes of the arrays in `value` whose blocks are not yet in `seen` (which grows)."""
    if isinstance(value, torch.Tensor | np.ndarray):
        key, size = native.memory_block(value)
        if size == 0 or key in seen:
            return 0
        seen.add(key)
        return size
    if depth >= MAX_DEPTH or isinstance(value, torch.nn.Module | str | bytes | type):
        return 0  # submodules are walked by memory_bytes itself
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, tuple | list | set | frozenset):
        items = list(value)
    elif hasattr(value, "__dataclass_fields__"):
        items = [getattr(value, f) for f in value.__dataclass_fields__]
    elif hasattr(value, "__dict__") and not callable(value):
        items = list(vars(value).values())
    else:
        return 0
    return sum(_held(v, seen, depth + 1) for v in items)
