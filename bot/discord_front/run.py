"""Running the Discord front: open the core, connect, and shut down cleanly on a signal.

SIGTERM (`docker stop`, systemd) and Ctrl-C both close the bot first (no new commands), then
the core, which flushes pending corpus writes and stops its workers.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import discord

from bot.discord_front.client import build_bot
from bot.errors import SettingsError
from bot.settings import Settings
from bot.signals import stop_on_signals

log = logging.getLogger(__name__)


def run(settings: Settings, sync_only: bool = False) -> None:
    """Serve Discord with `settings.discord_token` until SIGTERM or Ctrl-C (or, `sync_only`,
    register the slash commands and stop). The start-up failures people meet first become a
    SettingsError naming the README step that fixes them."""
    if not settings.discord_token:
        raise SettingsError("DISCORD_TOKEN is not set")
    try:
        asyncio.run(sync(settings) if sync_only else serve(settings))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        log.warning("interrupted during shutdown")
    except discord.LoginFailure:
        raise SettingsError("Discord refused DISCORD_TOKEN: copy the bot's token again "
                            "(README, Discord step 1) into .env") from None
    except discord.PrivilegedIntentsRequired:
        raise SettingsError("Discord refused the Message Content intent: tick it under Bot > "
                            "Privileged Gateway Intents (README, Discord step 1)") from None
    except (aiohttp.ClientConnectionError, OSError) as err:
        raise SettingsError(f"cannot reach Discord ({type(err).__name__}): check the network "
                            "connection and try again") from None


async def sync(settings: Settings) -> None:
    """Log in, register the slash commands whatever was registered before, log out."""
    from bot.core import Core

    async with await Core.open(settings) as core:
        bot = build_bot(core, settings)
        bot.force_sync = True
        async with bot:
            await bot.login(settings.discord_token)  # runs setup_hook, which syncs
        log.info("slash commands registered")


async def serve(settings: Settings) -> None:
    """Open the core, run the bot until it closes, then close the core."""
    from bot.core import Core  # the heavy imports (torch) happen here, not at package import

    core = await Core.open(settings)
    try:
        bot = build_bot(core, settings)
        async with bot:
            stop = stop_on_signals()
            runner = asyncio.create_task(bot.start(settings.discord_token))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                log.info("signal received: closing the Discord connection")
            await bot.close()
            stopper.cancel()
            await asyncio.gather(runner, return_exceptions=stopper in done)
    finally:
        await core.close()
        log.info("core closed; bye")
