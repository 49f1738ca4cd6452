"""The rows both stores return (SQLite's `bot.store`, PostgreSQL's `bot.pg_store`).

Plain frozen dataclasses, so that the rest of the bot never sees which database it runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.schema import EVERYWHERE

__all__ = ["EVERYWHERE", "ChannelRow", "CorpusStats", "ModelRow", "NewMessage"]


@dataclass(frozen=True)
class ChannelRow:
    """A channel: its row id, platform key, and settings."""

    id: int
    platform: str
    key: str
    listening: bool
    active_model: int | None
    corpus_rev: int
    reply_chance: float = 0.0  # of babbling after an ordinary message


@dataclass(frozen=True)
class NewMessage:
    """A piece of text to add to a channel's corpus."""

    author_id: str
    author_name: str
    text: str
    source: str  # "learn" | "file" | "listen" | "import"
    platform_msg_id: str | None = None
    part: int = 0
    created_at: float | None = None  # seconds since the epoch; now when None


@dataclass(frozen=True)
class CorpusStats:
    """Size of a channel's corpus."""

    messages: int
    chars: int
    contributors: int


@dataclass(frozen=True)
class ModelRow:
    """One trained model version of a channel; `path` is the folder of its checkpoints
    (relative to the checkpoint folder; in PostgreSQL only a name: the bytes are in the row)."""

    id: int
    channel: int
    version: int
    path: str
    kind: str
    metrics: dict[str, Any]
    created_at: float


# The tables a migration copies and `counts()` reports, parents before children, with the
# columns both schemas share (PostgreSQL's `checkpoints` and `jobs` have no SQLite twin).
COLUMNS: dict[str, tuple[str, ...]] = {
    "channels": ("id", "platform", "channel_key", "listening", "active_model", "corpus_rev",
                 "created_at", "reply_chance"),
    "models": ("id", "channel", "version", "path", "kind", "metrics", "created_at"),
    "messages": ("id", "channel", "platform_msg_id", "part", "author_id", "author_name", "source",
                 "text", "chars", "created_at"),
    "optouts": ("platform", "scope", "author_id", "created_at"),
    "removals": ("platform", "channel_key", "due_at"),
    "meta": ("key", "value"),
}
TABLES: tuple[str, ...] = tuple(COLUMNS)
