"""Checkpoint fuzzing: random, truncated and mutated files either load exactly as saved or
raise CheckpointError, never another exception. Seeded, so a failure repeats."""

from __future__ import annotations

import io
import random
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lm import CheckpointError, load_checkpoint, save
from tests.lm.conftest import make

PICKLE = b"\x80\x02"  # protocol 2, how torch's legacy (non-zip) format begins
ZIP = b"PK\x03\x04"  # a zip local file header, how torch's zip format begins
# opcodes the weights-only unpickler knows, so random text gets past the first byte or two
OPCODES = b"(.0]}aeKMJNXqhrjtsuU\x85\x86\x87\x88\x89\x8a\x8c\x94\x95"


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> tuple[bytes, object]:
    """The bytes of a small saved mix (GRU and n-gram parts) and the model it loads as."""
    path = save(make("mix"), tmp_path_factory.mktemp("orig") / "m.pt", {"note": "fuzz"})
    return path.read_bytes(), load_checkpoint(path)


def outcome(path: Path, reference) -> str:
    """"same" if `path` loads as `reference`, "refused" on CheckpointError; anything else (a
    different model, another exception) fails the test."""
    try:
        got = load_checkpoint(path)
    except CheckpointError:
        return "refused"
    assert got.spec() == reference.spec() and got.summary == reference.summary
    a, b = got.state_dict(), reference.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return "same"


def members(data: bytes) -> dict[str, tuple[int, int]]:
    """Each zip member's (start, end) byte range of stored data within `data`."""
    out = {}
    for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
        n, m = struct.unpack_from("<HH", data, info.header_offset + 26)  # name, extra lengths
        start = info.header_offset + 30 + n + m
        out[info.filename] = (start, start + info.compress_size)
    return out


def random_files(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """Random bytes; half start like a pickle, a third like a zip; some of opcodes only."""
    for i in range(count):
        size = rng.choice([0, 1, 2, 5, 20, 100, 1000, 5000])
        alphabet = OPCODES if i % 4 == 0 else None
        body = bytes(rng.choice(alphabet) if alphabet else rng.randrange(256)
                     for _ in range(size))
        head = PICKLE if i % 2 == 0 else ZIP if i % 3 == 0 else b""
        yield f"random {i}", head + body


def truncations(rng: random.Random, data: bytes, count: int) -> Iterator[tuple[str, bytes]]:
    """Cut at random points, at the ends and inside the central directory."""
    cuts = {0, 1, 2, 4, len(data) - 1, len(data) - 22, len(data) - 23}
    cuts |= {rng.randrange(len(data)) for _ in range(count)}
    for cut in sorted(cuts):
        yield f"truncated at {cut}", data[:cut]


def flips(rng: random.Random, data: bytes, lo: int, hi: int,
          count: int) -> Iterator[tuple[int, bytes]]:
    """Copies of `data` with 1 to 3 bytes in [lo, hi) changed (a bit flipped or replaced)."""
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(lo, hi)
            mutated[at] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
        yield at, bytes(mutated)


def check_all(tmp_path: Path, cases, reference) -> dict[str, int]:
    """Outcome counts over `cases` (name, bytes); a failing case is named in the error."""
    counts = {"same": 0, "refused": 0}
    path = tmp_path / "fuzz.pt"
    for name, blob in cases:
        path.write_bytes(blob)
        try:
            counts[outcome(path, reference)] += 1
        except Exception as e:
            raise AssertionError(f"{name}: {type(e).__name__}: {e}") from e
    return counts


def test_random_bytes_are_refused(tmp_path, original):
    counts = check_all(tmp_path, random_files(random.Random(0), 150), original[1])
    assert counts == {"same": 0, "refused": 150}


def test_truncations_are_refused(tmp_path, original):
    data, reference = original
    cases = list(truncations(random.Random(1), data, 60))
    assert check_all(tmp_path, cases, reference) == {"same": 0, "refused": len(cases)}


def test_byte_flips_anywhere_load_identically_or_are_refused(tmp_path, original):
    # A flip may land where no reader looks (zip timestamps, alignment padding): such a file
    # loads, and must load exactly as saved.
    data, reference = original
    cases = ((f"flip near {at}", b) for at, b in flips(random.Random(2), data, 0, len(data), 150))
    counts = check_all(tmp_path, cases, reference)
    assert counts["refused"] > 75


def test_byte_flips_in_the_pickled_description_are_refused_or_harmless(tmp_path, original):
    data, reference = original
    lo, hi = next(r for name, r in members(data).items() if name.endswith("/data.pkl"))
    cases = ((f"pickle flip near {at}", b) for at, b in flips(random.Random(3), data, lo, hi, 100))
    counts = check_all(tmp_path, cases, reference)
    assert counts["refused"] > 75


def test_every_byte_flip_inside_a_weight_tensor_is_refused(tmp_path, original):
    data, reference = original
    tensors = [r for name, r in members(data).items() if "/data/" in name]
    assert len(tensors) == len(reference.state_dict())
    rng = random.Random(4)
    cases = (
        (f"tensor flip near {at}", b)
        for lo, hi in tensors for at, b in flips(rng, data, lo, hi, 8)
    )
    counts = check_all(tmp_path, cases, reference)
    assert counts == {"same": 0, "refused": 8 * len(tensors)}


def test_the_unmutated_file_loads_identically(tmp_path, original):
    assert check_all(tmp_path, [("original", original[0])], original[1]) == {"same": 1,
                                                                              "refused": 0}
