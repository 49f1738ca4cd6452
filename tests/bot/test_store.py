"""The store against a real SQLite file and a real PostgreSQL server (one test each where the
behaviour is the backend's own): schema, isolation, deletions, versions, locks."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.errors import StoreError
from bot.store import MIGRATIONS, SCHEMA_VERSION, NewMessage, Store
from tests.bot.helpers import rows


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """An open store of each backend over an empty database."""
    if request.param == "sqlite":
        opened: Any = await Store.open(tmp_path / "b.db")
    else:
        from bot.pg_store import PgStore

        opened = await PgStore.open(request.getfixturevalue("pg_url"))
    try:
        yield opened
    finally:
        await opened.close()


def msg(text: str, author: str = "a", mid: str | None = None, source: str = "listen",
        part: int = 0) -> NewMessage:
    return NewMessage(author, f"name-{author}", text, source, mid, part)


async def test_schema_wal_and_version(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    store = await Store.open(db)
    await store.close()
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    store = await Store.open(db)  # reopening migrates nothing and keeps the data
    await store.close()


async def test_newer_schema_refused(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer than this bot"):
        await Store.open(db)


async def test_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open database"):
        await Store.open(db)


async def test_platforms_never_see_each_other(store: Any) -> None:
    d = await store.channel("discord", "42")
    s = await store.channel("slack", "42")
    assert d.id != s.id and (await store.channel("discord", "42")).id == d.id
    await store.add_messages(d.id, [msg("discord text", mid="1")])
    assert await store.corpus_texts(s.id) == []
    assert await store.delete_platform_message(s.id, "1") == 0
    assert await store.corpus_texts(d.id) == ["discord text"]
    assert await store.channels_with_message("discord", "1") == [d.id]
    assert await store.channels_with_message("slack", "1") == []


async def test_channel_keys_by_prefix(store: Any) -> None:
    for platform, key in (("slack", "T1:C1"), ("slack", "T1:C2"), ("slack", "T10:C1"),
                          ("discord", "T1:C3"), ("slack", "%_:C4")):
        await store.channel(platform, key)
    assert sorted(await store.channel_keys("slack", "T1:")) == ["T1:C1", "T1:C2"]
    assert await store.channel_keys("slack", "%_:") == ["%_:C4"]  # no pattern characters
    assert await store.channel_keys("console", "") == []


async def test_dedup_delete_edit_forget(store: Any) -> None:
    ch = (await store.channel("discord", "c")).id
    added = await store.add_messages(ch, [msg("one", "a", "m1"), msg("two", "b", "m2"),
                                          msg("one again", "a", "m1")])
    assert added == 2
    rev = await store.corpus_rev(ch)
    assert await store.edit_platform_message(ch, "m1", "one, edited") == 1
    assert await store.corpus_rev(ch) > rev
    assert await store.delete_platform_message(ch, "m2") == 1
    await store.add_messages(ch, [msg("mine", "b"), msg("file 1", "b", "f", "file", 0),
                                  msg("file 2", "b", "f", "file", 1)])
    assert await store.edit_platform_message(ch, "f", "x") == 0  # learned text is not edited
    assert await store.forget_author(ch, "b") == 3
    assert [(r["text"], r["source"]) for r in await store.author_messages("discord", "a")] \
        == [("one, edited", "listen")]
    assert await store.author_messages("discord", "b") == []
    stats = await store.corpus_stats(ch)
    assert (stats.messages, stats.chars, stats.contributors) == (1, 11, 1)
    assert (await store.counts())["messages"] == 1


async def test_forget_everywhere_optouts_meta_removals(store: Any) -> None:
    one, two = (await store.channel("d", "1")).id, (await store.channel("d", "2")).id
    await store.add_messages(one, [msg("x", "a"), msg("y", "b")])
    await store.add_messages(two, [msg("z", "a")])
    assert await store.forget_author_everywhere("d", "a") == {one: 1, two: 1}
    assert await store.corpus_texts(one) == ["y"]
    assert await store.set_optout("d", "*", "a", True)
    assert not await store.set_optout("d", "*", "a", True)  # already out: nothing changed
    assert await store.optouts() == {("d", "*", "a")}
    assert await store.set_optout("d", "*", "a", False) and await store.optouts() == set()
    await store.set_meta("k", "v1")
    await store.set_meta("k", "v2")
    assert await store.meta("k") == "v2" and await store.meta("nothing") is None
    await store.schedule_removals("d", ["1", "2"], due_at=100.0)
    await store.schedule_removals("d", ["1"], due_at=500.0)  # the earlier mark stays
    await store.cancel_removals("d", ["2"])
    assert await store.due_removals(now=200.0) == [("d", "1")]
    assert await store.claim_removal("d", "1", now=200.0)
    assert not await store.claim_removal("d", "1", now=200.0)  # taken once only
    await store.set_listening(one, True)
    await store.set_reply_chance(one, 0.25)
    row = await store.channel_by_id(one)
    assert (row.listening, row.reply_chance) == (True, 0.25)


async def test_versions_rollback_prune_forget(store: Any) -> None:
    ch = (await store.channel("console", "c")).id
    for i in range(4):
        await store.add_model(ch, f"f/v{i}", "mix", {"bpc_after": float(i)})
    assert (await store.active_model(ch)).version == 4
    assert (await store.rollback(ch)).version == 3
    assert sorted(await store.prune_models(ch, keep=2)) == ["f/v0", "f/v1"]
    assert [m.version for m in await store.models(ch)] == [3, 4]
    assert await store.model_paths() == {"f/v2", "f/v3"}
    assert (await store.active_model(ch)).metrics == {"bpc_after": 2.0}
    assert await store.rollback(ch) is None  # back to the base model
    assert await store.active_model(ch) is None
    await store.add_messages(ch, [msg("text")])
    removed, paths = await store.forget_channel(ch)
    assert removed == 1 and sorted(paths) == ["f/v2", "f/v3"]
    assert (await store.counts())["models"] == 0
    assert (await store.add_model(ch, "f/v9", "mix", {})).version == 1  # numbering restarts


HOLD_LOCK = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(30)
"""


async def test_locked_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    await (await Store.open(db)).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreError, match="locked by another process"):
            await Store.open(db, busy_timeout_s=0.2)
    finally:
        holder.kill()
        holder.wait()
    store = await Store.open(db)  # and once it is gone, the bot starts
    await store.close()


async def test_old_schema_is_migrated_keeping_data(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    con = sqlite3.connect(db)
    con.executescript(MIGRATIONS[0])
    con.execute("INSERT INTO channels (platform, channel_key, created_at) VALUES ('d', 'c', 0)")
    con.execute("INSERT INTO messages (channel, platform_msg_id, author_id, author_name, source, "
                "text, chars, created_at) VALUES (1, 'm1', 'a', 'A', 'listen', 'old text', 8, 0)")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()
    store = await Store.open(db)
    try:
        assert await store.channels_with_message("d", "m1") == [1]
        assert await store.channels_with_message("other", "m1") == []
    finally:
        await store.close()
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)] and SCHEMA_VERSION >= 2
    assert rows(db, "SELECT text FROM messages") == [("old text",)]
    assert ("messages_by_platform_id",) in rows(db, "SELECT name FROM sqlite_master WHERE "
                                                  "type = 'index'")
