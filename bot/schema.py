"""The database schema of the bot's store, as migrations applied in order at open.

Only `bot.store` runs these (it is still the one module that speaks SQL to the database); they
live apart so that the store's queries fit in one reading.
"""

from __future__ import annotations

# Each entry migrates the schema from version i to i + 1; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE channels (
        id INTEGER PRIMARY KEY,
        platform TEXT NOT NULL,
        channel_key TEXT NOT NULL,
        listening INTEGER NOT NULL DEFAULT 0,
        active_model INTEGER REFERENCES models(id) ON DELETE SET NULL,
        corpus_rev INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        UNIQUE (platform, channel_key)
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        channel INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        platform_msg_id TEXT,
        part INTEGER NOT NULL DEFAULT 0,
        author_id TEXT NOT NULL,
        author_name TEXT NOT NULL,
        source TEXT NOT NULL,
        text TEXT NOT NULL,
        chars INTEGER NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (channel, platform_msg_id, part)
    );
    CREATE INDEX messages_by_author ON messages (channel, author_id);
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        channel INTEGER NOT NULL REFERENCES channels(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        metrics TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (channel, version)
    );
    """,
    # 2: find a platform message without knowing its channel (Discord ids are unique).
    """
    CREATE INDEX messages_by_platform_id ON messages (platform_msg_id);
    """,
    # 3: who asked to be forgotten: listening and imports store nothing of theirs there
    # (scope: a channel key, or '*' for every channel of the platform).
    """
    CREATE TABLE optouts (
        platform TEXT NOT NULL,
        scope TEXT NOT NULL,
        author_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (platform, scope, author_id)
    );
    """,
    # 4: the chance (0..1) that the bot babbles after an ordinary message in a channel.
    """
    ALTER TABLE channels ADD COLUMN reply_chance REAL NOT NULL DEFAULT 0;
    """,
    # 5: channels whose data goes when the grace period ends (the bot left, or it was deleted).
    """
    CREATE TABLE removals (
        platform TEXT NOT NULL,
        channel_key TEXT NOT NULL,
        due_at REAL NOT NULL,
        PRIMARY KEY (platform, channel_key)
    );
    """,
    # 6: small facts a front keeps across starts (what it last registered with its platform).
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
)
EVERYWHERE = "*"  # an opt-out's scope that covers every channel of a platform
SCHEMA_VERSION = len(MIGRATIONS)
