"""Forgotten text stays forgotten: opt-outs that imports and listening obey, erasure out of every
database file, one process per database, and erasure queued when the database refuses it."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import pytest

from bot import __main__ as bot_main
from bot.core import Core
from bot.errors import StoreError
from bot.store import Store, _lock
from tests.bot.helpers import incoming, reply_of, rows, say, wait_for

SECRET = "Xylophonicquartzwhistle"  # occurs nowhere but in alice's messages


def database_files(db: Path) -> list[Path]:
    """The database and every file SQLite keeps beside it (-wal, -shm, -journal)."""
    return sorted(p for p in db.parent.glob(db.name + "*") if p.is_file())


def any_holds(files: list[Path], word: str) -> list[str]:
    return [p.name for p in files if word.encode() in p.read_bytes()]


async def listen_here(core: Core) -> None:
    assert "listening: from now on" in await reply_of(core, "!listen on")


async def stored_texts(core: Core) -> list[str]:
    await core.services.corpus.flush()
    return [r[0] for r in rows(core.settings.db_path, "SELECT text FROM messages")]


async def test_forget_me_keeps_listening_and_imports_from_storing_again(core: Core) -> None:
    await listen_here(core)
    await say(core, f"alice said {SECRET}", author="alice", mod=False, message_id="m1")
    assert any(SECRET in t for t in await stored_texts(core))
    answer = await reply_of(core, "!forget me", author="alice", mod=False)
    assert "removed 1 message you contributed" in answer and "`!optin`" in answer
    await say(core, f"again {SECRET}", author="alice", mod=False, message_id="m2")
    await core.import_messages([incoming(f"old {SECRET}", author="alice", message_id="m0")])
    await say(core, "bob is still heard", author="bob", mod=False, message_id="m3")
    texts = await stored_texts(core)
    assert not any(SECRET in t for t in texts) and "bob is still heard" in texts
    # another channel is not covered by a per-channel opt-out
    await core.import_messages([incoming(f"c2 {SECRET}", channel="c2", author="alice",
                                         message_id="m9")])
    assert any(SECRET in t for t in await stored_texts(core))
    assert "opted in here" in await reply_of(core, "!optin", author="alice", mod=False)
    await say(core, f"back {SECRET}", author="alice", mod=False, message_id="m4")
    assert f"back {SECRET}" in await stored_texts(core)


async def test_forget_me_everywhere_covers_every_channel(core: Core) -> None:
    for channel in ("c1", "c2"):
        await say(core, f"!learn {SECRET} in {channel}", channel=channel, author="alice",
                  mod=False)
    answer = await reply_of(core, "!forget me everywhere", author="alice", mod=False)
    assert "removed 2 messages you contributed in any channel here" in answer
    await core.import_messages([incoming(f"c3 {SECRET}", channel="c3", author="alice",
                                         message_id="x")])
    assert not any(SECRET in t for t in await stored_texts(core))
    assert "`!optin everywhere` lifts that" in await reply_of(core, "!optin", author="alice")
    assert "opted in in every channel" in await reply_of(core, "!optin everywhere",
                                                         author="alice")


@pytest.mark.parametrize("command", ["!forget me", "!forget all"])
async def test_forgotten_text_leaves_the_database_and_its_wal(core: Core, command) -> None:
    db = core.settings.db_path
    for i in range(20):
        await say(core, f"!learn {SECRET} number {i}", author="alice")
    await core.services.store.truncate_wal()  # in the database file itself, not only the WAL
    await say(core, f"!learn one more {SECRET}", author="alice")
    assert any_holds(database_files(db), SECRET)  # positive control: the WAL has it now
    await say(core, command, author="alice")
    assert any_holds(database_files(db), SECRET) == []  # while the bot runs


def test_a_second_process_on_one_database_is_refused(tmp_path: Path, capsys) -> None:
    db = tmp_path / "bot.db"
    held = _lock(db)
    try:
        status = bot_main.main(["--console", "--db", str(db), "--env-file", "/nonexistent"])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1
        assert f"pid {os.getpid()}" in err[0] and "in use by another bot process" in err[0]
    finally:
        os.close(held)


async def test_the_store_lock_is_released_on_close(tmp_path: Path) -> None:
    db = tmp_path / "bot.db"
    store = await Store.open(db)
    with pytest.raises(StoreError, match="in use by another bot process"):
        await Store.open(db)
    await store.close()
    await (await Store.open(db)).close()
    assert oct(db.stat().st_mode & 0o777) == oct(0o600)


async def test_an_erasure_the_database_refuses_is_queued_and_retried(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    store, corpus = core.services.store, core.services.corpus
    await listen_here(core)
    await say(core, f"!learn {SECRET}", author="alice", mod=False)
    real = store.forget_author
    failures = [sqlite3.OperationalError("database or disk is full")] * 2

    async def full_disk(channel: int, author: str) -> int:
        if failures:
            raise failures.pop()
        return await real(channel, author)

    monkeypatch.setattr(store, "forget_author", full_disk)
    corpus.retry_s = 0.05
    answer = await reply_of(core, "!forget me", author="alice", mod=False)
    assert "could not finish erasing" in answer and "queued and retried" in answer
    await say(core, f"listened {SECRET}", author="alice", mod=False, message_id="z")
    await wait_for(lambda: not corpus.erasures, timeout=10)
    await asyncio.sleep(0)
    assert not any(SECRET in t for t in await stored_texts(core))
    assert any_holds(database_files(core.settings.db_path), SECRET) == []


async def test_export_me_returns_exactly_the_callers_rows(core: Core) -> None:
    await say(core, f"!learn alice here {SECRET}", author="alice", mod=False)
    await say(core, "!learn alice there", channel="c2", author="alice", mod=False)
    await say(core, "!learn bob's own words", author="bob", mod=False)
    rec = await say(core, "!export me", author="alice", mod=False)
    (reply,) = [p.reply for p in rec.posted]
    assert reply.private and "2 messages" in reply.text
    (file,) = reply.files
    data = json.loads(file.data)
    assert [(m["channel"], m["text"]) for m in data["messages"]] == [
        ("c1", f"alice here {SECRET}"), ("c2", "alice there")]
    assert data["author_id"] == "alice"
    privacy = (await say(core, "!privacy")).posted[0].reply
    assert privacy.private and "!forget me" in privacy.text and "!export me" in privacy.text


async def test_a_removed_channels_data_goes_after_the_grace_period(settings) -> None:
    from dataclasses import replace
    async with await Core.open(replace(settings, removal_grace_days=7)) as core:
        await say(core, f"!learn {SECRET}", author="alice")
        await core.schedule_removal("console", ["c1"])
        assert await core.sweep_removals() == 0  # within the grace period: kept
        assert rows(settings.db_path, "SELECT COUNT(*) FROM messages") == [(1,)]
        await core.cancel_removal("console", ["c1"])  # back again
        assert rows(settings.db_path, "SELECT COUNT(*) FROM removals") == [(0,)]
    async with await Core.open(replace(settings, removal_grace_days=0)) as core:
        await core.schedule_removal("console", ["c1"])
        assert rows(settings.db_path, "SELECT COUNT(*) FROM messages") == [(0,)]
        assert any_holds(database_files(settings.db_path), SECRET) == []


async def test_a_wal_that_cannot_be_emptied_is_not_reported_as_erased(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    store = core.services.store
    await say(core, f"!learn {SECRET}", author="alice", mod=False)
    real = store.truncate_wal
    fails = [1, 1]

    async def stuck(*args: object) -> None:
        if fails:
            fails.pop()
            raise StoreError("the database's write-ahead log could not be emptied")
        await real()

    monkeypatch.setattr(store, "truncate_wal", stuck)
    core.services.corpus.retry_s = 0.05
    answer = await reply_of(core, "!forget me", author="alice", mod=False)
    assert "could not finish erasing" in answer and "queued" in answer
    await wait_for(lambda: not core.services.corpus.erasures, timeout=10)
    assert any_holds(database_files(core.settings.db_path), SECRET) == []


async def test_a_removal_cancelled_during_the_sweep_is_kept(settings) -> None:
    from dataclasses import replace
    async with await Core.open(replace(settings, removal_grace_days=7)) as core:
        await say(core, f"!learn {SECRET}", author="alice")
        store = core.services.store
        await store.schedule_removals("console", ["c1"], due_at=0.0)
        await store.cancel_removals("console", ["c1"])  # the bot came back first
        assert not await store.claim_removal("console", "c1", now=1e12)
        assert await core.sweep_removals() == 0
        assert rows(settings.db_path, "SELECT COUNT(*) FROM messages") == [(1,)]


async def test_a_deleted_listened_message_leaves_the_wal_within_moments(core: Core) -> None:
    await listen_here(core)
    for i in range(30):
        await say(core, f"chat {i} {SECRET}", author="alice", mod=False, message_id=f"d{i}")
    await core.services.corpus.flush()
    assert any_holds(database_files(core.settings.db_path), SECRET)  # positive control
    for i in range(30):  # a moderator's purge: one WAL checkpoint for the burst
        assert await core.message_deleted("console", "c1", f"d{i}")
    await wait_for(lambda: not any_holds(database_files(core.settings.db_path), SECRET), 10)
