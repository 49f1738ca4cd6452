"""The worker pool and the model cache, for real threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bot.errors import Busy
from bot.pool import ModelCache, WorkerPool


async def test_jobs_run_on_the_pools_own_threads() -> None:
    pool = WorkerPool(sample_workers=2, queue_limit=4)
    try:
        name = await pool.run(lambda: threading.current_thread().name)
        train_name = await pool.run_training(lambda: threading.current_thread().name)
    finally:
        await pool.close()
    assert name.startswith("lm-sample") and train_name.startswith("lm-train")


async def test_full_queue_is_busy_at_once_and_frees_up() -> None:
    pool = WorkerPool(sample_workers=1, queue_limit=2)
    gate = threading.Event()
    jobs = [asyncio.ensure_future(pool.run(gate.wait, 10)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(Busy, match="busy: the model queue is full, try again in a moment"):
        await pool.run(lambda: 1)
    assert pool.pending == (2, 0)
    gate.set()
    await asyncio.gather(*jobs)
    assert await pool.run(lambda: 42) == 42
    await pool.close()


async def test_training_never_blocks_sampling() -> None:
    pool = WorkerPool(sample_workers=1, queue_limit=4, train_queue_limit=1)
    gate = threading.Event()
    training = asyncio.ensure_future(pool.run_training(gate.wait, 10))
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(pool.run(lambda: "sampled"), 2) == "sampled"
    with pytest.raises(Busy, match="the training queue is full"):
        await pool.run_training(lambda: None)
    gate.set()
    assert await training is True
    await pool.close()


async def test_close_waits_for_running_jobs_and_refuses_new_ones() -> None:
    pool = WorkerPool(sample_workers=1, queue_limit=4)
    done = threading.Event()
    job = asyncio.ensure_future(pool.run(lambda: (threading.Event().wait(0.2), done.set())))
    await asyncio.sleep(0.05)
    await pool.close()
    assert done.is_set()
    await job
    with pytest.raises(Busy):
        await pool.run(lambda: 1)


def held_pool(limit: int) -> tuple[WorkerPool, threading.Event, asyncio.Future]:
    """A one-worker pool whose worker waits on `gate`: what comes next has to queue."""
    pool = WorkerPool(sample_workers=1, queue_limit=limit)
    gate = threading.Event()
    return pool, gate, asyncio.ensure_future(pool.run(gate.wait, 10))


async def test_waiting_requests_for_one_key_are_answered_in_batches() -> None:
    pool, gate, blocker = held_pool(8)
    calls: list[list[int]] = []

    def square_all(items: list[int]) -> list[int]:
        calls.append(items)
        return [x * x for x in items]

    jobs = [asyncio.ensure_future(pool.run_batched("m", square_all, i, 4)) for i in range(10)]
    other = asyncio.ensure_future(pool.run_batched("other", square_all, 100, 4))
    await asyncio.sleep(0.05)
    assert pool.pending == (5, 0)  # the blocker, then one job per 4 waiting items per key
    gate.set()
    assert await asyncio.gather(*jobs) == [i * i for i in range(10)]
    assert await other == 10_000
    assert sorted(map(len, calls)) == [1, 2, 4, 4] and sorted(sum(calls, [])) == [
        *range(10), 100]
    await blocker
    await pool.close()


async def test_a_failed_batch_fails_each_of_its_requests() -> None:
    pool, gate, blocker = held_pool(4)

    def boom(items: list[int]) -> list[int]:
        raise ValueError(f"bad batch of {len(items)}")

    def picky(items: list[int]) -> list[object]:
        return [ValueError(f"odd {x}") if x % 2 else x for x in items]

    jobs = [asyncio.ensure_future(pool.run_batched("m", boom, i, 4)) for i in range(3)]
    alone = [asyncio.ensure_future(pool.run_batched("p", picky, i, 4)) for i in range(3)]
    await asyncio.sleep(0.05)
    gate.set()
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert [str(r) for r in results] == ["bad batch of 3"] * 3
    # an item's own exception fails that item only
    assert [str(r) for r in await asyncio.gather(*alone, return_exceptions=True)] == [
        "0", "odd 1", "2"]
    await blocker
    await pool.close()


async def test_batched_requests_are_busy_when_full_and_answered_at_close() -> None:
    pool, gate, blocker = held_pool(2)
    first = asyncio.ensure_future(pool.run_batched("m", lambda xs: xs, 1, 2))
    second = asyncio.ensure_future(pool.run_batched("m", lambda xs: xs, 2, 2))  # joins first
    await asyncio.sleep(0.05)
    with pytest.raises(Busy):  # a third item starts a new batch: no room for its job
        await pool.run_batched("m", lambda xs: xs, 3, 2)
    closing = asyncio.ensure_future(pool.close())
    await asyncio.sleep(0.05)
    gate.set()
    await closing
    for job in (first, second):  # their job was dropped at close: they hear why
        with pytest.raises(Busy, match="shutting down"):
            await job
    await blocker


async def test_cache_evicts_least_recently_used_over_the_cap() -> None:
    cache: ModelCache[str, bytes] = ModelCache(cap_bytes=100, size_of=len)
    cache.put("a", b"x" * 40)
    cache.put("b", b"x" * 40)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", b"x" * 40)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.nbytes == 80 and cache.evictions == 1
    cache.put("huge", b"x" * 500)  # the newest stays even alone over the cap
    assert list(cache) == ["huge"] and cache.nbytes == 500


async def test_cache_swaps_entries_and_loads_once() -> None:
    cache: ModelCache[str, object] = ModelCache(cap_bytes=10**6, size_of=lambda v: 1)
    calls = 0

    async def load() -> object:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return object()

    first, second = await asyncio.gather(cache.get_or_load("k", load),
                                         cache.get_or_load("k", load))
    assert first is second and calls == 1
    new = object()
    cache.put("k", new)  # a swap: readers holding `first` keep it unchanged
    assert cache.get("k") is new and len(cache) == 1


async def test_failed_load_is_not_cached() -> None:
    cache: ModelCache[str, object] = ModelCache(cap_bytes=10, size_of=lambda v: 1)

    async def broken() -> object:
        raise ValueError("corrupt")

    with pytest.raises(ValueError):
        await cache.get_or_load("k", broken)
    assert "k" not in cache

    async def fine() -> object:
        return "ok"

    assert await cache.get_or_load("k", fine) == "ok"


async def test_a_load_dropped_in_flight_is_answered_but_not_cached() -> None:
    cache: ModelCache[str, object] = ModelCache(cap_bytes=10, size_of=lambda v: 1)
    gate = asyncio.Event()

    async def slow_old_file() -> object:  # reads a file that is rewritten meanwhile
        await gate.wait()
        return "old"

    task = asyncio.ensure_future(cache.get_or_load("k", slow_old_file))
    await asyncio.sleep(0)
    cache.drop_where(lambda key: key == "k")
    gate.set()
    assert await task == "old" and "k" not in cache

    async def new_file() -> object:
        return "new"

    assert await cache.get_or_load("k", new_file) == "new" and cache.get("k") == "new"
