"""`!train` on PostgreSQL: trainings are job rows that any training worker takes.

`JobTrainer` answers the same calls as `training.Trainer` (the in-process trainer of SQLite
mode): `start` queues a job and posts the progress message, which this process then edits from
the job's row (progress written by whichever worker runs it) until it posts the result;
`cancel` and `stop` work from any process, through the row. `jobs` mirrors the deployment's
queued and running jobs (kept by the store's events), so `!corpus` shows a training anywhere.
Model versions live in the database, so `scrub` rewrites their rows (`version_bytes`).
Shutting down a serving process does not cancel its jobs: workers elsewhere finish them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import lm
from bot import version_bytes, versions
from bot.channel_models import ChannelModelSource
from bot.corpus import Corpus
from bot.errors import Busy, StoreError, UserError
from bot.messages import Reply, ReplyFile, Responder, Sent
from bot.pg_jobs import JobRow
from bot.pool import WorkerPool
from bot.records import ChannelRow
from bot.settings import Settings
from bot.train_worker import TrainWorker
from bot.training import PATIENCE_S, progress_text
from bot.versions import Scrubbed

log = logging.getLogger(__name__)
POLL_S = 1.0  # a followed job's row is read at least this often (events may be missed)


@dataclass
class Followed:
    """A queued or running job somewhere in the deployment; `sent` when this process posted
    its progress message (then it edits it)."""

    job_id: int
    channel: int
    started_by: str
    latest: lm.Progress | None = None
    sent: Sent | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class JobTrainer:
    """Queues, follows, cancels trainings, and rewrites versions in the database."""

    def __init__(self, settings: Settings, pool: WorkerPool, store: Any,
                 models: ChannelModelSource, worker: TrainWorker | None) -> None:
        self._settings = settings
        self._pool = pool
        self._store = store
        self._models = models
        self.worker = worker
        self.jobs: dict[int, Followed] = {}  # channel row id -> its active job
        self._mine: set[asyncio.Task[None]] = set()  # followers of jobs started here
        self._scrubbing: dict[int, asyncio.Lock] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.unscrubbed: set[int] = set()

    async def open(self) -> None:
        """Read the jobs already queued or running; start this process's worker, if any."""
        for row in await self._store.active_jobs():
            self._mirror(row)
        if self.worker is not None:
            self.worker.start()

    # The mirror of the deployment's jobs.

    def on_event(self, event: dict[str, Any]) -> None:
        """A job changed (or events were missed): read it again."""
        if event.get("kind") == "job" and isinstance(event.get("job"), int):
            self._spawn(self._refresh(event["job"]))
        elif event.get("kind") == "reset":
            self._spawn(self._reload())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh(self, job_id: int) -> None:
        row = await self._store.job(job_id)
        if row is not None:
            self._mirror(row)

    async def _reload(self) -> None:
        active = {row.channel: row for row in await self._store.active_jobs()}
        for channel, followed in list(self.jobs.items()):
            if channel not in active and followed.sent is None:
                del self.jobs[channel]
        for row in active.values():
            self._mirror(row)

    def _mirror(self, row: JobRow) -> Followed | None:
        """Update `jobs` from a job's row; the entry, or None once the job ended."""
        followed = self.jobs.get(row.channel)
        if followed is not None and followed.job_id != row.id:
            if not row.active:
                return None  # an older job's late news
            followed = None
        if not row.active:
            if followed is not None:
                followed.changed.set()
                if followed.sent is None:  # a follower removes its own entry when it posted
                    del self.jobs[row.channel]
            return None
        if followed is None:
            followed = self.jobs[row.channel] = Followed(row.id, row.channel, row.started_by)
        if row.progress is not None:
            followed.latest = lm.Progress(**row.progress)
        followed.changed.set()
        return followed

    # Commands.

    async def start(self, channel: ChannelRow, author: str, responder: Responder,
                    minutes: float) -> None:
        """Check the request, queue the job, post the progress message and follow it."""
        scrubbing = self._scrubbing.get(channel.id)
        if scrubbing is not None and scrubbing.locked():
            raise UserError("this channel's models are being rewritten after a `!forget me`; "
                            "try `!train` again in a moment")
        texts = await self._store.corpus_texts(channel.id)
        versions.check_corpus_size(texts)
        waiting = [j for j in await self._store.active_jobs() if j.state == "queued"]
        if len(waiting) >= self._settings.train_queue_limit:  # no worker is free for them
            raise Busy("the training queue")
        row, queued = await self._store.enqueue_job(channel.id, minutes, author)
        if not queued:
            raise UserError(f"a training is already running here (started by "
                            f"{row.started_by}); `!train cancel` stops it")
        followed = Followed(row.id, channel.id, author)
        self.jobs[channel.id] = followed
        followed.sent = await responder.send(Reply(
            f"training this channel's model (started by {author}, up to {minutes:g} min): "
            "queued for a training worker…"))
        task = asyncio.create_task(self._follow(followed), name=f"follow-{row.id}")
        self._mine.add(task)
        task.add_done_callback(self._mine.discard)

    def cancel(self, channel: ChannelRow) -> bool:
        """Ask the channel's training to stop, wherever it runs; False when none is known."""
        if channel.id not in self.jobs:
            return False
        self._spawn(self._store.cancel_job(channel.id, "`!train cancel`"))
        return True

    async def stop(self, channel: ChannelRow, why: str) -> bool:
        """Text left the channel's corpus: stop the training that may have read it and wait
        until it has ended (it adopts nothing); False when none was running. A queued one
        stays: it reads the corpus as it is when a worker takes it."""
        asked = await self._store.cancel_job(channel.id, why, queued=False)
        if not asked:
            return False
        loop = asyncio.get_running_loop()
        reaped = loop.time()
        while (row := await self._store.job(asked[0])) is not None and row.active:
            if loop.time() - reaped >= POLL_S:  # its worker died: close it when the lease ends
                await self._store.reap_jobs()
                reaped = loop.time()
            await asyncio.sleep(0.1)
        return True

    async def wait(self) -> None:
        """Wait until every job started here has ended and its message has been edited."""
        await asyncio.gather(*map(asyncio.shield, list(self._mine)), return_exceptions=True)

    async def close(self) -> None:
        """Stop this process's worker (its job goes back to the queue) and stop following."""
        if self.worker is not None:
            await self.worker.close()
        for task in (*self._mine, *self._background):
            task.cancel()
        await asyncio.gather(*self._mine, *self._background, return_exceptions=True)

    async def _follow(self, followed: Followed) -> None:
        """Edit the progress message from the job's row until it ends, then post its result."""
        shown: lm.Progress | None = None
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(followed.changed.wait(), POLL_S)
                followed.changed.clear()
                try:
                    row = await self._store.job(followed.job_id)
                except StoreError as err:  # the database is back soon, or the lease runs out
                    log.warning("cannot read training job %d: %s", followed.job_id, err)
                    continue
                if row is None or not row.active:
                    break
                if row.progress is not None:  # not `_mirror`: it would wake this loop again
                    followed.latest = lm.Progress(**row.progress)
                if followed.latest is not None and followed.latest != shown:
                    shown = followed.latest
                    await self._edit(followed, Reply(progress_text(followed)))
                    await asyncio.sleep(self._settings.progress_edit_s)
        finally:
            if self.jobs.get(followed.channel) is followed:
                del self.jobs[followed.channel]
        files = (ReplyFile("loss-curve.png", row.curve),) if row and row.curve else ()
        text = row.result if row and row.result else "training ended; the model is unchanged"
        self._models.forget(followed.channel)  # the result may be a new version
        await self._edit(followed, Reply(text, files))

    async def _edit(self, followed: Followed, reply: Reply) -> None:
        try:
            assert followed.sent is not None
            await followed.sent.edit(reply)
        except Exception:  # the message may be gone; the job goes on regardless
            log.exception("could not edit the training message of channel %d", followed.channel)

    # Versions in the database.

    async def tidy(self, channel: ChannelRow, patient: bool = False) -> None:
        """Nothing to tidy: a version's checkpoint is a row, deleted with it."""

    async def scrub(self, channel: ChannelRow) -> tuple[bool, Scrubbed]:
        """After `!forget me`: stop a training that may have read the text, then rewrite every
        stored version of the channel from the corpus as it is now (one transaction holding
        the channel), and make every process drop its cached models of it. Busy when the
        model queue stays full; the channel is then in `unscrubbed` until a retry."""
        stopped = await self.stop(channel, "`!forget me`")
        lock = self._scrubbing.setdefault(channel.id, asyncio.Lock())
        async with lock:
            self.unscrubbed.add(channel.id)
            try:
                done = await self._store.rewrite_checkpoints(channel.id, self._rewrite)
            finally:
                self._models.forget(channel.id)
            self.unscrubbed.discard(channel.id)
        log.info("channel %d: %d version(s) rewritten, %d unreadable deleted after a forget",
                 channel.id, done.rewritten, done.deleted)
        return stopped, done

    async def _rewrite(self, texts: list[str],
                       blobs: dict[int, bytes]) -> tuple[dict[int, bytes | None], Scrubbed]:
        return await self._pool.run_patiently(PATIENCE_S, version_bytes.scrub_bytes, blobs,
                                              texts, self._settings.train_val_max_chars)


def wire(store: Any, models: ChannelModelSource, corpus: Corpus, trainer: JobTrainer) -> None:
    """Subscribe this process's caches to the store's events (PostgreSQL)."""
    store.subscribe(models.on_event)
    store.subscribe(trainer.on_event)
    if trainer.worker is not None:
        store.subscribe(trainer.worker.on_event)

    def optout(event: dict[str, Any]) -> None:
        # Another process recorded (or lifted) an opt-out: this one's listening must obey it
        # too. set_optout keeps it in memory; its write finds the row as it is (no new event).
        if event.get("kind") == "optout" and event.get("origin") != store.origin:
            trainer._spawn(corpus.set_optout(event["platform"], event["scope"], event["author"],
                                             bool(event["out"])))

    store.subscribe(optout)


async def open_trainer(settings: Settings, pool: WorkerPool, store: Any,
                       models: ChannelModelSource, corpus: Corpus) -> JobTrainer:
    """The trainer of a bot process on PostgreSQL, wired to the store's events and started
    (with a training worker of its own unless TRAIN_HERE=0)."""
    worker = TrainWorker(settings, pool, store, models) if settings.train_here else None
    trainer = JobTrainer(settings, pool, store, models, worker)
    wire(store, models, corpus, trainer)
    await trainer.open()
    return trainer
