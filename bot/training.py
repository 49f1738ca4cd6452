"""`!train`: fine-tune a channel's model in the background, one training per channel.

The recurrent part is fine-tuned from the channel's current RNN (the base RNN at first) on the
training worker; the channel's n-gram is refit by counting; the two are mixed with weights fitted
on held-out text. The new mix replaces the old model only if it scores better on that held-out
text. One progress message is edited as training goes; the last edit carries the loss curve.

The trainer also keeps the channel's checkpoints honest when text leaves the corpus: `scrub`
stops a training that may have read it and rewrites every stored version without it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lm
from bot import plots, replies, versions
from bot.channel_models import ChannelModelSource
from bot.errors import Busy, UserError
from bot.messages import Reply, ReplyFile, Responder, Sent
from bot.pool import WorkerPool
from bot.settings import Settings
from bot.store import ChannelRow, Store
from bot.versions import ChannelTraining, Scrubbed, TrainOutcome

log = logging.getLogger(__name__)
LN2 = math.log(2)
PATIENCE_S = 30.0  # how long forgetting waits for room in a full model queue before Busy


@dataclass
class TrainJob:
    """A running training: who started it, how to stop it, and its progress message."""

    channel: ChannelRow
    started_by: str
    sent: Sent
    cancel: threading.Event = field(default_factory=threading.Event)
    latest: lm.Progress | None = None  # the last one reported
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    stopped_by: str = "`!train cancel`"  # named in the reply when cancelled


def channel_folder(channel: ChannelRow) -> str:
    """A channel's folder name under the checkpoint directory: readable and unique."""
    slug = re.sub(r"[^A-Za-z0-9_-]", "_", channel.key)[:40]
    crc = zlib.crc32(f"{channel.platform}\0{channel.key}".encode())
    return f"{channel.platform}-{slug}-{crc:08x}"


def train_config(s: Settings, minutes: float) -> lm.TrainConfig:
    """The lm.TrainConfig of a channel training with a budget of `minutes`, on TRAIN_DEVICE."""
    # lm's fine-tuning settings (gentle learning rate, short warm-up, early stopping); kind
    # and size matter only when a channel trains from scratch (no base RNN).
    return lm.TrainConfig.finetune(
        kind=s.train_kind, hidden=s.train_hidden, minutes=minutes,
        max_steps=s.train_max_steps or None, eval_every=s.train_eval_every, seed=0,
        device=s.train_device)


def progress_text(job: TrainJob) -> str:
    """The progress message: percent of the budget, step, validation loss."""
    p = job.latest
    if p is None:
        return f"training this channel's model (started by {job.started_by}): starting…"
    val = "" if p.val_loss is None else f" · validation {p.val_loss / LN2:.3f} bits/symbol"
    return (f"training this channel's model (started by {job.started_by}): "
            f"{min(p.fraction, 1.0):.0%} · step {p.step}{val} · {p.seconds:.0f} s")


def cancelled_text(by: str, out: TrainOutcome) -> str:
    """The final text of a training stopped by `by` (who, in words)."""
    return (f"training cancelled by {by} after {replies.count(out.rnn_result.steps, 'step')} "
            f"({out.seconds:.0f} s); the model is unchanged")


def result_text(out: TrainOutcome, version: int | None) -> str:
    """The final text of a finished training; `version` the one adopted, None if refused."""
    head = (f"training done in {out.seconds:.0f} s "
            f"({replies.count(out.rnn_result.steps, 'step')}): held-out "
            f"{out.bpc_before:.3f} → {out.bpc_after:.3f} bits/char")
    if version is None:
        return f"{head}. The new model is not better on held-out text, so the current one stays."
    return f"{head}. Model v{version} answers here now (`!model rollback` goes back)."


class Trainer:
    """Starts, reports and cancels channel trainings. Use from the event loop."""

    def __init__(self, settings: Settings, pool: WorkerPool, store: Store,
                 models: ChannelModelSource) -> None:
        self._settings = settings
        self._pool = pool
        self._store = store
        self._models = models
        self.jobs: dict[int, TrainJob] = {}
        self._starting: set[int] = set()  # channels between `!train` and their job existing
        # Bumped when text leaves a channel's corpus: a training that read the corpus before
        # must not adopt (nor keep on disk) what it made of it.
        self._corpus_epoch: dict[int, int] = {}
        self._scrubbing: dict[int, asyncio.Lock] = {}  # one rewrite of a channel at a time
        self.unscrubbed: set[int] = set()  # channels whose rewrite was refused as Busy

    async def start(self, channel: ChannelRow, author: str, responder: Responder,
                    minutes: float) -> None:
        """Check the request, send the progress message, and start the training task."""
        running = self.jobs.get(channel.id)
        if running is not None or channel.id in self._starting:
            who = f" (started by {running.started_by})" if running else ""
            raise UserError(f"a training is already running here{who}; `!train cancel` "
                            "stops it")
        scrubbing = self._scrubbing.get(channel.id)
        if scrubbing is not None and scrubbing.locked():  # it would take our folder for an orphan
            raise UserError("this channel's models are being rewritten after a `!forget me`; "
                            "try `!train` again in a moment")
        if self._pool.pending[1] >= self._settings.train_queue_limit:
            raise Busy("the training queue")
        self._starting.add(channel.id)  # held across the awaits below: one training per channel
        try:
            await self._start(channel, author, responder, minutes)
        finally:
            self._starting.discard(channel.id)

    async def _start(self, channel: ChannelRow, author: str, responder: Responder,
                     minutes: float) -> None:
        epoch = self._corpus_epoch.get(channel.id, 0)
        texts = await self._store.corpus_texts(channel.id)
        versions.check_corpus_size(texts)
        current = await self._models.for_channel(channel)
        sent = await responder.send(Reply(f"training this channel's model (started by "
                                          f"{author}, up to {minutes:g} min): starting…"))
        job = self.jobs[channel.id] = TrainJob(channel, author, sent)
        if self._corpus_epoch.get(channel.id, 0) != epoch:  # `!forget` while we were reading
            job.stopped_by = "`!forget`"
            job.cancel.set()
        job.task = asyncio.create_task(self._run(job, texts, current.rnn, current.answer, minutes),
                                       name=f"train-{channel.id}")

    def cancel(self, channel: ChannelRow) -> bool:
        """Ask the channel's training to stop; False when none is running."""
        job = self.jobs.get(channel.id)
        if job is None:
            return False
        job.cancel.set()
        return True

    async def stop(self, channel: ChannelRow, why: str) -> bool:
        """Text left the channel's corpus: stop any training that may have read it and wait
        until it has reported (it adopts nothing); False when none was running."""
        self._corpus_epoch[channel.id] = self._corpus_epoch.get(channel.id, 0) + 1
        job = self.jobs.get(channel.id)
        if job is None:
            return False
        job.stopped_by = why
        job.cancel.set()
        if job.task is not None:
            await asyncio.wait({job.task})  # not cancelled with us: it must report
        return True

    async def wait(self) -> None:
        """Wait until every running training has finished and reported."""
        tasks = [j.task for j in self.jobs.values() if j.task is not None]
        # shielded: a waiter cancelled at shutdown must not cancel the trainings themselves,
        # whose threads would then run on unseen; `close` stops them through their flags
        await asyncio.gather(*map(asyncio.shield, tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel every training and wait until each has reported."""
        for job in self.jobs.values():
            job.stopped_by = "the bot's shutdown"
            job.cancel.set()
        await self.wait()

    async def _run(self, job: TrainJob, texts: list[str], init: lm.LanguageModel | None,
                   old: lm.LanguageModel, minutes: float) -> None:
        loop = asyncio.get_running_loop()

        def progress(p: lm.Progress) -> None:  # called on the training thread
            loop.call_soon_threadsafe(self._progressed, job, p)

        editor = asyncio.create_task(self._edit_progress(job))
        rel = f"{channel_folder(job.channel)}/{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns()}"
        summary = {"channel": f"{job.channel.platform}:{job.channel.key}",
                   "corpus_chars": sum(map(len, texts))}
        try:
            outcome = await self._pool.run_training(
                versions.train_channel, ChannelTraining(
                    tuple(texts), init, old, train_config(self._settings, minutes),
                    self._settings.train_val_max_chars, self._settings.checkpoint_dir / rel,
                    summary), progress, job.cancel)
            final = await self._finish(job, outcome, rel, summary)
        except (UserError, Busy) as err:
            final = Reply(f"training did not run: {err}")
        except lm.LmError as err:  # e.g. it diverged: nothing is adopted or saved
            final = Reply(f"training stopped: {err}; the model is unchanged")
        except Exception:
            log.exception("training of channel %d failed", job.channel.id)
            final = Reply("training failed with an internal error (logged); the model is "
                          "unchanged")
        finally:
            editor.cancel()
            del self.jobs[job.channel.id]
        await self._edit(job, final)

    def _progressed(self, job: TrainJob, p: lm.Progress) -> None:
        job.latest = p
        job.changed.set()

    async def _edit_progress(self, job: TrainJob) -> None:
        """Edit the progress message when training reports, at most every progress_edit_s."""
        while True:
            await job.changed.wait()
            job.changed.clear()
            await self._edit(job, Reply(progress_text(job)))
            await asyncio.sleep(self._settings.progress_edit_s)

    async def _edit(self, job: TrainJob, reply: Reply) -> None:
        try:
            await job.sent.edit(reply)
        except Exception:  # the message may be gone; training goes on regardless
            log.exception("could not edit the training message of channel %d", job.channel.id)

    async def _finish(self, job: TrainJob, out: TrainOutcome, rel: str,
                      summary: dict[str, Any]) -> Reply:
        """Adopt or refuse the trained model; the final text of the progress message."""
        if out.cancelled or job.cancel.is_set():
            if not out.cancelled:  # cancelled after training: what it may have saved must go
                await self.tidy(job.channel)
            return Reply(cancelled_text(job.stopped_by, out))
        files = await self._curve(out)
        if not out.adopted:
            return Reply(result_text(out, None), files)
        row = await self._store.add_model(job.channel.id, rel, out.model.kind,
                                          {**summary, **out.metrics()})
        self._models.adopt(job.channel, row, out.model)
        await self._store.prune_models(job.channel.id, self._settings.keep_versions)
        await self.tidy(job.channel)
        return Reply(result_text(out, row.version), files)

    async def _curve(self, out: TrainOutcome) -> tuple[ReplyFile, ...]:
        try:
            png = await self._pool.run(plots.loss_curve, out.history, out.bpc_before,
                                       out.bpc_after)
        except Busy:
            log.warning("no loss curve: the model queue is full")
            return ()
        return (ReplyFile("loss-curve.png", png),)

    async def tidy(self, channel: ChannelRow, patient: bool = False) -> None:
        """Delete checkpoint folders of the channel that the database no longer points at.

        patient: wait up to PATIENCE_S for room in a full queue, then raise Busy (a forget must
        not end quietly with files left); otherwise log and leave them to the next tidy.
        """
        keep = {Path(m.path).name for m in await self._store.models(channel.id)}
        folder = self._settings.checkpoint_dir / channel_folder(channel)
        try:
            gone = await self._pool.run_patiently(PATIENCE_S if patient else 0.0,
                                                  versions.remove_unlisted, folder, keep)
        except Busy:
            if patient:
                raise
            log.warning("queue full: old checkpoints in %s stay until the next tidy", folder)
            return
        if gone:
            log.info("deleted %d old checkpoint folder(s) in %s", len(gone), folder)

    async def scrub(self, channel: ChannelRow) -> tuple[bool, Scrubbed]:
        """After `!forget me`: no checkpoint of the channel may keep text its corpus lost.

        Stops a training that may have read the text (waiting for it to report), then rewrites
        every stored version with its n-gram recounted from the corpus as it is now, and drops
        the cached models. Returns whether a training was stopped, and what was rewritten.
        Busy when the queue stays full; the channel is then in `unscrubbed` until a retry.
        """
        stopped = await self.stop(channel, "`!forget me`")
        lock = self._scrubbing.setdefault(channel.id, asyncio.Lock())
        async with lock:  # reads the corpus inside: a later forget's rewrite lands last
            self.unscrubbed.add(channel.id)
            texts = await self._store.corpus_texts(channel.id)
            keep = {Path(m.path).name for m in await self._store.models(channel.id)}
            folder = self._settings.checkpoint_dir / channel_folder(channel)
            try:
                done = await self._pool.run_patiently(
                    PATIENCE_S, versions.scrub_versions, folder, keep, texts,
                    self._settings.train_val_max_chars)
            finally:
                self._models.forget(channel.id)  # no cached model may answer from the old files
            self.unscrubbed.discard(channel.id)
        log.info("channel %d: %d version(s) rewritten, %d unreadable deleted, %d orphan(s) "
                 "deleted after a forget", channel.id, done.rewritten, done.deleted, done.orphans)
        return stopped, done
