"""Model versions on SQLite: part of `bot.store.Store` (the rows; their checkpoints are files
in version folders under BOT_CHECKPOINTS, which `bot.versions` writes and removes)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiosqlite

from bot.records import ModelRow

_MODEL_COLS = "id, channel, version, path, kind, metrics, created_at"


def _model(row: Sequence[Any]) -> ModelRow:
    return ModelRow(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6])


class Versions:
    """Mixed into Store, whose plumbing it uses."""

    _tx: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]]
    _one: Callable[..., Awaitable[Any]]
    _all: Callable[..., Awaitable[list[Any]]]


    async def add_model(self, channel: int, path: str, kind: str,
                        metrics: dict[str, Any]) -> ModelRow:
        """Record a new model version of a channel and make it the active one."""
        async with self._tx() as db:
            row = await self._one("SELECT COALESCE(MAX(version), 0) + 1 FROM models "
                                  "WHERE channel = ?", (channel,))
            cur = await db.execute(
                "INSERT INTO models (channel, version, path, kind, metrics, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (channel, row[0], path, kind, json.dumps(metrics), time.time()))
            await db.execute("UPDATE channels SET active_model = ? WHERE id = ?",
                             (cur.lastrowid, channel))
            model_id = cur.lastrowid
        found = await self._one(f"SELECT {_MODEL_COLS} FROM models WHERE id = ?", (model_id,))
        return _model(found)

    async def active_model(self, channel: int) -> ModelRow | None:
        """The channel's active model version, or None when it answers with the base model."""
        row = await self._one(f"SELECT {_MODEL_COLS} FROM models WHERE id = "
                              "(SELECT active_model FROM channels WHERE id = ?)", (channel,))
        return None if row is None else _model(row)

    async def models(self, channel: int) -> list[ModelRow]:
        """All stored versions of a channel, oldest first."""
        rows = await self._all(f"SELECT {_MODEL_COLS} FROM models WHERE channel = ? "
                               "ORDER BY version", (channel,))
        return [_model(r) for r in rows]

    async def rollback(self, channel: int) -> ModelRow | None:
        """Activate the version before the active one (None: back to the base model)."""
        async with self._tx() as db:
            row = await self._one(
                f"SELECT {_MODEL_COLS} FROM models WHERE channel = ? AND version < "
                "(SELECT version FROM models WHERE id = (SELECT active_model FROM channels "
                "WHERE id = ?)) ORDER BY version DESC LIMIT 1", (channel, channel))
            previous = None if row is None else _model(row)
            await db.execute("UPDATE channels SET active_model = ? WHERE id = ?",
                             (None if previous is None else previous.id, channel))
        return previous

    async def prune_models(self, channel: int, keep: int) -> list[str]:
        """Drop all but the newest `keep` versions (never the active one); their folders."""
        async with self._tx() as db:
            rows = await self._all(
                "SELECT id, path FROM models WHERE channel = ? AND id IS NOT (SELECT "
                "active_model FROM channels WHERE id = ?) ORDER BY version DESC LIMIT -1 "
                "OFFSET ?", (channel, channel, max(keep - 1, 0)))
            await db.executemany("DELETE FROM models WHERE id = ?", [(r[0],) for r in rows])
        return [r[1] for r in rows]

    async def model_paths(self) -> set[str]:
        """Every checkpoint folder the database points at (to spot orphans from a crash)."""
        return {r[0] for r in await self._all("SELECT path FROM models")}
