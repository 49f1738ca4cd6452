"""Rendering the core's replies on Slack: posts, progress edits, private answers and pictures.

Every text is escaped for mrkdwn (`bot.safety.slack_escape`) and sent with `link_names` off and
`parse` none, so nothing the bot writes can ping anyone or turn into a link it did not mean.
Public replies are `chat.postMessage` in the channel, or in the thread the command came from;
training progress edits that one message with `chat.update` (the core paces the edits:
PROGRESS_EDIT_S). `chat.update` cannot attach files, so pictures always go out as a new upload
(`files_upload_v2`) into the same channel or thread. Private replies (refusals, errors, help)
are ephemeral: `chat.postEphemeral`, or the slash command's `response_url`, which also works
in channels the bot is not in; a private reply with files (someone's `!export me`) goes to the
person's direct messages.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import Reply, ReplyFile
from bot.safety import slack_escape

log = logging.getLogger(__name__)

# No @-names turned into mentions, no automatic markup, no link previews.
SEND_OPTIONS: dict[str, Any] = {"link_names": False, "parse": "none", "unfurl_links": False,
                                "unfurl_media": False}
EDIT_OPTIONS: dict[str, Any] = {"link_names": False, "parse": "none"}
NOT_A_MEMBER = ("not_in_channel", "channel_not_found")
NOT_HERE = ("(only you see this: I am not a member of this channel; `/invite @babble` lets me "
            "answer everyone here)")
IN_DM = "sent to you in a direct message"
Respond = Callable[..., Awaitable[Any]]  # bolt's `respond`: a slash command's response_url


def shown(text: str) -> str:
    """Reply text as Slack receives it: escaped, never empty (Slack refuses an empty text)."""
    return slack_escape(text) if text.strip() else "(nothing to say)"


@dataclass(frozen=True)
class Where:
    """Where one incoming message was, and who sent it: where its replies go."""

    channel: str  # Slack's channel id (C…, G…, D…)
    user: str  # the asker, who sees private replies
    thread_ts: str | None = None  # answer in this thread
    direct: bool = False  # a direct message with the bot: private replies are plain posts


async def upload(client: AsyncWebClient, channel: str, thread_ts: str | None,
                 files: Sequence[ReplyFile], comment: str | None = None) -> None:
    """Upload PNG files into a channel or thread, as one message."""
    if not files:
        return
    uploads = [{"file": f.data, "filename": f.filename, "title": f.filename} for f in files]
    await client.files_upload_v2(file_uploads=uploads, channel=channel, thread_ts=thread_ts,
                                 initial_comment=comment)


class PostedSent:
    """A public reply: its text is edited in place, its files come as new uploads."""

    def __init__(self, client: AsyncWebClient, where: Where) -> None:
        self._client, self._where = client, where
        self.ts: str | None = None  # the text message's time stamp, its id in the channel

    async def post(self, reply: Reply) -> None:
        """Post the text, then upload the files below it."""
        w = self._where
        if reply.text.strip() or not reply.files:
            sent = await self._client.chat_postMessage(channel=w.channel, text=shown(reply.text),
                                                       thread_ts=w.thread_ts, **SEND_OPTIONS)
            self.ts = sent["ts"]
        await upload(self._client, w.channel, w.thread_ts, reply.files)

    async def edit(self, reply: Reply) -> None:
        """Replace the text (`chat.update`); files go out as a new upload."""
        if self.ts is None:  # a files-only reply has no text to edit
            await self.post(reply)
            return
        await self._client.chat_update(channel=self._where.channel, ts=self.ts,
                                       text=shown(reply.text), **EDIT_OPTIONS)
        await upload(self._client, self._where.channel, self._where.thread_ts, reply.files)


class PrivateSent:
    """A private reply; Slack cannot edit an ephemeral message, so an edit sends a new one."""

    def __init__(self, responder: SlackResponder) -> None:
        self._responder = responder

    async def edit(self, reply: Reply) -> None:
        await self._responder.send_private(reply)


class SlackResponder:
    """Answers one message or slash command in its channel or thread; `max_chars` is the
    longest reply (SLACK_REPLY_MAX_CHARS), which the core fits every text to."""

    def __init__(self, client: AsyncWebClient, where: Where, max_chars: int,
                 respond: Respond | None = None) -> None:
        self.client, self.where, self.max_chars = client, where, max_chars
        self._respond = respond

    async def send(self, reply: Reply) -> PostedSent | PrivateSent:
        """A public post, or a private answer where the core marks it private."""
        if reply.private and not self.where.direct:
            return await self.send_private(reply)
        sent = PostedSent(self.client, self.where)
        try:
            await sent.post(reply)
        except SlackApiError as err:
            if err.response.get("error") not in NOT_A_MEMBER or self._respond is None:
                raise
            # A slash command in a channel the bot is not in: answer the asker alone.
            await self.send_private(Reply(NOT_HERE))
            return await self.send_private(reply)
        return sent

    async def send_private(self, reply: Reply) -> PrivateSent:
        """Show the reply to the asker alone; its files go to their direct messages."""
        text = reply.text
        if reply.files:
            opened = await self.client.conversations_open(users=self.where.user)
            await upload(self.client, opened["channel"]["id"], None, reply.files, shown(text))
            text = IN_DM
        if self._respond is not None:
            answer = await self._respond(text=shown(text), response_type="ephemeral")
            if getattr(answer, "status_code", 200) != 200:
                log.warning("a slash command's private answer was refused (status %s)",
                            answer.status_code)
        else:
            await self.client.chat_postEphemeral(channel=self.where.channel, user=self.where.user,
                                                 text=shown(text), thread_ts=self.where.thread_ts,
                                                 **EDIT_OPTIONS)
        return PrivateSent(self)
