"""The Discord front's one error handler: typed errors become a short reply, the rest a log line.

The core turns its own errors (`bot.errors`) into replies; what reaches this module is what
escaped it or happened around it: Discord refusing a send, a bad slash option, a bug. A user
never sees a traceback.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.discord_front.render import MESSAGE_LIMIT
from bot.errors import BotError
from bot.messages import Reply, Responder
from bot.safety import safe_text

log = logging.getLogger(__name__)

INTERNAL = "Something went wrong on my side; it has been logged."


def unwrap(error: BaseException) -> BaseException:
    """The exception that actually happened, without discord.py's wrappers."""
    while isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    return error


def describe(error: BaseException) -> str | None:
    """What to tell the user about `error`, or None when no reply can or should be sent."""
    if isinstance(error, discord.Forbidden):
        return None  # a channel the bot cannot send in: replying would fail the same way
    if isinstance(error, BotError):
        return str(error)
    if isinstance(error, app_commands.TransformerError):
        return f"I could not read the value {error.value!r} of that option."
    if isinstance(error, app_commands.CheckFailure):
        return "You may not use that command here."
    if isinstance(error, discord.HTTPException) and error.status == 429:
        return "Discord is rate-limiting me; try again in a moment."
    return INTERNAL


async def report(error: BaseException, responder: Responder | None, where: str) -> None:
    """Log `error` and, where possible, answer the user in one short line."""
    error = unwrap(error)
    text = describe(error)
    if text is None:
        log.warning("%s: Discord refused (%s); not replying", where, error)
        return
    if text == INTERNAL:
        log.error("%s failed", where, exc_info=error)
    else:
        log.info("%s: %s", where, text)
    if responder is None:
        return
    try:
        await responder.send(Reply(safe_text(text, MESSAGE_LIMIT)))
    except discord.HTTPException as second:
        log.warning("%s: could not send the error reply either (%s)", where, second)
