"""`!import [N]`: backfill a channel's corpus from its Discord history, threads included.

The budget of N messages is spent newest first on the channel, then on its threads (active,
then archived). Messages go to the core in batches as they are read, so an import that stops
half-way keeps what it stored; running it again stores only what is missing (the core skips
message ids it already has). One progress message is edited at most every `progress_edit_s`.
discord.py's HTTP client waits out Discord's rate limits on history pages and edits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import discord

from bot.discord_front.convert import incoming
from bot.messages import Incoming, Reply, Sent
from bot.settings import Settings

log = logging.getLogger(__name__)

BATCH = 100  # messages per core call; also Discord's page size for history
_ORDINARY = (discord.MessageType.default, discord.MessageType.reply)


class ImportCore(Protocol):
    """What the importer needs from the core."""

    async def import_messages(self, msgs: list[Incoming]) -> int: ...


@dataclass
class ImportStats:
    """How far an import got."""

    read: int = 0  # messages read from Discord
    stored: int = 0  # messages the core added to the corpus
    threads: int = 0  # threads visited
    done: bool = False

    def text(self, limit: int) -> str:
        """The progress line shown in the channel."""
        state = "Import finished" if self.done else "Importing"
        text = (f"{state}: read {self.read:,} of up to {limit:,} messages"
                f" ({self.threads:,} thread{'' if self.threads == 1 else 's'}),"
                f" {self.stored:,} new in the corpus.")
        if self.done:  # they never saw a listening notice: tell them how to leave
            text += (" The people who wrote them can remove theirs with `!forget me`, which "
                     "also keeps the bot from storing them again; `!privacy` says what is kept.")
        return text


def wanted(message: discord.Message) -> bool:
    """Human text: no bots, system messages or empty messages (the core skips commands)."""
    return not message.author.bot and message.type in _ORDINARY and bool(message.content.strip())


async def _threads(channel: discord.TextChannel | discord.ForumChannel) -> list[discord.Thread]:
    """The channel's threads: active ones from the cache, then the public archived ones."""
    threads = list(channel.threads)
    seen = {t.id for t in threads}
    try:
        async for thread in channel.archived_threads(limit=None):
            if thread.id not in seen:
                threads.append(thread)
    except discord.Forbidden:
        log.info("no access to archived threads of channel %s", channel.id)
    return threads


async def _messages(channel: discord.abc.GuildChannel, limit: int) -> AsyncIterator[
    tuple[discord.Message, bool]
]:
    """Up to `limit` messages, newest first: the channel's, then its threads' (flag True)."""
    left = limit
    if isinstance(channel, discord.abc.Messageable):
        async for message in channel.history(limit=left):
            left -= 1
            yield message, False
    if not isinstance(channel, discord.TextChannel | discord.ForumChannel):
        return
    for thread in await _threads(channel):
        if left <= 0:
            return
        yield_first = True
        async for message in thread.history(limit=left):
            left -= 1
            yield message, yield_first
            yield_first = False


async def import_history(
    core: ImportCore,
    settings: Settings,
    channel: discord.abc.GuildChannel,
    limit: int,
    progress: Sent,
) -> ImportStats:
    """Read up to `limit` messages of `channel` into its corpus, editing `progress` as it goes."""
    stats = ImportStats()
    batch: list[Incoming] = []
    last_edit = time.monotonic()

    async def flush() -> None:
        nonlocal last_edit
        if batch:
            stats.stored += await core.import_messages(list(batch))
            batch.clear()
        if time.monotonic() - last_edit >= settings.progress_edit_s:
            last_edit = time.monotonic()
            await progress.edit(Reply(stats.text(limit)))

    async for message, new_thread in _messages(channel, limit):
        stats.read += 1
        stats.threads += new_thread
        if wanted(message):
            batch.append(incoming(message, settings))
        if len(batch) >= BATCH or stats.read % BATCH == 0:
            await flush()
    await flush()
    stats.done = True
    await progress.edit(Reply(stats.text(limit)))
    log.info("import in channel %s: %s", channel.id, stats)
    return stats
