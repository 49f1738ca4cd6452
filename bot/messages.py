"""The contract between the core and every front: what comes in, what goes out.

Fronts build an `Incoming` per platform message, hand the core a `Responder`, and render each
`Reply` (text, plus PNG files where the platform can show them). Names here are stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Attachment:
    """A file attached to an incoming message (e.g. a `.txt` for `!learn`)."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Incoming:
    """One message from a platform, normalised."""

    platform: str  # "console" | "discord" | "slack"
    channel_id: str
    author_id: str
    author_name: str
    text: str
    message_id: str | None = None
    author_is_bot: bool = False
    may_moderate: bool = False
    attachments: tuple[Attachment, ...] = ()
    # Other bots may answer the same prefix here (a server channel): a command that is not ours
    # gets no answer at all, not "unknown command".
    shared_channel: bool = False


@dataclass(frozen=True)
class ReplyFile:
    """A file to show with a reply; `data` is PNG bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Reply:
    """What the core answers: text already sanitised and fitted to the length limit, and files."""

    text: str
    files: tuple[ReplyFile, ...] = ()
    # For the asker alone (refusals, errors, cooldown notices, help): a front that can show a
    # message to one person does (Discord's ephemeral answers to slash commands); others post it.
    private: bool = False


class Sent(Protocol):
    """A message the front has sent, which the core may edit later (training progress).

    An edit may carry files (the final loss curve); a front that cannot attach files to an edit
    sends them in a new message instead.
    """

    async def edit(self, reply: Reply) -> None: ...


class Responder(Protocol):
    """Given by the front for one incoming message: sends replies into the same channel.

    A responder may state `max_chars`, its platform's longest message in characters (Discord
    2,000, Slack SLACK_REPLY_MAX_CHARS); the core fits every text to it (`reply_limit`).
    """

    async def send(self, reply: Reply) -> Sent: ...


def reply_limit(responder: Responder, default: int) -> int:
    """The most characters a reply through `responder` may have: its own `max_chars`, else
    `default` (REPLY_MAX_CHARS)."""
    return getattr(responder, "max_chars", None) or default


class FrontCore(Protocol):
    """What a front calls on the core (`bot.core.Core`); tests give fronts stand-ins."""

    async def handle(self, msg: Incoming, responder: Responder) -> None: ...

    async def run_command(
        self, msg: Incoming, name: str, args: str, responder: Responder
    ) -> None: ...

    async def admit(self, msg: Incoming, responder: Responder) -> bool: ...

    async def message_deleted(self, platform: str, channel_id: str, message_id: str) -> bool: ...

    async def message_edited(
        self, platform: str, channel_id: str, message_id: str, new_text: str
    ) -> bool: ...

    async def import_messages(self, msgs: list[Incoming]) -> int: ...

    def add_help(self, usage: str, text: str) -> None: ...

    async def schedule_removal(self, platform: str, channel_keys: list[str]) -> None: ...

    async def schedule_removal_under(self, platform: str, key_prefix: str) -> int: ...

    async def cancel_removal(self, platform: str, channel_keys: list[str]) -> None: ...

    async def front_state(self, key: str) -> str | None: ...

    async def set_front_state(self, key: str, value: str) -> None: ...
