"""The bot on PostgreSQL, in one test process: trainings as jobs, versions as rows, and two
cores on one database that keep each other's caches honest."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import torch

import lm
from bot import version_bytes
from bot.core import Core
from bot.settings import Settings
from tests.bot.helpers import Recorder, reply_of, say, wait_for
from tests.bot.test_forget import ALICE_WORD, BOB_WORD, fill_two_authors, ngram_texts
from tests.bot.test_training import PNG, fill

pytestmark = pytest.mark.usefixtures("pg_server")


async def stored_ngrams(core: Core, channel: int) -> list[str]:
    """The n-gram texts of every version of a channel, read back from the database."""
    store = core.services.store
    out = []
    for row in await store.models(channel):
        mix, _ = version_bytes.load_bytes(await store.checkpoint(row.id))
        out += ngram_texts(mix)
    return out


def endless(settings: Settings) -> Settings:
    """Trainings that run until they are stopped, validating (and reporting) every step."""
    return dataclasses.replace(settings, train_max_steps=100_000, train_eval_every=1)


async def training_under_way(core: Core) -> Recorder:
    """Start a 5-minute `!train` and wait until it has reported a step."""
    rec = await say(core, "!train --minutes 5")
    await wait_for(lambda: any(e.text.count("step") for e in rec.posted[0].edits), 30)
    return rec


async def test_train_is_a_job_and_its_version_a_row(pg_settings: Settings) -> None:
    async with await Core.open(pg_settings) as core:
        await fill(core)
        rec = await say(core, "!train")
        await core.wait_trainings()
        (posted,) = rec.posted
        assert "queued for a training worker" in posted.reply.text
        assert any("step" in e.text and "validation" in e.text for e in posted.edits[:-1])
        final = posted.last
        assert "Model v1 answers here now" in final.text, final.text
        assert final.files[0].data.startswith(PNG)
        counts = await core.services.store.counts()
        assert (counts["models"], counts["checkpoints"]) == (1, 1)
        assert not pg_settings.checkpoint_dir.exists()  # nothing on this machine's disk
        assert "this channel's model v1" in await reply_of(core, "!model")
        assert await reply_of(core, "!babble --len 30 --seed 1")
        assert "base model answers here now" in await reply_of(core, "!model rollback")


async def test_trainings_waiting_for_a_worker_are_capped(pg_settings: Settings) -> None:
    """With no worker anywhere, TRAIN_QUEUE_LIMIT queued jobs make the next `!train` busy."""
    serving = dataclasses.replace(pg_settings, train_here=False, train_queue_limit=1)
    async with await Core.open(serving) as core:
        await fill(core, channel="c1")
        await fill(core, channel="c2")
        assert "queued for a training worker" in \
            (await say(core, "!train", channel="c1")).posted[0].reply.text
        assert "busy" in await reply_of(core, "!train", channel="c2")
        assert "cancel" in await reply_of(core, "!train cancel", channel="c1")


async def test_two_cores_one_database(pg_settings: Settings, always_adopt: None) -> None:
    serving = dataclasses.replace(pg_settings, train_here=False)  # B leaves training to A
    async with await Core.open(pg_settings) as a, await Core.open(serving) as b:
        await fill_two_authors(a)
        assert "characters" in await reply_of(b, "!corpus")  # A's corpus is B's
        rec = await say(b, "!train")  # B queues it; A's worker takes it; B posts the result
        await b.wait_trainings()
        assert "Model v1 answers here now" in rec.posted[0].last.text, rec.posted[0].last.text
        # A's worker counts the job once its commit returns, which B may hear of first
        await wait_for(lambda: a.services.trainer.worker.finished == 1, 1.0)
        await say(a, "!train")
        await a.wait_trainings()
        ch = await b.services.store.channel("console", "c1")
        assert await reply_of(b, "!babble --len 20 --seed 1")  # B caches v2 now
        assert any(k[1] == ch.id for k in b.services.models.cache._entries)

        answer = await reply_of(a, "!forget me", author="alice", mod=False)
        assert "the n-gram of 2 stored model versions was recounted" in answer, answer
        await wait_for(lambda: not any(k[1] == ch.id for k in b.services.models.cache._entries),
                       1.0)
        await wait_for(lambda: b.services.corpus.opted_out("console", "c1", "alice"), 1.0)
        current = await b.services.models.for_channel(ch)
        assert all(ALICE_WORD not in t and BOB_WORD in t for t in ngram_texts(current.answer))
        texts = await stored_ngrams(b, ch.id)
        assert len(texts) == 2 and all(ALICE_WORD not in t for t in texts)


async def test_one_training_per_channel_cancelled_from_another_process(
        pg_settings: Settings) -> None:
    slow = endless(pg_settings)
    async with await Core.open(dataclasses.replace(slow, train_here=False)) as a, \
            await Core.open(slow) as b:
        await fill(a)
        rec = await training_under_way(a)
        busy = await reply_of(b, "!train", author="u2")  # one training per channel
        assert "already running here (started by name-u1)" in busy, busy
        assert await reply_of(b, "!train cancel") == "cancelling the training…"
        await asyncio.wait_for(a.wait_trainings(), 30)
        final = rec.posted[0].last.text
        assert "training cancelled by `!train cancel`" in final, final
        assert await a.services.store.active_model((await a.services.store.channel(
            "console", "c1")).id) is None


async def test_a_checkpoint_row_that_cannot_be_read_falls_back(pg_settings: Settings) -> None:
    async with await Core.open(pg_settings) as core:
        store = core.services.store
        ch = await store.channel("console", "c1")
        await store.add_model(ch.id, "broken", "mix", {}, b"not a checkpoint")
        text = await reply_of(core, "!model")
        assert "cannot be read" in text and "base model" in text, text
        with pytest.raises(lm.CheckpointError):
            version_bytes.load_bytes(b"not a checkpoint")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine "
                    "without CUDA")
async def test_train_device_reaches_lm(pg_settings: Settings) -> None:
    async with await Core.open(dataclasses.replace(pg_settings, train_device="cuda")) as core:
        await fill(core)
        rec = await say(core, "!train")
        await core.wait_trainings()
        final = rec.posted[0].last.text
        assert "no CUDA device is available; the model is unchanged" in final, final
        store = core.services.store
        assert await store.active_jobs() == [] and (await store.job(1)).state == "failed"


async def test_a_forget_stops_a_training_running_elsewhere(pg_settings: Settings) -> None:
    slow = endless(pg_settings)
    async with await Core.open(dataclasses.replace(slow, train_here=False)) as a, \
            await Core.open(slow) as b:
        await fill_two_authors(a)
        rec = await training_under_way(a)
        answer = await reply_of(b, "!forget me", author="alice", mod=False)
        assert "the running training was cancelled, as it had read them" in answer, answer
        await asyncio.wait_for(a.wait_trainings(), 30)
        assert "training cancelled by `!forget me`" in rec.posted[0].last.text
        assert (await a.services.store.counts())["models"] == 0


async def test_a_worker_shutting_down_gives_its_job_back(pg_settings: Settings) -> None:
    slow = endless(pg_settings)
    async with await Core.open(slow) as core:
        await fill(core)
        await training_under_way(core)
        await asyncio.wait_for(core.services.trainer.worker.close(), 30)
        (job,) = await core.services.store.active_jobs()
        assert (job.state, job.tries, job.worker) == ("queued", 0, None)  # the next one takes it
