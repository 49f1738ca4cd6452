"""Time the pictures of !prob and !train (bot/plots.py): median of N runs, in milliseconds.

    nice -n 19 python scripts/bench_plots.py [--runs 20]
    git show REV:bot/plots.py > /tmp/old_plots.py
    nice -n 19 python scripts/bench_plots.py --against /tmp/old_plots.py   # before / after

Surprisal strips for a short, a medium and a long sentence under four models (the rows `!prob`
draws), and one loss curve. The first call of each is left out (font and colormap set-up); with
--against, the two versions run in turns so that a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import plots  # noqa: E402

SENTENCES = {
    "short (18 chars)": "To be or not to be",
    "medium (60 chars)": "In the beginning was the Word, and the Word was with God. ok",
    "long (400 chars)": ("Now is the winter of our discontent made glorious summer by this sun "
                         "of York; ") * 5 + "end",
}
MODELS = ("uniform", "markov", "rnn", "mix")


def rows_for(text: str) -> dict[str, list[tuple[str, float]]]:
    """Made-up surprisals (bits) per character, end of message included, for four models."""
    rng = random.Random(0)
    chars = [*text, "<end>"]
    return {m: [(c, rng.uniform(0.1, 12.0)) for c in chars] for m in MODELS}


def medians_ms(fns: list[Callable[[], bytes]], runs: int) -> list[float]:
    """Median wall time of each function over `runs` calls in turns, after one warm-up each."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return [statistics.median(t) * 1000 for t in times]


def load_module(path: str) -> ModuleType:
    """Another version of bot/plots.py, loaded from a file."""
    spec = importlib.util.spec_from_file_location("plots_against", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def strip_case(rows: dict[str, list[tuple[str, float]]]) -> Callable[[ModuleType], bytes]:
    """Draw these rows with a given version of the plots module."""
    return lambda module: module.surprisal_strip(rows)


def main() -> None:
    """Print one line per picture: median milliseconds (and the other version's, if given)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--against", help="another plots.py to time in turns with this one")
    args = ap.parse_args()
    versions = [plots] + ([load_module(args.against)] if args.against else [])
    history = [(s, 3.0 - s / 200, 3.1 - s / 220) for s in range(0, 300, 25)]
    cases: dict[str, Callable[[ModuleType], bytes]] = {
        f"surprisal strip, {name}": strip_case(rows_for(text)) for name, text in SENTENCES.items()}
    cases["loss curve"] = lambda m: m.loss_curve(history, 2.9, 2.4)
    for name, case in cases.items():
        ms = medians_ms([lambda m=m, case=case: case(m) for m in versions], args.runs)
        other = f"   {args.against}: {ms[1]:7.1f} ms" if args.against else ""
        print(f"{name:34s} {ms[0]:7.1f} ms median{other}")


if __name__ == "__main__":
    main()
