"""What only the PostgreSQL store does: concurrent migration, clear connection errors with the
password hidden, events between processes, the job queue's leases, VACUUM after an erasure."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from bot import pg_events
from bot.errors import StoreError
from bot.pg_events import hide_password
from bot.pg_jobs import JOB_KEEP_S, MAX_TRIES, NewVersion
from bot.pg_store import PgStore, redact
from bot.records import NewMessage
from bot.schema import PG_SCHEMA_VERSION
from tests.pg.server import PgServer


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PgStore, PgStore]]:
    """Two stores on one database, as two processes would hold them."""
    a, b = await PgStore.open(pg_url), await PgStore.open(pg_url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_processes_starting_together_migrate_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(PgStore.open(pg_url) for _ in range(4)))
    try:
        version = await stores[0]._one("SELECT version FROM schema_version")
        assert tuple(version) == (PG_SCHEMA_VERSION,)
        assert (await stores[0]._one("SELECT COUNT(*) FROM schema_version"))[0] == 1
    finally:
        for s in stores:
            await s.close()


async def test_newer_schema_refused(pg_url: str) -> None:
    await (await PgStore.open(pg_url)).close()
    con = await asyncpg.connect(pg_url)
    await con.execute("UPDATE schema_version SET version = version + 1")
    await con.close()
    with pytest.raises(StoreError, match="newer than this bot"):
        await PgStore.open(pg_url)


async def test_unreachable_server_is_one_line_without_the_password(pg_server: PgServer) -> None:
    url = f"postgresql://babble:s3cret-pw@127.0.0.1:{pg_server.port}/no_such_db"
    with pytest.raises(StoreError) as err:
        await PgStore.open(url, timeout_s=2)
    assert "s3cret-pw" not in str(err.value) and "no_such_db" in str(err.value)
    assert redact(url) == f"postgresql://babble:***@127.0.0.1:{pg_server.port}/no_such_db"


async def test_changes_reach_the_other_process_within_a_second(two: Any) -> None:
    a, b = two
    heard: list[dict[str, Any]] = []
    b.subscribe(heard.append)
    ch = (await a.channel("d", "c")).id
    await a.add_messages(ch, [NewMessage("u", "U", "text", "learn")])
    assert await a.forget_author(ch, "u") == 1
    await a.add_model(ch, "v1", "mix", {}, b"bytes")
    await a.rollback(ch)
    await a.set_optout("d", "*", "u", True)
    t0 = time.monotonic()
    while len(heard) < 4 and time.monotonic() - t0 < 1.0:
        await asyncio.sleep(0.01)
    assert [(e["kind"], e["channel"]) for e in heard] == [
        ("corpus", ch), ("version", ch), ("version", ch), ("optout", None)]
    assert heard[-1]["author"] == "u" and heard[-1]["out"] is True
    assert all(e["origin"] == a.origin != b.origin for e in heard)


async def test_job_queue_one_per_channel_skip_locked_and_leases(two: Any) -> None:
    a, b = two
    ch = (await a.channel("d", "c")).id
    other = (await a.channel("d", "other")).id
    job, queued = await a.enqueue_job(ch, 1.0, "alice")
    assert queued
    again, queued = await b.enqueue_job(ch, 1.0, "bob")  # one training per channel
    assert not queued and again.id == job.id and again.started_by == "alice"
    taken = await asyncio.gather(a.take_job("w1", 1.0), b.take_job("w2", 1.0))
    assert sorted(t is None for t in taken) == [False, True]  # never taken twice
    w, held = ("w1", taken[0]) if taken[0] else ("w2", taken[1])
    thief = "w2" if w == "w1" else "w1"
    assert await a.take_job(thief, 1.0) is None
    assert await a.heartbeat(held.id, w, 1.0, {"step": 3}) == (True, None)
    assert (await a.job(held.id)).progress == {"step": 3}
    await asyncio.sleep(1.2)  # the lease runs out: the worker is taken for dead
    retaken = await b.take_job(thief, 30.0)
    assert retaken.id == held.id and retaken.tries == 2
    assert await a.heartbeat(held.id, w, 1.0) == (False, None)  # the stalled worker learns it
    version = NewVersion("v", "mix", {}, b"ckpt")
    assert await a.finish_job(held, w, version, 5, lambda row: "late") is None
    assert await a.counts() == {**await a.counts(), "models": 0}
    text, row = await b.finish_job(retaken, thief, version, 5, lambda r: f"v{r.version} done")
    assert (text, row.version) == ("v1 done", 1)
    assert await a.checkpoint(row.id) == b"ckpt"
    assert (await a.job(held.id)).state == "done" and await a.channel_job(ch) is None
    nothing, _ = await a.enqueue_job(other, 1.0, "carol")
    assert await a.cancel_job(other, "`!forget me`", queued=False) == []  # it read nothing yet
    assert (await a.channel_job(other)).id == nothing.id
    assert await a.cancel_job(other, "`!train cancel`") == [nothing.id]  # cancelled at once
    assert (await a.job(nothing.id)).result.startswith("training cancelled by `!train cancel`")


async def test_cancel_wins_over_adoption_and_dead_workers_end_in_failure(two: Any) -> None:
    a, b = two
    ch = (await a.channel("d", "c")).id
    await a.enqueue_job(ch, 1.0, "alice")
    job = await a.take_job("w1", 30.0)
    assert await b.cancel_job(ch, "`!forget me`", queued=False) == [job.id]
    assert await a.heartbeat(job.id, "w1", 30.0) == (True, "`!forget me`")
    text, row = await a.finish_job(job, "w1", NewVersion("v", "mix", {}, b"x"), 5,
                                   lambda r: "adopted")
    assert row is None and "cancelled by `!forget me`" in text
    assert (await a.counts())["models"] == 0
    dying, _ = await a.enqueue_job(ch, 1.0, "bob")
    for i in range(MAX_TRIES):  # each worker dies holding it
        assert (await a.take_job(f"w{i}", 0.05)).id == dying.id
        await asyncio.sleep(0.1)
    assert await a.take_job("w9", 30.0) is None
    gone = await a.job(dying.id)
    assert gone.state == "failed" and f"stopped {MAX_TRIES} times" in gone.result


async def test_erasure_leaves_no_byte_of_the_text_in_the_table_files(pg_server: Any,
                                                                      pg_url: str) -> None:
    store = await PgStore.open(pg_url)
    secret = f"forgotten-{time.time_ns()}"
    try:
        ch = (await store.channel("d", "c")).id
        await store.add_messages(ch, [NewMessage("z", "Z", f"{secret} {i}", "learn")
                                      for i in range(50)])
        await store.add_messages(ch, [NewMessage("y", "Y", f"kept {i}", "learn")
                                      for i in range(50)])
        async with store._pool.acquire() as con:
            await con.execute("CHECKPOINT")  # the rows reach the table files
        assert _in_table_files(pg_server, secret)  # the test means something
        await store.forget_author(ch, "z")
        await store.truncate_wal()
        async with store._pool.acquire() as con:
            await con.execute("CHECKPOINT")
        assert not _in_table_files(pg_server, secret)
        assert len(await store.corpus_texts(ch)) == 50
    finally:
        await store.close()


def _in_table_files(server: Any, text: str) -> bool:
    """Whether any file of the server's databases holds `text` (its write-ahead log aside)."""
    needle = text.encode()
    return any(needle in f.read_bytes() for f in (server.data / "base").rglob("*")
               if f.is_file())


async def test_a_lost_listening_connection_comes_back_and_resets(two: Any) -> None:
    a, b = two
    heard: list[str] = []
    b.subscribe(lambda e: heard.append(e["kind"]))
    async with a._pool.acquire() as con:  # as a server restart or a network cut would
        await con.execute("SELECT pg_terminate_backend($1)", b._listener.get_server_pid())
    t0 = time.monotonic()
    while "reset" not in heard and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.05)
    assert heard == ["reset"]  # caches drop everything: events may have been missed
    ch = (await a.channel("d", "c")).id
    await a.add_model(ch, "v1", "mix", {}, b"x")
    while len(heard) < 2 and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.05)
    assert heard == ["reset", "version"]  # and it hears again


def test_a_password_in_the_query_string_is_redacted_too() -> None:
    url = "postgresql://bot@db:5432/babble?sslmode=require&password=hunter2"
    assert "hunter2" not in redact(url) and "sslmode=require" in redact(url)
    assert hide_password("auth failed: hunter2", url) == "auth failed: ***"


async def test_forget_all_ends_the_channels_jobs_so_none_adopts_afterwards(two: Any) -> None:
    a, b = two
    ch = (await a.channel("d", "c")).id
    await a.enqueue_job(ch, 1.0, "alice")
    job = await b.take_job("w1", 30.0)  # taken (and the corpus read) just before the forget
    await a.forget_channel(ch)
    text, row = await b.finish_job(job, "w1", NewVersion("v", "mix", {}, b"x"), 5,
                                   lambda r: "adopted")
    assert row is None and "cancelled" in text, text
    assert (await a.counts())["models"] == 0 and await a.active_model(ch) is None
    queued, _ = await a.enqueue_job(ch, 1.0, "bob")
    await a.forget_channel(ch)
    assert (await a.job(queued.id)).state == "cancelled"  # never trains on the old corpus


async def test_ended_jobs_are_not_kept_forever(two: Any) -> None:
    a, _ = two
    ch = (await a.channel("d", "c")).id
    old, _ = await a.enqueue_job(ch, 1.0, "alice")  # a display name: personal data
    await a.cancel_job(ch, "`!train cancel`")
    recent, _ = await a.enqueue_job(ch, 1.0, "bob")
    await a.cancel_job(ch, "`!train cancel`")
    async with a._tx() as con:
        await con.execute("UPDATE jobs SET finished_at = finished_at - $2 WHERE id = $1",
                          old.id, JOB_KEEP_S + 1)
    await a.reap_jobs()
    assert await a.job(old.id) is None and (await a.job(recent.id)).state == "cancelled"


async def test_a_listening_connection_that_goes_silent_is_replaced(
        two: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_events, "PING_TIMEOUT_S", 0.5)
    a, b = two
    heard: list[str] = []
    b.subscribe(lambda e: heard.append(e["kind"]))
    pid = b._listener.get_server_pid()
    os.kill(pid, signal.SIGSTOP)  # as a cut network would: no reset, and no answer either
    try:
        t0 = time.monotonic()
        while "reset" not in heard and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert heard == ["reset"]
    await a.add_model((await a.channel("d", "c")).id, "v1", "mix", {}, b"x")
    t0 = time.monotonic()
    while len(heard) < 2 and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.05)
    assert heard == ["reset", "version"]
