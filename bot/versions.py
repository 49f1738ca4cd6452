"""A channel's model versions: the held-out split, training a new version, and rewriting or
removing the checkpoints on disk (a version folder holds one checkpoint: the channel's mix).

Synchronous, run on the pool's threads only; nothing here touches asyncio or SQL.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lm
from bot.errors import UserError
from bot.serving import load_model, part

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"  # a version folder holds one checkpoint: the channel's mix
VAL_EVERY = 10  # about one unit in VAL_EVERY is held out to decide adoption
MIN_UNITS = 20  # fewer messages than this are cut into lines, then pieces, for the split
MIN_VAL_SYMBOLS = 200  # held-out text needed to fit mixture weights and compare models
# The smallest corpus a channel can train on, in symbols: what is left after about one unit in
# VAL_EVERY is held out must still reach lm's minimum. `!train` checks it before starting.
MIN_CORPUS_SYMBOLS = math.ceil(lm.MIN_TRAIN_CHARS * VAL_EVERY / (VAL_EVERY - 1))


@dataclass(frozen=True)


class TrainOutcome:
    """A finished training: the candidate model and whether it beat the old one."""

    model: lm.LanguageModel | None  # the new mix; None when cancelled
    bpc_before: float | None  # held-out bits/char of the old answering model
    bpc_after: float | None  # ... and of the new one
    rnn_result: lm.TrainResult  # of the recurrent part
    history: list[tuple[int, float, float]] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    def metrics(self) -> dict[str, Any]:
        """What the store and the checkpoint record about this training."""
        res = self.rnn_result
        return {"bpc_before": self.bpc_before, "bpc_after": self.bpc_after,
                "rnn_val_before": res.val_before, "rnn_val_after": res.val_after,
                "steps": res.steps, "seconds": self.seconds}

    @property
    def adopted(self) -> bool:
        """Whether the new model is better on held-out text (only then does it answer)."""
        return (self.model is not None and self.bpc_after is not None
                and (self.bpc_before is None or self.bpc_after < self.bpc_before))


def load_version(folder: Path) -> tuple[lm.LanguageModel, lm.LanguageModel]:
    """A channel version's mix and its recurrent part; lm.CheckpointError if unreadable."""
    mix = load_model(str(folder / MODEL_FILE))
    rnn = part(mix, "rnn")
    if rnn is None:
        raise lm.CheckpointError(f"{folder / MODEL_FILE}: not a channel mix with an RNN part")
    return mix, rnn


def count_ngram(texts: list[str]) -> lm.LanguageModel | None:
    """A channel n-gram counted from its corpus; None when the corpus is too small."""
    if corpus_symbols(texts) < lm.MIN_TRAIN_CHARS:
        return None
    try:
        return lm.ready(lm.train(texts, lm.TrainConfig(kind="ngram")).model)
    except lm.LmError as err:  # a corpus lm still finds too small: use the base n-gram
        log.info("no channel n-gram: %s", err)
        return None


def corpus_symbols(texts: list[str]) -> int:
    """Symbols the models see: UTF-8 bytes plus one end-of-message symbol per message."""
    return sum(len(t.encode("utf-8")) + 1 for t in texts)


def check_corpus_size(texts: list[str]) -> None:
    """UserError unless a channel corpus of these messages is large enough to train on."""
    if corpus_symbols(texts) < MIN_CORPUS_SYMBOLS:
        raise UserError(f"this channel's corpus is too small to train on: "
                        f"{sum(map(len, texts)):,} characters; it needs at least about "
                        f"{MIN_CORPUS_SYMBOLS:,}. Add text with `!learn` or `!listen on`")


def holdout_split(texts: list[str], val_max_chars: int) -> tuple[list[str], list[str]]:
    """Split a corpus into training and held-out units, stably (by a hash of each unit).

    A unit stays on the same side across trainings as long as its text is unchanged, so an
    old model is compared with a new one on text neither was trained on (mostly).
    """
    units = [t for t in texts if t.strip()]
    if len(units) < MIN_UNITS:
        units = [line for t in units for line in t.splitlines() if line.strip()]
    if len(units) < MIN_UNITS:
        size = max(sum(map(len, units)) // MIN_UNITS, 40)
        units = [u[i:i + size] for u in units for i in range(0, len(u), size)]
    train, val, val_chars = [], [], 0
    for unit in units:
        if zlib.crc32(unit.encode("utf-8")) % VAL_EVERY == 0 and val_chars < val_max_chars:
            val.append(unit)
            val_chars += len(unit)
        else:
            train.append(unit)
    while corpus_symbols(val) < MIN_VAL_SYMBOLS and len(train) > 1:
        val.append(train.pop())  # too little held out by hash: take the newest units too
    return train, val


def bits_per_char(model: lm.LanguageModel, units: list[str]) -> float:
    """Held-out bits per character (end-of-message symbols included) over messages."""
    scores = [lm.score(model, u) for u in units]
    chars = sum(s.chars for s in scores)
    return sum(s.bits for s in scores) / max(chars, 1)


@dataclass(frozen=True)
class ChannelTraining:
    """What one channel training needs, apart from its progress callback and cancel flag."""

    texts: tuple[str, ...]  # the channel's corpus, one message each
    init: lm.LanguageModel | None  # the recurrent model to fine-tune; None trains from scratch
    old_answer: lm.LanguageModel  # what answers now: the new mix must beat it to be adopted
    config: lm.TrainConfig  # of the recurrent part (kind and size ignored when `init` is set)
    val_max_chars: int  # most held-out characters
    save_to: Path  # a new version folder, written only when the new mix is adopted
    summary: dict[str, Any]  # recorded in the checkpoint with the training's metrics


def train_channel(job: ChannelTraining, progress: Callable[[lm.Progress], None],
                  cancel: threading.Event) -> TrainOutcome:
    """Fine-tune the channel RNN, refit its n-gram, mix them, and compare with the old answer.

    When the new mix is better on held-out text it is saved in `job.save_to` with the summary
    and the metrics; otherwise nothing is written.
    """
    t0 = time.monotonic()
    train, val = holdout_split(list(job.texts), job.val_max_chars)
    if corpus_symbols(train) < lm.MIN_TRAIN_CHARS or not val:
        raise UserError(f"the corpus is too small to train on: {sum(map(len, job.texts)):,} "
                        f"characters; it needs at least about {MIN_CORPUS_SYMBOLS:,}")
    # Lanes of at least three windows each: small channel corpora get fewer, longer lanes,
    # so each pass over them takes several steps.
    lanes = max(1, min(job.config.batch, corpus_symbols(train) // (3 * job.config.bptt)))
    config = dataclasses.replace(job.config, batch=lanes)
    rnn_res = lm.train(train, config, init=job.init, progress=progress, cancel=cancel)
    if rnn_res.cancelled or cancel.is_set():
        return TrainOutcome(None, None, None, rnn_res, rnn_res.history, True,
                            time.monotonic() - t0)
    ngram = lm.train(train, lm.TrainConfig(kind="ngram")).model
    mix = lm.ready(lm.fit_mix([rnn_res.model, ngram], val))
    before = bits_per_char(job.old_answer, val)
    after = bits_per_char(mix, val)
    out = TrainOutcome(mix, before, after, rnn_res, rnn_res.history, False,
                       time.monotonic() - t0)
    if out.adopted and not cancel.is_set():  # a `!forget` now must not find this on disk
        private_dirs(job.save_to.parent)
        job.save_to.mkdir(mode=0o700, exist_ok=False)
        lm.save(mix, job.save_to / MODEL_FILE, summary={**job.summary, **out.metrics()})
    return out


@dataclass(frozen=True)


class Scrubbed:
    """What `scrub_versions` did to one channel's checkpoint folder."""

    rewritten: int  # versions whose n-gram parts were recounted
    deleted: int  # unreadable checkpoints, deleted because they could not be rewritten
    orphans: int  # version folders the database no longer pointed at, deleted


def scrub_versions(channel_dir: Path, keep: set[str], texts: list[str],
                   val_max_chars: int) -> Scrubbed:
    """Rewrite a channel's checkpoints so that none holds text that is no longer in `texts`.

    An n-gram stores its training symbols verbatim, so every n-gram part of each kept version
    is recounted from the training side of `texts` (the split `train_channel` uses, so the next
    `!train` still compares models on text their n-grams never counted; an empty corpus gives an
    n-gram counted on nothing). The recurrent parts and the mixture weights stay as they are:
    RNN weights hold no verbatim text. Each file is replaced atomically (lm.save). A checkpoint
    that cannot be read cannot be rewritten, so it is deleted; so are folders not in `keep`
    and temporary files a crash left behind.
    """
    orphans = len(remove_unlisted(channel_dir, keep))
    train, _ = holdout_split(texts, val_max_chars)
    rewritten = deleted = 0
    for name in sorted(keep):
        folder = channel_dir / name
        for tmp in folder.glob(f"{MODEL_FILE}.*.tmp"):
            tmp.unlink(missing_ok=True)
        path = folder / MODEL_FILE
        if not path.exists():
            continue
        try:
            model = lm.load_checkpoint(path)
        except lm.LmError as err:
            log.warning("deleting %s: it cannot be read, so it cannot be rewritten (%s)",
                        path, err)
            path.unlink(missing_ok=True)
            deleted += 1
            continue
        note = {"ngram_recounted_at": time.time(), "ngram_corpus_chars": sum(map(len, train))}
        lm.save(lm.recount(model, train), path, summary={**model.summary, **note})
        rewritten += 1
    return Scrubbed(rewritten, deleted, orphans)


def remove_unlisted(channel_dir: Path, keep: set[str]) -> list[str]:
    """Delete the version folders of a channel not named in `keep` (pruned, or orphaned by a
    crash between writing a checkpoint and recording it); the names deleted."""
    if not channel_dir.is_dir():
        return []
    gone = [d.name for d in channel_dir.iterdir() if d.is_dir() and d.name not in keep]
    for name in gone:
        shutil.rmtree(channel_dir / name, ignore_errors=True)
    if not any(channel_dir.iterdir()):
        channel_dir.rmdir()
    return gone


def private_dirs(folder: Path) -> None:
    """Create `folder` and any missing parent readable by the owner only (checkpoints hold
    n-gram counts of channel text)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)


def remove_orphans(checkpoint_dir: Path, recorded: set[str]) -> list[str]:
    """Delete every version folder under `checkpoint_dir` that the database does not record
    (`recorded`: paths relative to it, as the store keeps them): what a crash between writing
    a checkpoint and recording it leaves behind. The paths deleted."""
    if not checkpoint_dir.is_dir():
        return []
    keep: dict[str, set[str]] = {}
    for rel in recorded:
        keep.setdefault(Path(rel).parent.name, set()).add(Path(rel).name)
    gone = []
    for channel_dir in sorted(p for p in checkpoint_dir.iterdir() if p.is_dir()):
        names = remove_unlisted(channel_dir, keep.get(channel_dir.name, set()))
        gone += [f"{channel_dir.name}/{n}" for n in names]
    return gone
