"""The worker pool that runs every model, and the LRU cache of loaded channel models.

All torch work runs on the pool's own executors, never on the event loop and never on asyncio's
default executor (which aiohttp shares for DNS): a small pool samples and scores, and a separate
single worker trains, so replies never wait behind a training job. Each queue is bounded; a full
queue raises `Busy` at once instead of making the user wait without end.

Models in the cache are swapped, never mutated: `put` replaces the whole entry, and readers keep
the object they already hold.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from bot.errors import Busy

log = logging.getLogger(__name__)

T = TypeVar("T")
A = TypeVar("A")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Lane:
    """One executor with a bound on the jobs waiting or running in it."""

    def __init__(self, name: str, workers: int, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._inflight: set[Future] = set()

    @property
    def pending(self) -> int:
        """Jobs waiting or running (counted until their thread finishes, even if abandoned)."""
        with self._lock:
            return len(self._inflight)

    def submit(self, fn: Callable[[], T], what: str) -> Future:
        """Queue `fn`, or raise Busy when `limit` jobs are already waiting or running."""
        with self._lock:
            if len(self._inflight) >= self.limit:
                raise Busy(what)
            future = self._executor.submit(fn)
            self._inflight.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future) -> None:
        with self._lock:
            self._inflight.discard(future)

    def shutdown(self) -> list[Future]:
        """Drop queued jobs, let running ones finish; the futures still running."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            return [f for f in self._inflight if not f.done()]


class WorkerPool:
    """A bounded sample/score pool and a bounded single training worker."""

    def __init__(self, sample_workers: int = 2, queue_limit: int = 16,
                 train_queue_limit: int = 2) -> None:
        self._sample = _Lane("lm-sample", sample_workers, queue_limit)
        self._train = _Lane("lm-train", 1, train_queue_limit)
        self._closed = False
        self._batch_lock = threading.Lock()
        self._waiting: dict[Hashable, list[tuple[object, Future]]] = {}  # run_batched's queue

    @property
    def closed(self) -> bool:
        """Whether `close` was called (every run is refused from then on)."""
        return self._closed

    @property
    def pending(self) -> tuple[int, int]:
        """(sample/score jobs, training jobs) waiting or running."""
        return self._sample.pending, self._train.pending

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run a sampling, scoring or loading job on the sample pool; Busy when it is full."""
        return await self._run(self._sample, "the model queue", fn, args)

    async def run_patiently(self, patience_s: float, fn: Callable[..., T], *args: object) -> T:
        """`run`, tried again while the queue is full, for up to `patience_s` seconds (work
        that must not be dropped, such as rewriting checkpoints after a forget); then Busy."""
        loop = asyncio.get_running_loop()
        end = loop.time() + patience_s
        while True:
            try:
                return await self.run(fn, *args)
            except Busy:
                if loop.time() >= end or self._closed:
                    raise
                await asyncio.sleep(0.25)

    async def run_batched(self, key: Hashable, fn: Callable[[list[A]], list[T]], item: A,
                          max_batch: int) -> T:
        """Run `fn` on a list of items that wait together under `key`; this item's result.

        Requests that arrive while the pool is busy join the batch waiting for the same key
        (the same model), and one job answers up to `max_batch` of them in one call: a
        batched pass costs little more than a single one. A job is queued for every
        `max_batch` waiting items, so none is left behind; Busy as `run` when the queue is full.
        `fn` may put an exception in place of an item's result: that caller gets it raised.
        """
        if self._closed:
            raise Busy("the model queue (the bot is shutting down)")
        mine: Future = Future()
        with self._batch_lock:
            waiting = self._waiting.setdefault(key, [])
            waiting.append((item, mine))
            if (len(waiting) - 1) % max_batch == 0:  # this item starts a new batch
                try:
                    self._sample.submit(lambda: self._drain(key, fn, max_batch),
                                        "the model queue")
                except Busy:
                    waiting.remove((item, mine))
                    raise
        return await asyncio.wrap_future(mine)

    def _drain(self, key: Hashable, fn: Callable[[list[A]], list[T]], max_batch: int) -> None:
        """On a worker thread: take up to max_batch waiting items for key and answer them."""
        with self._batch_lock:
            waiting = self._waiting.get(key, [])
            batch, waiting[:max_batch] = waiting[:max_batch], []
            if not waiting:
                self._waiting.pop(key, None)
        batch = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            results = fn([item for item, _ in batch])
        except BaseException as e:  # every caller of the batch sees the error
            for _, f in batch:
                f.set_exception(e)
            return
        for (_, f), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):  # this item failed alone
                f.set_exception(result)
            else:
                f.set_result(result)

    async def run_training(self, fn: Callable[..., T], *args: object) -> T:
        """Run a training job on the training worker; Busy when too many are queued."""
        return await self._run(self._train, "the training queue", fn, args)

    async def _run(self, lane: _Lane, what: str, fn: Callable[..., T],
                   args: tuple[object, ...]) -> T:
        if self._closed:
            raise Busy(f"{what} (the bot is shutting down)")
        future = lane.submit(lambda: fn(*args), what)
        return await asyncio.wrap_future(future)

    async def close(self) -> None:
        """Stop taking work, drop queued jobs, and wait for running ones to return."""
        self._closed = True
        running = self._sample.shutdown() + self._train.shutdown()
        with self._batch_lock:  # batches whose job was dropped get an answer too
            dropped = [f for waiting in self._waiting.values() for _, f in waiting]
            self._waiting.clear()
        for f in dropped:
            if f.set_running_or_notify_cancel():
                f.set_exception(Busy("the model queue (the bot is shutting down)"))
        if running:
            log.info("waiting for %d running model job(s) to finish", len(running))
            await asyncio.gather(*(asyncio.wrap_future(f) for f in running),
                                 return_exceptions=True)


class ModelCache(Generic[K, V]):
    """An LRU cache of loaded models with a cap in bytes; entries are replaced, never changed.

    The newest entry is kept even when it alone exceeds the cap (a channel must answer).
    Used from the event loop only.
    """

    def __init__(self, cap_bytes: int, size_of: Callable[[V], int]) -> None:
        self.cap_bytes = cap_bytes
        self._size_of = size_of
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}
        self._stale: set[K] = set()  # keys dropped while loading: the load is not cached
        self.nbytes = 0  # bytes held by cached entries
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        """Cached keys, least recently used first (a snapshot: dropping while iterating is safe)."""
        return iter(list(self._entries))

    def get(self, key: K) -> V | None:
        """The cached value, marked as most recently used; None if absent."""
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key][0]

    def put(self, key: K, value: V) -> None:
        """Insert or swap in a value, then evict least recently used entries over the cap."""
        self.drop(key)
        size = self._size_of(value)
        self._entries[key] = (value, size)
        self.nbytes += size
        while self.nbytes > self.cap_bytes and len(self._entries) > 1:
            old_key, (_, old_size) = self._entries.popitem(last=False)
            self.nbytes -= old_size
            self.evictions += 1
            log.debug("evicted %s from the model cache (%d bytes)", old_key, old_size)

    def drop(self, key: K) -> None:
        """Forget a key (its model is freed once no reader holds it).

        A load of that key still in flight is answered to its callers but not cached: it may
        have read what the caller of `drop` just replaced.
        """
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.nbytes -= entry[1]
        if key in self._loading:
            self._stale.add(key)

    def drop_where(self, predicate: Callable[[K], bool]) -> None:
        """Drop every key, cached or loading, for which `predicate` is true."""
        for key in [*self._entries, *self._loading]:
            if predicate(key):
                self.drop(key)

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or `await load()` once however many callers ask at the same time."""
        value = self.get(key)
        if value is not None:
            return value
        if key in self._loading:
            return await asyncio.shield(self._loading[key])
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._loading[key]
            stale = key in self._stale
            self._stale.discard(key)
        if not stale:
            self.put(key, value)
        future.set_result(value)
        return value
