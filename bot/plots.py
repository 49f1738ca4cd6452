"""Pictures as PNG bytes: a per-character surprisal strip (Pillow) and a loss curve (matplotlib).

Call these on the worker pool. The surprisal strip is composed directly in pixels: the heat
cells are one RGBA array, and the characters one run of a monospaced FreeType font (from
matplotlib's own font files) laid out without shaping or bidi reordering, so glyph i sits in
cell i (right-to-left letters included). A picture costs a few milliseconds: `!prob` draws one
for every sentence, and matplotlib's text layout took 30-50 ms.
Fonts are per thread (a FreeType face is not safe to share between threads).

The loss curve (once per `!train`) is a matplotlib `Figure`, never pyplot, so no global state is
shared between the pool's threads.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import threading
import unicodedata
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib import colormaps, font_manager  # noqa: E402  (after choosing the backend)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.ft2font import FT2Font  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

log = logging.getLogger(__name__)
MAX_STRIP_CHARS = 120  # characters drawn in one surprisal strip; a note says when cut
NATS_TO_BITS = 1 / math.log(2)
DPI = 100  # pixels per inch of the loss curve
CHAR_PX = 17  # size of the character row's font, pixels; its advance sets the cell width
LABEL_PX, NOTE_PX = 12, 11  # sizes of model names and title, and of the notes below
CELL_H = 20  # pixels per model row
NAMES_W = 64  # pixels left of the strip for model names
TOP = 30  # pixels above the strip (title and colour scale)
# Characters that the character row shows as a stand-in (one glyph each, so cells stay aligned).
NEWLINE, END, INVISIBLE, NO_GLYPH = "↵", "∎", "◌", "□"
MARKS = {NEWLINE: "newline", END: "end of message", INVISIBLE: "invisible",
         NO_GLYPH: "no glyph in the font"}
INK, GREY = (0, 0, 0, 255), (105, 105, 105, 255)


@functools.cache
def _font_files() -> tuple[str, str]:
    """Paths of matplotlib's monospaced and proportional fonts (DejaVu, shipped with it)."""
    return (str(font_manager.findfont(FontProperties(family="monospace"))),
            str(font_manager.findfont(FontProperties(family=["sans-serif"]))))


_local = threading.local()


def _fonts() -> tuple[ImageFont.FreeTypeFont, ImageFont.FreeTypeFont, ImageFont.FreeTypeFont]:
    """This thread's fonts: the character row, labels, notes."""
    fonts = getattr(_local, "fonts", None)
    if fonts is None:
        mono, sans = _font_files()
        # basic layout: no shaping, no bidi reordering, every glyph at its own advance
        fonts = _local.fonts = (ImageFont.truetype(mono, CHAR_PX,
                                                   layout_engine=ImageFont.Layout.BASIC),
                                ImageFont.truetype(sans, LABEL_PX),
                                ImageFont.truetype(sans, NOTE_PX))
    return fonts


@functools.cache
def _mono() -> tuple[str, float, frozenset[int]]:
    """The character row's font file, the cell width in pixels (the font's advance), and
    the code points the font can draw."""
    path = _font_files()[0]
    font = ImageFont.truetype(path, CHAR_PX, layout_engine=ImageFont.Layout.BASIC)
    return path, font.getlength("M"), frozenset(FT2Font(path).get_charmap())


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
    _, cell_w, drawable = _mono()
    mono, label, small = _fonts()
    names = list(rows)
    total = len(rows[names[0]])
    chars = [c for c, _ in rows[names[0]]][:MAX_STRIP_CHARS]
    grid = np.array([[b for _, b in rows[n]][: len(chars)] for n in names],
                    dtype=np.float64).reshape(len(names), len(chars))  # [models, chars] bits
    vmax = max(8.0, float(grid[np.isfinite(grid)].max(initial=0.0)))  # inf: darkest cell
    strip_w = round(len(chars) * cell_w)
    w = max(NAMES_W + strip_w + 12, 560)
    strip_h = len(names) * CELL_H
    h = TOP + strip_h + 44
    canvas = np.full((h, w, 4), 255, dtype=np.uint8)
    cmap = colormaps["magma_r"]
    rgba = cmap(np.clip(np.nan_to_num(grid / vmax, nan=1.0), 0.0, 1.0), bytes=True)
    cols = (np.arange(strip_w) / cell_w).astype(np.int64)  # pixel column -> character
    cells = np.repeat(rgba[:, cols], CELL_H, axis=0)  # [strip_h, strip_w, 4]
    cells[CELL_H - 1 :: CELL_H] = 255  # a white line between model rows
    canvas[TOP : TOP + strip_h, NAMES_W : NAMES_W + strip_w] = cells
    ramp = cmap(np.linspace(0.0, 1.0, 100), bytes=True)[None]  # [1, 100, 4]
    canvas[10:20, w - 150 : w - 50] = np.repeat(ramp, 10, axis=0)
    image = Image.fromarray(canvas, "RGBA")
    draw = ImageDraw.Draw(image)
    draw.text((8, 7), "surprisal per character (darker = more surprising)", font=label,
              fill=INK, anchor="lt")
    draw.text((w - 156, 15), "0", font=small, fill=INK, anchor="rm")
    draw.text((w - 46, 15), f"{vmax:.0f} bits", font=small, fill=INK, anchor="lm")
    for i, name in enumerate(names):
        draw.text((NAMES_W - 6, TOP + (i + 0.5) * CELL_H), name, font=label, fill=INK,
                  anchor="rm")
    shown = [_glyph(c, drawable) for c in chars]
    # One run of monospaced glyphs, laid out without shaping or reordering: glyph i starts at
    # i advances, i.e. in cell i (right-to-left letters included).
    draw.text((NAMES_W, TOP + strip_h + 2 + mono.getmetrics()[0]), "".join(shown), font=mono,
              fill=INK, anchor="ls")
    notes = [f"{m} {MARKS[m]}" for m in MARKS if m in shown]
    if total > len(chars):
        notes.insert(0, f"the first {len(chars)} of {total} characters")
    if notes:
        draw.text((NAMES_W, h - 4), " · ".join(notes), font=small, fill=GREY, anchor="ls")
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


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
