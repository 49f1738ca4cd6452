"""Network smoke test: real discord.py, unpatched, over loopback HTTP and WebSocket.

SimCord replaces discord.py's HTTP client and gateway; this test keeps them and points them at
a local fake of Discord instead, so the login, command sync, identify and send paths run for real.
"""

from __future__ import annotations

import asyncio

import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.discord_front import build_bot
from bot.settings import Settings
from tests.discord.fakecore import FakeCore
from tests.discord.fakediscord import CHANNEL_ID, FakeDiscord


@pytest.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch):
    server = FakeDiscord(trigger="!say hello @everyone")
    await server.start()
    monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{server.port}/api/v10")
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY",
                        yarl.URL(f"ws://127.0.0.1:{server.port}/"))
    yield server
    await server.stop()


async def test_logs_in_and_answers_over_the_network(fake_discord: FakeDiscord) -> None:
    core = FakeCore()
    bot = build_bot(core, Settings(discord_token="not-a-real-token"))
    bot._connection.guild_ready_timeout = 0.05
    async with bot:
        runner = asyncio.create_task(bot.start("not-a-real-token"))
        try:
            body = await asyncio.wait_for(fake_discord.posted.get(), timeout=15)
        finally:
            await bot.close()
            await asyncio.wait_for(runner, timeout=10)
    assert body["content"] == "hello @everyone"
    assert body["allowed_mentions"]["parse"] == []
    assert body["message_reference"]["channel_id"] == int(CHANNEL_ID)
    assert {c["name"] for c in fake_discord.commands_synced} >= {"babble", "prob", "import"}
    assert core.handled[0].channel_id == CHANNEL_ID
    assert core.handled[0].may_moderate  # the guild owner
