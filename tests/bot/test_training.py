"""!train end to end on the real training worker: progress, adoption, refusal, cancel, faults."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from bot import versions
from bot.core import Core
from bot.messages import Attachment
from tests.bot.helpers import JOHN, Recorder, lines_of, reply_of, rows, say, wait_for

PNG = b"\x89PNG"


async def fill(core: Core, chars: int = 6000, channel: str = "c1") -> None:
    """Give a channel a corpus (John's gospel, one message per line)."""
    book = "\n".join(lines_of(JOHN, chars)).encode()
    await say(core, "!learn", files=(Attachment("john.txt", book),), channel=channel)


async def train(core: Core, command: str = "!train", **kw: object) -> Recorder:
    """Start a training and wait until its message has its final text."""
    rec = await say(core, command, **kw)
    await core.wait_trainings()
    return rec


async def test_train_adopts_a_better_model_with_progress_and_curve(core: Core) -> None:
    await fill(core)
    rec = await train(core)
    (posted,) = rec.posted
    assert posted.reply.text.startswith("training this channel's model (started by name-u1")
    progress = [e.text for e in posted.edits[:-1]]
    assert any("step" in t and "%" in t and "validation" in t for t in progress), progress
    final = posted.last
    assert "held-out" in final.text and "Model v1 answers here now" in final.text, final.text
    (curve,) = final.files
    assert curve.filename == "loss-curve.png" and curve.data.startswith(PNG)
    db = core.settings.db_path
    ((path, metrics),) = rows(db, "SELECT path, metrics FROM models")
    assert (core.settings.checkpoint_dir / path / versions.MODEL_FILE).is_file()
    assert rows(db, "SELECT active_model FROM channels WHERE channel_key = 'c1'") == [(1,)]
    model_text = await reply_of(core, "!model")
    assert "answering here: this channel's model v1, trained" in model_text
    assert "v1" in await reply_of(core, "!corpus")
    # The channel now answers from its own mix, and !prob shows the channel's own n-gram.
    assert "markov: this channel's n-gram" in await reply_of(core, "!prob In the beginning")
    assert await reply_of(core, "!babble --len 30 --seed 1")


async def test_worse_model_is_refused_and_the_old_one_stays(core: Core,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    await fill(core)
    real = versions.bits_per_char
    calls: list[float] = []

    def worse_new_model(model, units):  # the new mix, scored second, looks worse
        calls.append(real(model, units))
        return calls[-1] + (10.0 if len(calls) % 2 == 0 else 0.0)

    monkeypatch.setattr(versions, "bits_per_char", worse_new_model)
    final = (await train(core)).posted[0].last
    assert "not better on held-out text, so the current one stays" in final.text
    assert final.files  # the loss curve comes with a refusal too
    assert rows(core.settings.db_path, "SELECT COUNT(*) FROM models") == [(0,)]
    assert not core.settings.checkpoint_dir.exists() or not any(
        core.settings.checkpoint_dir.rglob("*.pt"))


async def test_tiny_or_empty_corpus_says_the_minimum(core: Core) -> None:
    need = f"it needs at least about {versions.MIN_CORPUS_SYMBOLS:,}"
    assert need in await reply_of(core, "!train")
    await say(core, "!learn only a few words")
    text = await reply_of(core, "!train")
    assert "too small to train on: 16 characters" in text


async def test_train_twice_at_once_and_cancel(settings) -> None:
    async with await Core.open(dataclasses.replace(settings, train_max_steps=0)) as slow:
        await fill(slow)
        rec = await say(slow, "!train --minutes 2")
        await wait_for(lambda: len(rec.posted[0].edits) >= 1)
        assert "already running here (started by name-u1)" in await reply_of(slow, "!train")
        assert "training this channel's model (started by name-u1)" in await reply_of(
            slow, "!corpus")
        assert "cancelling" in await reply_of(slow, "!train cancel")
        await slow.wait_trainings()
        assert "cancelled by `!train cancel`" in rec.posted[0].last.text
        assert rows(settings.db_path, "SELECT COUNT(*) FROM models") == [(0,)]


async def test_rollback_and_keep_versions(settings) -> None:
    async with await Core.open(dataclasses.replace(settings, keep_versions=2)) as c:
        book = lines_of(JOHN, 18000)
        for i in range(3):  # the corpus grows before each training, so each one beats the last
            part = "\n".join(book[len(book) * i // 3 : len(book) * (i + 1) // 3]).encode()
            await say(c, "!learn", files=(Attachment("john.txt", part),))
            text = (await train(c)).posted[0].last.text
            assert f"Model v{i + 1} answers here now" in text, text
        kept = [v for (v,) in rows(settings.db_path, "SELECT version FROM models")]
        folders = [p for p in settings.checkpoint_dir.rglob(versions.MODEL_FILE)]
        assert len(kept) == len(folders) <= 2
        latest = max(kept)
        assert f"v{latest - 1} answers here now" in await reply_of(c, "!model rollback")
        assert "for moderators only" in await reply_of(c, "!model rollback", mod=False)


async def test_corrupt_active_checkpoint_falls_back_to_base(settings, caplog) -> None:
    async with await Core.open(settings) as core:
        await fill(core)
        await train(core)
    (path,) = [p for (p,) in rows(settings.db_path, "SELECT path FROM models")]
    async with await Core.open(settings) as core:  # a restart loads it from disk
        text = await reply_of(core, "!model")
        assert "answering here: this channel's model v1, trained" in text and "note" not in text
    ckpt: Path = settings.checkpoint_dir / path / versions.MODEL_FILE
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # truncated
    async with await Core.open(settings) as core:
        assert await reply_of(core, "!babble --len 10")  # still answers
        text = await reply_of(core, "!model")
        assert "note: the checkpoint of v1 cannot be read" in text and "corrupt" in text
        assert "answering with the base model" in text and "trained" not in text
        assert "cannot be loaded, using the base model" in caplog.text
        # Training again from the fallback works and replaces the broken version.
        final = (await train(core)).posted[0].last.text
        assert "Model v2 answers here now" in final or "current one stays" in final
    ckpt.unlink()
    async with await Core.open(settings) as core:  # missing is handled like corrupt
        assert await reply_of(core, "!babble --len 10")


async def test_missing_base_model_falls_back_to_uniform(settings, tmp_path) -> None:
    broken = dataclasses.replace(settings, base_model=str(tmp_path / "nowhere.pt"))
    async with await Core.open(broken) as core:
        text = await reply_of(core, "!model")
        assert "uniform (no base model could be loaded)" in text and "nowhere.pt" in text
        assert await reply_of(core, "!babble --len 10")
        prob = await reply_of(core, "!prob hello")
        assert "uniform" in prob and "verdict" in prob


async def test_close_cancels_a_running_training(settings) -> None:
    core = await Core.open(dataclasses.replace(settings, train_max_steps=0))
    await fill(core)
    rec = await say(core, "!train --minutes 5")
    await wait_for(lambda: len(rec.posted[0].edits) >= 1)
    await core.close()
    assert "cancelled by the bot's shutdown" in rec.posted[0].last.text


async def test_forget_me_stops_a_training_that_read_the_text(settings) -> None:
    async with await Core.open(dataclasses.replace(settings, train_max_steps=0)) as core:
        await fill(core)
        rec = await say(core, "!train --minutes 2")
        await wait_for(lambda: len(rec.posted[0].edits) >= 1)
        answer = await reply_of(core, "!forget me", mod=False)
        assert "the running training was cancelled, as it had read them" in answer
        await core.wait_trainings()
        assert "cancelled" in rec.posted[0].last.text
        assert rows(settings.db_path, "SELECT COUNT(*) FROM models") == [(0,)]


async def test_two_trains_typed_at_once_start_one(core: Core) -> None:
    await fill(core)
    first, second = await asyncio.gather(say(core, "!train"), say(core, "!train"))
    texts = [first.posted[0].reply.text, second.posted[0].reply.text]
    assert sum("already running here" in t for t in texts) == 1, texts
    await core.wait_trainings()


async def test_shutdown_while_waiting_for_a_training_stops_it_at_once(settings) -> None:
    """The console waits for trainings at the end of its input; a SIGTERM then cancels that
    wait. The training must be stopped (not run on unseen) and nothing may be saved."""
    core = await Core.open(dataclasses.replace(settings, train_max_steps=0))
    await fill(core)
    rec = await say(core, "!train --minutes 2")
    await wait_for(lambda: len(rec.posted[0].edits) >= 1)
    waiter = asyncio.create_task(core.wait_trainings())
    await asyncio.sleep(0.1)
    waiter.cancel()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await core.close()
    assert loop.time() - start < 10
    assert "cancelled by the bot's shutdown" in rec.posted[0].last.text
    assert rows(settings.db_path, "SELECT COUNT(*) FROM models") == [(0,)]
    assert not settings.checkpoint_dir.exists() or not any(settings.checkpoint_dir.rglob("*.pt"))


async def test_a_folder_left_by_a_crash_is_removed_at_start(settings) -> None:
    """A SIGKILL between writing model.pt and recording its row leaves a folder no row names."""
    async with await Core.open(settings) as core:
        await fill(core)
        await train(core)
    (path,) = [p for (p,) in rows(settings.db_path, "SELECT path FROM models")]
    kept = settings.checkpoint_dir / path
    orphan = kept.parent / "20260101-000000-1"
    orphan.mkdir()
    (orphan / versions.MODEL_FILE).write_bytes((kept / versions.MODEL_FILE).read_bytes())
    stray = settings.checkpoint_dir / "console-gone-00000000" / "20260101-000000-2"
    stray.mkdir(parents=True)
    async with await Core.open(settings):
        assert not orphan.exists() and not stray.parent.exists()
        assert (kept / versions.MODEL_FILE).is_file()


async def test_channel_text_lives_in_files_only_the_owner_can_read(settings) -> None:
    async with await Core.open(settings) as core:
        await fill(core)
        await train(core)
    (path,) = [p for (p,) in rows(settings.db_path, "SELECT path FROM models")]
    folder = settings.checkpoint_dir / path
    for d in (settings.checkpoint_dir, folder.parent, folder):
        assert d.stat().st_mode & 0o777 == 0o700, d
    for f in (folder / versions.MODEL_FILE, settings.db_path):
        assert f.stat().st_mode & 0o777 == 0o600, f
