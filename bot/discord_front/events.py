"""Gateway events to the core: messages (commands and listened text), edits and deletes.

Raw events are used for edits and deletes so that messages sent before the bot started (not
in its cache) are still updated or removed from the corpus.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.discord_front.convert import (
    PLATFORM,
    corpus_channel_id,
    incoming,
    read_attachments,
    skipped_text,
)
from bot.discord_front.errors import report
from bot.discord_front.importer import import_history
from bot.discord_front.render import ChannelResponder
from bot.messages import Reply, Responder
from bot.parsing import split_command

if TYPE_CHECKING:
    from bot.discord_front.client import BabbleBot

log = logging.getLogger(__name__)

IMPORT_DEFAULT = 1000  # messages read by a bare !import
IMPORT_MAX = 10_000  # the most one !import may read
IMPORT_USAGE = "import [N]"  # in the core's help, which every front shares
IMPORT_HELP = (f"moderators: read this channel's last N messages and its threads (default "
               f"{IMPORT_DEFAULT:,}, at most {IMPORT_MAX:,}) into its corpus; running it again "
               "adds only what is missing")
_ORDINARY = (discord.MessageType.default, discord.MessageType.reply)


def addressed(text: str, bot_id: int, prefix: str) -> str | None:
    """A message that starts by mentioning the bot, as the command it asks for:
    `@babble prob To be` is `!prob To be`, a bare `@babble` is `!babble`. None otherwise."""
    m = re.match(rf"<@!?{bot_id}>\s*", text)
    if m is None:
        return None
    rest = text[m.end():].strip().removeprefix(prefix)
    return prefix + (rest or "babble")


def import_limit(args: str) -> int:
    """N of `!import [N]`, within 1..IMPORT_MAX; raises ValueError for anything else."""
    if not args:
        return IMPORT_DEFAULT
    n = int(args.split()[0])
    if not 1 <= n <= IMPORT_MAX:
        raise ValueError(n)
    return n


class MessagesCog(commands.Cog):
    """Every message to the core, plus `!import`, which needs Discord's history."""

    def __init__(self, bot: BabbleBot) -> None:
        self.bot = bot
        self.importing: set[int] = set()  # channel ids with an import running
        bot.core.add_help(IMPORT_USAGE, IMPORT_HELP)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Hand a human's message to the core (it tells commands from ordinary text)."""
        if message.author.bot or message.type not in _ORDINARY:
            return  # other bots, webhooks, this bot itself, joins and pins
        responder = ChannelResponder(message)
        try:
            await self._dispatch(message, responder)
        except Exception as error:
            await report(error, responder, f"message {message.id}")

    async def _dispatch(self, message: discord.Message, responder: Responder) -> None:
        settings = self.bot.settings
        me = self.bot.user
        text = (addressed(message.content, me.id, settings.command_prefix) if me else None) \
            or message.content
        command = split_command(text, settings.command_prefix)
        admit = self.bot.core.admit  # the front's own answers count against cooldowns too
        if command is not None and command[0] == "import":
            if await admit(incoming(message, settings), responder):
                await self.run_import(message, command[1], responder)
            return
        attachments = ()
        if command is not None and command[0] == "learn" and message.attachments:
            attachments, refused = await read_attachments(
                message.attachments, settings.max_attachment_bytes
            )
            if refused:
                if not attachments and not command[1]:  # nothing left for the core to answer
                    if await admit(incoming(message, settings), responder):
                        await responder.send(Reply(skipped_text(refused,
                                                                settings.reply_max_chars)))
                    return
                await responder.send(Reply(skipped_text(refused, settings.reply_max_chars)))
        msg = incoming(message, settings, text=text, attachments=attachments)
        await self.bot.core.handle(msg, responder)

    async def run_import(self, message: discord.Message, args: str, responder: Responder) -> None:
        """`!import [N]`: moderators backfill this channel's corpus from its history."""
        msg = incoming(message, self.bot.settings)
        channel = message.channel
        if isinstance(channel, discord.Thread) and channel.parent is not None:
            channel = channel.parent
        await self.start_import(msg.may_moderate, channel, args, responder)

    async def start_import(
        self, allowed: bool, channel: object, args: str, responder: Responder
    ) -> None:
        """Checks shared by `!import` and `/import`, then the import itself."""
        if not allowed:
            await responder.send(Reply("Only moderators may import the channel's history.",
                                       private=True))
            return
        if not isinstance(channel, discord.abc.GuildChannel):
            await responder.send(Reply("Import works in server channels only.", private=True))
            return
        if self.bot.settings.discord_slash_only:  # history would come without its text
            await responder.send(Reply("Import needs the Message Content intent, which this "
                                       "bot runs without (DISCORD_SLASH_ONLY).", private=True))
            return
        try:
            limit = import_limit(args)
        except ValueError:
            await responder.send(Reply(f"Usage: !import [N], N from 1 to {IMPORT_MAX}."))
            return
        if channel.id in self.importing:
            await responder.send(Reply("An import is already running in this channel."))
            return
        self.importing.add(channel.id)
        try:
            progress = await responder.send(Reply(f"Importing up to {limit} messages…"))
            await import_history(self.bot.core, self.bot.settings, channel, limit, progress)
        finally:
            self.importing.discard(channel.id)

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        """The bot left or was removed: the server's data goes after the grace period."""
        await self.bot.core.schedule_removal(PLATFORM, [str(c.id) for c in guild.channels])

    @commands.Cog.listener()
    async def on_guild_join(self, guild: discord.Guild) -> None:
        """Back within the grace period: the server keeps its data."""
        await self.bot.core.cancel_removal(PLATFORM, [str(c.id) for c in guild.channels])

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        await self.bot.core.schedule_removal(PLATFORM, [str(channel.id)])

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edited message replaces its stored text (if it was stored)."""
        if "content" not in payload.data or payload.message.author.bot:
            return  # embed unfurls and other updates without new text
        channel_id = await corpus_channel_id(self.bot, payload.channel_id)
        changed = await self.bot.core.message_edited(
            PLATFORM, str(channel_id), str(payload.message_id), payload.data["content"]
        )
        log.debug("edit of %s reached the corpus: %s", payload.message_id, changed)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A deleted message leaves the corpus, cached or not."""
        await self._deleted(payload.channel_id, [payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        """A bulk delete (moderator purge) removes every message in it."""
        await self._deleted(payload.channel_id, sorted(payload.message_ids))

    async def _deleted(self, channel_id: int, message_ids: list[int]) -> None:
        key = str(await corpus_channel_id(self.bot, channel_id))
        removed = 0
        for message_id in message_ids:
            removed += await self.bot.core.message_deleted(PLATFORM, key, str(message_id))
        log.debug("deleted %d of %d messages from channel %s", removed, len(message_ids), key)
