"""`python -m bot migrate --from data/bot.db --to postgresql://...`: SQLite to PostgreSQL.

Copies every table (row ids kept) and every version's checkpoint file (into the `checkpoints`
rows) in one transaction into an empty PostgreSQL database, then counts the rows on both sides
and prints them: the exit status is 0 only when every count matches. The bot must be stopped
(the SQLite file's lock says so otherwise). The SQLite file and the folders are left as they
were, so a failed or unwanted migration changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from bot.errors import SettingsError, StoreError
from bot.records import TABLES
from bot.settings import is_db_url, load_settings
from bot.versions import MODEL_FILE

log = logging.getLogger(__name__)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot migrate", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--from", dest="source", required=True, type=Path,
                        help="the SQLite database file of the bot")
    parser.add_argument("--to", dest="target", required=True,
                        help="postgresql:// URL of an empty database")
    parser.add_argument("--checkpoints", type=Path,
                        help="the SQLite bot's checkpoint folder (default: BOT_CHECKPOINTS)")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    return parser.parse_args(argv)


async def copy(source: Path, target: str, checkpoints: Path) -> tuple[dict[str, int],
                                                                      dict[str, int]]:
    """Copy everything; (counts in SQLite, counts in PostgreSQL), where SQLite's "checkpoints"
    is the number of version files found."""
    from bot.pg_store import PgStore
    from bot.store import Store

    if not source.is_file():
        raise StoreError(f"{source} is not a database file")
    lite = await Store.open(source)
    try:
        pg = await PgStore.open(target)
        try:
            found = await _copy(lite, pg, checkpoints)
            want = {**await lite.counts(), "checkpoints": found}
            return want, await pg.counts()
        finally:
            await pg.close()
    finally:
        await lite.close()


async def _copy(lite: Any, pg: Any, checkpoints: Path) -> int:
    """The copy itself, in one PostgreSQL transaction; the checkpoint files found."""
    found = 0
    async with pg.importing() as importer:
        for table in TABLES:
            async for rows in lite.export_rows(table):
                await importer.add(table, rows)
                if table != "models":
                    continue
                for row in rows:  # (id, channel, version, path, ...)
                    path = checkpoints / row[3] / MODEL_FILE
                    if not path.is_file():
                        log.warning("version %d of channel %d has no file %s: it will fall "
                                    "back to the base model", row[2], row[1], path)
                        continue
                    await importer.add_checkpoint(row[0], await asyncio.to_thread(
                        path.read_bytes))
                    found += 1
    return found


def report(want: dict[str, int], got: dict[str, int]) -> tuple[str, bool]:
    """The counts side by side, and whether they all match."""
    lines = [f"{'table':<12} {'sqlite':>10} {'postgresql':>10}"]
    ok = True
    for table, n in want.items():
        mark = "" if got.get(table) == n else "  MISMATCH"
        ok &= not mark
        lines.append(f"{table:<12} {n:>10,} {got.get(table, 0):>10,}{mark}")
    return "\n".join(lines), ok


def main(argv: list[str]) -> int:
    """Entry point: one line on stderr for a mistake, the counts on stdout; 0 when they match."""
    args = parse_args(argv)
    try:
        settings = load_settings(args.env_file)
        if not is_db_url(args.target):
            raise SettingsError(f"--to must be a postgresql:// URL, got {args.target[:40]!r}")
        logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        want, got = asyncio.run(copy(args.source, args.target,
                                     args.checkpoints or settings.checkpoint_dir))
    except (SettingsError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text, ok = report(want, got)
    print(text)
    print("migrated: every count matches" if ok else "the counts differ: see above")
    return 0 if ok else 1
