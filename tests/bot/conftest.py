"""Fixtures: a tiny base model built once, settings on a temporary folder, and an open core."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import lm
from bot.core import Core
from bot.settings import Settings
from tests.bot.helpers import SHAKESPEARE, lines_of


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small base mix (GRU-32 trained a few steps + 4-gram) standing in for data/base.pt."""
    msgs = lines_of(SHAKESPEARE, 20_000)
    rnn = lm.train(msgs, lm.TrainConfig(kind="gru", hidden=32, embed=16, max_steps=4,
                                        minutes=None, batch=8, bptt=32, eval_every=4)).model
    ngram = lm.train(msgs, lm.TrainConfig(kind="ngram", order=4)).model
    path = tmp_path_factory.mktemp("base") / "base.pt"
    lm.save(lm.fit_mix([rnn, ngram], msgs[-40:]), path)
    return path


@pytest.fixture
def settings(tmp_path: Path, tiny_base: Path) -> Settings:
    """Settings for one test: its own database and checkpoints; no cooldowns; fast training."""
    return Settings(db_path=tmp_path / "bot.db", checkpoint_dir=tmp_path / "channels",
                    plots_dir=tmp_path / "plots", base_model=str(tiny_base),
                    cooldown_user_rate=0, cooldown_channel_rate=0, train_max_steps=6,
                    train_eval_every=2, progress_edit_s=0.0, listen_flush_s=0.05,
                    sample_workers=2, train_val_max_chars=3000)


@pytest.fixture
async def core(settings: Settings) -> AsyncIterator[Core]:
    """An open core over a fresh database, closed after the test."""
    async with await Core.open(settings) as opened:
        yield opened


def with_settings(settings: Settings, **changes: object) -> Settings:
    """A copy of settings with some fields changed."""
    return dataclasses.replace(settings, **changes)
