"""Slack payloads as Slack sends them, delivered to the real bolt app, and what came back.

Requests go through `AsyncBoltRequest(mode="socket_mode", body=...)` and `app.async_dispatch`,
as bolt's own tests and its Socket Mode adapter do; the replies are read off the fake Web API.
"""

from __future__ import annotations

import html
import itertools
import json
from dataclasses import dataclass
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.slack_front import SlackFront
from tests.slack.fakeslack import BOT_USER, TEAM, FakeSlack

_numbers = itertools.count(1)


def ts() -> str:
    """A fresh message time stamp."""
    return f"1600000000.{next(_numbers):06d}"


def event_body(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """An Events API callback around one event."""
    return {"token": "verification", "team_id": TEAM, "api_app_id": "A1", "event": event,
            "type": "event_callback", "event_id": event_id or f"Ev{next(_numbers):08d}",
            "event_time": 1600000000,
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]}


def message(text: str, user: str = "U1", channel: str = "C1", **extra: Any) -> dict[str, Any]:
    """A `message` event: a person wrote `text` in `channel` (a D… channel is a DM)."""
    stamp = extra.pop("ts", None) or ts()
    return event_body({"type": "message", "user": user, "text": text, "channel": channel,
                       "channel_type": "im" if channel.startswith("D") else "channel",
                       "ts": stamp, "event_ts": stamp, "team": TEAM, **extra})


def mention(text: str, user: str = "U1", channel: str = "C1", **extra: Any) -> dict[str, Any]:
    """An `app_mention` event (Slack sends the same message as a `message` event too)."""
    stamp = extra.pop("ts", None) or ts()
    return event_body({"type": "app_mention", "user": user, "text": text, "channel": channel,
                       "ts": stamp, "event_ts": stamp, "team": TEAM, **extra})


def edited(stamp: str, new: str, old: str, user: str = "U1",
           channel: str = "C1") -> dict[str, Any]:
    """The `message_changed` event of an edit."""
    return event_body({"type": "message", "subtype": "message_changed", "channel": channel,
                       "hidden": True, "ts": ts(), "event_ts": ts(),
                       "message": {"type": "message", "user": user, "text": new, "ts": stamp,
                                   "edited": {"user": user, "ts": ts()}},
                       "previous_message": {"type": "message", "user": user, "text": old,
                                            "ts": stamp}})


def deleted(stamp: str, channel: str = "C1") -> dict[str, Any]:
    """The `message_deleted` event of a deletion."""
    return event_body({"type": "message", "subtype": "message_deleted", "channel": channel,
                       "hidden": True, "deleted_ts": stamp, "ts": ts(), "event_ts": ts()})


def slash(fake: FakeSlack, command: str, text: str = "", user: str = "U1",
          channel: str = "C2") -> dict[str, Any]:
    """A slash command's payload, with a response URL on the fake."""
    n = next(_numbers)
    return {"token": "verification", "team_id": TEAM, "team_domain": "test",
            "channel_id": channel, "channel_name": "general", "user_id": user,
            "user_name": user.lower(), "command": command, "text": text, "api_app_id": "A1",
            "is_enterprise_install": "false", "response_url": f"{fake.root}respond/{n}",
            "trigger_id": f"{n}.1.trigger"}


@dataclass(frozen=True)
class Answer:
    """What a person sees of one call: a post, an edit, a private answer or files."""

    kind: str  # "public", "edit", "private", "files" or "dm-files"
    text: str  # as a reader sees it (entities decoded)
    where: str = ""  # channel, and thread when in one


def answers(fake: FakeSlack, since: int = 0) -> list[Answer]:
    """The answers among the fake's calls from index `since` on."""
    out = []
    for call in fake.calls[since:]:
        if not call.ok:
            continue
        a = call.args
        where = f"{a.get('channel') or a.get('channel_id', '')} {a.get('thread_ts') or ''}"
        if call.method == "chat.postMessage":
            out.append(Answer("public", html.unescape(a["text"]), where.strip()))
        elif call.method == "chat.update":
            out.append(Answer("edit", html.unescape(a["text"]), where.strip()))
        elif call.method in ("chat.postEphemeral", "respond"):
            out.append(Answer("private", html.unescape(a["text"])))
        elif call.method == "files.completeUploadExternal":
            names = ",".join(f["title"] for f in json.loads(a["files"]))
            dm = str(a.get("channel_id", "")).startswith("D")
            out.append(Answer("dm-files" if dm else "files", names, where.strip()))
    return out


async def deliver(front: SlackFront, body: dict[str, Any]) -> BoltResponse:
    """Hand one payload to the bolt app and wait until the front has answered it."""
    response = await front.app.async_dispatch(AsyncBoltRequest(mode="socket_mode", body=body))
    await front.drain()
    return response
