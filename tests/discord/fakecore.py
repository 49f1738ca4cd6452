"""A stand-in core that records what the front hands it and answers scripted replies.

It lets the front's own duties (mention safety, clipping, files, errors) be tested with text the
real core would never produce (it sanitises mentions itself).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bot.messages import Incoming, Reply, ReplyFile, Responder

# How long a `-- slow` command takes: past the front's deferral, inside Discord's 15 minutes.
SLOW_S = 2.0


@dataclass
class FakeCore:
    """`!say TEXT` answers TEXT verbatim, `!long N` N characters, `!png` a PNG, `!boom` raises."""

    handled: list[Incoming] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)
    help: list[str] = field(default_factory=list)  # usages the front added to the core's help
    deleted: list[tuple[str, str]] = field(default_factory=list)
    edited: list[tuple[str, str, str]] = field(default_factory=list)
    imported: list[Incoming] = field(default_factory=list)
    removals: list[str] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)

    async def handle(self, msg: Incoming, responder: Responder) -> None:
        self.handled.append(msg)
        if msg.text.startswith("!"):
            name, _, args = msg.text[1:].partition(" ")
            await self.run_command(msg, name, args, responder)

    async def admit(self, msg: Incoming, responder: Responder) -> bool:
        return True

    def add_help(self, usage: str, text: str) -> None:
        self.help.append(usage)

    async def front_state(self, key: str) -> str | None:
        return self.state.get(key)

    async def set_front_state(self, key: str, value: str) -> None:
        self.state[key] = value

    async def schedule_removal(self, platform: str, channel_keys: list[str]) -> None:
        self.removals.extend(channel_keys)

    async def cancel_removal(self, platform: str, channel_keys: list[str]) -> None:
        self.removals[:] = [k for k in self.removals if k not in channel_keys]

    async def run_command(self, msg: Incoming, name: str, args: str,
                          responder: Responder) -> None:
        self.commands.append((name, args))
        if name == "say":
            await responder.send(Reply(args))
        elif name == "long":
            await responder.send(Reply("x" * int(args)))
        elif name == "png":
            png = ReplyFile("curve.png", b"\x89PNG\r\n\x1a\n" + b"x" * 64)
            sent = await responder.send(Reply("first", (png,)))
            await sent.edit(Reply("second", (png,)))
        elif name == "boom":
            raise RuntimeError("kaboom")
        elif args.endswith(("-- slow", "-- slow private")):  # e.g. /prob sentence:slow
            await asyncio.sleep(SLOW_S)
            await responder.send(Reply("late", private=args.endswith("private")))

    async def message_deleted(self, platform: str, channel_id: str, message_id: str) -> bool:
        self.deleted.append((channel_id, message_id))
        return True

    async def message_edited(self, platform: str, channel_id: str, message_id: str,
                             new_text: str) -> bool:
        self.edited.append((channel_id, message_id, new_text))
        return True

    async def import_messages(self, msgs: list[Incoming]) -> int:
        self.imported.extend(msgs)
        return len(msgs)
