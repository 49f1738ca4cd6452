"""Fixtures for the Discord front: a SimCord world around the bot, with a fake or a real core.

SimCord's pytest plugin runs the bot given by `simcord_bot` in `simcord_env`; a test module
picks the core by overriding `core`.
"""

from __future__ import annotations

from typing import Any

import discord
import pytest
import simcord

from bot.discord_front import build_bot
from bot.settings import Settings
from tests.discord.fakecore import FakeCore
from tests.discord.world import World, make_world


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
