"""The settings of a shared deployment: BOT_DB as a URL, the training device, the lease."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import SettingsError
from bot.settings import Settings, load_settings, with_db

ROOT = Path(__file__).resolve().parents[2]
URL = "postgresql://bot:pw@db.internal:5432/babble?sslmode=require"


def test_bot_db_url_is_kept_whole_and_out_of_repr() -> None:
    s = load_settings(environ={"BOT_DB": URL, "TRAIN_DEVICE": "cuda:1", "TRAIN_HERE": "0",
                               "TRAIN_LEASE_S": "12"})
    assert (s.db_url, s.db_path, s.train_device, s.train_here, s.train_lease_s) == \
        (URL, Settings().db_path, "cuda:1", False, 12.0)
    assert "pw" not in repr(s)
    assert with_db(s, "other.db").db_url == "" and with_db(Settings(), URL).db_url == URL


@pytest.mark.parametrize("env, message", [
    ({"TRAIN_DEVICE": "gpu"}, "TRAIN_DEVICE must be cpu, cuda or cuda:N, got 'gpu'"),
    ({"TRAIN_LEASE_S": "0"}, "TRAIN_LEASE_S must be from 1 to 3,600"),
])
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ=env)


def test_train_worker_needs_postgresql_and_says_so(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bot", "--train-worker", "--env-file", "none",
                           "--db", str(tmp_path / "bot.db")], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "set BOT_DB to a postgresql:// URL" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bot", "--console", "--env-file", "none",
                           "--db", "postgresql://bot:hunter2@127.0.0.1:1/x"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, input="")
    assert done.returncode == 2 and done.stderr.startswith("error: cannot connect"), done.stderr
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
