"""The Slack front's pieces: mentions that never ping, text as people see it, addressed
commands, the retry memory, settings and the choice of front."""

from __future__ import annotations

import argparse
import dataclasses
import html

import pytest

from bot.__main__ import choose_front, parse_args
from bot.core import Core
from bot.errors import SettingsError
from bot.safety import ZWSP, safe_text, slack_escape
from bot.settings import Settings, load_settings
from bot.slack_front import SlackFront
from bot.slack_front.app import SeenEvents
from bot.slack_front.convert import addressed, plain_text
from bot.slack_front.run import check_tokens, make_client, who_am_i
from tests.slack.fakeslack import FakeSlack
from tests.slack.world import answers, deliver, message, slash

PINGS = ["<!channel>", "<!here>", "<!everyone>", "<@U024BE7LH>", "<!subteam^SAZ94GDB8>",
         "<#C024BE7LR>", "<!subteam^S1|@team>", "<https://evil.example|your bank>", "@channel",
         "@here", "@everyone"]


@pytest.mark.parametrize("ping", PINGS)
def test_no_mention_survives_the_core_and_the_escaping(ping: str) -> None:
    wire = slack_escape(safe_text(f"hi {ping} there", 4000))
    assert "<" not in wire and ">" not in wire
    shown = html.unescape(wire)
    assert shown.replace(ZWSP, "") == f"hi {ping} there"  # reads the same
    if ping.startswith("@"):
        assert ping not in shown  # broken by a zero-width space


def test_slack_text_becomes_what_people_see() -> None:
    assert plain_text("a &lt;b&gt; &amp;amp; <@U1> <@U2|bob> <#C1|general> <!here> "
                      "<!subteam^S1|@mods> <https://x.org|site> <https://y.org>") == \
        "a <b> &amp; @U1 @bob #general @here @mods site https://y.org"


def test_a_command_addressed_to_the_bot() -> None:
    assert addressed("<@UBOT> prob To be", "UBOT", "!") == "!prob To be"
    assert addressed("  <@UBOT|babble>   !prob To be", "UBOT", "!") == "!prob To be"
    assert addressed("<@UBOT>", "UBOT", "!") == "!babble"
    assert addressed("hey <@UBOT> prob", "UBOT", "!") is None
    assert addressed("<@UOTHER> prob", "UBOT", "!") is None
    assert addressed("<@UBOT> prob", "", "!") is None


def test_seen_events_are_forgotten_after_their_time() -> None:
    now = [0.0]
    seen = SeenEvents(10.0, clock=lambda: now[0])
    assert seen.first("a") and not seen.first("a") and seen.first("b")
    now[0] = 10.5
    assert seen.first("a")


async def test_generated_text_never_pings_on_the_wire(front: SlackFront, fake: FakeSlack,
                                                      core: Core) -> None:
    await deliver(front, message("!continue <!channel> and <!here> &lt;!everyone&gt; "
                                 "<@U2> <!subteam^S1> --len 5 --seed 1"))
    await deliver(front, slash(fake, "/prob", "<!here> is @everyone"))
    sent = [c.args["text"] for c in fake.calls if c.method in ("chat.postMessage", "respond")]
    assert len(sent) == 2 and all("<" not in text and ">" not in text for text in sent)
    first = html.unescape(sent[0]).replace(ZWSP, "")
    assert first.startswith("@channel and @here <!everyone> @U2 @subteam")  # shown as written
    assert all(c.args["link_names"] is False and c.args["parse"] == "none"
               for c in fake.called("chat.postMessage"))
    assert [a.kind for a in answers(fake)] == ["public", "public", "files"]


def test_slack_settings_are_checked() -> None:
    assert load_settings(None, {"SLACK_REPLY_MAX_CHARS": "8000"}).slack_reply_max_chars == 8000
    with pytest.raises(SettingsError, match="SLACK_REPLY_MAX_CHARS must be from 100 to 8,000"):
        load_settings(None, {"SLACK_REPLY_MAX_CHARS": "40000"})
    with pytest.raises(SettingsError, match="BOT_FRONT must be auto, console, discord or slack"):
        load_settings(None, {"BOT_FRONT": "irc"})
    with pytest.raises(SettingsError, match="SLACK_API_URL must be an http"):
        load_settings(None, {"SLACK_API_URL": "slack.com/api"})
    secret = load_settings(None, {"SLACK_BOT_TOKEN": "xoxb-secret", "SLACK_APP_TOKEN": "xapp-s"})
    assert "xoxb-secret" not in repr(secret) and "xapp-s" not in repr(secret)


def flags(*argv: str) -> argparse.Namespace:
    return parse_args(list(argv))


def test_the_front_is_chosen_by_flag_setting_or_tokens() -> None:
    slack = Settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1")
    both = Settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1", discord_token="d")
    assert choose_front(flags(), slack) == "slack"
    assert choose_front(flags(), Settings(discord_token="d")) == "discord"
    assert choose_front(flags(), Settings()) == "console"
    assert choose_front(flags("--console"), slack) == "console"
    assert choose_front(flags(), Settings(front="discord", discord_token="d")) == "discord"
    assert choose_front(flags("--discord"), both) == "discord"
    with pytest.raises(SettingsError, match="choose with --discord or --slack"):
        choose_front(flags(), both)
    with pytest.raises(SettingsError, match="SLACK_BOT_TOKEN is set but SLACK_APP_TOKEN is not"):
        choose_front(flags(), Settings(slack_bot_token="xoxb-1"))


@pytest.mark.parametrize(("bot", "app", "message"), [
    ("", "xapp-1", "needs SLACK_BOT_TOKEN"),
    ("xapp-1", "xoxb-1", "SLACK_BOT_TOKEN must be the Bot User OAuth Token"),
    ("xoxb-1", "xoxp-1", "SLACK_APP_TOKEN must be an app-level token"),
])
def test_tokens_of_the_wrong_kind_are_refused(bot: str, app: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        check_tokens(Settings(slack_bot_token=bot, slack_app_token=app))
    assert "xoxb-1" not in str(caught.value) and "xapp-1" not in str(caught.value)


async def test_an_unreachable_slack_is_one_clear_line() -> None:
    client = make_client(Settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1",
                                  slack_api_url="http://127.0.0.1:9/api"))
    with pytest.raises(SettingsError, match=r"cannot reach Slack at http://127\.0\.0\.1:9/api/"):
        await who_am_i(client)


async def test_replies_are_cut_to_the_slack_limit(core: Core, slack_settings: Settings,
                                                  fake: FakeSlack) -> None:
    settings = dataclasses.replace(slack_settings, slack_reply_max_chars=120)
    assert settings.reply_max_chars != 120
    front = SlackFront(core, settings, make_client(settings))
    await deliver(front, message("!model"))  # the model's description is longer
    (answer,) = answers(fake)
    assert len(answer.text) == 120 and answer.text.endswith("…")
