"""The console front: a terminal chat with the core, one line per message.

Works typed (a prompt, replies printed below) and piped (`printf '!babble\\n' | python -m bot`):
at the end of input it waits for running trainings, then returns. Pictures are written as PNG
files under the plots folder and their paths printed. Edits (training progress) print as new
lines. `!learn < FILE` uploads a local text file, as an attachment would on Discord.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import re
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from bot.core import Core, error_reply
from bot.errors import UserError
from bot.messages import Attachment, Incoming, Reply
from bot.safety import safe_text

log = logging.getLogger(__name__)

PLATFORM = "console"
_LEARN_FILE = re.compile(r"^\s*(\S+learn)\s*<\s*(.+?)\s*$")


def read_upload(typed: str, max_bytes: int) -> Attachment:
    """The file named after `!learn <` as an upload, or UserError saying why it cannot be one.

    Only a regular file of at most `max_bytes` bytes is read (a device such as /dev/zero or a
    fifo would never end, or block the console); at most `max_bytes` + 1 bytes are read, so a
    file that grows meanwhile is refused too."""
    if "\x00" in typed:
        raise UserError("a file name cannot contain a NUL character")
    try:
        path = Path(typed).expanduser()
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path} is not a regular file; !learn reads text files only")
        too_big = UserError(f"{path.name!r} is over the upload limit of {max_bytes:,} bytes")
        if info.st_size > max_bytes:
            raise too_big
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as err:
        raise UserError(f"cannot read {typed}: {err.strerror or err}") from None
    except RuntimeError as err:  # `~nosuchuser/...`: no such home folder
        raise UserError(f"cannot read {typed}: {err}") from None
    if len(data) > max_bytes:
        raise too_big
    return Attachment(path.name, data)


def _stdin_lines() -> AsyncIterator[str]:
    """Lines of standard input, read on a thread of their own (never the default executor)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="console-stdin", daemon=True).start()

    async def lines() -> AsyncIterator[str]:
        while (line := await queue.get()) is not None:
            yield line

    return lines()


class _Printed:
    """A reply printed on the console; an edit prints the new text below."""

    def __init__(self, front: ConsoleFront, text: str) -> None:
        self._front, self._last = front, text

    async def edit(self, reply: Reply) -> None:
        if reply.text != self._last or reply.files:
            self._last = reply.text
            self._front.show(reply)


class ConsoleFront:
    """Reads lines, hands them to the core as messages of one local moderator, prints replies."""

    def __init__(self, core: Core, channel: str = "console", out: TextIO | None = None,
                 plots_dir: Path | None = None) -> None:
        self.core = core
        self.channel = channel
        self.out = out or sys.stdout
        self.plots_dir = plots_dir or core.settings.plots_dir
        self.user = getpass.getuser()
        self._files = 0

    @property
    def max_chars(self) -> int:
        """The longest reply the core sends here: REPLY_MAX_CHARS."""
        return self.core.settings.reply_max_chars

    async def send(self, reply: Reply) -> _Printed:
        """The Responder of every console message: print the reply."""
        self.show(reply)
        return _Printed(self, reply.text)

    def show(self, reply: Reply) -> None:
        """Print a reply's text (code fences dropped) and write its pictures to files."""
        text = "\n".join(line for line in reply.text.splitlines() if line.strip() != "```")
        if text:
            print(text, file=self.out, flush=True)
        for f in reply.files:
            self.plots_dir.mkdir(parents=True, exist_ok=True)
            self._files += 1
            path = self.plots_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{self._files}-{f.filename}"
            path.write_bytes(f.data)
            print(f"[picture: {path}]", file=self.out, flush=True)

    def message(self, text: str) -> Incoming:
        """The Incoming for one typed line (`!learn < FILE` attaches the file)."""
        attachments: tuple[Attachment, ...] = ()
        match = _LEARN_FILE.match(text)
        if match and match.group(1) == self.core.settings.command_prefix + "learn":
            attachments = (read_upload(match.group(2),
                                       self.core.settings.max_attachment_bytes),)
            text = match.group(1)
        return Incoming(PLATFORM, self.channel, f"console:{self.user}", self.user, text,
                        may_moderate=True, attachments=attachments)

    async def run(self, lines: AsyncIterator[str] | None = None) -> None:
        """Serve until the input ends, then wait for running trainings to report."""
        interactive = lines is None and sys.stdin.isatty()
        lines = lines if lines is not None else _stdin_lines()
        if interactive:
            print(f"babble console, channel {self.channel!r}: type !help, Ctrl-D to quit",
                  file=self.out, flush=True)
        while True:
            if interactive:
                print("> ", end="", file=self.out, flush=True)
            line = await anext(lines, None)
            if line is None:
                break
            await self._answer(line)
        await self.core.wait_trainings()

    async def _answer(self, line: str) -> None:
        """Answer one line; an error never ends the console (the next line is answered)."""
        try:
            await self.core.handle(self.message(line), self)
        except Exception as err:  # a bug is logged, and answered like the core answers one
            if not isinstance(err, UserError):
                log.exception("console line %r failed", line[:80])
            self.show(Reply(safe_text(error_reply(err).text, self.core.settings.reply_max_chars)))
