"""Fixtures for the Discord front: a SimCord world around the bot, with a fake or a real core.

SimCord's pytest plugin runs the bot given by `simcord_bot` in `simcord_env`; a test module
picks the core by overriding `core`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord
import pytest
import simcord
from fakecore import FakeCore

from bot.discord_front import build_bot
from bot.settings import Settings


@dataclass
class World:
    """A running SimCord env with one guild, a #general channel and a plain member."""

    env: simcord.Env
    guild: simcord.GuildHandle
    general: simcord.ChannelHandle
    alice: simcord.MemberActor

    def stored(self, message: discord.Message) -> Any:
        """The backend's record of a message (pings, attachments as Discord saw them)."""
        return self.env.backend.messages[message.channel.id][message.id]

    def bot_replies(self, channel: simcord.ChannelHandle | None = None) -> list[discord.Message]:
        """The bot's messages in a channel, oldest first."""
        channel = channel or self.general
        bot_id = self.env.bot.user.id
        return [m for m in channel.history() if m.author.id == bot_id]

    def member(self, name: str, *roles: simcord.RoleHandle) -> simcord.MemberActor:
        """A new member of the guild."""
        return self.guild.add_member(self.env.create_user(name), roles=list(roles))


async def make_world(env: simcord.Env) -> World:
    guild = env.create_guild("Test Guild")
    general = guild.create_text_channel("general")
    alice = guild.add_member(env.create_user("alice"))
    await env.settle()
    return World(env, guild, general, alice)


@pytest.fixture
def front_settings() -> Settings:
    return Settings(discord_mod_role="Babble Mods")


@pytest.fixture
def core(front_settings: Settings) -> Any:
    return FakeCore()


@pytest.fixture
def simcord_bot(core: Any, front_settings: Settings) -> discord.Client:
    return build_bot(core, front_settings)


@pytest.fixture
async def world(simcord_env: simcord.Env) -> World:
    return await make_world(simcord_env)
