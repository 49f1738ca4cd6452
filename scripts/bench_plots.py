"""Time the pictures of !prob and !train (bot/plots.py): median of N runs, in milliseconds.

    nice -n 19 python scripts/bench_plots.py [--runs 20]

Surprisal strips for a short and a long sentence under four models (the rows `!prob` draws),
and one loss curve. The first call of each is left out of the median (font and colormap set-up).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

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


def median_ms(fn: Callable[[], bytes], runs: int) -> tuple[float, int]:
    """Median wall time of `fn` over `runs` calls after one warm-up, and the PNG size."""
    size = len(fn())
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, size


def main() -> None:
    """Print one line per picture: median milliseconds and PNG bytes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    for name, text in SENTENCES.items():
        rows = rows_for(text)
        ms, size = median_ms(lambda rows=rows: plots.surprisal_strip(rows), args.runs)
        print(f"surprisal strip, {name}: {ms:7.1f} ms median, {size:,} bytes")
    history = [(s, 3.0 - s / 200, 3.1 - s / 220) for s in range(0, 300, 25)]
    ms, size = median_ms(lambda: plots.loss_curve(history, 2.9, 2.4), args.runs)
    print(f"loss curve:                        {ms:7.1f} ms median, {size:,} bytes")


if __name__ == "__main__":
    main()
