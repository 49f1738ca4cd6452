"""The front's own duties, over a fake core that answers verbatim (SimCord, no network).

Mentions, the length limit, files, errors, bots, attachments, raw edits and deletes, and the
Discord-only `!import`.
"""

from __future__ import annotations

import logging

import discord
import pytest
import simcord

from bot.discord_front import slash
from bot.discord_front.errors import INTERNAL
from bot.discord_front.render import NO_MENTIONS, InteractionSent
from bot.messages import Reply
from tests.discord import fakecore
from tests.discord.fakecore import FakeCore
from tests.discord.world import World

# SHARD_COUNT 0 means "ask Discord"; SimCord answers one shard.
pytestmark = pytest.mark.simcord(shard_count=1)

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 64


async def test_generated_mentions_ping_nobody_on_the_wire(world: World) -> None:
    role = world.guild.create_role("Everyone Who Reads", mentionable=True)
    text = f"@everyone @here {world.alice.mention} {role.mention} <@&{role.id}>"
    await world.alice.send(world.general, "!say " + text)

    reply = world.general.last_message
    assert reply.content == text  # the fake core does not sanitise: only the front guards
    sent = [r for r in world.env.http_requests if r.method == "POST" and "/messages" in r.path]
    assert sent[-1].json["allowed_mentions"] == {"parse": [], "replied_user": False}
    stored = world.stored(reply)
    assert not stored.mention_everyone
    assert stored.ping_user_ids == [] and stored.ping_role_ids == []
    # Control: the same text from the owner, sent without the guard, does ping.
    owner = simcord.MemberActor(world.env, world.guild, world.guild.owner)
    control = await owner.send(world.general, text)
    assert world.stored(control).mention_everyone
    assert world.stored(control).ping_role_ids == [role.id]


async def test_slash_reply_pings_nobody(world: World, core: FakeCore) -> None:
    # /prob goes to the fake core, which answers nothing; the front then says "Done.", and a
    # ping-carrying answer is checked through the prefix path above. Here: the payload flags.
    await world.alice.slash(world.general, "prob", sentence="@everyone hi")
    callbacks = [r.json for r in world.env.http_requests if r.path.endswith("/callback")]
    assert callbacks[-1]["data"]["allowed_mentions"] == {"parse": []}
    assert core.commands[-1] == ("prob", "-- @everyone hi")


async def test_replies_are_clipped_to_2000_characters(world: World) -> None:
    await world.alice.send(world.general, "!long 2500")
    assert len(world.general.last_message.content) == 2000
    assert world.general.last_message.content.endswith("…")
    emoji = "😀" * 1990
    await world.alice.send(world.general, "!say " + emoji)
    assert world.general.last_message.content == emoji


async def test_empty_reply_still_sends_something(world: World) -> None:
    await world.alice.send(world.general, "!say ")
    assert world.general.last_message.content == "(nothing to say)"


async def test_files_upload_fresh_on_send_and_edit(world: World) -> None:
    await world.alice.send(world.general, "!png")
    reply = world.general.last_message
    assert reply.content == "second"  # edited in place
    (attachment,) = reply.attachments
    assert attachment.filename == "curve.png"
    assert world.env.backend.cdn.get(attachment.url) == PNG  # the edit's upload was not empty


async def test_core_errors_become_a_short_reply(world: World, caplog) -> None:
    with caplog.at_level(logging.ERROR):
        await world.alice.send(world.general, "!boom")
    assert world.general.last_message.content == INTERNAL
    assert "kaboom" in caplog.text  # the traceback goes to the log, not the channel
    assert "Traceback" not in world.general.last_message.content


async def test_bots_and_webhooks_are_ignored(world: World, core: FakeCore) -> None:
    robot = world.guild.add_member(world.env.create_user("robot", bot=True))
    await robot.send(world.general, "!say I am a bot")
    hook = world.guild.create_webhook(world.general, "hook")
    await hook.send("!say I am a webhook")
    assert core.handled == []
    assert world.bot_replies() == []


async def test_channel_the_bot_cannot_send_in(world: World, core: FakeCore, caplog) -> None:
    me = world.env.bot.user
    quiet = world.guild.create_text_channel(
        "quiet", overwrites={me: discord.PermissionOverwrite(send_messages=False)})
    with caplog.at_level(logging.WARNING):
        await world.alice.send(quiet, "!say hello")
    assert core.commands == [("say", "hello")]
    assert world.bot_replies(quiet) == []
    assert "not replying" in caplog.text
    assert world.env.errors == []


async def test_learn_attachments(world: World, core: FakeCore) -> None:
    await world.alice.send(world.general, "!learn", attachments=[("notes.txt", b"hello there")])
    assert core.handled[-1].attachments[0].data == b"hello there"

    await world.alice.send(world.general, "!learn", attachments=[("cat.png", PNG)])
    assert "cat.png: not a .txt file" in world.general.last_message.content
    big = b"a" * 20_000_000
    await world.alice.send(world.general, "!learn", attachments=[("big.txt", big)])
    assert "big.txt: 20.0 MB is over the 1.0 MB limit" in world.general.last_message.content
    assert len(core.handled) == 1  # neither refused upload reached the core


async def test_slash_learn_with_a_file(world: World, core: FakeCore) -> None:
    await world.alice.slash(world.general, "learn", file=("notes.txt", b"from a file"))
    assert core.commands[-1] == ("learn", "")
    result = await world.alice.slash(world.general, "learn", file=("x.bin", b"\0\1"))
    assert "not a .txt file" in result.response.content


async def test_edits_and_deletes_reach_the_core(world: World, core: FakeCore) -> None:
    channel = str(world.general.id)
    message = await world.alice.send(world.general, "first words")
    await world.alice.edit(message, "better words")
    assert core.edited == [(channel, str(message.id), "better words")]
    await world.alice.delete(message)
    assert core.deleted == [(channel, str(message.id))]


async def test_raw_and_bulk_deletes_of_uncached_messages(world: World,
                                                         core: FakeCore) -> None:
    backend = world.env.backend
    old = [backend.create_message(world.general.id, world.alice.id, f"old {i}", broadcast=False)
           for i in range(3)]  # sent before the bot started: not in its cache
    backend.delete_message(world.general.id, old[0].id)
    backend.bulk_delete_messages(world.general.id, [old[1].id, old[2].id])
    await world.env.settle()
    assert sorted(m for _, m in core.deleted) == sorted(str(m.id) for m in old)


async def test_thread_messages_belong_to_the_parent_channel(world: World,
                                                            core: FakeCore) -> None:
    backend = world.env.backend
    thread = backend.create_thread(world.general.id, "side talk", world.alice.id)
    await world.env.settle()
    handle = simcord.ChannelHandle(world.env, world.guild, thread)
    message = await world.alice.send(handle, "!say in a thread")
    assert core.handled[-1].channel_id == str(world.general.id)
    await world.alice.delete(message)
    assert core.deleted[-1] == (str(world.general.id), str(message.id))


async def test_out_of_range_slash_options_are_refused_by_discord(world: World) -> None:
    with pytest.raises(simcord.OptionError):
        await world.alice.slash(world.general, "babble", len=100_000)
    with pytest.raises(simcord.OptionError):
        await world.alice.slash(world.general, "babble", model="gpt")


async def test_slash_options_become_core_arguments(world: World, core: FakeCore) -> None:
    result = await world.alice.slash(world.general, "continue", text="Once upon",
                                     temp=0.5, len=40, seed=3)
    callbacks = [r.json for r in world.env.http_requests if r.path.endswith("/callback")]
    assert callbacks[-1]["type"] == 4  # answered at once: no "thinking…" for a quick answer
    assert result.response.content == "Done."
    assert core.commands[-1] == ("continue", "--temp 0.5 --len 40 --seed 3 -- Once upon")
    mod = world.member("mod", world.guild.create_role(
        "mods", permissions=discord.Permissions(manage_messages=True)))
    await mod.slash(world.general, "train", cancel=True)
    assert core.commands[-1] == ("train", "cancel")
    await world.alice.slash(world.general, "forget", what="me")
    assert core.commands[-1] == ("forget", "me")


class _Gone:
    """A slash answer whose interaction token has expired."""

    async def edit(self, **kwargs: object) -> None:
        response = type("R", (), {"status": 404, "reason": "Not Found"})()
        raise discord.NotFound(response, {"code": 10015, "message": "Unknown Webhook"})


class _Channel:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, **kwargs: object) -> _Channel:
        self.sent.append(kwargs)
        return self

    async def edit(self, **kwargs: object) -> None:
        self.sent.append({"edited": True, **kwargs})


async def test_expired_interaction_edits_continue_in_the_channel() -> None:
    channel = _Channel()
    sent = InteractionSent(_Gone(), channel)  # type: ignore[arg-type]
    await sent.edit(Reply("50% done"))
    await sent.edit(Reply("done"))
    assert [m["content"] for m in channel.sent] == ["50% done", "done"]
    assert channel.sent[1]["edited"] and channel.sent[0]["allowed_mentions"] == NO_MENTIONS


@pytest.fixture
def quick_deferral(monkeypatch) -> None:
    """The front defers after 0.1 s and a slow command takes 0.4 s (1.5 s and 2 s for real)."""
    monkeypatch.setattr(slash, "DEFER_AFTER_S", 0.1)
    monkeypatch.setattr(fakecore, "SLOW_S", 0.4)


async def test_a_slow_slash_command_is_deferred_then_answered(world: World,
                                                              quick_deferral) -> None:
    result = await world.alice.slash(world.general, "prob", sentence="slow")
    callbacks = [r.json for r in world.env.http_requests if r.path.endswith("/callback")]
    assert callbacks[-1] == {"type": 5}  # deferred: "the bot is thinking"
    assert result.response.content == "late" and not result.response.ephemeral


async def test_a_late_private_answer_goes_to_the_asker_alone(world: World,
                                                             quick_deferral) -> None:
    result = await world.alice.slash(world.general, "prob", sentence="slow private")
    assert result.response.content == "(answered privately)"
    (private,) = result.followups
    assert private.content == "late" and private.ephemeral


async def test_leaving_a_server_or_losing_a_channel_schedules_its_removal(
        world: World, core: FakeCore) -> None:
    bot = world.env.bot
    guild = bot.get_guild(world.guild.id)
    await bot.messages_cog.on_guild_remove(guild)
    assert str(world.general.id) in core.removals
    await bot.messages_cog.on_guild_join(guild)
    assert core.removals == []
    await bot.messages_cog.on_guild_channel_delete(guild.get_channel(world.general.id))
    assert core.removals == [str(world.general.id)]


def test_slash_only_mode_asks_for_no_privileged_intent() -> None:
    from bot.discord_front.client import build_bot, intents
    from bot.settings import load_settings
    settings = load_settings(None, {"DISCORD_SLASH_ONLY": "1"})
    assert settings.discord_slash_only
    assert not intents(True).message_content and intents(True).guilds
    assert intents(False).message_content and not intents(False).members
    bot = build_bot(FakeCore(), settings)
    assert not bot.intents.message_content and not bot.intents.guild_messages


async def test_a_refused_slash_upload_is_private(world: World) -> None:
    result = await world.alice.slash(world.general, "learn", file=("x.bin", b"\0\1"))
    assert "not a .txt file" in result.response.content and result.response.ephemeral
