"""!forget removes text from disk too: every checkpoint file of the channel is read back."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import torch

import lm
from bot import versions
from bot.core import Core
from bot.messages import Attachment
from bot.training import channel_folder
from lm.models import NGram
from lm.vocab import decode
from tests.bot.helpers import JOHN, lines_of, reply_of, rows, say

ALICE_WORD = "Quetzalcoatlusophagia"  # occurs nowhere but in alice's messages
BOB_WORD = "Bobolinkcathedral"


def ngram_texts(model: lm.LanguageModel) -> list[str]:
    """The decoded training symbols of every n-gram inside a model."""
    return [decode(m.tokens.tolist()) for m in model.modules() if isinstance(m, NGram)]


def channel_files(core: Core) -> list[Path]:
    """Every file under the checkpoint folder (these tests use one channel)."""
    return sorted(p for p in core.settings.checkpoint_dir.rglob("*") if p.is_file())


def holds(path: Path, word: str) -> bool:
    """Whether a file holds `word` as UTF-8 bytes or as the n-gram's int16 symbols."""
    raw = path.read_bytes()
    symbols = np.frombuffer(word.encode(), dtype=np.uint8).astype("<i2").tobytes()
    return word.encode() in raw or symbols in raw


async def fill_two_authors(core: Core) -> int:
    """Bob uploads John's gospel plus lines with his word; alice adds lines with hers.

    Returns the number of bob's messages (one per line).
    """
    book = lines_of(JOHN, 5000) + [f"and {BOB_WORD} spoke {i}" for i in range(30)]
    await say(core, "!learn", author="bob", files=(Attachment("john.txt",
                                                              "\n".join(book).encode()),))
    for i in range(30):
        await say(core, f"!learn alice says {ALICE_WORD} number {i}", author="alice", mod=False)
    return len(book)


async def test_forget_me_rewrites_every_checkpoint(settings, always_adopt) -> None:
    async with await Core.open(dataclasses.replace(settings, keep_versions=3)) as core:
        bobs = await fill_two_authors(core)
        for _ in range(2):  # v1 stays on disk for `!model rollback`
            await say(core, "!train")
            await core.wait_trainings()
        files = channel_files(core)
        assert len(files) == 2 and all(f.name == versions.MODEL_FILE for f in files), files
        before = {f: lm.load_checkpoint(f) for f in files}
        for model in before.values():  # the test means something: both words are on disk
            (text,) = ngram_texts(model)
            assert ALICE_WORD in text and BOB_WORD in text
        leftover = files[0].parent / f"{versions.MODEL_FILE}.abc.tmp"  # as a crash leaves it
        leftover.write_bytes(files[0].read_bytes())
        assert await reply_of(core, "!babble --len 20 --seed 1")  # v2 is in the cache

        answer = await reply_of(core, "!forget me", author="alice", mod=False)
        assert answer.startswith("removed 30 messages you contributed here"), answer
        assert "the n-gram of 2 stored model versions was recounted" in answer
        assert "the next `!train` learns without it" in answer

        assert channel_files(core) == files  # the leftover temporary file is gone too
        for f in files:
            assert not holds(f, ALICE_WORD), f
            after = lm.load_checkpoint(f)
            (text,) = ngram_texts(after)
            assert ALICE_WORD not in text and BOB_WORD in text
            old = before[f]
            # The recurrent part and the mixture weights are kept as they were.
            rnn_old, rnn_new = lm.component(old, "rnn"), lm.component(after, "rnn")
            for (k, v), (k2, v2) in zip(rnn_old.state_dict().items(),
                                        rnn_new.state_dict().items(), strict=True):
                assert k == k2 and torch.equal(v, v2)
            assert after.config.weights == old.config.weights
            assert after.summary["bpc_after"] == old.summary["bpc_after"]
            assert "ngram_recounted_at" in after.summary

        # The cache answers from the rewritten file, not the model loaded before.
        ch = await core.services.store.channel("console", "c1")
        current = await core.services.models.for_channel(ch)
        assert all(ALICE_WORD not in t for t in ngram_texts(current.answer))
        assert await reply_of(core, "!babble --len 30 --seed 2")
        assert "v1 answers here now" in await reply_of(core, "!model rollback")
        assert await reply_of(core, "!babble --len 30 --seed 2")
        assert rows(settings.db_path, "SELECT COUNT(*) FROM messages WHERE author_id = 'bob'") \
            == [(bobs,)]


async def test_forget_all_deletes_the_checkpoint_files(core: Core, always_adopt) -> None:
    await fill_two_authors(core)
    await say(core, "!train")
    await core.wait_trainings()
    assert channel_files(core)
    assert "forgot this channel" in await reply_of(core, "!forget all")
    ch = await core.services.store.channel("console", "c1")
    assert not (core.settings.checkpoint_dir / channel_folder(ch)).exists()
    assert rows(core.settings.db_path, "SELECT COUNT(*) FROM models") == [(0,)]
    assert await reply_of(core, "!babble --len 10")


async def test_forget_just_after_a_training_saved_leaves_nothing(core: Core, always_adopt,
                                                                 monkeypatch) -> None:
    """A `!forget me` that arrives after the training's last cancel check but before the
    version is recorded: the new checkpoint (which read alice's text) must not survive."""
    await fill_two_authors(core)
    real = versions.train_channel
    saved = asyncio.Event()
    loop = asyncio.get_running_loop()

    def train_then_linger(*args):  # args[2] is the job's cancel event
        out = real(*args)
        assert out.adopted and any(core.settings.checkpoint_dir.rglob(versions.MODEL_FILE))
        loop.call_soon_threadsafe(saved.set)
        args[2].wait(10)
        return out

    monkeypatch.setattr(versions, "train_channel", train_then_linger)
    rec = await say(core, "!train")
    await saved.wait()
    answer = await reply_of(core, "!forget me", author="alice", mod=False)
    assert "the running training was cancelled" in answer
    assert "cancelled by `!forget me`" in rec.posted[0].last.text
    assert channel_files(core) == []
    assert rows(core.settings.db_path, "SELECT COUNT(*) FROM models") == [(0,)]


async def test_a_training_that_read_the_corpus_before_a_forget_never_runs(
        core: Core, always_adopt, monkeypatch) -> None:
    await fill_two_authors(core)
    store = core.services.store
    real = store.corpus_texts
    read, gate = asyncio.Event(), asyncio.Event()

    async def read_then_pause(channel: int) -> list[str]:  # `!train` holds alice's text here
        texts = await real(channel)
        read.set()
        await gate.wait()
        return texts

    monkeypatch.setattr(store, "corpus_texts", read_then_pause)
    training = asyncio.ensure_future(say(core, "!train"))
    await read.wait()
    monkeypatch.setattr(store, "corpus_texts", real)
    assert "removed 30 messages" in await reply_of(core, "!forget me", author="alice", mod=False)
    gate.set()
    rec = await training
    await core.wait_trainings()
    assert "cancelled by `!forget`" in rec.posted[0].last.text
    assert channel_files(core) == []


def test_scrub_deletes_what_it_cannot_rewrite_and_counts_on_nothing(tmp_path: Path) -> None:
    msgs = [f"line {i} with {ALICE_WORD}" for i in range(120)]
    rnn = lm.train(msgs, lm.TrainConfig(kind="gru", hidden=8, embed=4, max_steps=1,
                                        minutes=None, batch=2, bptt=16)).model
    ngram = lm.train(msgs, lm.TrainConfig(kind="ngram", order=3)).model
    mix = lm.fit_mix([rnn, ngram], msgs[-20:])
    good, broken, orphan = (tmp_path / name for name in ("v1", "v2", "v0"))
    lm.save(mix, good / versions.MODEL_FILE)
    lm.save(mix, broken / versions.MODEL_FILE)
    lm.save(mix, orphan / versions.MODEL_FILE)
    (broken / versions.MODEL_FILE).write_bytes((broken / versions.MODEL_FILE).read_bytes()[:200])
    done = versions.scrub_versions(tmp_path, {"v1", "v2"}, [], 1000)
    assert done == versions.Scrubbed(rewritten=1, deleted=1, orphans=1)
    assert not orphan.exists() and not (broken / versions.MODEL_FILE).exists()
    model = lm.load_checkpoint(good / versions.MODEL_FILE)
    assert ngram_texts(model) == [""]  # counted on nothing: the corpus is empty
    assert lm.score(model, "still scores").bits > 0
