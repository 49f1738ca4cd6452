"""The Slack front over real connections on loopback: a rate-limited call waited out and
retried, a whole run over Socket Mode, and start-up with a token Slack refuses."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from slack_sdk.http_retry import builtin_async_handlers

from bot.__main__ import main
from bot.settings import ENV_NAMES, Settings
from bot.slack_front import SlackFront
from bot.slack_front.run import serve
from tests.slack.fakeslack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.slack.world import answers, deliver, message


async def test_a_rate_limited_call_is_retried_after_retry_after(
        front: SlackFront, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk waits Retry-After plus up to a second of jitter; the jitter is zero here
    monkeypatch.setattr(builtin_async_handlers, "random", SimpleNamespace(random=lambda: 0.0))
    fake.fail("chat.postMessage", "ratelimited", status=429, retry_after=0)
    await deliver(front, message("!babble --seed 4"))
    refused, retried = fake.called("chat.postMessage")
    assert not refused.ok and retried.ok and refused.args == retried.args
    assert [a.kind for a in answers(fake)] == ["public"]


async def test_a_whole_run_over_socket_mode(slack_settings: Settings, fake: FakeSlack,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stop = asyncio.Event()
    server = asyncio.create_task(serve(slack_settings, stop))
    await fake.wait_for(lambda: fake.called("socket"))
    body = message("!prob To be")
    await fake.send_envelope({"envelope_id": "env-1", "type": "events_api",
                              "accepts_response_payload": False, "retry_attempt": 0,
                              "payload": body})
    await fake.wait_for(lambda: fake.acks and fake.called("files.completeUploadExternal"))
    assert fake.acks == [{"envelope_id": "env-1"}]
    posted, picture = answers(fake)
    assert "'To be'" in posted.text and picture.text == "surprisal.png"
    stop.set()
    await asyncio.wait_for(server, 10)
    assert [c.method for c in fake.calls[:2]] == ["auth.test", "apps.connections.open"]
    assert BOT_TOKEN not in caplog.text and APP_TOKEN not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_stop_while_slack_refuses_the_socket_ends_the_run(
        slack_settings: Settings, fake: FakeSlack) -> None:
    fake.refuse_socket = True
    stop = asyncio.Event()
    server = asyncio.create_task(serve(slack_settings, stop))
    await fake.wait_for(lambda: fake.called("socket"))  # it would retry every 10 s
    stop.set()
    await asyncio.wait_for(server, 5)
    assert [a.kind for a in answers(fake)] == []


@pytest.fixture
def fake_in_thread() -> Iterator[FakeSlack]:
    """The fake on a loop of its own, for code that runs `asyncio.run` itself."""
    loop = asyncio.new_event_loop()
    fake = FakeSlack()
    ready = threading.Event()

    def serve_fake() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve_fake, daemon=True)
    thread.start()
    ready.wait(10)
    yield fake
    asyncio.run_coroutine_threadsafe(fake.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_a_refused_token_is_one_line_and_status_2(
        fake_in_thread: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    for name in ENV_NAMES:  # nothing from the machine's environment
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-revoked")
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", fake_in_thread.url)
    status = main(["--slack", "--env-file", str(tmp_path / "none.env"),
                   "--db", str(tmp_path / "bot.db")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines() == ["error: Slack refused SLACK_BOT_TOKEN (invalid_auth): copy the "
                                "Bot User OAuth Token again (docs/slack.md, step 3)"]
    assert [c.method for c in fake_in_thread.calls] == ["auth.test"]
    assert "xoxb-revoked" not in caplog.text
