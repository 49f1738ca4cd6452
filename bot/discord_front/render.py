"""Rendering the core's replies on Discord: responders for messages and slash commands.

Every send and edit carries `AllowedMentions.none()` (the Bot has it too), text is clipped to
Discord's 2000-character limit, and each send builds new `discord.File` objects: a File is
backed by a stream that is spent after one upload.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from typing import Any

import discord

from bot.messages import Reply, ReplyFile

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000  # characters (code points), Discord's cap on message content
NO_MENTIONS = discord.AllowedMentions.none()
_ELLIPSIS = "…"


def clip(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Fit text into one Discord message; never empty (Discord refuses an empty message)."""
    if not text.strip():
        return "(nothing to say)"
    if len(text) <= limit:
        return text
    return text[: limit - len(_ELLIPSIS)] + _ELLIPSIS


def files_of(files: Sequence[ReplyFile]) -> list[discord.File]:
    """Fresh `discord.File` objects for one upload."""
    return [discord.File(io.BytesIO(f.data), filename=f.filename) for f in files]


def message_kwargs(reply: Reply, *, text_limit: int = MESSAGE_LIMIT) -> dict[str, Any]:
    """Keyword arguments of `send()` for a reply."""
    kwargs: dict[str, Any] = {
        "content": clip(reply.text, text_limit),
        "allowed_mentions": NO_MENTIONS,
    }
    if reply.files:
        kwargs["files"] = files_of(reply.files)
    return kwargs


def edit_kwargs(reply: Reply) -> dict[str, Any]:
    """Keyword arguments of `edit()`: the reply is the message's whole new state."""
    return {
        "content": clip(reply.text),
        "attachments": files_of(reply.files),
        "allowed_mentions": NO_MENTIONS,
    }


class MessageSent:
    """A message the bot posted; the core edits it to show progress."""

    def __init__(self, message: discord.Message | discord.WebhookMessage) -> None:
        self.message = message

    async def edit(self, reply: Reply) -> None:
        """Replace the message's text and files."""
        await self.message.edit(**edit_kwargs(reply))


class ChannelResponder:
    """Replies to a prefix command or listened message, as a reply that pings nobody."""

    max_chars = MESSAGE_LIMIT  # the core fits replies to it

    def __init__(self, message: discord.Message) -> None:
        self.message = message

    async def send(self, reply: Reply) -> MessageSent:
        """Post a reply to the triggering message (or plainly, if that message is gone). A
        private reply with files (someone's own data) goes to the author's DMs instead."""
        if reply.private and reply.files and self.message.guild is not None:
            await self.message.author.send(**message_kwargs(reply))
            reply = Reply("sent to you in a direct message")
        reference = self.message.to_reference(fail_if_not_exists=False)
        sent = await self.message.channel.send(
            **message_kwargs(reply), reference=reference, mention_author=False
        )
        return MessageSent(sent)


class InteractionSent:
    """The answer to a slash command, editable while its token lives (15 minutes).

    After that Discord refuses edits through the interaction; the edit then goes out as a new
    channel message, which later edits keep using.
    """

    def __init__(
        self, message: discord.InteractionMessage | discord.WebhookMessage,
        channel: discord.abc.Messageable | None, private: bool = False,
    ) -> None:
        self.message: discord.Message | discord.WebhookMessage = message
        self.channel = channel
        self._detached = False
        self.private = private  # never falls back to a public message

    async def edit(self, reply: Reply) -> None:
        """Replace text and files; fall back to a channel message when the token expired."""
        try:
            await self.message.edit(**edit_kwargs(reply))
        except discord.HTTPException as error:
            if self._detached or self.private or self.channel is None \
                    or error.status not in (401, 404):
                raise
            log.info("interaction token expired (%s); editing a channel message instead", error)
            self.message = await self.channel.send(**message_kwargs(reply))
            self._detached = True


class InteractionResponder:
    """Answers a slash command. The first reply answers the interaction itself: privately
    (ephemeral) when the core marks it private, publicly otherwise. A command that has not
    answered within DEFER_AFTER_S is deferred publicly ("thinking…"), inside Discord's 3 s."""

    max_chars = MESSAGE_LIMIT

    def __init__(self, interaction: discord.Interaction) -> None:
        self.interaction = interaction
        self.answered = False
        self._lock = asyncio.Lock()  # a deferral and a first answer must not cross

    async def defer_after(self, seconds: float) -> None:
        """Defer publicly if nothing was sent within `seconds`."""
        await asyncio.sleep(seconds)
        async with self._lock:
            if not self.interaction.response.is_done():
                await self.interaction.response.defer(thinking=True)

    async def stop_deferral(self, deferral: asyncio.Task) -> None:
        """Cancel a pending `defer_after`; one already deferring finishes first (cancelled
        mid-call, Discord may have taken the deferral while discord.py never noted it)."""
        async with self._lock:
            deferral.cancel()

    async def send(self, reply: Reply) -> InteractionSent:
        """Answer the interaction, fill the deferred answer, or post a follow-up."""
        async with self._lock:
            return await self._send(reply)

    async def _send(self, reply: Reply) -> InteractionSent:
        channel = self.interaction.channel
        messageable = channel if isinstance(channel, discord.abc.Messageable) else None
        first, self.answered = not self.answered, True
        if not self.interaction.response.is_done():
            await self.interaction.response.send_message(**message_kwargs(reply),
                                                          ephemeral=reply.private)
            return InteractionSent(await self.interaction.original_response(), messageable,
                                   reply.private)
        if first and not reply.private:
            message = await self.interaction.edit_original_response(**edit_kwargs(reply))
            return InteractionSent(message, messageable)
        if first:  # private after a public "thinking…": that must end before a private follow-up
            await self.interaction.edit_original_response(content="(answered privately)")
        message = await self.interaction.followup.send(**message_kwargs(reply), wait=True,
                                                       ephemeral=reply.private)
        return InteractionSent(message, messageable, reply.private)
