"""Each channel's training text: what goes in, the caps, batched writes, deletions and edits.

Listened messages are buffered and written in batches (every `listen_flush_s` seconds, or at
`listen_batch` messages, and always on close); everything else is written at once. Reads that
must see every message (`!corpus`, `!train`, `!forget`) flush first.

Someone who asked to be forgotten stays forgotten: their opt-out (per channel, or everywhere
on a platform) is kept in the database and in memory, and listening and imports store nothing
of theirs until they opt in again. An erasure ends with the WAL emptied, so the text leaves
every file; one that fails (a full disk) is queued and retried until it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from pathlib import PurePath
from typing import Any

from bot.errors import StoreError, UserError
from bot.messages import Attachment, Incoming
from bot.settings import Settings
from bot.store import EVERYWHERE, NewMessage, Store

log = logging.getLogger(__name__)
ERASE_RETRY_S = 30.0  # between retries of an erasure the database refused


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Cut text into non-empty lines of at most `max_chars` characters (long lines are split)."""
    out = []
    for line in text.splitlines():
        if line.strip():
            out += [line[i:i + max_chars] for i in range(0, len(line), max_chars)]
    return out


def decode_text_file(att: Attachment, max_bytes: int) -> str:
    """The text of an uploaded `.txt` file, or UserError saying clearly what is wrong with it."""
    name = PurePath(att.filename).name
    if PurePath(name).suffix.lower() != ".txt":
        raise UserError(f"only .txt files can be learned; {name!r} is not one")
    if len(att.data) > max_bytes:
        raise UserError(f"{name!r} is {len(att.data):,} bytes; the limit is {max_bytes:,}")
    if b"\x00" in att.data:
        raise UserError(f"{name!r} does not look like text (it contains NUL bytes)")
    try:
        return att.data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{name!r} is not UTF-8 text (bad byte at offset {err.start}); "
                        "save it as UTF-8 and upload it again") from None


class Corpus:
    """Writes and removes corpus text through the store, within the configured caps."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._pending: dict[int, list[NewMessage]] = {}  # channel row id -> buffered messages
        self._kick = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one flush at a time
        self.full: set[int] = set()  # channels whose corpus hit the cap while listening
        self._optouts: set[tuple[str, str, str]] = set()  # (platform, scope, author id)
        self.erasures: list[Callable[[], Awaitable[object]]] = []  # failed, to retry in order
        self.retry_s = ERASE_RETRY_S
        self._wal_pending = False  # deleted or edited text may still be in the WAL
        self._retrier: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the opt-outs; start the background task that writes buffered messages."""
        self._optouts = await self._store.optouts()
        self._flusher = asyncio.create_task(self._flush_loop(), name="corpus-flush")

    async def close(self) -> None:
        """Stop the background tasks and write everything still buffered."""
        for task in (self._flusher, self._retrier):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.flush()
        await self._empty_wal()

    def opted_out(self, platform: str, channel_key: str, author_id: str) -> bool:
        """Whether this author asked that nothing of theirs be stored in this channel."""
        return (platform, channel_key, author_id) in self._optouts \
            or (platform, EVERYWHERE, author_id) in self._optouts

    async def set_optout(self, platform: str, scope: str, author_id: str, out: bool) -> bool:
        """Record or lift an opt-out (scope: a channel key or EVERYWHERE); whether it changed.
        In memory at once, so a failed write (a full disk) still stores nothing new of theirs."""
        key = (platform, scope, author_id)
        changed = (key in self._optouts) != out
        if out:
            self._optouts.add(key)
        else:
            self._optouts.discard(key)
        try:
            await self._store.set_optout(platform, scope, author_id, out)
        except (sqlite3.Error, StoreError):
            if not out:
                raise
            log.warning("opt-out of %s kept in memory only: the database refused it", platform)
        return changed
    @property
    def pending(self) -> int:
        """Messages buffered and not yet written."""
        return sum(map(len, self._pending.values()))

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self._settings.listen_flush_s)
            self._kick.clear()
            try:
                await self.flush()
                await self._empty_wal()
            except Exception:  # the database may be locked for a while: keep the buffer, retry
                log.exception("writing %d listened message(s) failed; will retry", self.pending)

    def listen(self, channel: int, msg: Incoming) -> bool:
        """Buffer an ordinary message for a listening channel; False if it is too long or its
        author opted out."""
        if self.opted_out(msg.platform, msg.channel_id, msg.author_id):
            return False
        if len(msg.text) > self._settings.max_message_chars:
            log.info("not storing a %d-character message (cap %d)", len(msg.text),
                     self._settings.max_message_chars)
            return False
        self._pending.setdefault(channel, []).append(NewMessage(
            msg.author_id, msg.author_name, msg.text, "listen", msg.message_id))
        if self.pending >= self._settings.listen_batch:
            self._kick.set()
        return True

    async def flush(self) -> int:
        """Write buffered messages (those over the corpus cap are dropped and logged)."""
        async with self._lock:
            written = 0
            while self._pending:
                channel = next(iter(self._pending))
                batch = self._pending.pop(channel)  # messages listened meanwhile start a new one
                try:
                    written += await self._write(channel, batch)
                except BaseException:
                    self._pending[channel] = batch + self._pending.get(channel, [])
                    raise
            return written

    async def _write(self, channel: int, batch: list[NewMessage]) -> int:
        room = await self._room(channel)
        fits, size = [], 0
        for m in batch:
            if size + len(m.text) <= room:
                fits.append(m)
                size += len(m.text)
        if len(fits) < len(batch):
            self.full.add(channel)
            log.warning("corpus of channel %d is full: dropped %d listened message(s)",
                        channel, len(batch) - len(fits))
        return await self._store.add_messages(channel, fits)

    async def _room(self, channel: int) -> int:
        """Characters the channel's corpus can still take."""
        stats = await self._store.corpus_stats(channel)
        return max(self._settings.max_corpus_chars - stats.chars, 0)

    async def _add_checked(self, channel: int, rows: list[NewMessage]) -> int:
        """Add rows all together, or none and a UserError when they would pass the cap."""
        await self.flush()
        size = sum(len(r.text) for r in rows)
        room = await self._room(channel)
        if size > room:
            cap = self._settings.max_corpus_chars
            raise UserError(f"this channel's corpus is full: it can take {room:,} more "
                            f"characters (cap {cap:,}) and this adds {size:,}. `!forget` frees "
                            "room; MAX_CORPUS_CHARS raises the cap")
        return await self._store.add_messages(channel, rows)

    async def learn(self, channel: int, msg: Incoming, text: str) -> int:
        """Add typed text (one message); the characters added."""
        cap = self._settings.max_message_chars
        if len(text) > cap:
            raise UserError(f"that text is {len(text):,} characters; one message can add at "
                            f"most {cap:,}. Upload a .txt file for more")
        rows = [NewMessage(msg.author_id, msg.author_name, text, "learn", msg.message_id)]
        await self._add_checked(channel, rows)
        return len(text)

    async def learn_file(self, channel: int, msg: Incoming, att: Attachment) -> tuple[int, int]:
        """Add an uploaded .txt file, one message per line: (lines added, characters added)."""
        text = decode_text_file(att, self._settings.max_attachment_bytes)
        lines = chunk_text(text, self._settings.max_message_chars)
        if not lines:
            raise UserError(f"{PurePath(att.filename).name!r} has no text in it")
        rows = [NewMessage(msg.author_id, msg.author_name, line, "file", msg.message_id, part)
                for part, line in enumerate(lines)]
        added = await self._add_checked(channel, rows)
        return added, sum(map(len, lines))

    async def import_messages(self, channel: int, msgs: Iterable[Incoming]) -> int:
        """Backfill messages (already-stored ids skipped); how many were added."""
        await self.flush()
        room = await self._room(channel)
        rows = []
        for m in msgs:
            if self.opted_out(m.platform, m.channel_id, m.author_id):
                continue
            if len(m.text) <= min(room, self._settings.max_message_chars):
                rows.append(NewMessage(m.author_id, m.author_name, m.text, "import",
                                       m.message_id))
                room -= len(m.text)
        return await self._store.add_messages(channel, rows)

    def buffered_channels(self, message_id: str) -> list[int]:
        """Channels with a buffered (not yet written) message of this platform id."""
        return [ch for ch, batch in self._pending.items()
                if any(m.platform_msg_id == message_id for m in batch)]

    def _unbuffer(self, channel: int, message_id: str) -> bool:
        batch = self._pending.get(channel, [])
        kept = [m for m in batch if m.platform_msg_id != message_id]
        if len(kept) == len(batch):
            return False
        self._pending[channel] = kept
        return True

    async def delete(self, channel: int, message_id: str, listened_only: bool = False) -> bool:
        """Remove a platform message from the corpus (buffered or stored; with
        `listened_only`, not what a `!learn` in that message taught)."""
        async with self._lock:  # not while a flush is writing it
            buffered = self._unbuffer(channel, message_id)
            stored = await self._store.delete_platform_message(channel, message_id,
                                                               listened_only) > 0
        if stored:
            self._wal_dirty()
        return stored or buffered

    async def edit(self, channel: int, message_id: str, text: str) -> bool:
        """Update an edited message's text (buffered or stored)."""
        async with self._lock:
            for i, m in enumerate(self._pending.get(channel, [])):
                if m.platform_msg_id == message_id:
                    self._pending[channel][i] = NewMessage(m.author_id, m.author_name, text,
                                                           m.source, message_id)
                    return True
            changed = await self._store.edit_platform_message(channel, message_id, text) > 0
        if changed:
            self._wal_dirty()  # the old text must not stay in the WAL
        return changed

    def _wal_dirty(self) -> None:
        """A platform deletion or edit left old text in the WAL: the writer task empties it at
        its next round (within LISTEN_FLUSH_S), once for a whole burst (a moderator's purge is
        hundreds of deletes)."""
        self._wal_pending = True

    async def _empty_wal(self) -> None:
        if not self._wal_pending:
            return
        self._wal_pending = False
        try:
            await self._store.truncate_wal()
        except (StoreError, sqlite3.Error):
            log.warning("the WAL could not be emptied now; retrying later")
            self._wal_pending = True

    async def forget_author(self, channel: int, author_id: str) -> int:
        """Remove everything one author gave a channel, out of every database file; the number
        of messages removed. StoreError when the database refused (the caller queues it)."""
        await self.flush()
        return await self._erase(lambda: self._store.forget_author(channel, author_id))

    async def forget_author_everywhere(self, platform: str, author_id: str) -> dict[int, int]:
        """Remove an author's messages from every channel of a platform: {channel: removed}."""
        await self.flush()
        return await self._erase(lambda: self._store.forget_author_everywhere(platform,
                                                                              author_id))

    async def _erase(self, deletion: Callable[[], Awaitable[Any]], tries: int = 20) -> Any:
        """Run a deletion, then empty the WAL. "Locked" (a query of the same connection still
        reading) is tried again for a moment; StoreError when the database still refuses
        either (a full disk): the text may still be in a file, and the caller queues it all."""
        for attempt in range(tries):
            try:
                done = await deletion()
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == tries - 1:
                    raise StoreError(f"the database refused the erasure: {err}") from err
                await asyncio.sleep(0.05)
            except sqlite3.Error as err:
                raise StoreError(f"the database refused the erasure: {err}") from err
        await self._store.truncate_wal()
        return done

    async def empty_wal_or_queue(self) -> None:
        """After an erasure the store did: empty the WAL now, or retry until it succeeds."""
        try:
            await self._store.truncate_wal()
        except StoreError:
            self.queue_erasure(self._store.truncate_wal)

    def queue_erasure(self, erase: Callable[[], Awaitable[object]]) -> None:
        """Retry an erasure that failed, every `retry_s` seconds until it succeeds. `erase`
        does all of it (rows, WAL, checkpoints) and raises StoreError when it fails again."""
        self.erasures.append(erase)
        if self._retrier is None or self._retrier.done():
            self._retrier = asyncio.create_task(self._retry_erasures(), name="erasure-retry")

    async def _retry_erasures(self) -> None:
        while self.erasures:
            await asyncio.sleep(self.retry_s)
            try:
                await self.erasures[0]()
            except Exception as err:  # a full disk, a full queue (Busy): retried, never dropped
                log.warning("a queued erasure failed again, retrying in %g s: %s",
                            self.retry_s, err)
                continue
            self.erasures.pop(0)
            log.info("a queued erasure succeeded")
