"""Pictures as PNG bytes (matplotlib, Agg): a per-character surprisal strip and a loss curve.

Figures are built with `matplotlib.figure.Figure`, never pyplot, so no global state is shared
between the pool's threads. Call these on the worker pool.

The surprisal strip is drawn without axes: the heat cells are one RGBA image placed in pixels
(`Figure.figimage`) and the characters one line of monospaced text whose advance is the cell
width, so a picture costs a handful of artists however long the sentence (axes with a tick per
character cost 0.15-0.4 s a picture; this takes a few tens of milliseconds).
"""

from __future__ import annotations

import functools
import io
import logging
import math
import unicodedata
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import colormaps, font_manager  # noqa: E402  (after choosing the backend)
from matplotlib.backends.backend_agg import RendererAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.ft2font import FT2Font  # noqa: E402

log = logging.getLogger(__name__)
MAX_STRIP_CHARS = 120  # characters drawn in one surprisal strip; a note says when cut
NATS_TO_BITS = 1 / math.log(2)
DPI = 100  # pixels per inch of every picture; the strip is laid out in pixels
CHAR_PT = 12.0  # size of the character row; its advance sets the cell width
CELL_H = 20  # pixels per model row
NAMES_W = 64  # pixels left of the strip for model names
# Characters that the character row shows as a stand-in (one glyph each, so cells stay aligned).
NEWLINE, END, INVISIBLE, NO_GLYPH = "↵", "∎", "◌", "□"
MARKS = {NEWLINE: "newline", END: "end of message", INVISIBLE: "invisible",
         NO_GLYPH: "no glyph in the font"}


@functools.cache
def _mono() -> tuple[FontProperties, float, frozenset[int]]:
    """The character row's font, its advance in pixels, and the code points it can draw."""
    path = font_manager.findfont(FontProperties(family="monospace"))
    prop = FontProperties(fname=path, size=CHAR_PT)
    measure = RendererAgg(1, 1, DPI)
    # The difference of two lengths cancels the side bearings of the first and last glyph.
    w1 = measure.get_text_width_height_descent("M" * 50, prop, ismath=False)[0]
    w2 = measure.get_text_width_height_descent("M" * 100, prop, ismath=False)[0]
    return prop, (w2 - w1) / 50, frozenset(FT2Font(path).get_charmap())


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _glyph(ch: str, drawable: frozenset[int]) -> str:
    """One character of the row: itself, or a one-glyph stand-in (see MARKS)."""
    if ch == "\n":
        return NEWLINE
    if len(ch) != 1:  # "<end>", the end-of-message symbol
        return END
    if ch == " ":
        return ch
    if unicodedata.category(ch)[0] in "CZM":  # controls, format, separators, marks
        return INVISIBLE
    return ch if ord(ch) in drawable else NO_GLYPH


def surprisal_strip(rows: dict[str, Sequence[tuple[str, float]]]) -> bytes:
    """A heat strip of bits per character, one row per model, the characters below; PNG bytes.

    rows: model name -> [(character, bits)] over the same characters. At most
    MAX_STRIP_CHARS are drawn; a note below says how many there were.
    """
    prop, cell_w, drawable = _mono()
    names = list(rows)
    total = len(rows[names[0]])
    chars = [c for c, _ in rows[names[0]]][:MAX_STRIP_CHARS]
    grid = np.array([[b for _, b in rows[n]][: len(chars)] for n in names],
                    dtype=np.float64).reshape(len(names), len(chars))  # [models, chars] bits
    vmax = max(8.0, float(grid[np.isfinite(grid)].max(initial=0.0)))  # inf: darkest cell
    strip_w = round(len(chars) * cell_w)
    w = max(NAMES_W + strip_w + 12, 560)
    top, strip_h = 30, len(names) * CELL_H
    h = top + strip_h + 44
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    cmap = colormaps["magma_r"]  # a copy: nothing shared between threads
    rgba = cmap(np.clip(np.nan_to_num(grid / vmax, nan=1.0), 0.0, 1.0), bytes=True)
    cols = (np.arange(strip_w) / cell_w).astype(np.int64)  # pixel column -> character
    image = np.repeat(rgba[:, cols], CELL_H, axis=0)  # [strip_h, strip_w, 4]
    image[CELL_H - 1 :: CELL_H] = 255  # a white line between model rows
    fig.figimage(image, xo=NAMES_W, yo=h - top - strip_h, origin="upper")
    for i, name in enumerate(names):
        fig.text((NAMES_W - 6) / w, (h - top - (i + 0.5) * CELL_H) / h, name, ha="right",
                 va="center", fontsize=9, parse_math=False)
    shown = [_glyph(c, drawable) for c in chars]
    y = (h - top - strip_h - 2) / h
    # Right-to-left letters would be reordered (and joined) by the text layout: each is drawn
    # alone in its cell, and the row keeps a space there. Usually none; at most one per cell.
    rtl = {i for i, g in enumerate(shown) if unicodedata.bidirectional(g) in ("R", "AL", "AN")}
    for i in sorted(rtl):
        fig.text((NAMES_W + (i + 0.5) * cell_w) / w, y, shown[i], ha="center", va="top",
                 fontproperties=prop, parse_math=False)
    row = "".join(" " if i in rtl else g for i, g in enumerate(shown))
    fig.text(NAMES_W / w, y, row, ha="left", va="top", fontproperties=prop, parse_math=False)
    notes = [f"{m} {MARKS[m]}" for m in MARKS if m in row]
    if total > len(chars):
        notes.insert(0, f"the first {len(chars)} of {total} characters")
    if notes:
        fig.text(NAMES_W / w, 4 / h, " · ".join(notes), fontsize=8, color="dimgrey")
    _title_and_scale(fig, w, h, vmax)
    return _png(fig)


def _title_and_scale(fig: Figure, w: int, h: int, vmax: float) -> None:
    """The title at the top left and a colour scale from 0 to `vmax` bits at the top right."""
    fig.text(8 / w, (h - 7) / h, "surprisal per character (darker = more surprising)",
             va="top", fontsize=9)
    ramp = colormaps["magma_r"](np.linspace(0.0, 1.0, 100), bytes=True)[None]  # [1, 100, 4]
    fig.figimage(np.repeat(ramp, 10, axis=0), xo=w - 150, yo=h - 20)
    fig.text((w - 156) / w, (h - 15) / h, "0", ha="right", va="center", fontsize=8)
    fig.text((w - 46) / w, (h - 15) / h, f"{vmax:.0f} bits", ha="left", va="center",
             fontsize=8)


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
