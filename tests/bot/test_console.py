"""`python -m bot` as a user runs it: piped console, signals, a locked database, a crash."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.core import Core
from bot.messages import Attachment
from bot.settings import load_settings
from tests.bot.helpers import JOHN, lines_of, rows, say

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path, tiny_base: Path) -> dict[str, str]:
    """Environment of a bot process with its own database and the tiny base model."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "BOT_DB": str(tmp_path / "bot.db"),
            "BOT_CHECKPOINTS": str(tmp_path / "channels"), "BOT_PLOTS_DIR": str(tmp_path / "p"),
            "BASE_MODEL": str(tiny_base), "LOG_LEVEL": "WARNING", "TRAIN_EVAL_EVERY": "2",
            "PROGRESS_EDIT_S": "0"}


def bot(env: dict[str, str], stdin: str, *args: str, timeout: float = 60) -> \
        subprocess.CompletedProcess:
    """Run `python -m bot --console` to the end of its piped input."""
    return subprocess.run([sys.executable, "-m", "bot", "--console", "--env-file", "none",
                           *args], input=stdin, capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


class Running:
    """A bot process whose input stays open, read line by line as it answers."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "--console", "--env-file", "none"], env=env, cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def type(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, text: str, timeout: float = 60) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            if text in line:
                return line


def test_piped_console_answers_each_line_and_exits(env: dict[str, str], tmp_path: Path) -> None:
    book = tmp_path / "john.txt"
    book.write_text("\n".join(lines_of(JOHN, 1000)))
    done = bot(env, f"!babble\n!prob To be or not to be\n!learn < {book}\n"
                    f"!learn < {tmp_path / 'missing.txt'}\n!learn < /tmp/a\x00b.txt\n"
                    "!learn < /dev/zero\n", "--channel", "bible")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].strip()  # the babble, which may span several lines
    assert any(line.startswith("'To be or not to be': 18 characters") for line in out)
    assert any(line.startswith("verdict:") for line in out)
    (picture,) = [line for line in out if line.startswith("[picture: ")]
    assert Path(picture[len("[picture: "):-1]).read_bytes().startswith(b"\x89PNG")
    assert "lines from 'john.txt'" in done.stdout and "cannot read" in done.stdout
    assert out[-2] == "a file name cannot contain a NUL character"  # and the console goes on
    assert out[-1].startswith("/dev/zero is not a regular file")
    assert rows(Path(env["BOT_DB"]), "SELECT channel_key FROM channels") == [("bible",)]
    assert "Traceback" not in done.stderr


def test_locked_database_at_start_is_a_clear_error(env: dict[str, str], monkeypatch,
                                                   capsys) -> None:
    """In-process through `main`, as `python -m bot` runs it (the piped test runs the process)."""
    for name, value in {**env, "DB_BUSY_TIMEOUT_S": "0.2"}.items():
        monkeypatch.setenv(name, value)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], "
         "isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); "
         "time.sleep(60)", env["BOT_DB"]], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        status = main(["--console", "--env-file", "none"])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert status == 2
    assert "error: database" in err and "locked by another process" in err
    assert "Traceback" not in err


def test_bad_setting_is_a_clear_error(env: dict[str, str]) -> None:
    done = bot({**env, "SAMPLE_WORKERS": "lots"}, "")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: setting SAMPLE_WORKERS must be an integer, got 'lots'"


def test_sigkill_during_training_loses_nothing_and_sigterm_flushes(env: dict[str, str],
                                                                  tmp_path: Path) -> None:
    db = Path(env["BOT_DB"])
    book = tmp_path / "john.txt"
    book.write_text("\n".join(lines_of(JOHN, 6000)))
    asyncio.run(_first_version(env, book))  # in-process: a model v1 to keep
    (ckpt,) = rows(db, "SELECT path FROM models")
    messages = rows(db, "SELECT COUNT(*) FROM messages")

    running = Running(env)  # no step cap: trains until killed
    running.type("!train --minutes 5")
    running.wait_for("· step")
    running.proc.kill()
    running.proc.wait(timeout=30)

    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert rows(db, "SELECT path FROM models") == [ckpt]
    assert rows(db, "SELECT COUNT(*) FROM messages") == messages

    after = Running({**env, "LISTEN_FLUSH_S": "600", "LISTEN_BATCH": "1000"})
    after.type("!model")
    assert "answering here: this channel's model v1" in after.wait_for("answering here")
    after.type("!listen on")
    after.type("kept one")
    after.type("kept two")
    after.type("!help")
    after.wait_for("commands:")
    assert rows(db, "SELECT COUNT(*) FROM messages") == messages  # the two are buffered
    after.proc.send_signal(signal.SIGTERM)
    assert after.proc.wait(timeout=30) == 0
    assert rows(db, "SELECT text FROM messages ORDER BY id DESC LIMIT 2") == \
        [("kept two",), ("kept one",)]
    stderr = after.proc.stderr.read()
    assert "Traceback" not in stderr and "note:" not in stderr  # v1 loaded fine


async def _first_version(env: dict[str, str], book: Path) -> None:
    """Train a model v1 for the console channel, with the settings the bot process reads."""
    settings = dataclasses.replace(load_settings("none", env), train_max_steps=4)
    async with await Core.open(settings) as core:
        await say(core, "!learn", channel="console",
                  files=(Attachment("john.txt", book.read_bytes()),))
        rec = await say(core, "!train", channel="console")
        await core.wait_trainings()
    assert "Model v1 answers here now" in rec.posted[0].last.text, rec.texts
