"""Network smoke test: real discord.py, unpatched, over loopback HTTP and WebSocket.

SimCord replaces discord.py's HTTP client and gateway; this test keeps them and points them at
a local fake of Discord instead, so the login, command sync, identify and send paths run for real.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.__main__ import main
from bot.discord_front import build_bot
from bot.settings import Settings
from tests.discord.fakecore import FakeCore
from tests.discord.fakediscord import CHANNEL_ID, FakeDiscord

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-t0ken-never-logged"


@pytest.fixture
async def fake_discord(monkeypatch: pytest.MonkeyPatch):
    server = FakeDiscord("!say hello @everyone")
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


async def test_python_m_bot_serves_discord_and_flushes_on_sigterm(tmp_path: Path,
                                                                  tiny_base: Path) -> None:
    """The real entry point: connects, answers, and on SIGTERM writes what it was holding."""
    server = FakeDiscord("!listen on", "words worth keeping", "!help")
    await server.start()
    env = {**os.environ, "FAKE_DISCORD_PORT": str(server.port), "DISCORD_TOKEN": SECRET,
           "BOT_DB": str(tmp_path / "bot.db"), "BOT_CHECKPOINTS": str(tmp_path / "channels"),
           "BASE_MODEL": str(tiny_base), "LISTEN_FLUSH_S": "3600", "SAMPLE_WORKERS": "1",
           "TORCH_THREADS": "1", "LOG_LEVEL": "INFO"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.discord.netrun", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        listening = await asyncio.wait_for(server.posted.get(), timeout=60)
        helped = await asyncio.wait_for(server.posted.get(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
        await server.stop()
    log = err.decode()
    assert proc.returncode == 0, log
    assert listening["content"].startswith("listening: from now on")
    assert helped["content"].startswith("commands:")
    assert "core closed" in log and SECRET not in log
    with sqlite3.connect(tmp_path / "bot.db") as conn:  # the buffered message was written
        texts = [r[0] for r in conn.execute("SELECT text FROM messages")]
    assert texts == ["words worth keeping"]


@pytest.mark.parametrize(("token", "port", "expected"), [
    ("refused-token", None, "Discord refused DISCORD_TOKEN"),
    ("any-token", 1, "cannot reach Discord"),  # nothing listens on port 1
])
def test_start_up_failures_are_one_line(tmp_path: Path, tiny_base: Path, monkeypatch, capsys,
                                        token, port, expected) -> None:
    """In-process through `main` (the SIGTERM test runs the process): `main` runs its own event
    loop in this thread, so the fake Discord serves from another."""
    server = FakeDiscord()
    loop = asyncio.new_event_loop()
    serving = threading.Thread(target=loop.run_forever, daemon=True)
    serving.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
    monkeypatch.setattr(Route, "BASE", f"http://127.0.0.1:{port or server.port}/api/v10")
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY",
                        yarl.URL(f"ws://127.0.0.1:{port or server.port}/"))
    for name, value in {"DISCORD_TOKEN": token, "BOT_DB": str(tmp_path / "bot.db"),
                        "BOT_CHECKPOINTS": str(tmp_path / "channels"),
                        "BASE_MODEL": str(tiny_base), "LOG_LEVEL": "WARNING"}.items():
        monkeypatch.setenv(name, value)
    try:
        status = main(["--env-file", os.devnull])
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        serving.join(timeout=10)
        loop.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1, lines
    assert expected in lines[0] and "Traceback" not in lines[0] and token not in lines[0]


async def test_slash_commands_are_registered_only_when_they_change(
        fake_discord: FakeDiscord) -> None:
    core = FakeCore()
    for start in range(3):
        bot = build_bot(core, Settings(discord_token="not-a-real-token"))
        bot.force_sync = start == 2  # `python -m bot --sync`
        async with bot:
            await bot.login("not-a-real-token")  # runs setup_hook, which syncs if needed
        assert fake_discord.sync_calls == [1, 1, 2][start], start


async def test_emptying_the_test_guild_clears_its_commands(fake_discord: FakeDiscord) -> None:
    core = FakeCore()
    for guild in ("4242", ""):
        bot = build_bot(core, Settings(discord_token="t", discord_test_guild=guild))
        async with bot:
            await bot.login("t")
    test_guild, cleared, global_ = fake_discord.synced_where
    assert test_guild[0] == "4242" and test_guild[1] > 5
    assert cleared == ("4242", 0)  # the test guild's copies are gone
    assert global_[0] == "global" and global_[1] == test_guild[1]
