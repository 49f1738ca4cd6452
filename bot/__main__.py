"""`python -m bot`: Slack when both Slack tokens are set, Discord with DISCORD_TOKEN, else the
console chat; --console, --discord or --slack (or BOT_FRONT) choose."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

from bot.errors import SettingsError, StoreError
from bot.settings import Settings, load_settings, with_db
from bot.signals import stop_on_signals

log = logging.getLogger("bot")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments; settings themselves come from the environment and `.env`."""
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    fronts = parser.add_mutually_exclusive_group()
    fronts.add_argument("--console", action="store_true",
                        help="chat in the terminal even when a platform's tokens are set")
    fronts.add_argument("--discord", action="store_true", help="run the Discord front")
    fronts.add_argument("--slack", action="store_true", help="run the Slack front")
    parser.add_argument("--channel", default="console",
                        help="console channel name (each has its own corpus and model)")
    parser.add_argument("--db", help="database file or postgresql:// URL (overrides BOT_DB)")
    parser.add_argument("--train-worker", action="store_true",
                        help="no chat: take queued trainings from the PostgreSQL database in "
                             "BOT_DB (on TRAIN_DEVICE) until stopped")
    parser.add_argument("--sync", action="store_true",
                        help="register Discord's slash commands now, then exit (a start "
                             "registers them only when they changed)")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    return parser.parse_args(argv)


def check_db_path(path: Path) -> None:
    """StoreError unless `path` can be the database file: a regular file or nothing yet, in a
    folder this process can write (missing folders are created, so the nearest existing one).

    Checked before anything heavy is loaded, so an operator's mistake is one line at once."""
    if "\x00" in str(path):
        raise StoreError(f"database path {str(path)!r} contains a NUL character")
    if path.is_dir():
        raise StoreError(f"database {path} is a directory; give the database a file name")
    if path.exists() and not path.is_file():
        raise StoreError(f"database {path} is not a regular file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise StoreError(f"cannot create database {path}: {folder} is not a directory")
    try:  # really create a file: permission bits say nothing for root or a read-only mount
        with tempfile.TemporaryFile(dir=folder):
            pass
        if path.exists():
            os.close(os.open(path, os.O_RDWR))
    except OSError as err:
        where = path if path.exists() else f"the folder {folder}"
        raise StoreError(f"cannot write database {path}: {where} is not writable "
                         f"({err.strerror})") from None


async def run_console(settings: Settings, channel: str) -> int:
    """Run the console front until end of input or SIGTERM/SIGINT; the exit status."""
    from bot.console import ConsoleFront  # heavy imports (torch) only now
    from bot.core import Core

    core = await Core.open(settings.without_cooldowns())
    stop = stop_on_signals()
    try:
        chat = asyncio.create_task(ConsoleFront(core, channel).run())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({chat, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            log.info("signal received: shutting down")
            chat.cancel()
        stopper.cancel()
        await asyncio.gather(chat, stopper, return_exceptions=True)
    finally:
        await core.close()
    if not chat.cancelled() and chat.exception() is not None:  # never silently: the front broke
        log.error("the console stopped on an internal error", exc_info=chat.exception())
        return 1
    return 0


def run_discord(settings: Settings, sync_only: bool = False) -> int:
    """Hand over to the Discord front, if this tree has one."""
    try:
        import bot.discord_front as front
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("bot.discord_front"):
            print("error: DISCORD_TOKEN is set but the Discord front (bot.discord_front) is not "
                  "part of this installation; run `python -m bot --console` for the console chat",
                  file=sys.stderr)
            return 2
        raise
    front.run(settings, sync_only=sync_only)
    return 0


def choose_front(args: argparse.Namespace, settings: Settings) -> str:
    """console, discord or slack: the flag, else BOT_FRONT, else the one whose tokens are set."""
    for front in ("console", "discord", "slack"):
        if getattr(args, front, False):
            return front
    if settings.front != "auto":
        return settings.front
    slack = (bool(settings.slack_bot_token.strip()), bool(settings.slack_app_token.strip()))
    if any(slack) and not all(slack):
        have, lack = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN") if slack[0] else \
            ("SLACK_APP_TOKEN", "SLACK_BOT_TOKEN")
        raise SettingsError(f"{have} is set but {lack} is not: the Slack front needs both "
                            "(docs/slack.md), --console chats without them")
    if all(slack) and settings.discord_token:
        raise SettingsError("both DISCORD_TOKEN and the Slack tokens are set: choose with "
                            "--discord or --slack (or BOT_FRONT)")
    return "slack" if all(slack) else "discord" if settings.discord_token else "console"


def run_slack(settings: Settings) -> int:
    """Hand over to the Slack front, if its libraries are installed."""
    try:
        import bot.slack_front as front
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in ("slack_bolt", "slack_sdk", "aiohttp"):
            print("error: the Slack front needs the slack extra: pip install -e '.[slack]'",
                  file=sys.stderr)
            return 2
        raise
    front.run(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; user and start-up errors print one line and return a non-zero status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["migrate"]:  # `python -m bot migrate --from FILE --to URL`
        from bot.migrate import main as migrate

        return migrate(argv[1:])
    args = parse_args(argv)
    try:
        settings = load_settings(args.env_file)
        if args.db is not None:
            settings = with_db(settings, args.db)
        if not settings.db_url:
            check_db_path(settings.db_path)
        logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.train_worker:
            from bot.train_worker import run_worker

            return asyncio.run(run_worker(settings))
        if args.sync:
            if not settings.discord_token:
                raise SettingsError("--sync registers Discord's slash commands: set "
                                    "DISCORD_TOKEN first")
            return run_discord(settings, sync_only=True)
        front = choose_front(args, settings)
        if front == "slack":
            return run_slack(settings)
        if front == "discord":
            return run_discord(settings)
        return asyncio.run(run_console(settings, args.channel))
    except (SettingsError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
