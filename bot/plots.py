"""Pictures as PNG bytes (matplotlib, Agg): a per-character surprisal strip and a loss curve.

Figures are built with `matplotlib.figure.Figure`, never pyplot, so no global state is shared
between the pool's threads. Call these on the worker pool: each takes tens of milliseconds.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import threading
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib import font_manager  # noqa: E402  (after choosing the backend)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ft2font import FT2Font  # noqa: E402

from bot.safety import show_char  # noqa: E402

log = logging.getLogger(__name__)
MAX_STRIP_CHARS = 120  # characters drawn in one surprisal strip
NATS_TO_BITS = 1 / math.log(2)




@functools.cache
def _font() -> FT2Font:
    return FT2Font(font_manager.findfont(font_manager.FontProperties()))


_font_lock = threading.Lock()


def _has_glyph(ch: str) -> bool:
    """Whether matplotlib's default font can draw `ch` (most emoji it cannot)."""
    with _font_lock:
        return _font().get_char_index(ord(ch)) != 0


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _label(ch: str) -> str:
    """A tick label for one character ('\\n' and invisible characters spelled out)."""
    if ch == "\n":
        return "\\n"
    shown = show_char(ch)
    if shown.startswith("'") and len(shown) == 3:
        return shown[1:-1] if _has_glyph(ch) else f"U+{ord(ch):04X}"
    return shown


def surprisal_strip(rows: dict[str, Sequence[tuple[str, float]]]) -> bytes:
    """A heat strip of bits per character, one row per model; PNG bytes.

    rows: model name -> [(character, bits)] over the same characters.
    """
    names = list(rows)
    chars = [c for c, _ in rows[names[0]]][:MAX_STRIP_CHARS]
    grid = [[b for _, b in rows[n]][: len(chars)] for n in names]  # [models, chars] bits
    width = min(max(3.0 + 0.22 * len(chars), 5.0), 28.0)
    fig = Figure(figsize=(width, 1.0 + 0.5 * len(names)))
    ax = fig.add_subplot()
    image = ax.imshow(grid, aspect="auto", cmap="magma_r", vmin=0.0,
                      vmax=max(8.0, max((max(r) for r in grid if r), default=8.0)))
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(len(chars)), [_label(c) for c in chars], fontsize=8)
    ax.set_title("surprisal per character (bits; darker = more surprising)", fontsize=9)
    fig.colorbar(image, ax=ax, pad=0.01, fraction=0.03)
    # Fixed margins in inches: tight_layout would double the cost of the picture.
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=0.75 / w, right=1 - 0.1 / w, bottom=0.45 / h, top=1 - 0.3 / h)
    return _png(fig)


def loss_curve(history: Sequence[tuple[int, float, float]], before: float | None,
               after: float | None) -> bytes:
    """Training and validation loss against steps (bits/char), with held-out marks; PNG bytes.

    history: (step, train loss, validation loss) in nats per symbol, as lm.train reports them.
    before/after: held-out bits/char of the old and new answering models.
    """
    fig = Figure(figsize=(6.0, 3.5))
    ax = fig.add_subplot()
    if history:
        steps = [h[0] for h in history]
        ax.plot(steps, [h[1] * NATS_TO_BITS for h in history], label="RNN train, bits/byte")
        ax.plot(steps, [h[2] * NATS_TO_BITS for h in history], marker="o",
                label="RNN validation, bits/byte")
    for value, name, style in ((before, "held-out bits/char, old model", ":"),
                               (after, "held-out bits/char, new mix", "--")):
        if value is not None:
            ax.axhline(value, linestyle=style, color="grey" if style == ":" else "green",
                       label=f"{name}: {value:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("bits")
    ax.set_title("channel fine-tune", fontsize=10)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.91)
    return _png(fig)
