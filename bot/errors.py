"""Typed errors of the bot core; each front turns them into a reply in one place (`Core`)."""

from __future__ import annotations


class BotError(Exception):
    """Base class of the bot's own errors."""


class UserError(BotError):
    """Bad input or a refused request; `str(err)` is the message shown to the user."""


class PermissionDenied(UserError):
    """A moderator-only command from someone who may not moderate."""


class Busy(BotError):
    """The worker queue is full; the user should try again in a moment."""

    def __init__(self, what: str = "the model queue") -> None:
        super().__init__(f"busy: {what} is full, try again in a moment")


class CooldownError(BotError):
    """A user or channel sent commands faster than the configured rate.

    `first` is False when the same user (or channel) was already told in this wait: the notice
    itself is sent once, later refusals are silent, so a flood gets one answer."""

    def __init__(self, scope: str, retry_after: float, first: bool = True) -> None:
        self.scope = scope
        self.retry_after = retry_after  # seconds
        self.first = first
        super().__init__(f"slow down: {scope} command limit is reached, try again in "
                         f"{retry_after:.1f} s")


class StoreError(BotError):
    """The database cannot be opened or used (locked, unreadable, newer schema)."""


class SettingsError(BotError):
    """A setting in the environment or `.env` has a bad value."""
