"""Checkpoints: identical after a round trip, clear errors for anything else."""

from __future__ import annotations

import pytest
import torch

from lm import CheckpointError, load_checkpoint, save
from lm.scoring import score


def test_round_trip_gives_identical_outputs(model, tmp_path):
    path = save(model, tmp_path / "m.pt", {"note": "test"})
    again = load_checkpoint(path)
    assert again.kind == model.kind and again.config == model.config
    assert again.summary["note"] == "test"
    a, b = score(model, "Round trip 😀"), score(again, "Round trip 😀")
    assert a.nats == b.nats and a.per_char == b.per_char


def test_write_is_atomic_and_leaves_no_temporaries(tmp_path):
    from tests.lm.conftest import make

    save(make("gru"), tmp_path / "m.pt")
    save(make("lstm"), tmp_path / "m.pt")  # replaces in one rename
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
    assert load_checkpoint(tmp_path / "m.pt").kind == "lstm"


def _truncated(tmp_path):
    from tests.lm.conftest import make

    data = save(make("gru"), tmp_path / "full.pt").read_bytes()
    (tmp_path / "bad.pt").write_bytes(data[: len(data) // 2])


def _garbage(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage" * 100)


def _foreign(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(3)}}, tmp_path / "bad.pt")


def _empty(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"")


@pytest.mark.parametrize("make_bad", [_truncated, _garbage, _foreign, _empty])
def test_bad_files_give_a_clear_error_naming_the_file(make_bad, tmp_path):
    make_bad(tmp_path)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
