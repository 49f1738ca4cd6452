"""Suite-wide settings: one torch thread per test process (and its subprocesses); a
PostgreSQL server for the tests that need one (`pg_server`, `pg_url`).

The machine has two cores; torch's default of one spinning OpenMP thread per core makes
concurrent processes thrash. Tests measure behaviour, not speed, so one thread is enough.
"""

import os
import subprocess
from collections.abc import Iterator
from typing import NoReturn

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from bot import versions  # noqa: E402
from tests.pg.server import PgServer, Unavailable  # noqa: E402


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server on loopback for the whole session, stopped at the end.

    Skipped with the reason when none can be started, unless BABBLE_REQUIRE_PG=1 (CI sets it):
    then the tests that need it fail instead."""
    try:
        server = PgServer()
    except Unavailable as err:
        _unavailable(str(err))
    try:
        server.start()
    except (Unavailable, OSError, subprocess.SubprocessError) as err:
        server.stop()
        _unavailable(str(err))
    yield server
    server.stop()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("BABBLE_REQUIRE_PG") == "1":
        pytest.fail(f"BABBLE_REQUIRE_PG=1 but no PostgreSQL server could be started: {reason}")
    pytest.skip(f"no PostgreSQL server could be started: {reason}")


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a fresh, empty PostgreSQL database for one test."""
    return pg_server.database()


@pytest.fixture
def always_adopt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every training is adopted (the new mix scores 1 bit/char better), so versions pile up."""
    real = versions.bits_per_char
    calls: list[int] = []

    def better_new_model(model, units):  # called for the old model, then for the new one
        calls.append(1)
        return real(model, units) - (1.0 if len(calls) % 2 == 0 else 0.0)

    monkeypatch.setattr(versions, "bits_per_char", better_new_model)
