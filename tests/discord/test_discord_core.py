"""The Discord front over the real core: every command by prefix and by slash, the database.

A tiny base model (a few GRU steps and a 4-gram) keeps sampling and training fast.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import discord
import pytest
import simcord

from bot.core import Core
from bot.parsing import split_command
from bot.settings import Settings
from tests.discord.world import World

pytestmark = pytest.mark.simcord(shard_count=1, settle_timeout=30)

TEXT = "\n".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(60))


@pytest.fixture
def front_settings(real_settings: Settings) -> Settings:
    return real_settings


@pytest.fixture
def core(real_core: Core) -> Core:
    return real_core


def corpus_rows(db: Path) -> list[tuple[str, str, str]]:
    """(platform message id, source, text) of every stored message."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT platform_msg_id, source, text FROM messages "
                            "ORDER BY id").fetchall()


async def flushed(core: Core) -> None:
    await core.services.corpus.flush()


def moderator(world: World) -> simcord.MemberActor:
    """A member whose role may manage messages: the moderator commands are visible to them."""
    role = world.guild.create_role("Babble Mods",
                                   permissions=discord.Permissions(manage_messages=True))
    return world.member("mod", role)


async def test_babble_and_continue_same_by_prefix_and_slash(world: World) -> None:
    await world.alice.send(world.general, "!babble --len 40 --seed 7")
    by_prefix = world.general.last_message.content
    result = await world.alice.slash(world.general, "babble", len=40, seed=7)
    assert by_prefix and result.response.content == by_prefix

    await world.alice.send(world.general, "!continue To be --len 20 --seed 3")
    assert world.general.last_message.content.startswith("To be")
    result = await world.alice.slash(world.general, "continue", text="To be --not", len=20,
                                     seed=3)
    assert result.response.content.startswith("To be --not")  # text after `--` stays text


async def test_prob_with_its_picture(world: World) -> None:
    for reply in (await world.alice.send(world.general, "!prob To be or not to be") and
                  world.general.last_message,
                  (await world.alice.slash(world.general, "prob",
                                           sentence="To be or not to be")).response):
        assert "bits" in reply.content
        (png,) = reply.attachments
        assert png.filename == "surprisal.png"
        assert world.env.backend.cdn.get(png.url).startswith(b"\x89PNG")


async def test_help_lists_import_too(world: World) -> None:
    await world.alice.send(world.general, "!help")
    assert "!babble" in world.general.last_message.content
    assert "!import [N]" in world.general.last_message.content
    result = await world.alice.slash(world.general, "help")
    assert "!import [N]" in result.response.content and result.response.ephemeral
    result = await world.alice.slash(world.general, "help", command="prob")
    assert result.response.content.startswith("!prob <sentence>")
    await world.alice.send(world.general, "!help import")
    assert world.general.last_message.content.startswith("!import [N]\nmoderators: read")


async def test_learn_corpus_forget(world: World, core: Core,
                                  front_settings: Settings) -> None:
    await world.alice.send(world.general, "!learn Thou art more lovely")
    assert world.general.last_message.content.startswith("learned 20 characters")
    result = await world.alice.slash(world.general, "learn", text="and more temperate")
    assert result.response.content.startswith("learned 18 characters")
    await world.alice.send(world.general, "!learn", attachments=[("sonnet.txt", b"\xff\xfe")])
    assert "not UTF-8 text" in world.general.last_message.content

    result = await world.alice.slash(world.general, "corpus")
    assert "2 messages" in result.response.content
    await world.alice.send(world.general, "!forget me")
    assert world.general.last_message.content.startswith("removed 2 messages")
    assert corpus_rows(front_settings.db_path) == []


async def test_moderator_commands_refused_then_granted(world: World) -> None:
    await world.alice.send(world.general, "!listen on")
    assert "for moderators only" in world.general.last_message.content
    result = await world.alice.slash(world.general, "forget", what="me")  # hers to use
    assert result.response.content.startswith("removed 0 messages")
    for hidden in ("forget-all", "train", "listen", "import", "rollback"):
        assert hidden not in world.alice.available_commands(world.general)

    mod = moderator(world)
    await mod.send(world.general, "!listen on")
    assert world.general.last_message.content.startswith("listening: from now on")
    result = await mod.slash(world.general, "listen", state="off")
    assert result.response.content.startswith("listening is off")
    assert {"forget-all", "train", "rollback"} <= set(mod.available_commands(world.general))
    result = await mod.slash(world.general, "forget-all")
    assert result.response.content.startswith("forgot this channel")


async def test_train_edits_progress_and_attaches_the_curve(world: World) -> None:
    mod = moderator(world)
    await mod.send(world.general, "!learn", attachments=[("corpus.txt", TEXT.encode())])
    await mod.send(world.general, "!train")
    progress = world.bot_replies()[-1]
    assert progress.content.startswith("training done in"), progress.content
    edits = [r for r in world.env.http_requests
             if r.method == "PATCH" and r.path.endswith(f"/messages/{progress.id}")]
    assert len(edits) >= 2  # progress (percent, validation loss), then the result
    assert any("validation" in e.json["content"] for e in edits)
    (curve,) = progress.attachments
    assert curve.filename == "loss-curve.png"
    assert world.env.backend.cdn.get(curve.url).startswith(b"\x89PNG")

    result = await mod.slash(world.general, "model")
    assert "answering here" in result.response.content
    result = await mod.slash(world.general, "train", minutes=0.5)  # slash path, same lifecycle
    assert result.response.content.startswith("training done in")
    assert result.response.attachments[0].filename == "loss-curve.png"
    await mod.send(world.general, "!model rollback")
    assert world.general.last_message.content.startswith("rolled back")


async def test_listened_messages_edits_and_deletes_reach_the_database(
        world: World, core: Core, front_settings: Settings) -> None:
    db = front_settings.db_path
    await moderator(world).send(world.general, "!listen on")
    robot = world.guild.add_member(world.env.create_user("robot", bot=True))
    keep = await world.alice.send(world.general, "a message worth keeping")
    edit = await world.alice.send(world.general, "a message with a typo")
    gone = await world.alice.send(world.general, "a message to delete")
    await robot.send(world.general, "bots are never stored")
    command = await world.alice.send(world.general, "!corpus")  # commands are not stored
    await flushed(core)
    assert [r[2] for r in corpus_rows(db)] == ["a message worth keeping", "a message with a typo",
                                               "a message to delete"]
    await world.alice.delete(command)  # never stored: nothing else goes with it
    assert len(corpus_rows(db)) == 3

    await world.alice.edit(edit, "a message without a typo")
    await world.alice.delete(gone)
    assert [(r[0], r[2]) for r in corpus_rows(db)] == [
        (str(keep.id), "a message worth keeping"), (str(edit.id), "a message without a typo")]

    backend = world.env.backend
    backend.bulk_delete_messages(world.general.id, [keep.id, edit.id])
    await world.env.settle()
    assert corpus_rows(db) == []


async def test_import_is_resumable_and_raw_deletes_reach_it(
        world: World, core: Core, front_settings: Settings) -> None:
    backend = world.env.backend
    old = [backend.create_message(world.general.id, world.alice.id, f"from long ago {i}",
                                  broadcast=False) for i in range(4)]
    mod = moderator(world)
    # Newest first: the progress message and the command itself are read and skipped.
    await mod.send(world.general, "!import 3")
    assert "read 3 of up to 3 messages (0 threads), 1 new in the corpus" in \
        world.bot_replies()[-1].content
    await mod.send(world.general, "!import 20")  # again, further back: only what is missing
    assert "3 new in the corpus" in world.bot_replies()[-1].content
    assert len(corpus_rows(front_settings.db_path)) == 4

    backend.delete_message(world.general.id, old[0].id)  # never in the bot's cache
    await world.env.settle()
    assert str(old[0].id) not in {r[0] for r in corpus_rows(front_settings.db_path)}


async def test_generated_text_pings_nobody(world: World) -> None:
    role = world.guild.create_role("Pingable", mentionable=True)
    text = f"@everyone {world.alice.mention} {role.mention}"
    await world.alice.send(world.general, f"!continue {text} --len 5 --seed 1")
    stored = world.stored(world.general.last_message)
    assert not stored.mention_everyone and stored.ping_user_ids == [] == stored.ping_role_ids


async def test_replies_fit_and_bad_input_is_answered(world: World) -> None:
    await world.alice.send(world.general, "!babble --len 1000 --n 5 --seed 1")
    assert 0 < len(world.general.last_message.content) <= 2000
    await world.alice.send(world.general, "!babble --temp hot")
    assert "bad value 'hot' for --temp" in world.general.last_message.content
    replies = len(world.bot_replies())
    await world.alice.send(world.general, "!play some music")  # another bot's command
    assert len(world.bot_replies()) == replies
    await world.alice.send(world.general, "!babble --len 10 --seed 1")  # ours still answered
    assert len(world.bot_replies()) == replies + 1
    replies += 1
    await world.alice.send(world.general, "😀" * 2000)  # not listening: ignored
    assert len(world.bot_replies()) == replies


async def test_nobody_moderates_in_a_dm(world: World) -> None:
    """A stranger's DM cannot listen, train or fill the training queue; babble still works and
    an unknown command is still explained (no other bot shares a DM)."""
    stranger = world.env.create_user("stranger")
    dm = stranger.dm_channel
    for command in ("!listen on", "!train", "!forget all"):
        await stranger.send_dm(command)
        assert "for moderators only" in dm.last_message.content, command
    await stranger.send_dm("!nosuch")
    assert "unknown command" in dm.last_message.content
    await stranger.send_dm("!babble --len 10 --seed 1")
    assert dm.last_message.author.id == world.env.bot.user.id
    assert "train" not in stranger.available_commands() and "babble" in \
        stranger.available_commands()  # guild-only commands are not offered in DMs


async def test_a_mention_runs_a_command(world: World) -> None:
    me = world.env.bot.user.mention
    await world.alice.send(world.general, f"{me} prob To be or not to be")
    assert world.general.last_message.content.startswith("'To be or not to be'")
    await world.alice.send(world.general, f"{me} babble --len 30 --seed 3")
    by_mention = world.general.last_message.content
    await world.alice.send(world.general, "!babble --len 30 --seed 3")
    assert by_mention == world.general.last_message.content
    replies = len(world.bot_replies())
    await world.alice.send(world.general, me)  # a bare mention: a babble
    assert len(world.bot_replies()) == replies + 1


def test_a_command_name_ends_at_any_whitespace() -> None:
    from bot.discord_front.events import addressed
    assert split_command("!learn\nThou art", "!") == ("learn", "Thou art")
    assert split_command("!LEARN\tx y", "!") == ("learn", "x y")
    assert split_command("!", "!") is None and split_command("hello", "!") is None
    assert addressed("<@42> prob To be", 42, "!") == "!prob To be"
    assert addressed("<@!42>", 42, "!") == "!babble"
    assert addressed("<@43> hi", 42, "!") is None


async def test_export_reaches_only_the_asker(world: World) -> None:
    await world.alice.send(world.general, "!learn alice's words")
    result = await world.alice.slash(world.general, "export")
    assert result.response.ephemeral and "1 message" in result.response.content
    (file,) = result.response.attachments
    assert file.filename == "my-data.json"
    await world.alice.send(world.general, "!export me")  # typed in a server: sent by DM
    assert world.general.last_message.content == "sent to you in a direct message"
    assert world.alice.user.dm_channel.last_message.attachments[0].filename == "my-data.json"
    result = await world.alice.slash(world.general, "privacy")
    assert result.response.ephemeral and "!forget me" in result.response.content


async def test_a_members_refused_train_is_private(world: World) -> None:
    """An admin lets a member see /train (Server Settings > Integrations) without making them
    a moderator: the core still refuses, and only she sees the refusal."""
    commands = await world.env.bot.tree.fetch_commands()
    train = next(c for c in commands if c.name == "train")
    world.guild.set_command_permissions(train, {world.alice: True})
    result = await world.alice.slash(world.general, "train")
    assert "for moderators only" in result.response.content and result.response.ephemeral
