"""Fixtures for the Discord front: a SimCord world around the bot, with a fake or a real core.

SimCord's pytest plugin runs the bot given by `simcord_bot` in `simcord_env`; a test module
picks the core by overriding `core` (`real_core` opens the real one on a temporary folder).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest
import simcord

from bot.core import Core
from bot.discord_front import build_bot
from bot.settings import Settings
from tests.bot.conftest import tiny_base  # noqa: F401  (a fixture: the same tiny base model)
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


def virtual_clock() -> float:
    """`time.monotonic` looked up at each call: inside the bot, SimCord's simulated clock."""
    return time.monotonic()


@pytest.fixture
def real_settings(tmp_path: Path, tiny_base: Path) -> Settings:  # noqa: F811
    """The real core on a temporary folder, a tiny base model, fast training, no cooldowns."""
    return Settings(db_path=tmp_path / "bot.db", checkpoint_dir=tmp_path / "channels",
                    plots_dir=tmp_path / "plots", base_model=str(tiny_base),
                    cooldown_user_rate=0, cooldown_channel_rate=0, train_max_steps=4,
                    train_eval_every=2, progress_edit_s=0.0, listen_flush_s=0.05,
                    train_val_max_chars=3000, discord_mod_role="Babble Mods")


@pytest.fixture
async def real_core(front_settings: Settings) -> AsyncIterator[Core]:
    """An open core over `front_settings`, its cooldowns on the simulated clock."""
    async with await Core.open(front_settings, clock=virtual_clock) as opened:
        yield opened
