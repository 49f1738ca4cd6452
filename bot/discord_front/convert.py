"""Discord objects to the core's `Incoming`: channel keys, moderator flag, attachments.

A thread shares its parent channel's corpus and model, so every thread message is keyed by the
parent channel's id. Moderators are members with Manage Messages or Manage Server in the channel,
or the role named in `DISCORD_MOD_ROLE` (its name or id).
"""

from __future__ import annotations

import logging

import discord

from bot.messages import Attachment, Incoming
from bot.safety import safe_text
from bot.settings import Settings

log = logging.getLogger(__name__)

PLATFORM = "discord"
TEXT_TYPES = ("text/",)
TEXT_SUFFIXES = (".txt",)


def corpus_channel(channel: object) -> int | None:
    """The id a channel's messages are stored under: a thread's parent, else the channel."""
    if isinstance(channel, discord.Thread):
        return channel.parent_id
    return getattr(channel, "id", None)


async def corpus_channel_id(client: discord.Client, channel_id: int) -> int:
    """Like `corpus_channel`, from an id that may belong to an uncached (archived) thread."""
    channel = client.get_channel(channel_id)
    if channel is None:
        try:
            channel = await client.fetch_channel(channel_id)
        except discord.HTTPException as error:
            log.debug("channel %s not fetchable (%s); keying by its own id", channel_id, error)
            return channel_id
    parent = corpus_channel(channel)
    return parent if parent is not None else channel_id


def may_moderate(author: discord.abc.User, channel: object, settings: Settings,
                 perms: discord.Permissions | None = None) -> bool:
    """Whether the author may run moderator commands in this channel. Nobody moderates in a DM
    (a stranger must not fill the training queue or store text there by listening). `perms`:
    the author's permissions when Discord sent them (a slash command's
    `interaction.permissions`; a channel that is not cached knows none)."""
    if not isinstance(author, discord.Member):
        return False
    permissions_for = getattr(channel, "permissions_for", None)
    if perms is None and permissions_for is not None:
        perms = permissions_for(author)
    if perms is not None and (perms.manage_messages or perms.manage_guild):
        return True
    role = settings.discord_mod_role.strip()
    return bool(role) and any(r.name == role or str(r.id) == role for r in author.roles)


def is_text_attachment(attachment: discord.Attachment) -> bool:
    """A `.txt` upload or one Discord labels as text."""
    content_type = attachment.content_type or ""
    return attachment.filename.lower().endswith(TEXT_SUFFIXES) or content_type.startswith(
        TEXT_TYPES
    )


async def read_attachments(
    attachments: list[discord.Attachment], max_bytes: int
) -> tuple[tuple[Attachment, ...], list[str]]:
    """Download the text attachments within the size cap; also say why others were skipped."""
    kept: list[Attachment] = []
    refused: list[str] = []
    for attachment in attachments:
        if not is_text_attachment(attachment):
            refused.append(f"{attachment.filename}: not a .txt file")
        elif attachment.size > max_bytes:
            refused.append(
                f"{attachment.filename}: {attachment.size / 1e6:.1f} MB is over the "
                f"{max_bytes / 1e6:.1f} MB limit"
            )
        else:
            kept.append(Attachment(attachment.filename, await attachment.read()))
    return tuple(kept), refused


def skipped_text(refused: list[str], limit: int) -> str:
    """The front's own reply naming refused uploads, made safe like every reply of the core: a
    file name may hold mentions, control characters or bidi overrides."""
    return safe_text("Skipped: " + "; ".join(refused), limit)


def incoming(
    message: discord.Message,
    settings: Settings,
    *,
    text: str | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> Incoming:
    """The core's view of a Discord message."""
    channel_id = corpus_channel(message.channel)
    return Incoming(
        platform=PLATFORM,
        channel_id=str(channel_id),
        author_id=str(message.author.id),
        author_name=message.author.display_name,
        text=message.content if text is None else text,
        message_id=str(message.id),
        author_is_bot=message.author.bot,
        may_moderate=may_moderate(message.author, message.channel, settings),
        attachments=attachments,
        shared_channel=message.guild is not None,  # servers run several bots on one prefix
    )
