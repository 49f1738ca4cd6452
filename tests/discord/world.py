"""A SimCord world for the Discord front's tests: one guild, #general, a member."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord
import simcord


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
