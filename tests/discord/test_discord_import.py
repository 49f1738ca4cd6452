"""`!import` and `/import` over a simulated history with threads (fake core records the batches)."""

from __future__ import annotations

import discord
import pytest

from bot.discord_front.events import IMPORT_MAX
from tests.discord.fakecore import FakeCore
from tests.discord.world import World

# SHARD_COUNT 0 means "ask Discord"; SimCord answers one shard.
pytestmark = pytest.mark.simcord(shard_count=1)


def seed_history(world: World) -> dict[str, list[int]]:
    """Messages sent before the bot joined: people, a bot, a command, and two threads."""
    backend = world.env.backend
    general = world.general.id
    robot = world.env.create_user("robot", bot=True)
    world.guild.add_member(robot)

    def say(channel: int, author: int, text: str) -> int:
        return backend.create_message(channel, author, text, broadcast=False).id

    ids = {"people": [], "thread": [], "archived": [], "skipped": [], "command": []}
    for i in range(5):
        ids["people"].append(say(general, world.alice.id, f"hello number {i}"))
    ids["skipped"].append(say(general, robot.id, "beep, I am a bot"))
    ids["command"].append(say(general, world.alice.id, "!babble"))  # the core skips it
    active = backend.create_thread(general, "active thread", world.alice.id)
    archived = backend.create_thread(general, "old thread", world.alice.id, broadcast=False)
    for i in range(3):
        ids["thread"].append(say(active.id, world.alice.id, f"in the thread {i}"))
        ids["archived"].append(say(archived.id, world.alice.id, f"long ago {i}"))
    archived.thread_metadata.archived = True
    return ids


async def test_moderator_imports_channel_and_threads(world: World, core: FakeCore) -> None:
    ids = seed_history(world)
    await world.env.settle()
    mods = world.guild.create_role("Babble Mods")  # the role named in the settings
    mod = world.member("mod", mods)

    await mod.send(world.general, "!import")

    stored = {int(m.message_id) for m in core.imported}
    text = {int(m.message_id) for m in core.imported if not m.text.startswith("!")}
    assert text == set(ids["people"] + ids["thread"] + ids["archived"])
    assert set(ids["command"]) < stored  # commands go to the core, which skips them
    assert {m.channel_id for m in core.imported} == {str(world.general.id)}  # threads: parent's
    assert not any(m.author_is_bot for m in core.imported)
    progress = world.bot_replies()[-1]
    assert progress.content.startswith("Import finished: read ")
    assert f"(2 threads), {len(stored)} new in the corpus." in progress.content
    assert "remove theirs with `!forget me`" in progress.content  # they saw no listening notice
    assert progress.edited_at is not None  # one message, edited in place


async def test_import_budget_counts_threads_too(world: World, core: FakeCore) -> None:
    seed_history(world)
    await world.env.settle()
    manager = world.member("manager", world.guild.create_role(
        "Managers", permissions=discord.Permissions(manage_messages=True)))
    await manager.send(world.general, "!import 12")
    assert "read 12 of up to 12 messages" in world.bot_replies()[-1].content
    # The channel holds 10 (5 from people and 2 commands, which go to the core, which skips them;
    # a bot's, the thread notice and the progress message are not handed over); the remaining 2
    # of the budget go to a thread.
    assert len(core.imported) == 5 + 2 + 2


async def test_import_refused_to_non_moderators(world: World, core: FakeCore) -> None:
    seed_history(world)
    await world.alice.send(world.general, "!import")
    assert world.general.last_message.content == "Only moderators may import the channel's history."
    assert core.imported == []


async def test_import_argument_checked(world: World, core: FakeCore) -> None:
    mod = world.member("mod", world.guild.create_role("Babble Mods"))
    await mod.send(world.general, f"!import {IMPORT_MAX + 1}")
    assert world.general.last_message.content.startswith("Usage: !import [N]")
    await mod.send(world.general, "!import lots")
    assert world.general.last_message.content.startswith("Usage: !import [N]")


async def test_slash_import(world: World, core: FakeCore) -> None:
    ids = seed_history(world)
    await world.env.settle()
    assert "import" not in world.alice.available_commands(world.general)  # hidden from members
    mod = world.member("mod", world.guild.create_role(
        "Babble Mods", permissions=discord.Permissions(manage_messages=True)))
    result = await mod.slash(world.general, "import", count=50)
    assert result.response.content.startswith("Import finished")
    assert len(core.imported) == len(ids["people"] + ids["thread"] + ids["archived"]
                                     + ids["command"])
