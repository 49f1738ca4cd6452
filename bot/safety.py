"""Make outgoing text safe on every platform: no mentions, no control characters, within length.

Mentions are neutralised by a zero-width space after the trigger character, so the text still
reads the same but no platform parses it as `@everyone`, `@here`, `<@id>`, `<@!id>`, `<@&id>`,
`<#id>` (Discord) or `<!channel>`, `<!here>`, `<!everyone>`, `<!subteam^...>`, `<@U...>`,
`<#C...>` (Slack). Fronts add their own guard on top: Discord's `allowed_mentions`, and on Slack
`slack_escape`, which leaves no `<` for Slack to read as markup at all.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

ZWSP = "\u200b"
ELLIPSIS = "…"
_MASS = re.compile(r"@(?=everyone|here|channel)", re.IGNORECASE)
_ANGLE = re.compile(r"<(?=[@#!:]|a:|t:)")
# Control characters other than newline and tab (C0, DEL and C1; NUL would end a C string on
# some platforms), and the bidi overrides and isolates (U+202A-U+202E, U+2066-U+2069), which
# make text display in another order than it is read, e.g. a file name ending "txt.exe".
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def neutralise_mentions(text: str) -> str:
    """Break every mention syntax with a zero-width space; visible text is unchanged."""
    text = _MASS.sub("@" + ZWSP, text)
    return _ANGLE.sub("<" + ZWSP, text)


def slack_escape(text: str) -> str:
    """Text for Slack's mrkdwn, shown as written: `&`, `<` and `>` escaped as Slack asks, so
    nothing in it becomes a mention, a channel or user group reference, or a disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def printable(text: str) -> str:
    """Replace control characters (NUL and C1 included) and bidi overrides and isolates by
    U+FFFD; keep newlines and tabs."""
    return _CONTROL.sub("\ufffd", text)


_PATH_PART = r"[^\s'\"()<>:;,]"
_NOT_AFTER = r"(?<![\w.~/-])"  # a path starts a word: "bits/char" is not one
_ABSOLUTE = re.compile(rf"{_NOT_AFTER}(?:~[\w.-]*)?/{_PATH_PART}+")


def hide_paths(text: str, roots: Iterable[str] = ()) -> str:
    """Show every absolute path, and every relative one under one of `roots` (the server's
    own folders and files, as configured), by its last part: "/srv/bot/data/channels/3/v2/
    model.pt" becomes "model.pt". Replies name files without showing the server's folders."""
    patterns = [_ABSOLUTE] + [
        re.compile(rf"{_NOT_AFTER}{re.escape(root.rstrip('/'))}(?:/{_PATH_PART}*)?(?![\w.-])")
        for root in roots if "/" in root.rstrip("/")]
    for pattern in patterns:
        text = pattern.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1] or "/", text)
    return text


def fit(text: str, limit: int) -> str:
    """Cut text to at most `limit` characters, ending with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Keep a closing code fence if the cut left one open (Discord would show raw text).
    if cut.count("```") % 2 == 1:
        cut = cut[: limit - 5] + ELLIPSIS + "\n```"
        return cut
    return cut + ELLIPSIS


def safe_text(text: str, limit: int) -> str:
    """Everything the core sends: printable, mention-free, at most `limit` characters."""
    return fit(neutralise_mentions(printable(text)), limit)


def show_char(ch: str) -> str:
    """A character as a reader can see it: invisible and control characters by code point."""
    if ch == " ":
        return "' '"
    if len(ch) != 1:  # a marker such as "<end>"
        return ch
    category = unicodedata.category(ch)
    if category[0] in "CZ" or category == "Mn":
        return f"U+{ord(ch):04X}"
    return repr(ch)
