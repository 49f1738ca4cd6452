"""`python -m bot migrate`: an SQLite bot's database and checkpoint files into PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from bot.migrate import main
from bot.pg_store import PgStore
from bot.records import NewMessage
from bot.store import Store
from bot.versions import MODEL_FILE

ROOT = Path(__file__).resolve().parents[2]


async def sqlite_bot(db: Path, checkpoints: Path) -> None:
    """An SQLite bot's state: two channels, messages, three versions (one file missing),
    an opt-out, a removal due, a front's fact."""
    store = await Store.open(db)
    try:
        one, two = (await store.channel("discord", "1")).id, (await store.channel("slack", "1")).id
        await store.add_messages(one, [NewMessage(f"u{i % 3}", "U", f"line {i}", "listen",
                                                  str(i)) for i in range(120)])
        await store.add_messages(two, [NewMessage("x", "X", "ünïcode ✓", "learn")])
        await store.set_listening(one, True)
        for i in range(3):
            row = await store.add_model(one, f"discord-1/v{i}", "mix", {"bpc_after": i})
            if i != 1:  # v2's file was lost
                (checkpoints / row.path).mkdir(parents=True)
                (checkpoints / row.path / MODEL_FILE).write_bytes(bytes([i]) * 1000)
        await store.rollback(one)  # v2 answers
        await store.set_optout("discord", "*", "u1", True)
        await store.schedule_removals("slack", ["1"], 123.0)
        await store.set_meta("discord.commands", "abc")
    finally:
        await store.close()


def test_migrate_copies_everything_and_checks_counts(tmp_path: Path, pg_url: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    db, checkpoints = tmp_path / "bot.db", tmp_path / "channels"
    asyncio.run(sqlite_bot(db, checkpoints))
    args = ["--from", str(db), "--to", pg_url, "--checkpoints", str(checkpoints),
            "--env-file", "none"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "every count matches" in out and "checkpoints" in out and "121" in out, out

    async def check() -> None:
        lite, pg = await Store.open(db), await PgStore.open(pg_url)
        try:
            for platform in ("discord", "slack"):
                a, b = await lite.find_channel(platform, "1"), await pg.find_channel(platform, "1")
                assert a == b
                assert await lite.corpus_texts(a.id) == await pg.corpus_texts(b.id)
                assert await lite.models(a.id) == await pg.models(b.id)
            d = await pg.find_channel("discord", "1")
            assert d.listening and (await pg.active_model(d.id)).version == 2
            stored = [await pg.checkpoint(m.id) for m in await pg.models(d.id)]
            assert stored == [bytes([0]) * 1000, None, bytes([2]) * 1000]
            assert await pg.optouts() == await lite.optouts()
            assert await pg.due_removals(200.0) == [("slack", "1")]
            assert await pg.meta("discord.commands") == "abc"
            # New rows continue after the copied ids.
            new = await pg.add_model(d.id, "discord-1/v9", "mix", {})
            assert new.version == 4 and new.id > max(m.id for m in await lite.models(d.id))
            assert await pg.add_messages(d.id, [NewMessage("n", "N", "new", "learn")]) == 1
        finally:
            await lite.close()
            await pg.close()

    asyncio.run(check())
    assert main(args) == 2  # never into a database that holds data
    assert "already has rows" in capsys.readouterr().err


def test_migrate_mistakes_are_one_line(tmp_path: Path, pg_url: str) -> None:
    for args, message in (
            (["--from", str(tmp_path / "none.db"), "--to", pg_url], "is not a database file"),
            (["--from", str(tmp_path / "none.db"), "--to", "mysql://x"], "must be a postgresql")):
        done = subprocess.run([sys.executable, "-m", "bot", "migrate", *args, "--env-file",
                               "none"], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
