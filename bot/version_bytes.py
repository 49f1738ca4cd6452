"""Model versions kept as bytes (PostgreSQL's `checkpoints` rows): load, read back, rewrite.

The checkpoint format and its checks stay `lm`'s: bytes are written to a private temporary
folder and read with `versions.load_version` (`lm.load_checkpoint`, `weights_only=True`), and a
forget's rewrite is `versions.scrub_versions` on such a folder. Synchronous: run on the pool.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import lm
from bot import versions
from bot.versions import MODEL_FILE, Scrubbed


def load_bytes(data: bytes) -> tuple[lm.LanguageModel, lm.LanguageModel]:
    """A version's mix and its recurrent part from its checkpoint file's bytes;
    lm.CheckpointError if they do not hold one."""
    with tempfile.TemporaryDirectory(prefix="babble-version-") as tmp:
        (Path(tmp) / MODEL_FILE).write_bytes(data)
        return versions.load_version(Path(tmp))


def saved_bytes(folder: Path) -> bytes:
    """The checkpoint file `versions.train_channel` saved in `folder`."""
    return (folder / MODEL_FILE).read_bytes()


def scrub_bytes(blobs: dict[int, bytes], texts: list[str],
                val_max_chars: int) -> tuple[dict[int, bytes | None], Scrubbed]:
    """`versions.scrub_versions` for versions kept as bytes ({model id: checkpoint}): each
    rewritten from `texts`; None for one that could not be read (to be deleted)."""
    with tempfile.TemporaryDirectory(prefix="babble-scrub-") as tmp:
        root = Path(tmp)
        for model, data in blobs.items():
            (root / str(model)).mkdir(mode=0o700)
            (root / str(model) / MODEL_FILE).write_bytes(data)
        done = versions.scrub_versions(root, {str(m) for m in blobs}, texts, val_max_chars)
        out: dict[int, bytes | None] = {}
        for model in blobs:
            path = root / str(model) / MODEL_FILE
            out[model] = path.read_bytes() if path.exists() else None
    return out, done
