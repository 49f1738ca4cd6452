"""Slack payloads to the core's terms: channel keys, plain text, commands addressed to the bot.

Slack sends message text as mrkdwn: `&`, `<` and `>` escaped, mentions and links in angle
brackets (`<@U123>`, `<#C123|general>`, `<!here>`, `<https://x|label>`). The core stores and
scores what people see, so those become plain text here (`@U123`, `#general`, `@here`, `label`);
outgoing text is escaped again by the renderer, so none of it can ping anyone on the way back.
"""

from __future__ import annotations

import re
from typing import Any

PLATFORM = "slack"
# Messages of people: plain ones, thread replies also sent to the channel, and ones with files
# (a `!learn` with a .txt upload). Joins, topics, bots and the rest are not messages to learn.
USER_SUBTYPES = (None, "thread_broadcast", "file_share")
_MARKUP = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")


def channel_key(team: str, channel: str) -> str:
    """The core's channel id of a Slack channel: `team:channel` (ids are unique per team)."""
    return f"{team}:{channel}"


def team_of(body: dict[str, Any]) -> str:
    """The workspace that sent a payload (events and slash commands name it differently)."""
    team = body.get("team_id") or body.get("team", {})
    return team.get("id", "") if isinstance(team, dict) else str(team)


def _shown(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if target.startswith(("@", "#")):
        return target[0] + (label or target[1:]).lstrip("@#")
    if target.startswith("!"):  # <!here>, <!subteam^S1|@team>, <!date^…|fallback>
        return label or "@" + target[1:].split("^")[0]
    return label or target  # a link: its label, else the address


def plain_text(text: str) -> str:
    """What a reader sees of Slack's mrkdwn text: markup resolved, entities decoded."""
    text = _MARKUP.sub(_shown, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def addressed(text: str, bot_user: str, prefix: str) -> str | None:
    """A message that starts by mentioning the bot, as the command text it asks for (raw
    mrkdwn): `@babble prob To be` is `!prob To be`, a bare `@babble` is `!babble`. None when
    the message does not start with the bot's mention."""
    if not bot_user:
        return None
    match = re.match(rf"\s*<@{re.escape(bot_user)}(?:\|[^>]*)?>\s*", text)
    if match is None:
        return None
    rest = text[match.end():].strip().removeprefix(prefix)
    return prefix + (rest or "babble")


def thread_of(event: dict[str, Any]) -> str | None:
    """The thread to answer in: the message's own thread, if it was in one."""
    return event.get("thread_ts")


def is_direct(channel: str, channel_type: str | None = None) -> bool:
    """A direct message with the bot (channel ids of DMs start with D)."""
    return channel_type == "im" or channel.startswith("D")
