"""Checkpoints: identical after a round trip, clear errors for anything else."""

from __future__ import annotations

import contextlib
import stat

import pytest
import torch

from lm import CheckpointError, LmError, load_checkpoint, save
from lm.checkpoint import FILE_MODE, FORMAT_VERSION, checksum
from lm.scoring import score
from lm.vocab import VOCAB_NAME, VOCAB_SIZE


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


# --- integrity: a checksum over the content, finite weights, typed content, private files ---


def _raw(path):
    """The checkpoint's dict as torch stored it, without lm's checks."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _rewrite(path, mutate, rehash: bool = True):
    """Store mutate(raw dict) at `path`; with rehash, its checksum recomputed where it can be,
    so what is refused is the mutation itself, not a stale checksum."""
    data = mutate(_raw(path))
    if rehash and isinstance(data, dict):
        # where the mutation broke what the checksum reads, it is left stale
        with contextlib.suppress(Exception):
            data["sha256"] = checksum(data["model"], data["weights"], data.get("summary", {}))
    torch.save(data, path)
    return path


@pytest.fixture
def saved(tmp_path):
    from tests.lm.conftest import make

    return save(make("mix"), tmp_path / "m.pt", {"note": "test"})


@pytest.mark.parametrize("half", [False, True])
def test_one_flipped_bit_in_a_weight_is_refused(tmp_path, half):
    from tests.lm.conftest import make

    path = save(make("gru"), tmp_path / "m.pt", half=half)

    def flip(d):
        w = d["weights"]["rnn.weight_hh_l0"]
        w.view(torch.uint8).view(-1)[5] ^= 0x10  # one bit of one value, in place
        return d

    _rewrite(path, flip, rehash=False)
    with pytest.raises(CheckpointError, match="m.pt: checksum mismatch"):
        load_checkpoint(path)


@pytest.mark.parametrize("change", [
    lambda d: d["summary"].update(note="edited"),
    lambda d: d["model"]["config"]["weights"][0].reverse(),
    lambda d: d["weights"].pop("parts.1.tokens"),
    lambda d: d.update(sha256=5), lambda d: d.update(sha256="0" * 64),
])
def test_any_change_to_spec_summary_or_weights_breaks_the_checksum(saved, change):
    _rewrite(saved, lambda d: (change(d), d)[1], rehash=False)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(saved)


def test_format_1_without_checksum_loads_but_format_2_without_it_is_refused(saved, tmp_path):
    old = tmp_path / "old.pt"
    old.write_bytes(saved.read_bytes())
    _rewrite(old, lambda d: {**{k: v for k, v in d.items() if k != "sha256"},
                             "format_version": 1}, rehash=False)
    a, b = load_checkpoint(saved), load_checkpoint(old)
    assert a.spec() == b.spec() and a.summary == b.summary
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    _rewrite(saved, lambda d: d.pop("sha256") and d, rehash=False)
    with pytest.raises(CheckpointError, match="no checksum"):
        load_checkpoint(saved)


def test_new_checkpoints_carry_the_current_format_and_a_checksum(saved):
    d = _raw(saved)
    assert d["format_version"] == FORMAT_VERSION and len(d["sha256"]) == 64
    assert d["sha256"] == checksum(d["model"], d["weights"], d["summary"])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("version", [1, 2])
def test_non_finite_weights_are_refused_at_load(saved, value, version):
    def poison(d):
        d["weights"]["parts.0.head.bias"][3] = value
        d["format_version"] = version
        return d

    _rewrite(saved, poison)  # a correct checksum: the values themselves are refused
    with pytest.raises(CheckpointError, match="parts.0.head.bias holds NaN or infinite"):
        load_checkpoint(saved)


def test_non_finite_weights_are_not_saved_over_a_good_checkpoint(saved):
    from tests.lm.conftest import make

    bad = make("gru")
    with torch.no_grad():
        bad.head.bias[0] = float("nan")
    before = saved.read_bytes()
    with pytest.raises(LmError, match="not saved"):
        save(bad, saved)
    assert saved.read_bytes() == before and [p.name for p in saved.parent.iterdir()] == ["m.pt"]


def _deep(levels: int) -> list:
    x: list = []
    for _ in range(levels):
        x = [x]
    return x


def _cycle() -> list:
    x: list = []
    x.append(x)
    return x


@pytest.mark.parametrize("mutate", [
    lambda d: [d], lambda d: torch.zeros(3), lambda d: {**d, "format": 1},
    lambda d: {**d, "format_version": "2"}, lambda d: {**d, "format_version": True},
    lambda d: {**d, "format_version": 3}, lambda d: {**d, "vocab": None},
    lambda d: {**d, "vocab": {"name": VOCAB_NAME, "size": torch.tensor(VOCAB_SIZE)}},
    lambda d: {k: v for k, v in d.items() if k != "model"}, lambda d: {**d, "model": []},
    lambda d: {**d, "model": {**d["model"], "kind": 3}},
    lambda d: {**d, "model": {**d["model"], "kind": "transformer"}},
    lambda d: {**d, "model": {**d["model"], "config": []}},
    lambda d: {**d, "model": {**d["model"], "config": {"components": 5}}},
    lambda d: {**d, "model": {**d["model"], "config": {**d["model"]["config"],
                                                       "weights": "heavy"}}},
    lambda d: {**d, "model": {**d["model"], "config": {**d["model"]["config"],
                                                       "edges": [torch.ones(2)]}}},
    lambda d: {**d, "model": {**d["model"], "extra": [1]}},
    lambda d: {**d, "weights": list(d["weights"].values())},
    lambda d: {**d, "weights": {k: v.tolist() for k, v in d["weights"].items()}},
    lambda d: {**d, "weights": {i: v for i, v in enumerate(d["weights"].values())}},
    lambda d: {**d, "weights": {**d["weights"], "parts.1.tokens": torch.zeros(2)}},
    lambda d: {**d, "weights": {}},
    lambda d: {**d, "summary": []}, lambda d: {**d, "summary": {"deep": _deep(100)}},
    lambda d: {**d, "summary": {"loop": _cycle()}},
])
def test_wrong_types_anywhere_are_refused(saved, mutate):
    _rewrite(saved, mutate)
    with pytest.raises(CheckpointError, match="m.pt"):
        load_checkpoint(saved)


def test_missing_model_and_weights_as_a_list_are_refused_with_a_reason(saved, tmp_path):
    other = save(load_checkpoint(saved), tmp_path / "other.pt")
    _rewrite(saved, lambda d: d.pop("model") and d)
    with pytest.raises(CheckpointError, match="no valid model description"):
        load_checkpoint(saved)
    _rewrite(other, lambda d: {**d, "weights": list(d["weights"].values())})
    with pytest.raises(CheckpointError, match="not a table of named tensors"):
        load_checkpoint(other)


@pytest.mark.parametrize("head", [b"\x80\x02", b"\x80\x02]q\x00(K\x01K\x02e.", b"\x80\x02a",
                                  b"PK\x03\x04", b"PK\x05\x06" + bytes(18)])
def test_files_that_start_like_a_pickle_or_a_zip_are_refused(tmp_path, head):
    (tmp_path / "bad.pt").write_bytes(head)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_the_unpicklers_own_errors_become_checkpoint_errors(tmp_path):
    # "a" (APPEND) on an empty stack is IndexError: pop from empty list; "h\x07" (BINGET of
    # a memo entry never put) is KeyError
    for i, body in enumerate([b"\x80\x02a.", b"\x80\x02h\x07.", b"\x80\x02X\xff\xff\xff\xff"]):
        (tmp_path / f"bad{i}.pt").write_bytes(body)
        with pytest.raises(CheckpointError, match=f"bad{i}.pt: not a readable checkpoint"):
            load_checkpoint(tmp_path / f"bad{i}.pt")


def test_checkpoints_are_private_to_their_owner(tmp_path):
    from tests.lm.conftest import make

    path = tmp_path / "m.pt"
    path.write_bytes(b"old")
    path.chmod(0o644)
    save(make("gru"), path)  # a new file renamed over the old one: not the old mode
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE == 0o600
    assert stat.S_IMODE(save(make("ngram"), tmp_path / "new" / "n.pt").stat().st_mode) == 0o600


def test_the_shipped_base_model_carries_its_checksum():
    from lm.hub import BASE_PATH

    data = _raw(BASE_PATH)
    assert data["format_version"] == 2 and len(data["sha256"]) == 64
    assert load_checkpoint(BASE_PATH).kind == "mix"
