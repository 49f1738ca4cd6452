"""A training worker: takes queued trainings from PostgreSQL and runs them, one at a time.

Every bot process on PostgreSQL runs one (unless TRAIN_HERE=0), and `python -m bot
--train-worker` runs one alone, with no chat front: on a GPU machine with TRAIN_DEVICE=cuda.
While it trains, a heartbeat renews the job's lease and records progress; when the lease is
lost (another worker took the job after a stall) or someone asks to stop, the training stops
and adopts nothing. On shutdown the job is given back, and another worker takes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lm
from bot import plots, serving, version_bytes, versions
from bot.channel_models import ChannelModelSource
from bot.errors import Busy, SettingsError, StoreError, UserError
from bot.pg_jobs import JobRow, NewVersion
from bot.pool import WorkerPool
from bot.records import ModelRow
from bot.settings import Settings
from bot.signals import stop_on_signals
from bot.training import cancelled_text, channel_folder, result_text, train_config
from bot.versions import ChannelTraining, TrainOutcome

log = logging.getLogger(__name__)
IDLE_POLL_S = 2.0  # between looks for work when no event woke the worker (expired leases)


@dataclass
class _Held:
    """The job this worker runs: its stop flag, latest progress, and why it stopped."""

    job: JobRow
    cancel: threading.Event = field(default_factory=threading.Event)
    poke: asyncio.Event = field(default_factory=asyncio.Event)
    latest: lm.Progress | None = None
    sent: lm.Progress | None = None  # the progress last written to the database
    lost: bool = False  # another worker holds the job now
    shutdown: bool = False
    trained: asyncio.Event = field(default_factory=asyncio.Event)  # the lease keeper ends


class TrainWorker:
    """Runs queued trainings on `pool`'s training lane. `start`, then `close`."""

    def __init__(self, settings: Settings, pool: WorkerPool, store: Any,
                 models: ChannelModelSource) -> None:
        self._settings = settings
        self._pool = pool
        self._store = store
        self._models = models
        self.name = store.origin  # host:pid:nonce, recorded as the job's worker
        self._wake = asyncio.Event()
        self._held: _Held | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: asyncio.Task[None] | None = None
        self._closing = False
        self.finished = 0  # jobs this worker ended (for tests and logs)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="train-worker")

    def on_event(self, event: dict[str, Any]) -> None:
        """A job changed somewhere: look for work; if it is ours, look at it now."""
        if event.get("kind") not in ("job", "reset"):
            return
        self._wake.set()
        if self._held is not None and event.get("job") == self._held.job.id:
            self._held.poke.set()  # a cancel, perhaps (our own progress costs one heartbeat)

    async def close(self) -> None:
        """Stop taking jobs; a running one stops and goes back to the queue."""
        self._closing = True  # the loop wakes with the running job's end: it takes no other
        if self._held is not None:
            self._held.shutdown = True
            self._held.cancel.set()
        if self._running is not None:  # its thread stops at the next step, then gives back
            await asyncio.gather(self._running, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        lease = self._settings.train_lease_s
        while not self._closing:
            self._wake.clear()
            try:
                job = await self._store.take_job(self.name, lease)
            except StoreError as err:
                log.warning("cannot look for training jobs: %s", err)
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(IDLE_POLL_S, lease / 2))
                continue
            log.info("took training job %d (channel %d, try %d)", job.id, job.channel,
                     job.tries)
            self._held = held = _Held(job)
            self._running = asyncio.create_task(self._run(held), name=f"train-job-{job.id}")
            try:
                await asyncio.shield(self._running)  # `close` waits for it to give the job back
            finally:
                self._held = None

    async def _run(self, held: _Held) -> None:
        keeper = asyncio.create_task(self._keep(held), name=f"lease-{held.job.id}")
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="babble-train-"))
        try:
            text, state, version, curve = await self._train(held, folder)
        finally:
            # Ended, not cancelled: a heartbeat cancelled inside its transaction could leave
            # the job row locked until its connection is reset, and the job's last write
            # (give back, finish) waits on that lock.
            held.trained.set()
            held.poke.set()
            await asyncio.gather(keeper, return_exceptions=True)
            await asyncio.to_thread(shutil.rmtree, folder, True)  # a checkpoint: off the loop
        await self._end(held, text, state, version, curve)

    async def _train(self, held: _Held, folder: Path) -> tuple[Any, str, NewVersion | None,
                                                                  bytes | None]:
        """Train; (final text or a function of the adopted version, state, version, curve)."""
        job = held.job
        try:
            channel = await self._store.channel_by_id(job.channel)
            if channel is None:
                return "training did not run: the channel is gone", "failed", None, None
            texts = await self._store.corpus_texts(job.channel)
            current = await self._models.for_channel(channel)
            rel = f"{channel_folder(channel)}/{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns()}"
            summary = {"channel": f"{channel.platform}:{channel.key}",
                       "corpus_chars": sum(map(len, texts)), "trained_by": self.name,
                       "device": self._settings.train_device}
            out = await self._pool.run_training(
                versions.train_channel, ChannelTraining(
                    tuple(texts), current.rnn, current.answer,
                    train_config(self._settings, job.minutes),
                    self._settings.train_val_max_chars, folder / "version", summary),
                self._progress_callback(held), held.cancel)
            return await self._outcome(held, out, folder / "version", rel, summary)
        except (UserError, Busy) as err:
            return f"training did not run: {err}", "failed", None, None
        except lm.LmError as err:  # e.g. it diverged: nothing is adopted
            return f"training stopped: {err}; the model is unchanged", "failed", None, None
        except StoreError as err:
            log.warning("training job %d: the database failed: %s", job.id, err)
            return ("training failed: the database refused (logged); the model is unchanged",
                    "failed", None, None)
        except Exception:
            log.exception("training job %d of channel %d failed", job.id, job.channel)
            return ("training failed with an internal error (logged); the model is unchanged",
                    "failed", None, None)

    async def _outcome(self, held: _Held, out: TrainOutcome, saved: Path, rel: str,
                       summary: dict[str, Any]) -> tuple[Any, str, NewVersion | None,
                                                         bytes | None]:
        if out.cancelled or held.cancel.is_set():
            return cancelled_text("a request to stop it", out), "cancelled", None, None
        try:
            curve = await self._pool.run(plots.loss_curve, out.history, out.bpc_before,
                                         out.bpc_after)
        except Busy:
            curve = None
        version = None
        if out.adopted and out.model is not None:
            data = await asyncio.to_thread(version_bytes.saved_bytes, saved)
            version = NewVersion(rel, out.model.kind, {**summary, **out.metrics()}, data)

        def text(row: ModelRow | None) -> str:
            return result_text(out, None if row is None else row.version)

        return text, "done", version, curve

    async def _end(self, held: _Held, text: Any, state: str, version: NewVersion | None,
                   curve: bytes | None) -> None:
        job = held.job
        try:
            if held.shutdown:
                await self._store.release_job(job.id, self.name)
                log.info("gave training job %d back to the queue", job.id)
                return
            done = await self._store.finish_job(
                job, self.name, version, self._settings.keep_versions,
                text if callable(text) else (lambda _row: text), curve, state)
        except StoreError as err:  # the lease runs out and another worker takes it again
            log.warning("could not record the end of training job %d: %s", job.id, err)
            return
        self.finished += 1
        if done is None:
            log.warning("training job %d was taken over by another worker; its result is "
                        "dropped", job.id)
        elif done[1] is not None:
            self._models.forget(job.channel)
            log.info("channel %d adopted v%d", job.channel, done[1].version)

    def _progress_callback(self, held: _Held) -> Any:
        loop = asyncio.get_running_loop()

        def progressed(p: lm.Progress) -> None:
            held.latest = p
            held.poke.set()

        return lambda p: loop.call_soon_threadsafe(progressed, p)  # from the training thread

    async def _keep(self, held: _Held) -> None:
        """Renew the lease every third of it (and record progress, at most every
        PROGRESS_EDIT_S); stop the training when the job is lost or asked to stop."""
        lease = self._settings.train_lease_s
        while not held.trained.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.poke.wait(), lease / 3)
            held.poke.clear()
            if held.trained.is_set():
                return
            latest = held.latest
            progress = None if latest is held.sent or latest is None \
                else dataclasses.asdict(latest)
            try:
                ok, cancel_by = await self._store.heartbeat(held.job.id, self.name, lease,
                                                            progress)
            except StoreError as err:
                log.warning("lease of training job %d not renewed: %s", held.job.id, err)
                await _pause(held, 1.0)
                continue
            held.sent = latest
            if not ok:
                held.lost = True
            if not ok or cancel_by is not None:
                held.cancel.set()
                return
            await _pause(held, min(self._settings.progress_edit_s, lease / 3))


async def _pause(held: _Held, seconds: float) -> None:
    """Wait `seconds`, or less if the training ends meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(held.trained.wait(), seconds)


async def run_worker(settings: Settings) -> int:
    """`python -m bot --train-worker`: take trainings until SIGTERM/SIGINT; the exit status."""
    from bot.store import open_store

    if not settings.db_url:
        raise SettingsError("--train-worker takes trainings from a shared PostgreSQL database: "
                            "set BOT_DB to a postgresql:// URL (with SQLite, the bot process "
                            "trains itself)")
    serving.set_threads(settings.torch_threads)
    store = await open_store(settings)
    pool = WorkerPool(1, settings.queue_limit, settings.train_queue_limit)
    try:
        models = await ChannelModelSource.open(settings, pool, store, time.monotonic)
        store.subscribe(models.on_event)
        worker = TrainWorker(settings, pool, store, models)
        store.subscribe(worker.on_event)
        stop = stop_on_signals()
        worker.start()
        log.info("training worker %s ready (device %s)", worker.name, settings.train_device)
        await stop.wait()
        log.info("signal received: giving back any running job")
        await worker.close()
    finally:
        await pool.close()
        await store.close()
    return 0
