"""Bulk import into an empty PostgreSQL database (`python -m bot migrate`): part of PgStore.

Everything is copied in one transaction (COPY), so a failed migration leaves the target as
empty as it was. Row ids are kept (versions, active versions and messages keep pointing at
each other), and the id sequences then continue after the largest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg

from bot.errors import StoreError
from bot.records import COLUMNS, TABLES


class Importer:
    """Adds rows to the tables of a migration's transaction."""

    def __init__(self, con: asyncpg.Connection) -> None:
        self._con = con
        self._active: list[tuple[int, int]] = []  # (channel, active model), set at the end

    async def add(self, table: str, rows: Sequence[tuple]) -> None:
        """Copy rows given in `records.COLUMNS[table]` order."""
        if table == "channels":  # versions are copied after channels: point at them then
            self._active += [(r[0], r[4]) for r in rows if r[4] is not None]
            rows = [(*r[:3], bool(r[3]), None, *r[5:]) for r in rows]
        await self._con.copy_records_to_table(table, records=rows, columns=list(COLUMNS[table]))

    async def add_checkpoint(self, model: int, data: bytes) -> None:
        await self._con.execute("INSERT INTO checkpoints (model, data) VALUES ($1, $2)", model,
                                data)

    async def finish(self) -> None:
        await self._con.executemany("UPDATE channels SET active_model = $2 WHERE id = $1",
                                    self._active)
        for table in ("channels", "models", "messages"):
            await self._con.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE(MAX(id), 0) + 1, false) FROM {table}")


class ImportQueries:
    """Mixed into PgStore, whose plumbing it uses."""

    _tx: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]

    @asynccontextmanager
    async def importing(self) -> AsyncIterator[Importer]:
        """An Importer inside one transaction, committed at the end; StoreError when the
        target already holds any row (a migration fills an empty database only)."""
        async with self._tx() as con:
            for table in (*TABLES, "jobs"):
                if await con.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                    raise StoreError(f"the target database already has rows in {table}: "
                                     "migrate into an empty database")
            importer = Importer(con)
            yield importer
            await importer.finish()
