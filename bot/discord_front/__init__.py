"""The Discord front: a discord.py bot over the platform-neutral core (`bot.core`).

`run(settings)` connects with `DISCORD_TOKEN` and serves until SIGTERM or Ctrl-C;
`build_bot(core, settings)` builds the bot without connecting, for tests.
"""

from bot.discord_front.client import build_bot
from bot.discord_front.run import run

__all__ = ["build_bot", "run"]
