"""The SQLite store (the default): channels, their corpora and their model versions.

The only module that speaks SQL to SQLite (with its part `bot.store_versions`, the model
versions' rows); `bot.pg_store` is PostgreSQL's, with the same methods, for deployments of many
processes. `open_store` picks one from the settings.

One long-lived aiosqlite connection (its own thread), WAL mode, a busy timeout, a schema
versioned with `PRAGMA user_version` and migrated forward at open. Parameters only.
Channels are keyed by (platform, channel id), so platforms share one file and never each other's
rows. Checkpoints are files; the `models` table points at their folders. The schema's
migrations are in `bot/schema.py`.

Forgotten text leaves every file: `secure_delete` zeroes deleted rows in the database file, and
each erasure ends with a WAL checkpoint that truncates the `-wal` file (which would otherwise
keep the old pages). One process owns a database: `open` takes an exclusive lock on a `.lock`
file beside it and says who holds it when it cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from bot.errors import StoreError
from bot.records import COLUMNS, TABLES, ChannelRow, CorpusStats, ModelRow, NewMessage
from bot.schema import EVERYWHERE, MIGRATIONS, SCHEMA_VERSION
from bot.store_versions import Versions

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)
__all__ = ["EVERYWHERE", "MIGRATIONS", "SCHEMA_VERSION", "ChannelRow", "CorpusStats",
           "ModelRow", "NewMessage", "Store", "open_store"]


async def open_store(settings: Settings) -> Any:
    """The store `settings` name: PostgreSQL (`bot.pg_store.PgStore`) for a postgresql:// URL
    in BOT_DB, else this module's SQLite `Store`. Both answer the same methods."""
    if settings.db_url:
        from bot.pg_store import PgStore  # asyncpg only where it is used

        return await PgStore.open(settings.db_url, settings.db_busy_timeout_s)
    return await Store.open(settings.db_path, settings.db_busy_timeout_s)


def _lock(path: Path) -> int:
    """Take the exclusive lock that makes one process the owner of the database at `path`;
    the lock file records the owner's pid. StoreError naming the holder when it is taken."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise StoreError(f"cannot open {lock_path}: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise StoreError(f"database {path} is in use by another bot process (pid {holder}); "
                         "stop it first, or give this one its own --db") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _private(path: Path) -> None:
    """Create the database file readable by its owner only (it holds people's messages)."""
    if path.is_dir():
        raise StoreError(f"{path} is a directory; give the database a file name")
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as err:
        raise StoreError(f"cannot open database {path}: {err.strerror}") from None


_CHANNEL_COLS = "id, platform, channel_key, listening, active_model, corpus_rev, reply_chance"


def _channel(row: Sequence[Any]) -> ChannelRow:
    return ChannelRow(row[0], row[1], row[2], bool(row[3]), row[4], row[5], row[6])


class Store(Versions):
    """Async access to the bot's database. Create with `await Store.open(path)`."""

    shared = False  # one process owns the file; PgStore is shared by many processes

    def __init__(self, db: aiosqlite.Connection, path: Path, lock_fd: int) -> None:
        self._db = db
        self.path = path
        self._lock_fd = lock_fd
        self._write = asyncio.Lock()  # one connection: transactions must not interleave

    @classmethod
    async def open(cls, path: Path, busy_timeout_s: float = 5.0) -> Store:
        """Open (creating if needed) and migrate the database; StoreError if another process
        holds it, or it cannot be created, read or written."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise StoreError(f"cannot create the database folder {path.parent}: "
                             f"{err.strerror}") from None
        lock_fd = _lock(path)
        try:
            _private(path)
            db = await aiosqlite.connect(path, isolation_level=None)
        except BaseException:
            os.close(lock_fd)
            raise
        store = cls(db, path, lock_fd)
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute("PRAGMA secure_delete = ON")
            await store._migrate()
        except BaseException as err:
            await store.close()
            if not isinstance(err, sqlite3.DatabaseError):
                raise
            if "locked" in str(err) or "busy" in str(err):
                raise StoreError(f"database {path} is locked by another process (waited "
                                 f"{busy_timeout_s:g} s); is another bot running on it?") from None
            raise StoreError(f"cannot open database {path}: {err}") from None
        return store

    async def close(self) -> None:
        """Close the connection (pending transactions are already committed), then the lock."""
        try:
            await self._db.close()
        finally:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def subscribe(self, callback: Any) -> None:
        """Nothing to hear about: no other process writes this database (PgStore's hook)."""

    async def counts(self) -> dict[str, int]:
        """Rows in each table (what a migration to PostgreSQL must carry over)."""
        return {t: (await self._one(f"SELECT COUNT(*) FROM {t}"))[0] for t in TABLES}

    async def export_rows(self, table: str, batch: int = 5000) -> AsyncIterator[list[tuple]]:
        """Every row of one of `records.TABLES` (its `records.COLUMNS`), in batches, oldest
        first: what `python -m bot migrate` copies."""
        cols = ", ".join(COLUMNS[table])
        last = 0
        while True:
            rows = await self._all(f"SELECT rowid, {cols} FROM {table} WHERE rowid > ? "
                                   "ORDER BY rowid LIMIT ?", (last, batch))
            if not rows:
                return
            last = rows[-1][0]
            yield [tuple(r[1:]) for r in rows]

    async def truncate_wal(self, tries: int = 20, pause_s: float = 0.05) -> None:
        """Copy the WAL into the database and empty it, so deleted rows leave the `-wal` file
        too. A statement of this connection still reading (another command's query between
        two awaits) makes SQLite refuse it for a moment: it is tried again `tries` times.
        StoreError when it still could not finish (a full disk): the caller queues a retry."""
        for attempt in range(tries):
            try:
                async with self._write:
                    row = await self._one("PRAGMA wal_checkpoint(TRUNCATE)")
                if row is None or not row[0]:
                    return
            except sqlite3.OperationalError as err:
                if attempt == tries - 1:
                    raise StoreError(f"the database's write-ahead log could not be emptied: "
                                     f"{err}") from err
            await asyncio.sleep(pause_s)
        raise StoreError("the database's write-ahead log could not be emptied yet")

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        async with self._write:
            # A BEGIN cancelled while it waits still runs on aiosqlite's thread: roll it back
            # then, or every later transaction would fail as "within a transaction".
            begin = asyncio.ensure_future(self._db.execute("BEGIN IMMEDIATE"))
            try:
                await asyncio.shield(begin)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await begin
                    await self._db.execute("ROLLBACK")
                raise
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION; also proves at start that we can write."""
        async with self._tx() as db:
            async with db.execute("PRAGMA user_version") as cur:
                (version,) = await cur.fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(f"database {self.path} has schema version {version}, newer than "
                                 f"this bot's {SCHEMA_VERSION}; upgrade the bot")
            for i in range(version, SCHEMA_VERSION):
                log.info("migrating %s: schema %d -> %d", self.path, i, i + 1)
                for statement in MIGRATIONS[i].split(";"):
                    if statement.strip():
                        await db.execute(statement)
            if version < SCHEMA_VERSION:
                await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        async with self._db.execute(sql, params) as cur:
            return await cur.fetchone()

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._db.execute(sql, params) as cur:
            return list(await cur.fetchall())

    # Channels.

    async def find_channel(self, platform: str, key: str) -> ChannelRow | None:
        """The channel's row, or None if it was never seen."""
        row = await self._one(f"SELECT {_CHANNEL_COLS} FROM channels WHERE platform = ? AND "
                              "channel_key = ?", (platform, key))
        return None if row is None else _channel(row)

    async def channel_keys(self, platform: str, prefix: str) -> list[str]:
        """The keys of the platform's channels that start with `prefix` (a Slack workspace's)."""
        rows = await self._all("SELECT channel_key FROM channels WHERE platform = ? AND "
                               "substr(channel_key, 1, length(?)) = ?", (platform, prefix, prefix))
        return [r[0] for r in rows]

    async def channel_by_id(self, channel: int) -> ChannelRow | None:
        """A channel's row by its row id."""
        row = await self._one(f"SELECT {_CHANNEL_COLS} FROM channels WHERE id = ?", (channel,))
        return None if row is None else _channel(row)

    async def channel(self, platform: str, key: str) -> ChannelRow:
        """The channel's row, created on first sight."""
        found = await self.find_channel(platform, key)
        if found is not None:
            return found
        async with self._tx() as db:
            await db.execute("INSERT OR IGNORE INTO channels (platform, channel_key, created_at) "
                             "VALUES (?, ?, ?)", (platform, key, time.time()))
        found = await self.find_channel(platform, key)
        assert found is not None
        return found

    async def schedule_removals(self, platform: str, keys: Sequence[str], due_at: float) -> None:
        """Mark channels for removal at `due_at` (seconds since the epoch); an earlier mark
        stays."""
        async with self._tx() as db:
            await db.executemany("INSERT OR IGNORE INTO removals (platform, channel_key, due_at)"
                                 " VALUES (?, ?, ?)", [(platform, k, due_at) for k in keys])

    async def cancel_removals(self, platform: str, keys: Sequence[str]) -> None:
        """The bot is back (or never left): keep these channels."""
        async with self._tx() as db:
            await db.executemany("DELETE FROM removals WHERE platform = ? AND channel_key = ?",
                                 [(platform, k) for k in keys])

    async def claim_removal(self, platform: str, key: str, now: float) -> bool:
        """Take a due removal off the list; False when it was cancelled (or taken) meanwhile,
        so a channel the bot came back to is never erased."""
        async with self._tx() as db:
            cur = await db.execute("DELETE FROM removals WHERE platform = ? AND channel_key = ? "
                                   "AND due_at <= ?", (platform, key, now))
            return cur.rowcount > 0

    async def due_removals(self, now: float) -> list[tuple[str, str]]:
        """(platform, channel key) of the removals due by `now`."""
        rows = await self._all("SELECT platform, channel_key FROM removals WHERE due_at <= ?",
                               (now,))
        return [(r[0], r[1]) for r in rows]

    async def meta(self, key: str) -> str | None:
        """A fact kept across starts, or None."""
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    async def set_meta(self, key: str, value: str) -> None:
        async with self._tx() as db:
            await db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                             "DO UPDATE SET value = excluded.value", (key, value))

    async def set_reply_chance(self, channel: int, chance: float) -> None:
        """Set the chance (0..1) that the bot babbles after an ordinary message here."""
        async with self._tx() as db:
            await db.execute("UPDATE channels SET reply_chance = ? WHERE id = ?",
                             (chance, channel))

    async def set_listening(self, channel: int, on: bool) -> None:
        """Turn listening on or off for a channel."""
        async with self._tx() as db:
            await db.execute("UPDATE channels SET listening = ? WHERE id = ?", (int(on), channel))

    async def corpus_rev(self, channel: int) -> int:
        """A counter that changes whenever the channel's corpus changes."""
        row = await self._one("SELECT corpus_rev FROM channels WHERE id = ?", (channel,))
        return 0 if row is None else row[0]

    # Corpus.

    async def add_messages(self, channel: int, messages: Sequence[NewMessage]) -> int:
        """Insert messages (a platform message id already stored is skipped); the count added."""
        now = time.time()
        rows = [(channel, m.platform_msg_id, m.part, m.author_id, m.author_name, m.source,
                 m.text, len(m.text), m.created_at or now) for m in messages]
        async with self._tx() as db:
            before = db.total_changes
            await db.executemany(
                "INSERT OR IGNORE INTO messages (channel, platform_msg_id, part, author_id, "
                "author_name, source, text, chars, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows)
            added = db.total_changes - before
            if added:
                await self._bump(db, channel)
        return added

    @staticmethod
    async def _bump(db: aiosqlite.Connection, channel: int) -> None:
        await db.execute("UPDATE channels SET corpus_rev = corpus_rev + 1 WHERE id = ?",
                         (channel,))

    async def corpus_stats(self, channel: int) -> CorpusStats:
        """Messages, characters and distinct contributors of a channel's corpus."""
        row = await self._one("SELECT COUNT(*), COALESCE(SUM(chars), 0), COUNT(DISTINCT "
                              "author_id) FROM messages WHERE channel = ?", (channel,))
        return CorpusStats(row[0], row[1], row[2])

    async def corpus_texts(self, channel: int) -> list[str]:
        """All texts of a channel's corpus, oldest first."""
        rows = await self._all("SELECT text FROM messages WHERE channel = ? ORDER BY id",
                               (channel,))
        return [r[0] for r in rows]

    async def delete_platform_message(self, channel: int, platform_msg_id: str,
                                      listened_only: bool = False) -> int:
        """Remove every part stored for one platform message (only what listening or an
        import stored, with `listened_only`); the number of rows removed."""
        only = " AND source IN ('listen', 'import')" if listened_only else ""
        return await self._delete("DELETE FROM messages WHERE channel = ? AND platform_msg_id = ?"
                                  + only, channel, (channel, platform_msg_id))

    async def channels_with_message(self, platform: str, platform_msg_id: str) -> list[int]:
        """Row ids of the platform's channels that store a part of this platform message."""
        found = await self._all("SELECT DISTINCT m.channel FROM messages m JOIN channels c ON "
                                "c.id = m.channel WHERE c.platform = ? AND m.platform_msg_id = ?",
                                (platform, platform_msg_id))
        return [r[0] for r in found]

    async def edit_platform_message(self, channel: int, platform_msg_id: str, text: str) -> int:
        """Replace the text of a listened or imported message; the number of rows changed."""
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE messages SET text = ?, chars = ? WHERE channel = ? AND platform_msg_id = ? "
                "AND part = 0 AND source IN ('listen', 'import')",
                (text, len(text), channel, platform_msg_id))
            if cur.rowcount:
                await self._bump(db, channel)
            return cur.rowcount

    async def forget_author(self, channel: int, author_id: str) -> int:
        """Remove everything one author contributed to a channel; the number of rows removed."""
        return await self._delete("DELETE FROM messages WHERE channel = ? AND author_id = ?",
                                  channel, (channel, author_id))

    async def forget_author_everywhere(self, platform: str, author_id: str) -> dict[int, int]:
        """Remove an author's messages from every channel of a platform: {channel: removed}."""
        found = await self._all("SELECT DISTINCT m.channel FROM messages m JOIN channels c ON "
                                "c.id = m.channel WHERE c.platform = ? AND m.author_id = ?",
                                (platform, author_id))
        return {r[0]: await self.forget_author(r[0], author_id) for r in found}

    async def author_messages(self, platform: str, author_id: str) -> list[dict[str, Any]]:
        """Everything stored of one author on a platform, oldest first (for `!export me`)."""
        rows = await self._all(
            "SELECT c.channel_key, m.platform_msg_id, m.part, m.author_name, m.source, m.text, "
            "m.created_at FROM messages m JOIN channels c ON c.id = m.channel "
            "WHERE c.platform = ? AND m.author_id = ? ORDER BY m.id", (platform, author_id))
        keys = ("channel", "message_id", "part", "author_name", "source", "text", "created_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def set_optout(self, platform: str, scope: str, author_id: str, out: bool) -> bool:
        """Record (or, out=False, remove) an author's opt-out for a channel key or EVERYWHERE;
        whether anything changed."""
        async with self._tx() as db:
            if out:
                cur = await db.execute("INSERT OR IGNORE INTO optouts (platform, scope, "
                                       "author_id, created_at) VALUES (?, ?, ?, ?)",
                                       (platform, scope, author_id, time.time()))
            else:
                cur = await db.execute("DELETE FROM optouts WHERE platform = ? AND scope = ? "
                                       "AND author_id = ?", (platform, scope, author_id))
            return cur.rowcount > 0

    async def optouts(self) -> set[tuple[str, str, str]]:
        """Every opt-out as (platform, scope, author id)."""
        rows = await self._all("SELECT platform, scope, author_id FROM optouts")
        return {(r[0], r[1], r[2]) for r in rows}

    async def _delete(self, sql: str, channel: int, params: Sequence[Any]) -> int:
        async with self._tx() as db:
            cur = await db.execute(sql, params)
            if cur.rowcount:
                await self._bump(db, channel)
            return cur.rowcount

    async def forget_channel(self, channel: int) -> tuple[int, list[str]]:
        """Empty a channel's corpus and drop its models: (messages removed, model folders)."""
        async with self._tx() as db:
            paths = [r[0] for r in await self._all("SELECT path FROM models WHERE channel = ?",
                                                    (channel,))]
            await db.execute("UPDATE channels SET active_model = NULL WHERE id = ?", (channel,))
            await db.execute("DELETE FROM models WHERE channel = ?", (channel,))
            cur = await db.execute("DELETE FROM messages WHERE channel = ?", (channel,))
            await self._bump(db, channel)
            return cur.rowcount, paths
