"""A recording front for tests: replies, edits and files, checked against the real core."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from bot.core import Core
from bot.messages import Attachment, Incoming, Reply

CORPUS = Path(__file__).resolve().parents[2] / "data" / "corpora"  # in the repository
SHAKESPEARE = CORPUS / "tinyshakespeare.txt"
JOHN = CORPUS / "john_kjv.txt"


def lines_of(path: Path, chars: int) -> list[str]:
    """Non-empty lines from the start of a file, about `chars` characters in all."""
    out, total = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(line)
            total += len(line)
            if total >= chars:
                break
    return out


@dataclass
class Posted:
    """One message the core sent, with every later edit."""

    reply: Reply
    edits: list[Reply] = field(default_factory=list)

    @property
    def last(self) -> Reply:
        """The message as it reads now."""
        return self.edits[-1] if self.edits else self.reply

    async def edit(self, reply: Reply) -> None:
        self.edits.append(reply)


@dataclass
class Recorder:
    """A Responder that keeps what was sent."""

    posted: list[Posted] = field(default_factory=list)

    async def send(self, reply: Reply) -> Posted:
        posted = Posted(reply)
        self.posted.append(posted)
        return posted

    @property
    def texts(self) -> list[str]:
        return [p.last.text for p in self.posted]


def incoming(text: str, channel: str = "c1", author: str = "u1", *, mod: bool = True,
             platform: str = "console", message_id: str | None = None, bot: bool = False,
             files: tuple[Attachment, ...] = ()) -> Incoming:
    """An Incoming message with sensible defaults (a moderator in channel c1)."""
    return Incoming(platform, channel, author, f"name-{author}", text, message_id, bot, mod,
                    files)


async def say(core: Core, text: str, **kw: object) -> Recorder:
    """Send one message through the core; the recorder holds what came back."""
    rec = Recorder()
    await core.handle(incoming(text, **kw), rec)  # type: ignore[arg-type]
    return rec


async def reply_of(core: Core, text: str, **kw: object) -> str:
    """The text of the single reply to a command."""
    rec = await say(core, text, **kw)
    assert len(rec.posted) == 1, rec.texts
    return rec.posted[0].reply.text


def rows(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Query the database directly with sqlite3 (not through the store)."""
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


async def wait_for(predicate, timeout: float = 30.0) -> None:
    """Poll until `predicate()` is true (a training reported, say)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.05)
