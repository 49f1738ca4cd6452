"""Settings: the only module that reads the environment (and `.env`, through python-dotenv).

Every setting has a default; `.env.example` and README's table list them all with their valid
values (`RANGES`, checked by `load_settings`). `Settings` is frozen and passed as an
argument; tests build one with `Settings(...)` or `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import SettingsError


@dataclass(frozen=True)
class Settings:
    """All configuration of the bot core and its fronts; `ENV_TABLE` documents each field.

    Times are in seconds, sizes in characters, unless the name says otherwise.
    """

    # Where things live.
    db_path: Path = Path("data/bot.db")
    # BOT_DB as a postgresql:// URL (many processes share it); secret: it may hold a password.
    db_url: str = field(default="", repr=False)
    checkpoint_dir: Path = Path("data/channels")
    plots_dir: Path = Path("out/plots")
    # The shipped models: a name lm.load knows, or a checkpoint path.
    base_model: str = "base"
    base_rnn: str = ""
    base_ngram: str = ""
    command_prefix: str = "!"
    # Worker pool.
    sample_workers: int = 2
    sample_batch: int = 8  # sampling requests for one model answered in one batched pass
    queue_limit: int = 256  # a burst within the default cooldowns queues instead of "busy"
    train_queue_limit: int = 2
    model_cache_mb: float = 512.0
    torch_threads: int = 0
    # Cooldowns: at most RATE commands per PER seconds; rate 0 turns a cooldown off.
    cooldown_user_rate: int = 5
    cooldown_user_per: float = 10.0
    cooldown_channel_rate: int = 20
    cooldown_channel_per: float = 10.0
    # Caps.
    max_message_chars: int = 4000
    max_corpus_chars: int = 2_000_000
    max_attachment_bytes: int = 1_000_000
    max_prob_chars: int = 2000
    max_babble_chars: int = 1000
    max_babble_n: int = 5
    reply_max_chars: int = 2000
    # Training.
    train_minutes: float = 1.0
    train_max_minutes: float = 10.0
    train_max_steps: int = 0
    train_kind: str = "gru"
    train_hidden: int = 256
    train_eval_every: int = 25
    train_val_max_chars: int = 20_000
    train_device: str = "cpu"  # "cuda" or "cuda:N" trains on a GPU
    train_here: bool = True  # PostgreSQL: this process also takes training jobs
    train_lease_s: float = 30.0  # a training job's claim lasts this long without a heartbeat
    progress_edit_s: float = 2.0
    keep_versions: int = 5
    removal_grace_days: float = 7.0  # a removed server's or deleted channel's data is kept
    ngram_refresh_s: float = 30.0
    # Storage.
    listen_flush_s: float = 2.0
    listen_batch: int = 100
    db_busy_timeout_s: float = 5.0
    log_level: str = "INFO"
    # Discord front (read here so that only this module touches the environment).
    discord_token: str = field(default="", repr=False)  # secret: kept out of repr and logs
    discord_test_guild: str = ""
    discord_mod_role: str = ""
    discord_slash_only: bool = False  # no Message Content intent: slash commands only
    shard_count: int = 0
    shard_ids: tuple[int, ...] = ()
    # Slack front (Socket Mode): both tokens set start it. Secrets: kept out of repr and logs.
    slack_bot_token: str = field(default="", repr=False)  # xoxb-…: the Web API
    slack_app_token: str = field(default="", repr=False)  # xapp-…: opens Socket Mode
    slack_api_url: str = "https://slack.com/api/"  # tests point it at a fake on loopback
    slack_moderator_group: str = ""  # a user group (id or handle) whose members moderate
    slack_reply_max_chars: int = 4000
    front: str = "auto"  # which front `python -m bot` runs; its flags win

    def without_cooldowns(self) -> Settings:
        """A copy with both cooldowns off (the console has one local user)."""
        return dataclasses.replace(self, cooldown_user_rate=0, cooldown_channel_rate=0)


# (environment name, field, what it means), in the order of `.env.example`.
ENV_TABLE: tuple[tuple[str, str, str], ...] = (
    ("BOT_DB", "db_path",
     "the SQLite database file, or a postgresql:// URL that many bot processes share"),
    ("BOT_CHECKPOINTS", "checkpoint_dir", "folder of channel model versions"),
    ("BOT_PLOTS_DIR", "plots_dir", "where the console front writes PNG pictures"),
    ("BASE_MODEL", "base_model", "answers where a channel has no model of its own"),
    ("BASE_RNN", "base_rnn",
     "start of every channel fine-tune, RNN column of !prob; empty = the RNN part of BASE_MODEL"),
    ("BASE_NGRAM", "base_ngram",
     "Markov column of !prob without a channel corpus; empty = the n-gram part of BASE_MODEL"),
    ("COMMAND_PREFIX", "command_prefix", "prefix of text commands"),
    ("SAMPLE_WORKERS", "sample_workers", "threads that sample and score"),
    ("SAMPLE_BATCH", "sample_batch",
     "waiting !babble, !continue or !prob on one model done in one pass"),
    ("QUEUE_LIMIT", "queue_limit", "sample/score jobs waiting or running before 'busy'"),
    ("TRAIN_QUEUE_LIMIT", "train_queue_limit",
     "trainings waiting or running before 'busy' (PostgreSQL: waiting for a worker)"),
    ("MODEL_CACHE_MB", "model_cache_mb", "LRU cap on loaded channel models, in MiB"),
    ("TORCH_THREADS", "torch_threads", "torch intra-op threads; 0 keeps torch's default"),
    ("COOLDOWN_USER_RATE", "cooldown_user_rate", "commands per user and channel; 0 = off"),
    ("COOLDOWN_USER_PER_S", "cooldown_user_per", "... per this many seconds"),
    ("COOLDOWN_CHANNEL_RATE", "cooldown_channel_rate", "commands per channel; 0 = off"),
    ("COOLDOWN_CHANNEL_PER_S", "cooldown_channel_per", "... per this many seconds"),
    ("MAX_MESSAGE_CHARS", "max_message_chars", "longest message stored, in characters"),
    ("MAX_CORPUS_CHARS", "max_corpus_chars", "largest corpus of one channel, in characters"),
    ("MAX_ATTACHMENT_BYTES", "max_attachment_bytes", "largest .txt upload to !learn, in bytes"),
    ("MAX_PROB_CHARS", "max_prob_chars", "longest sentence !prob scores, in characters"),
    ("MAX_BABBLE_CHARS", "max_babble_chars", "largest --len of !babble and !continue"),
    ("MAX_BABBLE_N", "max_babble_n", "largest --n of !babble and !continue"),
    ("REPLY_MAX_CHARS", "reply_max_chars",
     "longest reply on the console, in characters (Discord's is its own 2,000; Slack's "
     "SLACK_REPLY_MAX_CHARS)"),
    ("TRAIN_MINUTES", "train_minutes", "default budget of !train, in minutes"),
    ("TRAIN_MAX_MINUTES", "train_max_minutes", "largest --minutes of !train"),
    ("TRAIN_MAX_STEPS", "train_max_steps", "also stop training after this many steps; 0 = no cap"),
    ("TRAIN_KIND", "train_kind", "kind of a channel RNN trained from scratch (no base RNN)"),
    ("TRAIN_HIDDEN", "train_hidden", "its hidden size (fine-tunes keep the base's size)"),
    ("TRAIN_EVAL_EVERY", "train_eval_every", "training steps between validations (and progress)"),
    ("TRAIN_VAL_MAX_CHARS", "train_val_max_chars", "held-out text that decides adoption"),
    ("TRAIN_DEVICE", "train_device",
     "device that trains (cuda needs a GPU and a CUDA build of torch); models serve on CPUs"),
    ("TRAIN_HERE", "train_here",
     "with PostgreSQL, 1: this bot process also takes queued trainings; 0: leave them to "
     "`python -m bot --train-worker` processes"),
    ("TRAIN_LEASE_S", "train_lease_s",
     "with PostgreSQL, seconds a silent training worker keeps its job before another takes it"),
    ("PROGRESS_EDIT_S", "progress_edit_s", "least seconds between edits of a progress message"),
    ("KEEP_VERSIONS", "keep_versions", "model versions kept on disk per channel"),
    ("REMOVAL_GRACE_DAYS", "removal_grace_days",
     "days a channel's data is kept after the bot leaves its server or it is deleted"),
    ("NGRAM_REFRESH_S", "ngram_refresh_s", "least seconds between recounts of a channel n-gram"),
    ("LISTEN_FLUSH_S", "listen_flush_s", "seconds between batched writes of listened messages"),
    ("LISTEN_BATCH", "listen_batch", "write earlier when this many messages are pending"),
    ("DB_BUSY_TIMEOUT_S", "db_busy_timeout_s", "how long to wait for a locked database"),
    ("LOG_LEVEL", "log_level", "least severity of the log lines written to stderr"),
    ("DISCORD_TOKEN", "discord_token", "set it to run the Discord front (secret, never logged)"),
    ("DISCORD_TEST_GUILD", "discord_test_guild", "guild id where slash commands sync at once"),
    ("DISCORD_MOD_ROLE", "discord_mod_role", "a role (name or id) whose members may moderate"),
    ("DISCORD_SLASH_ONLY", "discord_slash_only",
     "1: run without the privileged Message Content intent (slash commands only; no `!` "
     "commands, no listening)"),
    ("SHARD_COUNT", "shard_count", "total Discord shards; 0 = let discord.py decide"),
    ("SHARD_IDS", "shard_ids", "comma-separated shard ids this process runs"),
    ("SLACK_BOT_TOKEN", "slack_bot_token",
     "the Slack app's Bot User OAuth Token, xoxb-… (secret, never logged)"),
    ("SLACK_APP_TOKEN", "slack_app_token",
     "its app-level token with connections:write, xapp-… (secret, never logged); both set: "
     "Slack"),
    ("SLACK_API_URL", "slack_api_url", "base URL of Slack's Web API (tests use a fake)"),
    ("SLACK_MODERATOR_GROUP", "slack_moderator_group",
     "a Slack user group (id S… or handle) whose members may moderate, besides admins"),
    ("SLACK_REPLY_MAX_CHARS", "slack_reply_max_chars", "longest reply on Slack, in characters"),
    ("BOT_FRONT", "front",
     "which front runs: auto picks Slack or Discord by their tokens, else the console"),
)
ENV_NAMES: dict[str, str] = {env: name for env, name, _ in ENV_TABLE}

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric setting: finite, from `low` (above it when `open_low`)
    up to `high`, both in the setting's own unit."""

    low: float
    high: float
    open_low: bool = False

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # NaN fails no comparison
            return False
        return (value > self.low if self.open_low else value >= self.low) and value <= self.high

    def __str__(self) -> str:
        if self.open_low:
            return f"above {_number(self.low)}, at most {_number(self.high)}"
        return f"from {_number(self.low)} to {_number(self.high)}"


def _number(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


DAY_S = 86_400.0
# Every numeric setting and its valid values; `_check` applies them, README and `.env.example`
# state them. Caps stop well short of what would exhaust memory or wrap an SQLite integer.
RANGES: dict[str, Range] = {
    "sample_workers": Range(1, 64),
    "sample_batch": Range(1, 1024),
    "queue_limit": Range(1, 100_000),
    "train_queue_limit": Range(1, 1000),
    "model_cache_mb": Range(0, 1_048_576, open_low=True),
    "torch_threads": Range(0, 1024),
    "cooldown_user_rate": Range(0, 100_000),
    "cooldown_user_per": Range(0, DAY_S, open_low=True),
    "cooldown_channel_rate": Range(0, 100_000),
    "cooldown_channel_per": Range(0, DAY_S, open_low=True),
    "max_message_chars": Range(1, 1_000_000),
    "max_corpus_chars": Range(1, 1_000_000_000),
    "max_attachment_bytes": Range(1, 100_000_000),
    "max_prob_chars": Range(1, 100_000),
    "max_babble_chars": Range(1, 100_000),
    "max_babble_n": Range(1, 100),
    "reply_max_chars": Range(100, 1_000_000),  # room for the shortest whole reply
    "train_minutes": Range(0, 1440, open_low=True),
    "train_max_minutes": Range(0, 1440, open_low=True),
    "train_max_steps": Range(0, 1_000_000_000),
    "train_hidden": Range(1, 8192),
    "train_eval_every": Range(1, 1_000_000),
    "train_val_max_chars": Range(1, 100_000_000),
    "progress_edit_s": Range(0, 3600),
    "train_lease_s": Range(1, 3600),
    "keep_versions": Range(1, 1000),
    "removal_grace_days": Range(0, 365),
    "ngram_refresh_s": Range(0, DAY_S),
    "listen_flush_s": Range(0, 3600, open_low=True),  # 0 would spin the writer
    "listen_batch": Range(1, 1_000_000),
    "db_busy_timeout_s": Range(0, 3600),
    "shard_count": Range(0, 100_000),
    "shard_ids": Range(0, 99_999),
    # Escaped for Slack (`&` becomes `&amp;`), 8,000 characters stay within its 40,000.
    "slack_reply_max_chars": Range(100, 8000),
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FRONTS = ("auto", "console", "discord", "slack")


def _convert(env_name: str, name: str, raw: str) -> object:
    """Turn the text of one setting into its field's type, or raise SettingsError."""
    default = _FIELDS[name].default
    raw = raw.strip()
    try:
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(int(p) for p in raw.replace(" ", "").split(",") if p)
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(type(default), "a list of integers")
        shown = "(hidden)" if env_name == "DISCORD_TOKEN" else repr(raw)
        raise SettingsError(f"setting {env_name} must be {kind}, got {shown}") from None
    return raw


def _check(settings: Settings) -> None:
    """Reject values that parse but are out of their stated range (NaN and infinity included)."""
    env_of = {name: env for env, name in ENV_NAMES.items()}
    for name, valid in RANGES.items():
        value = getattr(settings, name)
        if isinstance(value, tuple):
            if any(v not in valid for v in value):
                raise SettingsError(f"setting {env_of[name]} must list numbers {valid}, got "
                                    + ",".join(map(str, value)))
        elif value not in valid:
            raise SettingsError(f"setting {env_of[name]} must be {valid}, got {value}")
    if settings.train_minutes > settings.train_max_minutes:
        raise SettingsError(f"setting TRAIN_MINUTES ({settings.train_minutes:g}) must not exceed "
                            f"TRAIN_MAX_MINUTES ({settings.train_max_minutes:g})")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", settings.train_device):
        raise SettingsError(f"setting TRAIN_DEVICE must be {valid_text('train_device')}, got "
                            f"{settings.train_device!r}")
    if not settings.command_prefix:
        raise SettingsError("setting COMMAND_PREFIX must not be empty")
    if settings.log_level.upper() not in LOG_LEVELS:
        raise SettingsError(f"setting LOG_LEVEL must be {valid_text('log_level')}, got "
                            f"{settings.log_level!r}")
    _check_fronts(settings)


def _check_fronts(settings: Settings) -> None:
    """The front choice and the Slack URL (the tokens are checked by the front that uses them)."""
    if settings.front not in FRONTS:
        raise SettingsError(f"setting BOT_FRONT must be {valid_text('front')}, got "
                            f"{settings.front!r}")
    if not settings.slack_api_url.startswith(("https://", "http://")):
        raise SettingsError(f"setting SLACK_API_URL must be {valid_text('slack_api_url')}, got "
                            f"{settings.slack_api_url!r}")


def load_settings(env_file: str | Path | None = ".env",
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `environ` (default: the process environment, after loading `.env`).

    A variable already set in the environment wins over the same name in `.env`.
    """
    if environ is None:
        if env_file is not None and Path(env_file).is_file():
            from dotenv import load_dotenv

            load_dotenv(env_file, override=False)
        environ = os.environ
    values = {name: _convert(env, name, environ[env])
              for env, name in ENV_NAMES.items() if environ.get(env, "").strip()}
    if is_db_url(environ.get("BOT_DB", "")):  # a URL is no path: `Path` would fold its `//`
        values["db_url"] = environ["BOT_DB"].strip()
        del values["db_path"]
    settings = Settings(**values)
    _check(settings)
    return settings


def is_db_url(target: str) -> bool:
    """Whether BOT_DB (or --db) names a PostgreSQL server rather than an SQLite file."""
    return target.strip().startswith(("postgresql://", "postgres://"))


def with_db(settings: Settings, target: str) -> Settings:
    """`settings` with the database `target` (a file path or a postgresql:// URL)."""
    if is_db_url(target):
        return dataclasses.replace(settings, db_url=target.strip())
    return dataclasses.replace(settings, db_path=Path(target), db_url="")


def valid_text(name: str) -> str:
    """The valid values of a setting in words, as README and `.env.example` state them."""
    if name == "train_minutes":
        return f"{RANGES[name]}, and at most TRAIN_MAX_MINUTES"
    if name in RANGES:
        return ("numbers " if isinstance(_FIELDS[name].default, tuple) else "") + str(RANGES[name])
    if name == "db_path":
        return "a path or a postgresql:// URL"
    if name == "train_device":
        return "cpu, cuda or cuda:N"
    if isinstance(_FIELDS[name].default, Path):
        return "a path"
    if isinstance(_FIELDS[name].default, bool):
        return "0 or 1"
    return {"log_level": " or ".join((", ".join(LOG_LEVELS[:-1]), LOG_LEVELS[-1])),
            "command_prefix": "not empty",
            "front": " or ".join((", ".join(FRONTS[:-1]), FRONTS[-1])),
            "slack_api_url": "an http:// or https:// URL"}.get(name, "any text")


def _default_text(name: str) -> str:
    default = _FIELDS[name].default
    if isinstance(default, tuple):
        return ",".join(str(x) for x in default)
    return str(default)


def env_example() -> str:
    """The text of `.env.example`: every setting with its default and its valid values."""
    lines = ["# Settings of the bot. Every value shown is the default; copy to .env and edit.",
             "# Variables set in the environment win over this file."]
    for env, name, doc in ENV_TABLE:
        lines += ["", f"# {doc} (valid: {valid_text(name)})", f"{env}={_default_text(name)}"]
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The settings table of README.md (a test holds the two together)."""
    lines = ["| setting | default | valid | meaning |", "|---|---|---|---|"]
    for env, name, doc in ENV_TABLE:
        default = _default_text(name) or "(empty)"
        lines.append(f"| `{env}` | `{default}` | {valid_text(name)} | {doc} |")
    return "\n".join(lines) + "\n"


def settings_doc() -> str:
    """The text of `docs/settings.md`: the settings table (a test holds the two together)."""
    return ("# Settings\n\nThe bot reads these from the environment or from `.env` (the "
            "environment wins; `--env-file` names another file). `.env.example` lists the same "
            "settings with their defaults, ready to copy. Both files are generated from "
            "`bot/settings.py` by `python scripts/settings_docs.py`, and a test keeps them "
            "equal to it.\n\n" + readme_table())
