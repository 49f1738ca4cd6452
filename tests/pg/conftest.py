"""Fixtures of the PostgreSQL tests: the bot tests' tiny base model and settings, on a fresh
PostgreSQL database (the server itself is `pg_server`, in tests/conftest.py)."""

from __future__ import annotations

import dataclasses

import pytest

from bot.settings import Settings
from tests.bot.conftest import settings, tiny_base  # noqa: F401 (the same fixtures here)


@pytest.fixture
def pg_settings(settings: Settings, pg_url: str) -> Settings:  # noqa: F811
    """The bot tests' settings on a fresh PostgreSQL database, with short training leases."""
    return dataclasses.replace(settings, db_url=pg_url, train_lease_s=3.0)
