"""Odd payloads and edges Slack really sends: an edited mention, a mention without a user, a file
download that is not the file, a moderator group Slack cannot be reached for, and answers still
under way at shutdown."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from bot.slack_front import SlackFront
from tests.slack.fakeslack import FakeSlack
from tests.slack.world import answers, deliver, event_body, mention, message, ts


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_edited_mention_does_not_run_its_command_again(
        front: SlackFront, fake: FakeSlack) -> None:
    # Slack sends an app_mention again, with `edited`, when a message that mentions the app is
    # edited (bolt-js#960): Discord runs a command once, on its first sending.
    stamp = ts()
    await deliver(front, mention("<@UBOT> babble --seed 1", ts=stamp))
    start = len(fake.calls)
    again = mention("<@UBOT> babble --seed 2", ts=stamp, edited={"user": "U1", "ts": ts()})
    await deliver(front, again)
    assert answers(fake, start) == []


async def test_a_mention_without_a_person_is_skipped_quietly(
        front: SlackFront, fake: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    body = mention("<@UBOT> babble")
    del body["event"]["user"]  # e.g. a workflow step or an app posting as itself
    await deliver(front, body)
    assert errors(caplog) == [] and answers(fake) == []


async def _redirect_to_sign_in(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "https://test.slack.com/?redir=x"},
                        text="<html>sign in</html>", content_type="text/html")


async def _sign_in_page(request: web.Request) -> web.Response:
    return web.Response(text="<!DOCTYPE html><html>Sign in to Slack</html>",
                        content_type="text/html")


@pytest.mark.parametrize("page", [_redirect_to_sign_in, _sign_in_page])
async def test_a_sign_in_page_instead_of_the_file_is_not_learned(
        front: SlackFront, fake: FakeSlack, page: object) -> None:
    fake.download_answer = page  # what Slack serves a token without files:read
    files = [{"name": "words.txt", "mimetype": "text/plain", "size": 28,
              "url_private_download": fake.file_url("words.txt")}]
    await deliver(front, message("!learn", subtype="file_share", files=files))
    (answer,) = answers(fake)
    assert "words.txt: the download failed" in answer.text
    assert "learned" not in answer.text


async def test_a_moderator_group_out_of_reach_means_no_rights_not_a_crash(
        front: SlackFront, fake: FakeSlack) -> None:
    fake.stall["users.info"] = fake.stall["usergroups.list"] = 1.0
    front.client.timeout = 0.1  # Slack does not answer in time
    assert await front.people.may_moderate("UMOD") is False


async def test_answers_still_under_way_at_shutdown_are_cancelled(front: SlackFront) -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    front.spawn(forever(), "test")
    await started.wait()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(front.drain(), 0.05)  # as `serve` gives up at shutdown
    assert front._tasks == set()  # cancelled and ended before the core closes


async def test_odd_payloads_are_skipped_or_answered_never_raise(
        front: SlackFront, fake: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    odd = [event_body({"type": "message", "channel": "C1", "ts": ts()}),  # no user, no text
           event_body({"type": "message", "user": "U1", "channel": "C1", "text": None,
                       "ts": ts()}),
           event_body({"type": "message", "subtype": "message_changed", "channel": "C1",
                       "ts": ts()}),  # no message inside
           event_body({"type": "message", "subtype": "huddle_thread", "user": "U1",
                       "channel": "C1", "text": "!babble", "ts": ts()}),
           message("!learn", subtype="file_share", files=[{"name": "x.txt"}]),  # no url
           message("x" * 200_000)]
    for body in odd:
        assert (await deliver(front, body)).status == 200
    assert errors(caplog) == []


async def test_slack_out_of_reach_when_listing_channels_does_not_stop_the_bot(
        front: SlackFront, fake: FakeSlack) -> None:
    # `serve` calls this right after connecting: a timeout here must not end the process.
    fake.stall["users.conversations"] = 1.0
    front.client.timeout = 0.1
    assert await front.keep_present("T1") == 0


async def test_no_call_of_any_kind_carries_a_raw_mention(front: SlackFront, fake: FakeSlack,
                                                         core: object) -> None:
    ping = "<!channel> &lt;!here&gt; <@U2> <!subteam^S1|@mods>"
    for body in (message(f"!chance {ping}", user="UADMIN"),  # a refusal that echoes, ephemeral
                 message(f"!prob {ping}", thread_ts=ts()),  # a thread, with a picture
                 message(f"!learn {ping}", user="UADMIN"), message("!export me", user="U1"),
                 message(f"!nonsense {ping}", channel="DU1")):  # a DM echoes unknown commands
        await deliver(front, body)
    kinds = {c.method for c in fake.calls if c.ok}
    assert {"chat.postEphemeral", "chat.postMessage", "files.completeUploadExternal"} <= kinds
    for call in fake.calls:
        for name in ("text", "initial_comment", "title"):
            assert "<" not in str(call.args.get(name, "")), (call.method, call.args)
