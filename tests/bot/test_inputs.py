"""Hostile and mistaken input: huge !prob figures, floods, operators' settings, console uploads,
invisible characters, server paths and wording (the issue "Consent and integrity", 5-14)."""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot import replies
from bot.__main__ import check_db_path
from bot.console import ConsoleFront
from bot.cooldown import Cooldowns
from bot.core import Core
from bot.errors import CooldownError, SettingsError, StoreError
from bot.messages import Attachment
from bot.safety import hide_paths, safe_text
from bot.settings import RANGES, Settings, load_settings, settings_doc
from tests.bot.helpers import reply_of, say

ROOT = Path(__file__).resolve().parents[2]


# 5 and 14: !prob figures never overflow, and its columns never touch.

def _score(bits: float, chars: int) -> SimpleNamespace:
    per_char = (SimpleNamespace(char="😀", bits=bits / chars),)
    return SimpleNamespace(bits=bits, bits_per_char=bits / chars, per_char=per_char)


def test_prob_table_stays_in_log_space() -> None:
    # A gap of 3,000 bits: 2**3000 overflows a float; so would a perplexity of 2**1100.
    scores = {"uniform": _score(8000.0, 250), "mix": _score(5000.0, 250),
              "rnn": _score(1100.0, 1)}
    text = replies.prob_table("😀" * 250, scores, {})
    assert "2^3,900 times more likely than under mix" in text
    assert "2^1,100.0" in text  # the rnn's perplexity
    assert replies.power_of_two(math.inf, 2) == "2^inf"
    assert replies.power_of_two(3.0, 2) == "8.00"


def _table_rows(text: str) -> list[list[str]]:
    body = text.split("```")[1].strip().splitlines()
    return [line.split() for line in body[1:]]


@pytest.mark.parametrize("sentence", ["😀" * 250, "中文字" * 333, "Привет" * 333])
async def test_prob_of_long_wide_text_answers(core: Core, sentence: str) -> None:
    text = await reply_of(core, "!prob " + sentence)
    assert "verdict: most likely under" in text and "went wrong" not in text
    for row in _table_rows(text):
        assert len(row) == 4, row


def _assert_cells_apart(rows: list[list[str]]) -> None:
    for _, log_p, bpc, perplexity in rows:  # each cell one figure, apart from its neighbours
        assert re.fullmatch(r"-[\d,]+\.\d", log_p) and re.fullmatch(r"\d+\.\d{3}", bpc)
        assert re.fullmatch(r"[\d,]+\.\d\d|2\^[\d,]+\.\d", perplexity), perplexity


def test_prob_columns_never_touch() -> None:
    # The figures: 39.976 bits/char ran into its perplexity, "39.9761081075334343.56".
    scores = {"uniform": _score(168.0, 6), "rnn": _score(6 * 39.9761, 6),
              "mix": _score(6 * 19.93, 6)}
    rows = _table_rows(replies.prob_table("😀😀😀😀😀", scores, {}))
    assert rows[1][2:] == ["39.976", "2^40.0"] and rows[2][3] == "998,913.34"
    _assert_cells_apart(rows)


async def test_prob_columns_never_touch_in_a_reply(core: Core) -> None:
    rows = _table_rows(await reply_of(core, "!prob 😀😀😀😀😀"))
    assert [r[0] for r in rows] == ["uniform", "markov", "rnn", "mix"]
    _assert_cells_apart(rows)


# 14: plural agreement.

async def test_counts_agree_with_their_nouns(core: Core) -> None:
    assert "'a': 1 character + end of message" in await reply_of(core, "!prob a")
    learned = await reply_of(core, "!learn", files=(Attachment("one.txt", b"x"),))
    assert "1 character in 1 line from 'one.txt'" in learned
    assert "holds 1 message, 1 character" in learned
    corpus = await reply_of(core, "!corpus")
    assert "1 message, 1 character (cap" in corpus and "from 1 contributor" in corpus
    assert replies.count(2000, "line") == "2,000 lines"


# 7: every command counts; the notice comes once per wait.

@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[tuple[Core, list[float]]]:
    now = [1000.0]
    async with await Core.open(replace(settings, cooldown_user_rate=2, cooldown_user_per=30),
                               clock=lambda: now[0]) as opened:
        yield opened, now


@pytest.mark.parametrize("command, kw", [
    ("!nosuch", {}),
    ("!help", {}),
    ("!learn", {"files": (Attachment("cat.png", b"\x89PNG"),)}),
    ("!listen on", {"mod": False}),  # moderators only: refused at once
])
async def test_a_flood_gets_two_answers_and_one_notice(limited, command: str, kw: dict) -> None:
    core, now = limited
    texts = [t for _ in range(10) for t in (await say(core, command, **kw)).texts]
    assert len(texts) == 3, texts
    assert "slow down" not in texts[1] and texts[2].startswith("slow down: your command limit")
    now[0] += 30  # the window slid: answered again, and a new flood is told again, once
    texts = [t for _ in range(10) for t in (await say(core, command, **kw)).texts]
    assert len(texts) == 3 and texts[2].startswith("slow down"), texts


async def test_fronts_count_their_own_commands(limited) -> None:
    """A front's own command (Discord's `!import`) is counted by `Core.admit`."""
    core, _ = limited
    from tests.bot.helpers import Recorder, incoming

    rec = Recorder()
    admitted = [await core.admit(incoming("!import", mod=False), rec) for _ in range(10)]
    assert admitted == [True, True] + [False] * 8
    assert len(rec.texts) == 1 and rec.texts[0].startswith("slow down")


def test_cooldown_notice_is_first_once_per_wait() -> None:
    now = [0.0]
    cd = Cooldowns(user_rate=1, user_per=10, channel_rate=0, channel_per=1, clock=lambda: now[0])
    cd.check("ch", "u")
    firsts = []
    for _ in range(3):
        with pytest.raises(CooldownError) as err:
            cd.check("ch", "u")
        firsts.append(err.value.first)
    assert firsts == [True, False, False]
    now[0] = 10.0
    cd.check("ch", "u")
    with pytest.raises(CooldownError) as err:
        cd.check("ch", "u")
    assert err.value.first  # a new wait, a new notice


# 8: operators' mistakes are one line and exit status 2.

@pytest.mark.parametrize("env, message", [
    ({"MODEL_CACHE_MB": "nan"}, "MODEL_CACHE_MB must be above 0, at most 1,048,576, got nan"),
    ({"DB_BUSY_TIMEOUT_S": "nan"}, "DB_BUSY_TIMEOUT_S must be from 0 to 3,600, got nan"),
    ({"TRAIN_MINUTES": "nan"}, "TRAIN_MINUTES must be above 0, at most 1,440, got nan"),
    ({"TRAIN_MINUTES": "inf"}, "got inf"),
    ({"COOLDOWN_USER_PER_S": "-1"}, "COOLDOWN_USER_PER_S must be above 0"),
    ({"TRAIN_MINUTES": "20"}, "TRAIN_MINUTES (20) must not exceed TRAIN_MAX_MINUTES (10)"),
    ({"MAX_CORPUS_CHARS": "9" * 400}, "MAX_CORPUS_CHARS must be from 1 to 1,000,000,000"),
    ({"SHARD_IDS": "0,-1"}, "SHARD_IDS must list numbers from 0 to 99,999, got 0,-1"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'"),
])
def test_out_of_range_settings_are_refused(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(environ=env)


def test_every_numeric_setting_has_a_stated_range() -> None:
    numeric = {name for name, f in Settings.__dataclass_fields__.items()
               if isinstance(f.default, int | float | tuple) and not isinstance(f.default, bool)}
    assert numeric == set(RANGES)
    defaults = Settings()
    assert all(getattr(defaults, n) in r for n, r in RANGES.items() if n != "shard_ids")
    assert (ROOT / "docs" / "settings.md").read_text() == settings_doc()


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permission bits: /sys)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    return folder


def test_db_path_must_be_a_file_in_a_writable_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory; give the database a file name"):
        check_db_path(tmp_path)
    with pytest.raises(StoreError, match="is not writable"):
        check_db_path(_unwritable(tmp_path) / "new" / "bot.db")
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="is not a directory"):
        check_db_path(tmp_path / "file" / "bot.db")
    check_db_path(tmp_path / "new" / "deeper" / "bot.db")  # folders to be made: fine


def _start(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", "--console", "--env-file", "none", *args],
                          input="", capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("env, args, message", [
    ({"MODEL_CACHE_MB": "nan"}, (), "error: setting MODEL_CACHE_MB must be above 0"),
    ({"DB_BUSY_TIMEOUT_S": "nan"}, (), "error: setting DB_BUSY_TIMEOUT_S must be from 0"),
    ({"LOG_LEVEL": "LOUD"}, (), "error: setting LOG_LEVEL must be DEBUG"),
    ({"TRAIN_MINUTES": "nan"}, (), "error: setting TRAIN_MINUTES must be above 0"),
    ({}, ("--db", "{tmp}"), "is a directory; give the database a file name"),
    ({}, ("--db", "{ro}/bot.db"), "is not writable"),
])
def test_start_up_mistakes_are_one_line_and_status_2(tmp_path: Path, env: dict, args: tuple,
                                                     message: str) -> None:
    ro = _unwritable(tmp_path)
    args = tuple(a.format(tmp=tmp_path, ro=ro) for a in args)
    done = _start({"BOT_DB": str(tmp_path / "bot.db"), **env}, *args)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and message in line


# 9: a console upload that cannot be one is answered, and the console goes on.

async def _console(core: Core, lines: list[str]) -> list[str]:
    out = io.StringIO()

    async def typed() -> AsyncIterator[str]:
        for line in lines:
            yield line

    await ConsoleFront(core, "c1", out=out).run(typed())
    return out.getvalue().splitlines()


async def test_console_refuses_what_is_no_upload_and_goes_on(core: Core, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (core.settings.max_attachment_bytes + 1))
    out = await _console(core, ["!learn < /tmp/a\x00b.txt", "!learn < /dev/zero",
                                f"!learn < {fifo}", f"!learn < {big}", f"!learn < {tmp_path}",
                                "!corpus"])
    assert out[0] == "a file name cannot contain a NUL character"
    assert out[1] == "/dev/zero is not a regular file; !learn reads text files only"
    assert out[2].endswith("pipe.txt is not a regular file; !learn reads text files only")
    assert out[3] == "'big.txt' is over the upload limit of 1,000,000 bytes"
    assert out[4].endswith("is not a regular file; !learn reads text files only")
    assert out[5].startswith("this channel's corpus: 0 messages")


async def test_console_survives_an_internal_error(core: Core, monkeypatch, caplog) -> None:
    real = core.handle

    async def flaky(msg, responder):  # noqa: ANN001, ANN202
        if msg.text == "!boom":
            raise RuntimeError("a bug")
        await real(msg, responder)

    monkeypatch.setattr(core, "handle", flaky)
    out = await _console(core, ["!boom", "!corpus"])
    assert out[0] == "something went wrong on my side; it has been logged"
    assert out[1].startswith("this channel's corpus:")
    assert "a bug" in caplog.text


# 11: C1 controls and bidi overrides never reach a chat.

def test_c1_controls_and_bidi_overrides_are_neutralised() -> None:
    hostile = "a\x85b\x9bc\u202ed\u202ae\u2066f\u2069g\u200bh\xa0i"
    assert safe_text(hostile, 100) == "a\ufffdb\ufffdc\ufffdd\ufffde\ufffdf\ufffdg\u200bh\xa0i"


async def test_replies_carry_no_bidi_override(core: Core) -> None:
    text = await reply_of(core, "!continue gnp.\u202etxt\x85x --len 5")  # echoes the text
    assert text.startswith("gnp.\ufffdtxt\ufffdx") and "\u202e" not in text


# 12: no server path in any reply.

async def test_replies_show_versions_never_paths(core: Core, tiny_base: Path) -> None:
    folder = str(tiny_base.parent)
    ckpt = core.settings.checkpoint_dir / "c1" / "v1" / "model.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    channel = await core.services.store.channel("console", "c1")
    await core.services.store.add_model(channel.id, "c1/v1", "mix", {})
    texts = [await reply_of(core, c) for c in ("!model", "!corpus", "!prob hi", "!help")]
    for text in texts:
        assert folder not in text and str(core.settings.checkpoint_dir) not in text, text
    model = texts[0]
    assert "v1" in model and "the shipped base model 'base.pt' (mix)" in model
    assert "note: the checkpoint of v1 cannot be read (model.pt: " in model


def test_hide_paths_keeps_ordinary_slashes() -> None:
    text = "held-out 2.1 → 1.9 bits/char, and/or 3/10, rnn|markov, ' / '"
    assert hide_paths(text, ("data/channels",)) == text
    assert hide_paths("(data/channels/3/v2/model.pt: bad)", ("data/channels",)) == \
        "(model.pt: bad)"
    assert hide_paths("'/srv/bot/base.pt' and ~/x/y.pt") == "'base.pt' and y.pt"


async def test_a_vanishing_temperature_babbles_the_likeliest_text(core) -> None:
    tiny = await reply_of(core, "!babble --temp 1e-320 --len 30 --seed 1")
    zero = await reply_of(core, "!babble --temp 0.0001 --len 30 --seed 2")
    assert tiny == zero and "\x00" not in tiny and "\ufffd" not in tiny
