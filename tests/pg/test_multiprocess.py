"""The deployment of issue 14 in small: two bot processes (console fronts, users alice and bob,
one channel) and training workers on one PostgreSQL database. One smoke test: a `!learn` in one
is in the other's `!corpus`; `!train` is taken by a worker, which is SIGKILLed mid-job, and the
job finishes on another; the adopted model answers in both; alice's `!forget me` in her process
and bob's never babbles her text again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.bot.helpers import JOHN, lines_of
from tests.bot.test_console import Running
from tests.bot.test_forget import ALICE_WORD
from tests.pg.server import PgServer

ROOT = Path(__file__).resolve().parents[2]
PROBE = f"!continue alice says {ALICE_WORD[:12]} --temp 0.0001 --len 9"  # greedy: what it learned


def worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bot", "--train-worker", "--env-file", "none"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_until(check, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def answer(bot: Running, line: str, marker: str) -> str:
    bot.type(line)
    return bot.wait_for(marker)


def test_two_bots_and_workers_on_one_database(pg_server: PgServer, pg_url: str,
                                              tiny_base: Path, tmp_path: Path) -> None:
    database = pg_url.rsplit("/", 1)[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BOT_DB": pg_url,
           "BOT_PLOTS_DIR": str(tmp_path / "plots"), "BOT_CHECKPOINTS": str(tmp_path / "none"),
           "BASE_MODEL": str(tiny_base), "LOG_LEVEL": "WARNING", "TRAIN_EVAL_EVERY": "2",
           "TRAIN_MAX_STEPS": "30", "PROGRESS_EDIT_S": "0", "TRAIN_HERE": "0",
           "TRAIN_LEASE_S": "2"}
    book, hers = tmp_path / "john.txt", tmp_path / "alice.txt"
    book.write_text("\n".join(lines_of(JOHN, 5000)))
    hers.write_text("\n".join(f"alice says {ALICE_WORD} number {i}" for i in range(30)))
    alice = Running({**env, "USER": "alice", "LOGNAME": "alice"})
    bob = Running({**env, "USER": "bob", "LOGNAME": "bob"})
    first = worker({**env, "TRAIN_MAX_STEPS": "0"})  # its job lasts until it is killed
    procs = [alice.proc, bob.proc, first]
    try:
        answer(bob, f"!learn < {book}", "lines from")
        answer(alice, f"!learn < {hers}", "lines from")
        assert "from 2 contributors" in answer(bob, "!corpus", "this channel's corpus")

        bob.type("!train --minutes 0.5")
        wait_until(lambda: pg_server.psql("SELECT state FROM jobs", database).strip()
                   == "running", 60, "the worker to take the job")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        procs.append(worker(env))  # takes the job once the dead one's lease runs out
        final = bob.wait_for("answers here now", timeout=120)
        assert "Model v1" in final, final
        assert pg_server.psql("SELECT tries, state FROM jobs", database).strip() == "2|done"

        for bot in (alice, bob):
            assert "this channel's model v1" in answer(bot, "!model", "answering here:")
        assert "usophagia" in answer(bob, PROBE, "alice says")  # the test means something

        assert "removed 30 messages" in answer(alice, "!forget me", "removed")
        assert "usophagia" not in answer(bob, PROBE, "alice says")
        assert "usophagia" not in answer(bob, PROBE + " --model markov", "alice says")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
