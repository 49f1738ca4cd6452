"""Cooldowns on SimCord's simulated clock, and shard processes that keep separate data."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest
import simcord

from bot.core import Core
from bot.discord_front import build_bot
from bot.settings import Settings
from tests.discord.conftest import virtual_clock
from tests.discord.world import World


@pytest.fixture
def front_settings(real_settings: Settings) -> Settings:
    return dataclasses.replace(real_settings, cooldown_user_rate=2, cooldown_user_per=10.0)


@pytest.fixture
def core(real_core: Core) -> Core:
    return real_core


@pytest.mark.simcord(shard_count=1)
async def test_cooldown_then_simulated_time_passes(world: World) -> None:
    await world.alice.send(world.general, "!corpus")
    result = await world.alice.slash(world.general, "corpus")  # both paths share the cooldown
    assert "messages" in result.response.content
    await world.alice.send(world.general, "!corpus")
    assert world.general.last_message.content.startswith("slow down")
    assert world.general.last_message.content.endswith("try again in 10.0 s")
    await world.env.advance_time(4)  # simulated: no real waiting
    await world.alice.send(world.general, "!corpus")  # one notice per wait: this one is silent
    last = world.general.last_message
    assert last.author.name == "alice" and last.content == "!corpus"
    bob = world.member("bob")
    await bob.send(world.general, "!corpus")  # per user: bob is not slowed by alice
    assert not world.general.last_message.content.startswith("slow down")

    await world.env.advance_time(6)
    await world.alice.send(world.general, "!corpus")
    assert not world.general.last_message.content.startswith("slow down")


async def test_two_shard_processes_keep_separate_data(real_settings: Settings,
                                                      tmp_path) -> None:
    """Each process runs one of two shards with its own database; a guild's data stays in one."""
    seen: dict[int, set[str]] = {}
    for shard in (0, 1):
        settings = dataclasses.replace(real_settings, db_path=tmp_path / f"shard{shard}.db",
                                       shard_count=2, shard_ids=(shard,))
        core = await Core.open(settings, clock=virtual_clock)
        async with core, simcord.run(build_bot(core, settings)) as env:
            for guild_shard in (0, 1):
                guild = env.create_guild(f"on shard {guild_shard}", shard_id=guild_shard)
                channel = guild.create_text_channel("general")
                alice = guild.add_member(env.create_user("alice"))
                await env.settle()
                await alice.send(channel, f"!learn said on shard {guild_shard}")
        with sqlite3.connect(settings.db_path) as conn:
            seen[shard] = {row[0] for row in conn.execute("SELECT text FROM messages")}
    assert seen == {0: {"said on shard 0"}, 1: {"said on shard 1"}}
