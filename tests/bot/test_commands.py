"""Every command through the real core, database and worker pool, with a tiny base model."""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import replace

import pytest

import lm
from bot import serving
from bot.core import Core
from bot.messages import Attachment
from bot.safety import ZWSP, printable
from tests.bot.helpers import JOHN, incoming, lines_of, reply_of, rows, say

PNG = b"\x89PNG"


async def test_babble_and_continue(core: Core) -> None:
    text = await reply_of(core, "!babble --len 40 --seed 3")
    assert text and len(text) <= 41
    assert text == await reply_of(core, "!babble --len 40 --seed 3")  # a seed repeats
    many = await reply_of(core, "!babble --n 3 --len 20 --temp 0.8 --model markov")
    assert many.startswith("[markov] 1. ") and "\n2. " in many and "\n3. " in many
    cont = await reply_of(core, "!continue To be, or not --len 30 --model rnn")
    assert cont.startswith("[rnn] To be, or not")
    assert (await reply_of(core, "!continue Hello --model uniform --len 5")).startswith(
        "[uniform] Hello")


async def test_commands_at_once_answer_as_one_by_one(core: Core, monkeypatch) -> None:
    """Waiting !babble/!continue/!prob are batched on the pool; each reply is unchanged."""
    passes = []
    many = serving.lm.sample_many
    monkeypatch.setattr(serving.lm, "sample_many",
                        lambda model, reqs: passes.append(len(reqs)) or many(model, reqs))
    cmds = [f"!babble --len 30 --seed {i}" for i in range(6)]
    cmds += ["!continue To be --seed 9 --len 20", "!babble --n 3 --seed 5 --len 10",
             "!prob To be or not", "!prob In the beginning"]
    alone = [await reply_of(core, c) for c in cmds]
    passes.clear()
    together = await asyncio.gather(*(reply_of(core, c) for c in cmds))
    assert together == alone
    assert sum(passes) == 8 and len(passes) < 8  # fewer passes than requests: some batched


async def test_prob_shows_three_models_verdict_and_picture(core: Core) -> None:
    rec = await say(core, "!prob To be or not to be")
    (posted,) = rec.posted
    text = posted.reply.text
    for name in ("uniform", "markov", "rnn", "mix"):
        assert re.search(rf"^{name} +-\d+\.\d +\d+\.\d+ +\d+\.\d+$", text, re.M), name
    assert "most surprising under mix:" in text and "verdict: most likely under" in text
    assert "markov: the base corpus n-gram" in text  # the channel has no corpus yet
    (png,) = posted.reply.files
    assert png.filename.endswith(".png") and png.data.startswith(PNG)


@pytest.mark.parametrize("command, message", [
    ("!continue", "!continue needs text"),
    ("!prob", "!prob needs a sentence"),
    ("!prob    ", "!prob needs a sentence"),
    ("!babble some words", "!babble takes only options"),
    ("!babble --temp 0", "bad value '0' for --temp"),
    ("!babble --len 99999", "bad value '99999' for --len"),
    ("!babble --n", "--n needs a value"),
    ("!babble --colour red", "unknown option --colour for !babble"),
    ("!babble --model gpt4", "expected one of rnn, markov, uniform, mix"),
    ("!frobnicate", "unknown command !frobnicate; `!help` lists the commands"),
    ("!listen maybe", "usage: !listen on|off"),
    ("!forget everything", "usage: !forget me"),
    ("!model upgrade", "usage: !model or !model rollback"),
    ("!model rollback", "already answers with the base model"),
    ("!train cancel", "no training is running here"),
    ("!train now", "usage: !train [--minutes M]"),
    ("!train --minutes 999", "bad value '999' for --minutes"),
    ("!learn", "!learn needs text"),
    ("!help nothing", "no command !nothing"),
])
async def test_bad_input_gets_a_clear_answer(core: Core, command: str, message: str) -> None:
    text = await reply_of(core, command)
    assert message in text
    assert "Traceback" not in text


async def test_prob_of_long_and_strange_text(core: Core) -> None:
    assert "!prob scores at most 2,000" in await reply_of(core, "!prob " + "a" * 50_000)
    strange = "emoji 😀👍🏽, zero\u200bwidth, RTL \u202eשלום\u202c, NUL \x00 end"
    text = await reply_of(core, "!prob " + strange)
    assert "verdict" in text and "\x00" not in text
    rec = await say(core, "!continue " + strange + " --len 10")
    assert rec.posted[0].reply.text.startswith(printable(strange))  # NUL, bidi: U+FFFD


async def test_help(core: Core) -> None:
    text = await reply_of(core, "!help")
    for name in ("babble", "continue", "prob", "learn", "listen", "corpus", "train", "model",
                 "forget", "help"):
        assert f"!{name}" in text
    assert "--minutes M" in await reply_of(core, "!help train")


async def test_moderator_commands_are_refused_to_others(core: Core) -> None:
    for command in ("!train", "!listen on", "!forget all", "!train cancel"):
        assert "for moderators only" in await reply_of(core, command, mod=False)
    await say(core, "!learn some text", mod=True)
    await say(core, "!model rollback", mod=False)
    assert rows(core.settings.db_path, "SELECT listening FROM channels") == [(0,)]
    assert "listening is off" in await reply_of(core, "!listen", mod=False)


async def test_learn_text_and_files(core: Core) -> None:
    assert "learned 11 characters" in await reply_of(core, "!learn hello world")
    book = "\n".join(lines_of(JOHN, 3000)).encode()
    rec = await say(core, "!learn and more", files=(Attachment("john.txt", book),),
                    message_id="m9")
    text = rec.posted[0].reply.text
    assert "lines from 'john.txt' and 8 characters" in text
    db = core.settings.db_path
    assert rows(db, "SELECT COUNT(DISTINCT part) FROM messages WHERE source = 'file'")[0][0] > 10
    for name, data, why in [("a.pdf", b"%PDF", "only .txt files"),
                            ("b.txt", b"\xff\xfe bad", "not UTF-8 text"),
                            ("c.txt", b"bin\x00ary", "does not look like text"),
                            ("d.txt", b"x" * 2_000_000, "the limit is"),
                            ("e.txt", b"  \n\n", "has no text")]:
        before = rows(db, "SELECT COUNT(*) FROM messages")
        answer = await reply_of(core, "!learn", files=(Attachment(name, data),))
        assert why in answer
        assert rows(db, "SELECT COUNT(*) FROM messages") == before  # nothing half-stored


async def test_learn_caps(core: Core, settings) -> None:
    assert "at most 4,000" in await reply_of(core, "!learn " + "x" * 4001)
    small_db = settings.db_path.with_name("small.db")  # one process (here: core) per database
    async with await Core.open(replace(settings, max_corpus_chars=30, db_path=small_db)) as small:
        await say(small, "!learn twenty characters...")
        answer = await reply_of(small, "!learn this does not fit")
        assert "corpus is full: it can take 10 more characters (cap 30) and this adds 17" in answer


async def test_listening_stores_ordinary_messages_only(core: Core) -> None:
    await say(core, "before listening", message_id="0")
    assert "listening: from now on" in await reply_of(core, "!listen on")
    await say(core, "hello there", author="alice", message_id="1")
    await say(core, "beep", author="robot", bot=True, message_id="2")
    await say(core, "!babble", message_id="3")
    await say(core, "   ", message_id="4")
    await say(core, "other channel", channel="c2", message_id="5")
    await core.services.corpus.flush()
    assert rows(core.settings.db_path, "SELECT author_id, text, platform_msg_id FROM messages") \
        == [("alice", "hello there", "1")]


async def test_bots_are_ignored_entirely(core: Core) -> None:
    rec = await say(core, "!help", bot=True)
    assert rec.posted == []


async def test_deleted_and_edited_messages(core: Core) -> None:
    await say(core, "!listen on")
    await say(core, "first", message_id="1")
    await say(core, "second", message_id="2")
    assert await core.message_edited("console", "c1", "2", "second, edited")  # still buffered
    await core.services.corpus.flush()
    assert await core.message_edited("console", "c1", "1", "first, edited")
    assert await core.message_deleted("console", "c1", "2")
    assert not await core.message_deleted("console", "c1", "never-stored")
    assert not await core.message_deleted("discord", "c1", "1")  # another platform
    assert await core.message_edited("console", "c1", "1", "!babble")  # now a command: removed
    assert rows(core.settings.db_path, "SELECT text FROM messages") == []


async def test_import_dedups_by_message_id(core: Core) -> None:
    msgs = [incoming(f"history {i}", message_id=str(i), author=f"u{i % 3}") for i in range(10)]
    msgs += [incoming("!babble", message_id="c"), incoming("bot", message_id="b", bot=True)]
    assert await core.import_messages(msgs) == 10
    assert await core.import_messages(msgs) == 0
    stats = await reply_of(core, "!corpus")
    assert "10 messages, 90 characters" in stats and "3 contributors" in stats


async def test_forget_me_really_deletes_rows(core: Core) -> None:
    db = core.settings.db_path
    await say(core, "!listen on")
    for i in range(3):
        await say(core, f"alice says {i}", author="alice", message_id=f"a{i}")
        await say(core, f"bob says {i}", author="bob", message_id=f"b{i}")
    await say(core, "!learn alice learned this", author="alice")
    answer = await reply_of(core, "!forget me", author="alice", mod=False)
    assert "removed 4 messages you contributed" in answer
    assert rows(db, "SELECT COUNT(*) FROM messages WHERE author_id = 'alice'") == [(0,)]
    assert rows(db, "SELECT COUNT(*) FROM messages WHERE author_id = 'bob'") == [(3,)]
    assert "removed 0 messages" in await reply_of(core, "!forget me", author="alice")


async def test_forget_all(core: Core) -> None:
    db = core.settings.db_path
    await say(core, "!learn something to forget")
    await say(core, "!learn other channel", channel="c2")
    assert "forgot this channel: 1 message and" in await reply_of(core, "!forget all")
    assert rows(db, "SELECT c.channel_key FROM messages m JOIN channels c ON c.id = m.channel") \
        == [("c2",)]


async def test_generated_and_echoed_mentions_never_ping(core: Core) -> None:
    for command in ("!continue @everyone <@123> <@&456> <#789> @here --len 5",
                    "!prob @everyone and <@!123>"):
        text = (await say(core, command)).posted[0].reply.text
        assert "@everyone" not in text and "<@" not in text and "<#" not in text
        assert "@" + ZWSP + "everyone" in text


async def test_replies_fit_the_platform_limit(core: Core) -> None:
    text = await reply_of(core, "!continue " + "word " * 390 + "--len 1000 --n 5")
    assert len(text) <= core.settings.reply_max_chars


async def test_cooldown_with_simulated_clock(settings) -> None:
    now = [100.0]
    limited = replace(settings, cooldown_user_rate=2, cooldown_user_per=30)
    async with await Core.open(limited, clock=lambda: now[0]) as core:
        await say(core, "!babble --len 5")
        await say(core, "!babble --len 5")
        assert "try again in 30.0 s" in await reply_of(core, "!babble")
        assert (await say(core, "!help")).posted == []  # every command counts; told once
        assert "!babble" not in await reply_of(core, "!babble --len 5", author="u2")
        now[0] += 30
        assert "slow down" not in await reply_of(core, "!babble --len 5")


async def test_markov_column_follows_the_corpus(core: Core) -> None:
    assert "markov: the base corpus n-gram" in await reply_of(core, "!prob In the beginning")
    book = "\n".join(lines_of(JOHN, 3000)).encode()
    await say(core, "!learn", files=(Attachment("john.txt", book),))
    assert "markov: this channel's n-gram" in await reply_of(core, "!prob In the beginning")
    await say(core, "!forget me")
    assert "markov: the base corpus n-gram" in await reply_of(core, "!prob In the beginning")


async def test_full_queue_answers_busy_and_loses_nothing(settings) -> None:
    async with await Core.open(replace(settings, queue_limit=1)) as core:
        gate = threading.Event()
        task = asyncio.ensure_future(core.services.pool.run(gate.wait, 10))
        await asyncio.sleep(0.05)
        assert await reply_of(core, "!babble") == \
            "busy: the model queue is full, try again in a moment"
        assert "learned" in await reply_of(core, "!learn still stored while busy")
        gate.set()
        await task
        assert await reply_of(core, "!babble --len 5")
    assert rows(settings.db_path, "SELECT text FROM messages") == [("still stored while busy",)]


async def test_cache_counts_real_model_memory(core: Core) -> None:
    """Parameters and the tables a loaded model builds (the n-gram's counts and hash index,
    the GRU's kernel copies) are counted, memory shared between them once."""
    base = core.services.models.base
    rnn, ngram, mix = (lm.memory_bytes(m) for m in (base.rnn, base.ngram, base.answer))
    params = sum(p.numel() * p.element_size() for p in base.rnn.parameters())
    assert rnn > params  # the kernel's tables: per-symbol input projection, float16 copies
    tables = base.ngram.tables()
    assert ngram >= sum(getattr(tables, f).nbytes for f in tables.__dataclass_fields__
                        if getattr(tables, f) is not None and f != "bits")
    assert rnn + ngram <= mix <= rnn + ngram + 2**16  # the mix adds only its weight table


async def test_delete_and_edit_without_the_channel(core: Core) -> None:
    await say(core, "!listen on", channel="a", platform="discord")
    await say(core, "!listen on", channel="b", platform="discord")
    await say(core, "in a", channel="a", platform="discord", message_id="111")
    await core.services.corpus.flush()
    await say(core, "in b", channel="b", platform="discord", message_id="222")  # buffered
    assert await core.message_edited("discord", None, "111", "in a, edited")
    assert await core.message_deleted("discord", None, "222")
    assert not await core.message_deleted("console", None, "111")  # another platform
    await core.services.corpus.flush()
    assert rows(core.settings.db_path, "SELECT text FROM messages") == [("in a, edited",)]
    assert await core.message_deleted("discord", None, "111")
    assert rows(core.settings.db_path, "SELECT COUNT(*) FROM messages") == [(0,)]


async def test_fronts_add_their_commands_to_help(core: Core) -> None:
    core.add_help("import [N]", "backfill the last N messages (moderators)")
    assert "!import [N] — backfill the last N messages" in await reply_of(core, "!help")
    assert await reply_of(core, "!help import") == \
        "!import [N]\nbackfill the last N messages (moderators)"


async def test_a_sample_cut_at_its_length_says_so(core: Core) -> None:
    """A reply that reached --len before the model ended it ends with "…"; one that ended by
    itself (shorter) does not. The same samples drawn directly show which is which."""
    base = core.services.models.base.answer
    seen = set()
    for seed in range(16):
        drawn = lm.sample(base, lm.SampleConfig(max_chars=12, seed=seed), prefix="Hi")[0]
        reply = await reply_of(core, f"!continue Hi --len 12 --seed {seed}")
        cut = len(drawn) == 12
        assert reply == (("Hi" + drawn).rstrip() + "…" if cut else "Hi" + drawn)
        seen.add(cut)
    assert seen == {True, False}


async def test_learn_reports_each_file_and_an_edit_keeps_what_it_taught(core: Core) -> None:
    good = Attachment("good.txt", b"Thou art more lovely and more temperate")
    bad = Attachment("bad.txt", b"\xff\xfe not utf-8")
    answer = await reply_of(core, "!learn", files=(good, bad), message_id="L1")
    assert "from 'good.txt'" in answer and "Skipped: 'bad.txt' is not UTF-8" in answer
    assert "only .txt" in await reply_of(core, "!learn", files=(Attachment("a.png", b"x"),))
    await core.message_edited("console", "c1", "L1", "!learn fixed a typo")
    texts = [r[0] for r in rows(core.settings.db_path, "SELECT text FROM messages")]
    assert texts == ["Thou art more lovely and more temperate"]


async def test_reply_chance_babbles_after_ordinary_messages(core: Core) -> None:
    assert "reply chance here: 0%" in await reply_of(core, "!chance")
    assert "for moderators only" in await reply_of(core, "!chance 0.5", mod=False)
    for bad in ("2", "-0.1", "nan", "lots"):
        assert "usage: !chance P" in await reply_of(core, f"!chance {bad}")
    assert "reply chance 100%" in await reply_of(core, "!chance 100%")
    first = await say(core, "just chatting", message_id="a")
    assert len(first.posted) == 1 and first.posted[0].reply.text  # a babble
    again = await say(core, "still chatting", message_id="b")  # within the gap: quiet
    assert again.posted == []
    assert "reply chance off" in await reply_of(core, "!chance 0")
    core._last_chime.clear()
    assert (await say(core, "quiet now", message_id="c")).posted == []
