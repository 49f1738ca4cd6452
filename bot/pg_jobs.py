"""The training job queue's queries (PostgreSQL only): part of `bot.pg_store.PgStore`.

A job row goes queued -> running (a worker holds it under a lease it renews) -> done, failed or
cancelled. Workers take jobs with `FOR UPDATE SKIP LOCKED`, so two never take the same one; a
job whose lease ran out (its worker died) is taken again, at most MAX_TRIES times. A unique
index allows one queued or running job per channel across the deployment. A worker adopts a
model only in the transaction that finishes its job, after checking it still holds the job
and nobody asked to stop it: a `!forget` that set `cancel_by` first is never undone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import asyncpg

from bot.records import ModelRow

JOB_KEEP_S = 3600.0  # an ended job row is deleted this long after it ended (its follower read it)
MAX_TRIES = 3  # a job that took its worker down this often fails instead of taking another
ACTIVE = ("queued", "running")
_JOB_COLS = ("id, channel, state, minutes, started_by, cancel_by, worker, tries, progress, "
             "result, curve")


@dataclass(frozen=True)
class JobRow:
    """One training job as stored; `progress` is the last lm.Progress as a dict."""

    id: int
    channel: int
    state: str  # queued | running | done | failed | cancelled
    minutes: float
    started_by: str
    cancel_by: str | None  # who asked to stop it, or None
    worker: str | None
    tries: int
    progress: dict[str, Any] | None
    result: str | None  # the final text of the progress message
    curve: bytes | None  # the loss curve, PNG

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


@dataclass(frozen=True)
class NewVersion:
    """A trained model to adopt when its job finishes: its name, kind, metrics, file bytes."""

    path: str
    kind: str
    metrics: dict[str, Any]
    checkpoint: bytes


def _job(r: Any) -> JobRow:
    progress = None if r[8] is None else json.loads(r[8])
    return JobRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], progress, r[9],
                  None if r[10] is None else bytes(r[10]))


# (the final text, given the version adopted or None) -> the text of the finished job
Outcome = Callable[[ModelRow | None], str]


class JobQueries:
    """The job queue's SQL; mixed into PgStore, whose plumbing it uses."""

    # From PgStore.
    _tx: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]
    _one: Callable[..., Awaitable[Any]]
    _all: Callable[..., Awaitable[list[Any]]]
    _notify: Callable[..., Awaitable[None]]
    add_model: Callable[..., Awaitable[ModelRow]]
    prune_models: Callable[..., Awaitable[list[str]]]

    async def enqueue_job(self, channel: int, minutes: float,
                          started_by: str) -> tuple[JobRow, bool]:
        """Queue a training of a channel: (the job, True); or, when one is queued or running
        there already, (that job, False) and nothing is queued: one training per channel."""
        async with self._tx() as con:
            row = await con.fetchrow(
                f"INSERT INTO jobs (channel, minutes, started_by, created_at) VALUES ($1, $2, "
                f"$3, $4) ON CONFLICT DO NOTHING RETURNING {_JOB_COLS}", channel, minutes,
                started_by, time.time())
            if row is None:
                row = await con.fetchrow(f"SELECT {_JOB_COLS} FROM jobs WHERE channel = $1 AND "
                                         "state IN ('queued', 'running')", channel)
                if row is None:  # it finished between the two statements
                    raise asyncpg.SerializationError("a training finished meanwhile; try again")
                return _job(row), False
            await self._notify(con, "job", channel, job=row[0])
        return _job(row), True

    async def job(self, job_id: int) -> JobRow | None:
        row = await self._one(f"SELECT {_JOB_COLS} FROM jobs WHERE id = $1", job_id)
        return None if row is None else _job(row)

    async def channel_job(self, channel: int) -> JobRow | None:
        """The channel's queued or running job, if any."""
        row = await self._one(f"SELECT {_JOB_COLS} FROM jobs WHERE channel = $1 AND state IN "
                              "('queued', 'running')", channel)
        return None if row is None else _job(row)

    async def active_jobs(self) -> list[JobRow]:
        """Every queued or running job of the deployment."""
        return [_job(r) for r in await self._all(
            f"SELECT {_JOB_COLS} FROM jobs WHERE state IN ('queued', 'running') ORDER BY id")]

    async def cancel_job(self, channel: int, by: str, queued: bool = True) -> list[int]:
        """Ask the channel's running job (and, with `queued`, its queued one, which stops at
        once) to stop; the ids of the jobs asked. The first who asked is named."""
        async with self._tx() as con:
            return await self._cancel_jobs(con, channel, by, queued)

    async def _cancel_jobs(self, con: asyncpg.Connection, channel: int, by: str,
                           queued: bool) -> list[int]:
        """`cancel_job` within the caller's transaction."""
        stopped = [] if not queued else await con.fetch(
            "UPDATE jobs SET state = 'cancelled', cancel_by = COALESCE(cancel_by, $2), "
            "result = 'training cancelled by ' || COALESCE(cancel_by, $2) || ' before it "
            "started; the model is unchanged', finished_at = $3 WHERE channel = $1 AND "
            "state = 'queued' RETURNING id", channel, by, time.time())
        running = await con.fetch("UPDATE jobs SET cancel_by = COALESCE(cancel_by, $2) "
                                  "WHERE channel = $1 AND state = 'running' RETURNING id",
                                  channel, by)
        for r in (*stopped, *running):
            await self._notify(con, "job", channel, job=r[0])
        return [r[0] for r in (*stopped, *running)]

    async def take_job(self, worker: str, lease_s: float) -> JobRow | None:
        """Take the oldest job nobody holds (queued, or its worker's lease ran out); None
        when there is none. Jobs that cannot run any more are closed first."""
        await self.reap_jobs()
        async with self._tx() as con:
            row = await con.fetchrow(
                "UPDATE jobs SET state = 'running', worker = $1, tries = tries + 1, "
                "lease_until = clock_timestamp() + make_interval(secs => $2) WHERE id = ("
                "SELECT id FROM jobs WHERE cancel_by IS NULL AND tries < $3 AND (state = "
                "'queued' OR (state = 'running' AND lease_until < clock_timestamp())) "
                f"ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING {_JOB_COLS}",
                worker, lease_s, MAX_TRIES)
            if row is not None:
                await self._notify(con, "job", row[1], job=row[0])
        return None if row is None else _job(row)

    async def reap_jobs(self) -> int:
        """Close the jobs nobody will run: asked to stop and unheld, or whose workers died
        MAX_TRIES times. How many were closed."""
        async with self._tx() as con:
            rows = await con.fetch(
                "UPDATE jobs SET state = CASE WHEN cancel_by IS NOT NULL THEN 'cancelled' ELSE "
                "'failed' END, finished_at = $2, result = CASE WHEN cancel_by IS NOT NULL THEN "
                "'training cancelled by ' || cancel_by || '; the model is unchanged' ELSE "
                "'training failed: its worker stopped ' || tries || ' times; the model is "
                "unchanged' END WHERE (state = 'running' AND lease_until < clock_timestamp() "
                "AND (cancel_by IS NOT NULL OR tries >= $1)) OR (state = 'queued' AND "
                "tries >= $1) RETURNING id, channel", MAX_TRIES, time.time())
            for r in rows:
                await self._notify(con, "job", r[1], job=r[0])
            # Ended rows name who started them and keep a curve: gone once followers read them.
            await con.execute("DELETE FROM jobs WHERE state NOT IN ('queued', 'running') AND "
                              "finished_at < $1", time.time() - JOB_KEEP_S)
        return len(rows)

    async def heartbeat(self, job_id: int, worker: str, lease_s: float,
                        progress: dict[str, Any] | None = None) -> tuple[bool, str | None]:
        """Renew the lease (and record progress): (still held, who asked to stop or None)."""
        async with self._tx() as con:
            row = await con.fetchrow(
                "UPDATE jobs SET lease_until = clock_timestamp() + make_interval(secs => $3), "
                "progress = COALESCE($4, progress) WHERE id = $1 AND worker = $2 AND "
                "state = 'running' RETURNING channel, cancel_by", job_id, worker, lease_s,
                None if progress is None else json.dumps(progress))
            if row is not None and progress is not None:
                await self._notify(con, "job", row[0], job=job_id)
        return (False, None) if row is None else (True, row[1])

    async def release_job(self, job_id: int, worker: str) -> None:
        """A worker shutting down gives its job back: another worker takes it at once."""
        async with self._tx() as con:
            row = await con.fetchrow(
                "UPDATE jobs SET state = 'queued', worker = NULL, lease_until = NULL, "
                "tries = tries - 1 WHERE id = $1 AND worker = $2 AND state = 'running' "
                "RETURNING channel", job_id, worker)
            if row is not None:
                await self._notify(con, "job", row[0], job=job_id)

    async def finish_job(self, job: JobRow, worker: str, version: NewVersion | None,
                         keep: int, outcome: Outcome, curve: bytes | None = None,
                         state: str = "done") -> tuple[str, ModelRow | None] | None:
        """End a job this worker holds, adopting `version` (pruning to `keep` versions) unless
        someone asked to stop it: then nothing is adopted. Returns (final text, the version
        adopted or None); None when the job was no longer this worker's (nothing changed)."""
        async with self._tx() as con:
            row = await con.fetchrow("SELECT worker, state, cancel_by FROM jobs WHERE id = $1 "
                                     "FOR UPDATE", job.id)
            if row is None or row[0] != worker or row[1] != "running":
                return None
            adopted = None
            if row[2] is not None:
                state, text = "cancelled", (f"training cancelled by {row[2]}; the model is "
                                            "unchanged")
            else:
                if version is not None:
                    adopted = await self.add_model(job.channel, version.path, version.kind,
                                                   version.metrics, version.checkpoint, con)
                    await self.prune_models(job.channel, keep, con)
                text = outcome(adopted)
            await con.execute("UPDATE jobs SET state = $2, result = $3, curve = $4, "
                              "finished_at = $5, lease_until = NULL WHERE id = $1", job.id,
                              state, text, curve if state == "done" else None, time.time())
            await self._notify(con, "job", job.channel, job=job.id)
        return text, adopted
