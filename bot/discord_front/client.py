"""The Discord bot: a thin `commands.AutoShardedBot` holding the core, a cog and slash commands.

Prefix commands and listened messages go through `MessagesCog` to `Core.handle`, which parses
them exactly as the console does; the slash commands (`slash.py`) turn typed options into the
same command text. The Bot itself only wires things up, syncs slash commands and routes errors to
`errors.report`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_front.convert import PLATFORM
from bot.errors import SettingsError
from bot.messages import FrontCore
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.discord_front.events import MessagesCog

log = logging.getLogger(__name__)
SYNC_KEY = "discord.slash_commands"  # front state: "<guild id or global>:<hash>" last synced


def intents(slash_only: bool = False) -> discord.Intents:
    """Exactly what the bot reads: guilds, messages in guilds and DMs, and their content
    (privileged: tick it in the portal). Slash-only: guilds alone (slash commands arrive as
    interactions, which need no intent)."""
    if slash_only:
        return discord.Intents(guilds=True)
    return discord.Intents(guilds=True, guild_messages=True, dm_messages=True,
                           message_content=True)


class BabbleBot(commands.AutoShardedBot):
    """The core, the settings, the message cog and the slash commands; nothing else.

    discord.py's own sharding: with SHARD_COUNT 0 it asks Discord how many shards the bot needs
    and runs them all here (one for a small bot); else it runs SHARD_IDS of SHARD_COUNT.
    """

    def __init__(self, core: FrontCore, settings: Settings, **options: Any) -> None:
        super().__init__(**options)
        self.core = core
        self.settings = settings
        self.messages_cog: MessagesCog | None = None
        self.force_sync = False  # `python -m bot --sync`: register even if nothing changed

    async def setup_hook(self) -> None:
        """Load the message cog and the slash commands, then sync the slash commands."""
        from bot.discord_front.events import MessagesCog
        from bot.discord_front.slash import slash_commands

        self.tree.on_error = self._on_tree_error  # type: ignore[method-assign]
        self.messages_cog = MessagesCog(self)
        await self.add_cog(self.messages_cog)
        for command in slash_commands(self):
            self.tree.add_command(command)
        await self.sync_commands()

    async def sync_commands(self) -> None:
        """Register slash commands (instantly in the test guild if set, else globally), only
        when they differ from what was registered last (a hash kept in the database), or when
        `force_sync`. A test guild left behind (DISCORD_TEST_GUILD emptied or changed) has its
        copies cleared. With several shard processes only the one running shard 0 syncs.
        """
        shard_ids = self.settings.shard_ids
        if shard_ids and 0 not in shard_ids:
            log.info("not syncing slash commands: shard 0 runs in another process")
            return
        target = self.settings.discord_test_guild or "global"
        digest = self.commands_digest()
        last = await self.core.front_state(SYNC_KEY)
        if last == f"{target}:{digest}" and not self.force_sync:
            log.info("slash commands unchanged since the last sync: not registering them")
            return
        old_target = last.split(":")[0] if last else ""
        if old_target not in ("", "global", target):
            old = discord.Object(id=int(old_target))
            self.tree.clear_commands(guild=old)
            await self.tree.sync(guild=old)
            log.info("cleared the slash commands of the former test guild %s", old_target)
        if target != "global":
            guild = discord.Object(id=int(target))
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d slash commands to test guild %s", len(synced), guild.id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d slash commands globally", len(synced))
        await self.core.set_front_state(SYNC_KEY, f"{target}:{digest}")

    def commands_digest(self) -> str:
        """A hash of the slash commands as Discord would receive them."""
        payload = sorted((c.to_dict(self.tree) for c in self.tree.get_commands()),
                         key=lambda c: c["name"])
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    async def on_message(self, message: discord.Message) -> None:
        """Nothing here: `MessagesCog` routes every message to the core."""

    async def on_ready(self) -> None:
        """Servers the bot is in keep their data, even if it was re-invited while offline."""
        for guild in self.guilds:
            await self.core.cancel_removal(PLATFORM, [str(c.id) for c in guild.channels])
        log.info("logged in as %s; shards %s of %s", self.user, self.shard_ids or "all",
                 self.shard_count)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """An event handler raised: log it (event handlers reply through `errors.report`)."""
        log.exception("error in event %s", event_method)

    async def _on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        from bot.discord_front.errors import report
        from bot.discord_front.render import InteractionResponder

        name = interaction.command.name if interaction.command else "?"
        await report(error, InteractionResponder(interaction), f"/{name}")


def build_bot(core: FrontCore, settings: Settings) -> BabbleBot:
    """The bot for these settings, not yet connected (tests hand it to SimCord)."""
    discord.VoiceClient.warn_nacl = False  # no voice here: no warning about voice libraries
    if hasattr(discord.VoiceClient, "warn_dave"):
        discord.VoiceClient.warn_dave = False
    options: dict[str, Any] = {
        "command_prefix": settings.command_prefix,
        "intents": intents(settings.discord_slash_only),
        "allowed_mentions": discord.AllowedMentions.none(),
        "help_command": None,
        "max_messages": 1000,
    }
    if settings.discord_test_guild and not settings.discord_test_guild.isdigit():
        raise SettingsError("DISCORD_TEST_GUILD must be a server id (digits)")
    if settings.shard_ids and not settings.shard_count:
        raise SettingsError("SHARD_IDS needs SHARD_COUNT (the total number of shards)")
    if any(not 0 <= i < settings.shard_count for i in settings.shard_ids):
        raise SettingsError(f"SHARD_IDS must lie in 0..{settings.shard_count - 1}")
    options["shard_count"] = settings.shard_count or None
    options["shard_ids"] = list(settings.shard_ids) or None
    return BabbleBot(core, settings, **options)
