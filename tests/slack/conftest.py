"""Fixtures for the Slack front: the fake Slack on loopback, and the real core and bolt app.

The front talks to the fake through the real slack_sdk client; the core runs on a temporary
folder with the tiny base model of the core's tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core import Core
from bot.settings import Settings
from bot.slack_front import SlackFront
from bot.slack_front.run import make_client
from tests.bot.conftest import tiny_base  # noqa: F401  (a fixture: the same tiny base model)
from tests.slack.fakeslack import APP_TOKEN, BOT_TOKEN, FakeSlack


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    yield slack
    await slack.close()


@pytest.fixture
def slack_settings(tmp_path: Path, tiny_base: Path, fake: FakeSlack) -> Settings:  # noqa: F811
    """The real core on a temporary folder, fast training, no cooldowns, the fake's URL."""
    return Settings(db_path=tmp_path / "bot.db", checkpoint_dir=tmp_path / "channels",
                    plots_dir=tmp_path / "plots", base_model=str(tiny_base),
                    cooldown_user_rate=0, cooldown_channel_rate=0, train_max_steps=4,
                    train_eval_every=2, progress_edit_s=0.0, listen_flush_s=0.05,
                    train_val_max_chars=3000, slack_bot_token=BOT_TOKEN,
                    slack_app_token=APP_TOKEN, slack_api_url=fake.url,
                    slack_moderator_group="babble-mods")


@pytest.fixture
async def core(slack_settings: Settings) -> AsyncIterator[Core]:
    async with await Core.open(slack_settings) as opened:
        yield opened


@pytest.fixture
def front(core: Core, slack_settings: Settings) -> SlackFront:
    return SlackFront(core, slack_settings, make_client(slack_settings))
