"""The stop signal every entry point of the bot waits on."""

from __future__ import annotations

import asyncio
import signal


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets, on the running loop: `docker stop`, `systemctl
    stop` and Ctrl-C then shut down cleanly (unhandled, SIGTERM ends the process at once)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
