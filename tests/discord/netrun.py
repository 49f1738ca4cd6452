"""`python -m bot` pointed at the loopback fake Discord whose port is in FAKE_DISCORD_PORT.

Run as `python -m tests.discord.netrun` by the network tests; settings come from the environment.
"""

from __future__ import annotations

import os
import sys

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.__main__ import main


def run() -> int:
    """Patch discord.py's two base addresses, then start the bot as `python -m bot` does."""
    port = os.environ["FAKE_DISCORD_PORT"]
    Route.BASE = f"http://127.0.0.1:{port}/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{port}/")
    return main(["--env-file", os.devnull])


if __name__ == "__main__":
    sys.exit(run())
