"""Slash commands: typed options (choices, ranges) turned into the core's command text.

`/babble temp:0.8 len:200` runs exactly what `!babble --temp 0.8 --len 200` runs: the slash
path builds the same argument text and calls `Core.run_command`, so the core's one parser,
permissions and cooldowns serve both. Free text goes after a lone `--`, which ends the options
in the core's parser, so `/prob sentence:"a --b"` scores "a --b". Ranges come from the
settings, so Discord itself refuses an out-of-range value before the bot sees it. Every
command is deferred first: model work can take longer than the 3 s Discord waits for an answer.

No `from __future__ import annotations` here: discord.py reads these annotations at definition
time, and the ranges are built from the settings inside `slash_commands`.
"""

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

import discord
from discord import app_commands

from bot.discord_front.convert import (
    PLATFORM,
    corpus_channel,
    may_moderate,
    read_attachments,
    skipped_text,
)
from bot.discord_front.events import IMPORT_MAX
from bot.discord_front.render import NO_MENTIONS, InteractionResponder
from bot.messages import Attachment, Incoming, Reply
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.discord_front.client import BabbleBot

log = logging.getLogger(__name__)

ModelName = Literal["mix", "rnn", "markov", "uniform"]
CommandName = Literal["babble", "continue", "prob", "learn", "listen", "corpus", "train",
                      "model", "forget", "optin", "privacy", "export", "help", "import"]
MIN_TEMP, MAX_TEMP = 0.05, 5.0
DEFER_AFTER_S = 1.5  # answer directly (privately if need be) when faster; Discord allows 3 s


def options(**values: object) -> str:
    """`--name value` for each option given (None: not given); values are numbers or names."""
    return " ".join(f"--{name} {value}" for name, value in values.items() if value is not None)


def with_text(opts: str, text: str) -> str:
    """Options, then free text after `--` so that nothing in the text is read as an option."""
    return f"{opts} -- {text}".strip() if text else opts


def slash_incoming(
    interaction: discord.Interaction, settings: Settings, text: str,
    attachments: tuple[Attachment, ...] = (),
) -> Incoming:
    """The core's view of a slash command (it has no message id: nothing to store)."""
    user = interaction.user
    channel = interaction.channel
    return Incoming(
        platform=PLATFORM,
        channel_id=str(corpus_channel(channel) or interaction.channel_id),
        author_id=str(user.id),
        author_name=user.display_name,
        text=text,
        author_is_bot=user.bot,
        may_moderate=may_moderate(user, channel, settings, interaction.permissions),
        attachments=attachments,
    )


def slash_commands(bot: "BabbleBot") -> list[app_commands.Command]:
    """The slash commands, their ranges taken from the bot's settings."""
    s = bot.settings
    Temp = app_commands.Range[float, MIN_TEMP, MAX_TEMP]
    Length = app_commands.Range[int, 1, s.max_babble_chars]
    Count = app_commands.Range[int, 1, s.max_babble_n]
    Seed = app_commands.Range[int, 0, 2**31 - 1]
    Minutes = app_commands.Range[float, 0.1, s.train_max_minutes]

    async def run(interaction: discord.Interaction, name: str, args: str,
                  attachments: tuple[Attachment, ...] = ()) -> None:
        responder = InteractionResponder(interaction)
        deferral = asyncio.create_task(responder.defer_after(DEFER_AFTER_S))
        text = f"{s.command_prefix}{name} {args}".strip()
        msg = slash_incoming(interaction, s, text, attachments)
        try:
            await bot.core.run_command(msg, name, args, responder)
        finally:
            await responder.stop_deferral(deferral)
        if not responder.answered:
            await responder.send(Reply("Done."))

    gen = "Sampling temperature: low is safe, high is wild"
    describe = dict(temp=gen, length="Most characters to write", model="Which model writes",
                    seed="Same seed, same text", n="How many messages")

    @app_commands.command(description="A message in this channel's style")
    @app_commands.rename(length="len")
    @app_commands.describe(**describe)
    async def babble(interaction: discord.Interaction, temp: Temp | None = None,
                     length: Length | None = None, model: ModelName | None = None,
                     seed: Seed | None = None, n: Count | None = None) -> None:
        args = options(temp=temp, len=length, model=model, seed=seed, n=n)
        await run(interaction, "babble", args)

    @app_commands.command(name="continue", description="Continue the text you start")
    @app_commands.rename(length="len")
    @app_commands.describe(text="The beginning to continue", **describe)
    async def continue_(interaction: discord.Interaction, text: str, temp: Temp | None = None,
                        length: Length | None = None, model: ModelName | None = None,
                        seed: Seed | None = None, n: Count | None = None) -> None:
        args = options(temp=temp, len=length, model=model, seed=seed, n=n)
        await run(interaction, "continue", with_text(args, text))

    @app_commands.command(description="How probable a sentence is under three models")
    @app_commands.describe(sentence="The sentence to score")
    async def prob(interaction: discord.Interaction, sentence: str) -> None:
        await run(interaction, "prob", with_text("", sentence))

    @app_commands.command(description="Add text (or a .txt file) to this channel's corpus")
    @app_commands.describe(text="Text to learn", file="A .txt file to learn")
    async def learn(interaction: discord.Interaction, text: str | None = None,
                    file: discord.Attachment | None = None) -> None:
        attachments: tuple[Attachment, ...] = ()
        if file is not None:
            attachments, refused = await read_attachments([file], s.max_attachment_bytes)
            if refused:
                await interaction.response.send_message(
                    skipped_text(refused, s.reply_max_chars), allowed_mentions=NO_MENTIONS,
                    ephemeral=True)
                return
        await run(interaction, "learn", with_text("", text or ""), attachments)

    # Moderator commands are top-level commands of their own: Discord hides a command by its
    # default permissions, never a subcommand or an option. The core still checks.
    def moderators(command):  # shown only to Manage Messages, and only in servers
        return app_commands.guild_only()(
            app_commands.default_permissions(manage_messages=True)(command))

    @app_commands.command(description="Store this channel's messages in its corpus (or not)")
    @moderators
    @app_commands.describe(state="on or off; leave out to see the setting")
    async def listen(interaction: discord.Interaction,
                     state: Literal["on", "off"] | None = None) -> None:
        await run(interaction, "listen", state or "")

    @app_commands.command(description="What this channel's corpus and model are")
    async def corpus(interaction: discord.Interaction) -> None:
        await run(interaction, "corpus", "")

    @app_commands.command(description="Fine-tune this channel's model on its corpus")
    @moderators
    @app_commands.describe(minutes="Training budget", cancel="Stop the running training")
    async def train(interaction: discord.Interaction, minutes: Minutes | None = None,
                    cancel: bool = False) -> None:
        await run(interaction, "train", "cancel" if cancel else options(minutes=minutes))

    @app_commands.command(description="Which model answers here, and its versions")
    async def model(interaction: discord.Interaction) -> None:
        await run(interaction, "model", "")

    @app_commands.command(description="Go back to this channel's previous model version")
    @moderators
    async def rollback(interaction: discord.Interaction) -> None:
        await run(interaction, "model", "rollback")

    @app_commands.command(description="Remove your messages and store none of yours again")
    @app_commands.describe(what="me: your messages here; me everywhere: in every channel")
    async def forget(interaction: discord.Interaction,
                     what: Literal["me", "me everywhere"]) -> None:
        await run(interaction, "forget", what)

    @app_commands.command(name="forget-all", description="Empty this channel's corpus and drop "
                                                           "its models")
    @moderators
    async def forget_all(interaction: discord.Interaction) -> None:
        await run(interaction, "forget", "all")

    @app_commands.command(description="Let listening and imports store your messages again")
    @app_commands.describe(everywhere="In every channel, not only this one")
    async def optin(interaction: discord.Interaction, everywhere: bool = False) -> None:
        await run(interaction, "optin", "everywhere" if everywhere else "")

    @app_commands.command(description="What the bot stores about you, and how to remove it")
    async def privacy(interaction: discord.Interaction) -> None:
        await run(interaction, "privacy", "")

    @app_commands.command(description="A file of everything the bot stores about you")
    async def export(interaction: discord.Interaction) -> None:
        await run(interaction, "export", "me")

    @app_commands.command(name="help", description="What the bot can do")
    @app_commands.describe(command="One command to explain")
    async def help_(interaction: discord.Interaction, command: CommandName | None = None) -> None:
        await run(interaction, "help", command or "")

    @app_commands.command(name="import", description="Moderators: read this channel's history")
    @moderators
    @app_commands.describe(count="How many recent messages to read, threads included")
    async def import_(interaction: discord.Interaction,
                      count: app_commands.Range[int, 1, IMPORT_MAX] | None = None) -> None:
        await interaction.response.defer(thinking=True)
        channel = interaction.channel
        if isinstance(channel, discord.Thread) and channel.parent is not None:
            channel = channel.parent
        allowed = may_moderate(interaction.user, interaction.channel, s, interaction.permissions)
        responder = InteractionResponder(interaction)
        await bot.messages_cog.start_import(allowed, channel, str(count or ""), responder)

    return [babble, continue_, prob, learn, listen, corpus, train, model, rollback, forget,
            forget_all, optin, privacy, export, help_, import_]
