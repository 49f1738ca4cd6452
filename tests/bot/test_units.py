"""Settings, parsing, safety and cooldowns: the pure parts of the core."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cooldown import Cooldowns
from bot.errors import CooldownError, SettingsError, UserError
from bot.parsing import Option, choice, number, parse_options, split_command
from bot.safety import ZWSP, fit, neutralise_mentions, safe_text
from bot.settings import ENV_NAMES, Settings, env_example, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting_with_its_default() -> None:
    assert (ROOT / ".env.example").read_text() == env_example()
    names = {f for f in Settings.__dataclass_fields__} - {"db_url"}  # BOT_DB sets db_url too
    assert set(ENV_NAMES.values()) == names


def test_settings_from_environment() -> None:
    s = load_settings(environ={"SAMPLE_WORKERS": "3", "SHARD_IDS": "0, 2",
                               "BOT_DB": "/tmp/x.db", "TRAIN_MINUTES": "0.5"})
    assert (s.sample_workers, s.shard_ids, s.db_path, s.train_minutes) == \
        (3, (0, 2), Path("/tmp/x.db"), 0.5)
    assert load_settings(environ={}) == Settings()


@pytest.mark.parametrize("env, message", [
    ({"QUEUE_LIMIT": "many"}, "QUEUE_LIMIT must be an integer"),
    ({"MODEL_CACHE_MB": "x"}, "MODEL_CACHE_MB must be a number"),
    ({"SAMPLE_WORKERS": "0"}, "SAMPLE_WORKERS must be from 1 to 64, got 0"),
])
def test_bad_settings_are_named(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=env)


def test_token_never_shown() -> None:
    s = load_settings(environ={"DISCORD_TOKEN": "sekrit-token"})
    assert s.discord_token == "sekrit-token" and "sekrit" not in repr(s)
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"SHARD_COUNT": "sekrit"})
    assert "SHARD_COUNT" in str(err.value)


OPTS = (Option("temp", "T", number(0, 5), ""), Option("n", "K", number(1, 5, integer=True), ""),
        Option("model", "M", choice("rnn", "markov"), ""))


def test_options_anywhere_text_kept() -> None:
    assert parse_options("c", "To be --temp 0.5 or\tnot", OPTS) == ("To be or\tnot", {"temp": 0.5})
    assert parse_options("c", "--n=2 --model RNN hi", OPTS) == ("hi", {"n": 2, "model": "rnn"})
    assert parse_options("c", "a -- --temp 3", OPTS) == ("a --temp 3", {})
    assert parse_options("c", "line one\nline two", OPTS) == ("line one\nline two", {})


@pytest.mark.parametrize("args, message", [
    ("--bogus 1", "unknown option --bogus for !c; options: --temp T"),
    ("--temp", "--temp needs a value"),
    ("--temp hot", "bad value 'hot' for --temp: expected a number"),
    ("--temp 0", "above 0 up to 5"),
    ("--temp inf", "above 0 up to 5"),
    ("--n 2.5", "expected a whole number"),
    ("--n 99", "from 1 up to 5"),
    ("--model gpt", "expected one of rnn, markov"),
])
def test_bad_options_say_what_to_type(args: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("?", r"\?")):
        parse_options("c", args, OPTS)


def test_split_command() -> None:
    assert split_command("  !Babble --n 2", "!") == ("babble", "--n 2")
    assert split_command("!prob\nTwo lines", "!") == ("prob", "Two lines")
    for text in ("!", "! hi", "!!!", "!babble?", "hello", "", "!😀"):
        assert split_command(text, "!") is None


def test_mentions_neutralised_everywhere() -> None:
    text = "@everyone @here @Everyone <@123> <@!45> <@&67> <#89> <!channel> <!subteam^S1>"
    out = neutralise_mentions(text)
    for trigger in ("@everyone", "@here", "@Everyone", "<@", "<#", "<!"):
        assert trigger not in out
    assert out.replace(ZWSP, "") == text  # reads the same


def test_safe_text_fits_and_removes_controls() -> None:
    assert len(safe_text("x" * 5000, 2000)) == 2000
    assert safe_text("a\x00b\x07c\nd\te", 100) == "a\ufffdb\ufffdc\nd\te"
    clipped = fit("```\n" + "y" * 3000 + "\n```", 2000)
    assert len(clipped) <= 2000 and clipped.endswith("```") and clipped.count("```") == 2


def test_cooldowns_with_a_simulated_clock() -> None:
    now = [0.0]
    cd = Cooldowns(user_rate=2, user_per=10, channel_rate=3, channel_per=5, clock=lambda: now[0])
    cd.check("ch", "alice")
    cd.check("ch", "alice")
    with pytest.raises(CooldownError) as err:
        cd.check("ch", "alice")
    assert err.value.retry_after == pytest.approx(10.0)
    cd.check("ch", "bob")  # the channel allows three
    with pytest.raises(CooldownError, match="this channel"):
        cd.check("ch", "carol")
    now[0] = 10.0
    cd.check("ch", "alice")  # both windows slid past
    cd.check("other", "alice")  # per user means per user and channel


def test_zero_rate_turns_cooldowns_off() -> None:
    cd = Cooldowns(0, 1, 0, 1, clock=lambda: 0.0)
    for _ in range(100):
        cd.check("ch", "u")
