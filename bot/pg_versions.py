"""Model versions and their checkpoints on PostgreSQL: part of PgStore.

A version's checkpoint file is a `bytea` row of `checkpoints`, written in the transaction that
records the version; writers of one channel hold its row (`FOR NO KEY UPDATE`) in turn.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncpg

from bot.records import ModelRow

_MODEL_COLS = "id, channel, version, path, kind, metrics, created_at"


def _model(r: Any) -> ModelRow:
    return ModelRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])


class Versions:
    """Mixed into PgStore, whose plumbing it uses."""

    _tx: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]
    _one: Callable[..., Awaitable[Any]]
    _all: Callable[..., Awaitable[list[Any]]]
    _notify: Callable[..., Awaitable[None]]
    _lock_channel: Callable[..., Awaitable[None]]
    truncate_wal: Callable[[], Awaitable[None]]

    async def add_model(self, channel: int, path: str, kind: str, metrics: dict[str, Any],
                        checkpoint: bytes | None = None,
                        con: asyncpg.Connection | None = None) -> ModelRow:
        """Record a new version of a channel (with its checkpoint file's bytes) and make it the
        active one. Within the caller's transaction `con`, if given."""
        if con is None:
            async with self._tx() as own:
                return await self.add_model(channel, path, kind, metrics, checkpoint, own)
        await self._lock_channel(con, channel)
        row = await con.fetchrow(
            f"INSERT INTO models (channel, version, path, kind, metrics, created_at) SELECT $1, "
            "COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5 FROM models WHERE channel = $1 "
            f"RETURNING {_MODEL_COLS}", channel, path, kind, json.dumps(metrics), time.time())
        if checkpoint is not None:
            await con.execute("INSERT INTO checkpoints (model, data) VALUES ($1, $2)", row[0],
                              checkpoint)
        await con.execute("UPDATE channels SET active_model = $1 WHERE id = $2", row[0], channel)
        await self._notify(con, "version", channel)
        return _model(row)

    async def checkpoint(self, model: int) -> bytes | None:
        """The checkpoint file of a version, or None when it has none (it was unreadable)."""
        row = await self._one("SELECT data FROM checkpoints WHERE model = $1", model)
        return None if row is None else bytes(row[0])

    async def active_model(self, channel: int) -> ModelRow | None:
        """The channel's active model version, or None when it answers with the base model."""
        row = await self._one(f"SELECT {_MODEL_COLS} FROM models WHERE id = "
                              "(SELECT active_model FROM channels WHERE id = $1)", channel)
        return None if row is None else _model(row)

    async def models(self, channel: int) -> list[ModelRow]:
        """All stored versions of a channel, oldest first."""
        rows = await self._all(f"SELECT {_MODEL_COLS} FROM models WHERE channel = $1 "
                               "ORDER BY version", channel)
        return [_model(r) for r in rows]

    async def rollback(self, channel: int) -> ModelRow | None:
        """Activate the version before the active one (None: back to the base model)."""
        async with self._tx() as con:
            await self._lock_channel(con, channel)
            row = await con.fetchrow(
                f"SELECT {_MODEL_COLS} FROM models WHERE channel = $1 AND version < "
                "(SELECT version FROM models WHERE id = (SELECT active_model FROM channels "
                "WHERE id = $1)) ORDER BY version DESC LIMIT 1", channel)
            previous = None if row is None else _model(row)
            await con.execute("UPDATE channels SET active_model = $1 WHERE id = $2",
                              None if previous is None else previous.id, channel)
            await self._notify(con, "version", channel)
        return previous

    async def prune_models(self, channel: int, keep: int,
                           con: asyncpg.Connection | None = None) -> list[str]:
        """Drop all but the newest `keep` versions (never the active one); their names."""
        if con is None:
            async with self._tx() as own:
                return await self.prune_models(channel, keep, own)
        rows = await con.fetch(
            "SELECT id, path FROM models WHERE channel = $1 AND id IS DISTINCT FROM (SELECT "
            "active_model FROM channels WHERE id = $1) ORDER BY version DESC OFFSET $2",
            channel, max(keep - 1, 0))
        await con.execute("DELETE FROM models WHERE id = ANY($1::bigint[])", [r[0] for r in rows])
        return [r[1] for r in rows]

    async def model_paths(self) -> set[str]:
        """Every version name the database records."""
        return {r[0] for r in await self._all("SELECT path FROM models")}

    async def rewrite_checkpoints(self, channel: int, rewrite: Any) -> Any:
        """Rewrite every checkpoint of a channel from its corpus as it is now, atomically.

        Holds the channel's row for the whole rewrite (a later forget's rewrite lands last;
        no version is added meanwhile). `await rewrite(texts, {model id: bytes})` returns
        ({model id: new bytes, or None to delete an unreadable one}, a result passed back).
        Every process drops its cached models of the channel; the old bytes are vacuumed."""
        async with self._tx() as con:
            await self._lock_channel(con, channel)
            texts = [r[0] for r in await con.fetch("SELECT text FROM messages WHERE "
                                                   "channel = $1 ORDER BY id", channel)]
            blobs = {r[0]: bytes(r[1]) for r in await con.fetch(
                "SELECT k.model, k.data FROM checkpoints k JOIN models m ON m.id = k.model "
                "WHERE m.channel = $1", channel)}
            new, result = await rewrite(texts, blobs)
            for model, data in new.items():
                if data is None:
                    await con.execute("DELETE FROM checkpoints WHERE model = $1", model)
                else:
                    await con.execute("UPDATE checkpoints SET data = $1 WHERE model = $2", data,
                                      model)
            await self._notify(con, "forget", channel)
        await self.truncate_wal()
        return result
