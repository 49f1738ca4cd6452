"""The Slack front: a slack-bolt `AsyncApp` that hands messages and slash commands to the core.

Listeners only take the event and return: bolt acknowledges it to Slack at once (slash commands
call `ack()` first), and the work runs in a task the front keeps (`drain` waits for them). Text
commands and listened messages go to `Core.handle`, which tells commands from ordinary text;
`@babble prob To be` (an `app_mention`) is `!prob To be`; a slash command `/prob To be` calls
`Core.run_command` with the same argument text. Edits and deletions of messages reach the
corpus with the channel in the key (a Slack `ts` is unique only within its channel). Slack
delivers an event again when it thinks the first delivery failed: each event id is answered once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import FrontCore, Incoming, Reply
from bot.parsing import split_command
from bot.safety import safe_text
from bot.settings import Settings
from bot.slack_front.convert import (
    PLATFORM,
    USER_SUBTYPES,
    addressed,
    channel_key,
    is_direct,
    plain_text,
    team_of,
    thread_of,
)
from bot.slack_front.files import read_files
from bot.slack_front.people import People
from bot.slack_front.render import Respond, SlackResponder, Where

log = logging.getLogger(__name__)

EVENT_TTL_S = 900.0  # Slack retries an event for a few minutes (after 1 and 5 minutes)
SLASH = re.compile(r"^/[a-z][\w-]*$")
SLASH_NAMES = {"babble-help": "help"}  # slash names that differ from the command's
IMPORT_USAGE = "import"
IMPORT_HELP = ("not on Slack: Slack lets apps outside its Marketplace read a channel's history "
               "about once a minute, 15 messages at a time; `!listen on` stores what is said "
               "from now on")


class SeenEvents:
    """Ids of the events taken in the last `ttl_s` seconds."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s, self._clock = ttl_s, clock
        self._seen: dict[str, float] = {}  # in order of arrival, so the oldest come first

    def first(self, event_id: str) -> bool:
        """True the first time an id is seen within `ttl_s`, False for a repeat."""
        now = self._clock()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if at + self._ttl_s > now:
                break
            del self._seen[oldest]
        if event_id in self._seen:
            return False
        self._seen[event_id] = now
        return True


class SlackFront:
    """The bolt app, the core, and the tasks answering Slack's events."""

    def __init__(self, core: FrontCore, settings: Settings, client: AsyncWebClient,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.core, self.settings, self.client = core, settings, client
        self.people = People(client, settings.slack_moderator_group, clock)
        self.seen = SeenEvents(EVENT_TTL_S, clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = AsyncApp(client=client, signing_secret="", process_before_response=True,
                            request_verification_enabled=False,
                            logger=logging.getLogger("slack_bolt"))
        self.app.use(self._once)
        self.app.event("message")(self._on_message)
        self.app.event("app_mention")(self._on_mention)
        self.app.command(SLASH)(self._on_slash)
        for gone in ("member_left_channel", "channel_deleted", "group_deleted"):
            self.app.event(gone)(self._on_gone)
        self.app.event("member_joined_channel")(self._on_joined)
        self.app.event("app_uninstalled")(self._on_uninstalled)
        core.add_help(IMPORT_USAGE, IMPORT_HELP)

    # Listeners: quick, so that bolt acknowledges at once; the work runs in a kept task.

    async def _once(self, body: dict[str, Any],
                    next_: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        """Acknowledge a repeated event (or slash command) without handling it again."""
        event_id = body.get("event_id") or body.get("trigger_id")
        if event_id and not self.seen.first(str(event_id)):
            log.info("event %s delivered again: answered once", event_id)
            return BoltResponse(status=200, body="")
        await next_()
        return None

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any],
                          context: dict[str, Any]) -> None:
        self.spawn(self._message_event(team_of(body), event, context.get("bot_user_id") or ""),
                   "message")

    async def _on_mention(self, event: dict[str, Any], body: dict[str, Any],
                          context: dict[str, Any]) -> None:
        text = addressed(event.get("text") or "", context.get("bot_user_id") or "",
                         self.settings.command_prefix)
        # A mention further in (`ask @babble`) is ordinary text: the message event has it.
        # Slack sends an edited message that mentions the app as an app_mention again, with
        # `edited`: a command runs once, when it is sent (edits only reach the corpus).
        if text is not None and event.get("user") and not event.get("bot_id") \
                and not event.get("edited"):
            self.spawn(self._incoming(team_of(body), event, text), "app_mention")

    async def _on_slash(self, ack: Callable[[], Awaitable[Any]], command: dict[str, Any],
                        respond: Respond) -> None:
        await ack()  # Slack waits 3 s for this; the answer comes as messages
        self.spawn(self._slash(command, respond), str(command.get("command")))

    async def _on_gone(self, event: dict[str, Any], body: dict[str, Any],
                       context: dict[str, Any]) -> None:
        """The bot was removed from a channel, or the channel was deleted: its data goes after
        REMOVAL_GRACE_DAYS, unless the bot is back by then."""
        left = event.get("user")  # member_left_channel names who left; a deletion nobody
        if left is None or left == context.get("bot_user_id"):
            key = channel_key(team_of(body), str(event.get("channel")))
            self.spawn(self.core.schedule_removal(PLATFORM, [key]), str(event.get("type")))

    async def _on_uninstalled(self, body: dict[str, Any]) -> None:
        """The workspace removed the app: every channel of it goes after REMOVAL_GRACE_DAYS, as
        when a Discord server removes the bot (installing it again within that time keeps them:
        the channels the bot is in are kept at start)."""
        team = team_of(body)
        if team:
            self.spawn(self._remove_workspace(team), "app_uninstalled")

    async def _remove_workspace(self, team: str) -> None:
        count = await self.core.schedule_removal_under(PLATFORM, channel_key(team, ""))
        log.info("app uninstalled from %s: %d channels scheduled for removal", team, count)

    async def _on_joined(self, event: dict[str, Any], body: dict[str, Any],
                         context: dict[str, Any]) -> None:
        if event.get("user") == context.get("bot_user_id"):
            key = channel_key(team_of(body), str(event.get("channel")))
            self.spawn(self.core.cancel_removal(PLATFORM, [key]), "member_joined_channel")

    async def keep_present(self, team: str) -> int:
        """Keep the data of every channel the bot is in (it may have been invited back while
        offline); how many channels that is."""
        keys = []
        try:
            pages = await self.client.users_conversations(
                types="public_channel,private_channel", exclude_archived=True, limit=200)
            async for page in pages:
                keys += [channel_key(team, c["id"]) for c in page.get("channels", [])]
        except SlackApiError as err:  # e.g. installed before the manifest had channels:read
            log.warning("cannot list the bot's channels (%s): reinstall the app from "
                        "slack/manifest.yml", err.response.get("error"))
        except (aiohttp.ClientError, TimeoutError) as err:  # the next start tries again
            log.warning("cannot list the bot's channels: %s", type(err).__name__)
        await self.core.cancel_removal(PLATFORM, keys)
        return len(keys)

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run `work` in a task kept until it ends; an error is logged, never lost."""
        task = asyncio.create_task(self._logged(work, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _logged(work: Coroutine[Any, Any, None], what: str) -> None:
        try:
            await work
        except Exception:  # Slack refused a send, or a bug: log it, keep serving
            log.exception("handling a Slack %s failed", what)

    async def drain(self) -> None:
        """Wait until every event taken so far has been answered. Cancelled (a timeout at
        shutdown), it cancels the answers still running, and returns once they have ended."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # The work.

    async def _message_event(self, team: str, event: dict[str, Any], bot_user: str) -> None:
        """A new message, an edit or a deletion."""
        subtype = event.get("subtype")
        key = channel_key(team, str(event.get("channel", "")))
        if subtype == "message_changed":
            await self._edited(key, event)
        elif subtype == "message_deleted":
            await self.core.message_deleted(PLATFORM, key, str(event.get("deleted_ts")))
        elif subtype in USER_SUBTYPES and event.get("user") and not event.get("bot_id"):
            text = event.get("text") or ""
            command = addressed(text, bot_user, self.settings.command_prefix)
            if command is not None and not is_direct(str(event.get("channel", "")),
                                                     event.get("channel_type")):
                return  # the app_mention event of this message runs it (Slack sends none in DMs)
            await self._incoming(team, event, command or text)

    async def _edited(self, key: str, event: dict[str, Any]) -> None:
        """An edited message replaces its stored text; one replaced by a tombstone (a thread
        parent deleted while it has replies) leaves the corpus."""
        new, old = event.get("message") or {}, event.get("previous_message") or {}
        if new.get("bot_id") or new.get("subtype") == "bot_message" or not new.get("ts"):
            return
        if new.get("subtype") == "tombstone":
            await self.core.message_deleted(PLATFORM, key, str(new["ts"]))
        elif new.get("text") != old.get("text"):  # not a link preview or a new thread reply
            await self.core.message_edited(PLATFORM, key, str(new["ts"]),
                                           plain_text(new.get("text") or ""))

    async def _incoming(self, team: str, event: dict[str, Any], raw: str) -> None:
        """A person's message or mention: to the core, with the files of a `!learn`."""
        channel = str(event.get("channel", ""))
        where = Where(channel, str(event["user"]), thread_of(event),
                      is_direct(channel, event.get("channel_type")))
        responder = self.responder(where)
        msg = await self.incoming(team, where, plain_text(raw), event.get("ts"))
        command = split_command(msg.text, self.settings.command_prefix)
        if command is not None and command[0] == "import":
            await self._no_import(msg, responder)
            return
        if command is not None and command[0] == "learn" and event.get("files"):
            msg = await self._with_files(msg, event["files"], command[1], responder)
            if msg is None:
                return
        await self.core.handle(msg, responder)

    async def _slash(self, command: dict[str, Any], respond: Respond) -> None:
        """`/prob To be` runs what `!prob To be` runs."""
        slash = str(command.get("command", "")).lstrip("/")
        name = SLASH_NAMES.get(slash, slash)
        args = plain_text(command.get("text") or "").strip()
        channel = str(command.get("channel_id", ""))
        where = Where(channel, str(command.get("user_id", "")), None, is_direct(channel))
        responder = self.responder(where, respond)
        text = f"{self.settings.command_prefix}{name} {args}".strip()
        msg = await self.incoming(team_of(command), where, text, None)
        if name == "import":
            await self._no_import(msg, responder)
            return
        await self.core.run_command(msg, name, args, responder)

    def responder(self, where: Where, respond: Respond | None = None) -> SlackResponder:
        return SlackResponder(self.client, where, self.settings.slack_reply_max_chars, respond)

    async def incoming(self, team: str, where: Where, text: str,
                       ts: str | None) -> Incoming:
        """The core's view of a Slack message. Nobody moderates in a direct message (a
        stranger must not fill the training queue or store text there)."""
        person = await self.people.person(where.user)
        moderates = not where.direct and await self.people.may_moderate(where.user)
        return Incoming(platform=PLATFORM, channel_id=channel_key(team, where.channel),
                        author_id=where.user, author_name=person.name, text=text,
                        message_id=ts, may_moderate=moderates, shared_channel=not where.direct)

    async def _no_import(self, msg: Incoming, responder: SlackResponder) -> None:
        if await self.core.admit(msg, responder):
            p = self.settings.command_prefix
            await responder.send(Reply(f"{p}import is {IMPORT_HELP}", private=True))

    async def _with_files(self, msg: Incoming, files: list[dict[str, Any]], args: str,
                          responder: SlackResponder) -> Incoming | None:
        """`msg` with the .txt files it shares; None when nothing is left to learn (the
        skipped files are named, counted against the cooldowns like any answer)."""
        s = self.settings
        attachments, refused = await read_files(files, s.slack_bot_token, s.slack_api_url,
                                                s.max_attachment_bytes)
        if refused:
            skipped = Reply(safe_text("Skipped: " + "; ".join(refused), responder.max_chars))
            if not attachments and not args:
                if await self.core.admit(msg, responder):
                    await responder.send(skipped)
                return None
            await responder.send(skipped)
        return dataclasses.replace(msg, attachments=attachments)
