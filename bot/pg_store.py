"""The store on PostgreSQL (asyncpg), for deployments whose processes share one database.

The same methods as `bot.store.Store`, over a connection pool. Where SQLite serialises a writer
with `BEGIN IMMEDIATE`, a transaction here locks the channel's row (`SELECT ... FOR UPDATE`), so
versions are numbered and activated in one order across every process. Parts by concern:
`bot.pg_versions` (versions, each checkpoint file a `bytea` row written in the transaction that
records it, so every process, a GPU training worker too, reaches it with the URL alone),
`bot.pg_events` (LISTEN/NOTIFY between processes, which keeps their caches honest),
`bot.pg_jobs` (the training job queue) and `bot.pg_import` (a migration's bulk copy).

Forgetting: PostgreSQL keeps deleted rows on disk until VACUUM, and a plain VACUUM leaves their
bytes in the table's pages; so `truncate_wal` (what every erasure ends with, named for SQLite's
equivalent) rewrites the tables that held the text with VACUUM FULL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from bot.errors import StoreError
from bot.pg_events import DB_ERRORS, Event, Events, hide_password, redact
from bot.pg_import import ImportQueries
from bot.pg_jobs import JobQueries
from bot.pg_versions import Versions
from bot.records import TABLES, ChannelRow, CorpusStats, NewMessage
from bot.schema import EVERYWHERE, PG_MIGRATIONS, PG_SCHEMA_VERSION

log = logging.getLogger(__name__)
__all__ = ["EVERYWHERE", "PgStore", "redact"]

POOL_SIZE = 8  # connections per process, besides the one that listens
MIGRATION_LOCK = 0x6261626C  # advisory lock: one process migrates, the others wait
_CHANNEL_COLS = "id, platform, channel_key, listening, active_model, corpus_rev, reply_chance"


def _channel(r: Sequence[Any]) -> ChannelRow:
    return ChannelRow(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6])


def _count(status: str) -> int:
    """Rows an INSERT/UPDATE/DELETE touched, from its status ("DELETE 3", "INSERT 0 2")."""
    return int(status.rsplit(" ", 1)[-1])


class PgStore(Events, Versions, JobQueries, ImportQueries):
    """Async access to a shared PostgreSQL database. Create with `await PgStore.open(url)`."""

    shared = True  # other processes write here too: caches listen for their changes

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self._url = url
        self.path = redact(url)  # what logs and messages name
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._subscribers: list[Callable[[Event], None]] = []
        self._listener: asyncpg.Connection | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, url: str, timeout_s: float = 5.0) -> PgStore:
        """Connect, migrate and start listening; StoreError (password hidden) on failure."""
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=POOL_SIZE,
                                             timeout=max(timeout_s, 1.0))
        except (*DB_ERRORS, ValueError) as err:
            raise StoreError(f"cannot connect to the database {redact(url)}: "
                             f"{hide_password(str(err), url)}") from None
        store = cls(pool, url)
        try:
            await store._migrate()
            await store._listen()
            store._start_watch()
        except BaseException as err:
            await pool.close()
            if isinstance(err, DB_ERRORS):
                raise StoreError(f"cannot open the database {store.path}: "
                                 f"{hide_password(str(err), url)}") from None
            raise
        return store

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self._closed = True
        tasks = [t for t in (self._relisten, self._watch) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._listener is not None:
            with contextlib.suppress(*DB_ERRORS):
                await self._listener.close()
        await self._pool.close()

    async def _migrate(self) -> None:
        """Bring the schema to PG_SCHEMA_VERSION (one process at a time)."""
        async with self._tx() as con:
            await con.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await con.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer "
                              "NOT NULL)")
            version = await con.fetchval("SELECT version FROM schema_version")
            if version is None:
                await con.execute("INSERT INTO schema_version VALUES (0)")
                version = 0
            if version > PG_SCHEMA_VERSION:
                raise StoreError(f"database {self.path} has schema version {version}, newer "
                                 f"than this bot's {PG_SCHEMA_VERSION}; upgrade the bot")
            for i in range(version, PG_SCHEMA_VERSION):
                log.info("migrating %s: schema %d -> %d", self.path, i, i + 1)
                await con.execute(PG_MIGRATIONS[i])
            await con.execute("UPDATE schema_version SET version = $1", PG_SCHEMA_VERSION)

    # Plumbing.

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Database failures as StoreError (the URL's password never in the text)."""
        try:
            yield
        except DB_ERRORS as err:
            raise StoreError(f"the database refused: {hide_password(str(err), self._url)}") from err

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._guard(), self._pool.acquire() as con, con.transaction():
            yield con

    async def _one(self, sql: str, *args: Any) -> Any:
        async with self._guard():
            return await self._pool.fetchrow(sql, *args)

    async def _all(self, sql: str, *args: Any) -> list[Any]:
        async with self._guard():
            return list(await self._pool.fetch(sql, *args))

    async def _lock_channel(self, con: asyncpg.Connection, channel: int) -> None:
        """Hold the channel's row until commit: its writers go one at a time."""
        await con.execute("SELECT 1 FROM channels WHERE id = $1 FOR NO KEY UPDATE", channel)

    async def counts(self) -> dict[str, int]:
        """Rows in each table (a migration from SQLite is checked against these)."""
        return {t: (await self._one(f"SELECT COUNT(*) FROM {t}"))[0]
                for t in (*TABLES, "checkpoints")}

    async def truncate_wal(self) -> None:
        """After an erasure: rewrite the tables that held the text (VACUUM FULL), so no page
        of them keeps the deleted rows' bytes. It holds each table's lock while it copies the
        live rows (about 0.1 s per 200,000 messages here). StoreError if refused."""
        async with self._guard(), self._pool.acquire() as con:
            await con.execute("VACUUM FULL messages, models, checkpoints")

    # Channels.

    async def find_channel(self, platform: str, key: str) -> ChannelRow | None:
        """The channel's row, or None if it was never seen."""
        row = await self._one(f"SELECT {_CHANNEL_COLS} FROM channels WHERE platform = $1 AND "
                              "channel_key = $2", platform, key)
        return None if row is None else _channel(row)

    async def channel_keys(self, platform: str, prefix: str) -> list[str]:
        """The keys of the platform's channels that start with `prefix` (a Slack workspace's)."""
        rows = await self._all("SELECT channel_key FROM channels WHERE platform = $1 AND "
                               "left(channel_key, length($2)) = $2", platform, prefix)
        return [r[0] for r in rows]

    async def channel_by_id(self, channel: int) -> ChannelRow | None:
        """A channel's row by its row id."""
        row = await self._one(f"SELECT {_CHANNEL_COLS} FROM channels WHERE id = $1", channel)
        return None if row is None else _channel(row)

    async def channel(self, platform: str, key: str) -> ChannelRow:
        """The channel's row, created on first sight (by whichever process sees it first)."""
        found = await self.find_channel(platform, key)
        if found is not None:
            return found
        async with self._tx() as con:
            await con.execute("INSERT INTO channels (platform, channel_key, created_at) VALUES "
                              "($1, $2, $3) ON CONFLICT DO NOTHING", platform, key, time.time())
        found = await self.find_channel(platform, key)
        assert found is not None
        return found

    async def schedule_removals(self, platform: str, keys: Sequence[str], due_at: float) -> None:
        """Mark channels for removal at `due_at` (seconds since the epoch); an earlier mark
        stays."""
        async with self._tx() as con:
            await con.executemany("INSERT INTO removals (platform, channel_key, due_at) VALUES "
                                  "($1, $2, $3) ON CONFLICT DO NOTHING",
                                  [(platform, k, due_at) for k in keys])

    async def cancel_removals(self, platform: str, keys: Sequence[str]) -> None:
        """The bot is back (or never left): keep these channels."""
        async with self._tx() as con:
            await con.execute("DELETE FROM removals WHERE platform = $1 AND channel_key = "
                              "ANY($2::text[])", platform, list(keys))

    async def claim_removal(self, platform: str, key: str, now: float) -> bool:
        """Take a due removal off the list; False when cancelled (or taken by another process)."""
        async with self._tx() as con:
            status = await con.execute("DELETE FROM removals WHERE platform = $1 AND "
                                       "channel_key = $2 AND due_at <= $3", platform, key, now)
        return _count(status) > 0

    async def due_removals(self, now: float) -> list[tuple[str, str]]:
        """(platform, channel key) of the removals due by `now`."""
        rows = await self._all("SELECT platform, channel_key FROM removals WHERE due_at <= $1",
                               now)
        return [(r[0], r[1]) for r in rows]

    async def meta(self, key: str) -> str | None:
        """A fact kept across starts, or None."""
        row = await self._one("SELECT value FROM meta WHERE key = $1", key)
        return None if row is None else row[0]

    async def set_meta(self, key: str, value: str) -> None:
        async with self._tx() as con:
            await con.execute("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) "
                              "DO UPDATE SET value = excluded.value", key, value)

    async def set_reply_chance(self, channel: int, chance: float) -> None:
        """Set the chance (0..1) that the bot babbles after an ordinary message here."""
        async with self._tx() as con:
            await con.execute("UPDATE channels SET reply_chance = $1 WHERE id = $2", chance,
                              channel)

    async def set_listening(self, channel: int, on: bool) -> None:
        """Turn listening on or off for a channel."""
        async with self._tx() as con:
            await con.execute("UPDATE channels SET listening = $1 WHERE id = $2", on, channel)

    async def corpus_rev(self, channel: int) -> int:
        """A counter that changes whenever the channel's corpus changes."""
        row = await self._one("SELECT corpus_rev FROM channels WHERE id = $1", channel)
        return 0 if row is None else row[0]

    # Corpus.

    async def add_messages(self, channel: int, messages: Sequence[NewMessage]) -> int:
        """Insert messages (a platform message id already stored is skipped); the count added."""
        if not messages:
            return 0
        now = time.time()
        columns = list(zip(*[(m.platform_msg_id, m.part, m.author_id, m.author_name, m.source,
                              m.text, len(m.text), m.created_at or now) for m in messages],
                           strict=True))
        async with self._tx() as con:
            status = await con.execute(
                "INSERT INTO messages (channel, platform_msg_id, part, author_id, author_name, "
                "source, text, chars, created_at) SELECT $1, * FROM unnest($2::text[], "
                "$3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], "
                "$9::float8[]) ON CONFLICT DO NOTHING", channel, *map(list, columns))
            added = _count(status)
            if added:
                await self._bump(con, channel)
        return added

    @staticmethod
    async def _bump(con: asyncpg.Connection, channel: int) -> None:
        await con.execute("UPDATE channels SET corpus_rev = corpus_rev + 1 WHERE id = $1",
                          channel)

    async def corpus_stats(self, channel: int) -> CorpusStats:
        """Messages, characters and distinct contributors of a channel's corpus."""
        row = await self._one("SELECT COUNT(*), COALESCE(SUM(chars), 0), COUNT(DISTINCT "
                              "author_id) FROM messages WHERE channel = $1", channel)
        return CorpusStats(row[0], int(row[1]), row[2])

    async def corpus_texts(self, channel: int) -> list[str]:
        """All texts of a channel's corpus, oldest first."""
        rows = await self._all("SELECT text FROM messages WHERE channel = $1 ORDER BY id",
                               channel)
        return [r[0] for r in rows]

    async def delete_platform_message(self, channel: int, platform_msg_id: str,
                                      listened_only: bool = False) -> int:
        """Remove every part stored for one platform message (only what listening or an
        import stored, with `listened_only`); the number of rows removed."""
        only = " AND source IN ('listen', 'import')" if listened_only else ""
        return await self._delete("DELETE FROM messages WHERE channel = $1 AND "
                                  "platform_msg_id = $2" + only, channel, platform_msg_id)

    async def channels_with_message(self, platform: str, platform_msg_id: str) -> list[int]:
        """Row ids of the platform's channels that store a part of this platform message."""
        found = await self._all("SELECT DISTINCT m.channel FROM messages m JOIN channels c ON "
                                "c.id = m.channel WHERE c.platform = $1 AND "
                                "m.platform_msg_id = $2", platform, platform_msg_id)
        return [r[0] for r in found]

    async def edit_platform_message(self, channel: int, platform_msg_id: str, text: str) -> int:
        """Replace the text of a listened or imported message; the number of rows changed."""
        async with self._tx() as con:
            changed = _count(await con.execute(
                "UPDATE messages SET text = $1, chars = $2 WHERE channel = $3 AND "
                "platform_msg_id = $4 AND part = 0 AND source IN ('listen', 'import')",
                text, len(text), channel, platform_msg_id))
            if changed:
                await self._bump(con, channel)
                await self._notify(con, "corpus", channel)
        return changed

    async def forget_author(self, channel: int, author_id: str) -> int:
        """Remove everything one author contributed to a channel; the number of rows removed."""
        return await self._delete("DELETE FROM messages WHERE channel = $1 AND author_id = $2",
                                  channel, author_id)

    async def forget_author_everywhere(self, platform: str, author_id: str) -> dict[int, int]:
        """Remove an author's messages from every channel of a platform: {channel: removed}."""
        found = await self._all("SELECT DISTINCT m.channel FROM messages m JOIN channels c ON "
                                "c.id = m.channel WHERE c.platform = $1 AND m.author_id = $2",
                                platform, author_id)
        return {r[0]: await self.forget_author(r[0], author_id) for r in found}

    async def author_messages(self, platform: str, author_id: str) -> list[dict[str, Any]]:
        """Everything stored of one author on a platform, oldest first (for `!export me`)."""
        rows = await self._all(
            "SELECT c.channel_key, m.platform_msg_id, m.part, m.author_name, m.source, m.text, "
            "m.created_at FROM messages m JOIN channels c ON c.id = m.channel "
            "WHERE c.platform = $1 AND m.author_id = $2 ORDER BY m.id", platform, author_id)
        keys = ("channel", "message_id", "part", "author_name", "source", "text", "created_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    async def set_optout(self, platform: str, scope: str, author_id: str, out: bool) -> bool:
        """Record (or, out=False, remove) an author's opt-out for a channel key or EVERYWHERE;
        whether anything changed. Other processes hear of a change (they keep opt-outs in
        memory)."""
        async with self._tx() as con:
            if out:
                status = await con.execute("INSERT INTO optouts (platform, scope, author_id, "
                                           "created_at) VALUES ($1, $2, $3, $4) ON CONFLICT "
                                           "DO NOTHING", platform, scope, author_id, time.time())
            else:
                status = await con.execute("DELETE FROM optouts WHERE platform = $1 AND "
                                           "scope = $2 AND author_id = $3", platform, scope,
                                           author_id)
            changed = _count(status) > 0
            if changed:
                await self._notify(con, "optout", None, platform=platform, scope=scope,
                                   author=author_id, out=out)
        return changed

    async def optouts(self) -> set[tuple[str, str, str]]:
        """Every opt-out as (platform, scope, author id)."""
        rows = await self._all("SELECT platform, scope, author_id FROM optouts")
        return {(r[0], r[1], r[2]) for r in rows}

    async def _delete(self, sql: str, channel: int, *args: Any) -> int:
        """A deletion of corpus text: the revision moves, and every process drops the n-gram
        it counted from the old text."""
        async with self._tx() as con:
            removed = _count(await con.execute(sql, channel, *args))
            if removed:
                await self._bump(con, channel)
                await self._notify(con, "corpus", channel)
        return removed

    async def forget_channel(self, channel: int) -> tuple[int, list[str]]:
        """Empty a channel's corpus and drop its models: (messages removed, version names)."""
        async with self._tx() as con:
            # Its jobs end in this transaction, before the channel's row is held (finish_job's
            # lock order): a training that read the corpus adopts nothing, a queued one never
            # reads it.
            await self._cancel_jobs(con, channel, "`!forget all`", True)
            await self._lock_channel(con, channel)
            paths = [r[0] for r in await con.fetch("SELECT path FROM models WHERE channel = $1",
                                                   channel)]
            await con.execute("UPDATE channels SET active_model = NULL WHERE id = $1", channel)
            await con.execute("DELETE FROM models WHERE channel = $1", channel)
            removed = _count(await con.execute("DELETE FROM messages WHERE channel = $1",
                                               channel))
            await self._bump(con, channel)
            await self._notify(con, "forget", channel)
        return removed, paths
