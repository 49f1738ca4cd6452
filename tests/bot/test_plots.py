"""The pictures: valid PNGs for any text, characters aligned with their cells, thread-safe."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from bot import plots

MODELS = ("uniform", "markov", "rnn", "mix")


def rows_for(text: str) -> dict[str, list[tuple[str, float]]]:
    """Surprisal rows as `!prob` builds them: every character, then the end of the message."""
    chars = [*text, "<end>"]
    return {m: [(c, float((i * 7 + k) % 13)) for i, c in enumerate(chars)]
            for k, m in enumerate(MODELS)}


def size_of(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(png)) as im:
        return im.size


def test_strip_is_as_wide_as_its_cells_and_stops_at_the_cap() -> None:
    _, cell_w, _ = plots._mono()
    n = 80  # wide enough to pass the minimum width
    w, h = size_of(plots.surprisal_strip(rows_for("x" * (n - 1))))
    assert w == plots.NAMES_W + round(n * cell_w) + 12
    assert h > len(MODELS) * plots.CELL_H
    long_w, _ = size_of(plots.surprisal_strip(rows_for("y" * 5000)))
    assert long_w == plots.NAMES_W + round(plots.MAX_STRIP_CHARS * cell_w) + 12


def test_any_text_draws() -> None:
    text = "$x$ \\n\n😀\u200b\u202eשלום مرحبا لا\x00a\u0301\ud800 中文 <@1> ~~*_`"
    rows = rows_for(text)
    rows["mix"][2] = ("x", float("inf"))  # a symbol the model called impossible
    rows["rnn"][3] = ("$", float("nan"))
    assert size_of(plots.surprisal_strip(rows))
    assert size_of(plots.surprisal_strip({"uniform": [("<end>", 7.5)]}))


def test_one_glyph_per_character() -> None:
    _, _, drawable = plots._mono()
    shown = [plots._glyph(c, drawable) for c in ["a", " ", "\n", "<end>", "\u200b", "\x00",
                                                 "\u0301", "😀", "中", "م", "$"]]
    assert shown == ["a", " ", plots.NEWLINE, plots.END, plots.INVISIBLE, plots.INVISIBLE,
                     plots.INVISIBLE, plots.NO_GLYPH, plots.NO_GLYPH, "م", "$"]
    assert all(ord(g) in drawable for g in plots.MARKS)


@pytest.mark.parametrize("text", ["W i W . M _ g", "Ω ё Ä ß ∎ ↵ $", "م ر ح ب ا w"])
def test_each_character_is_drawn_inside_its_own_cell(text: str) -> None:
    _, cell_w, _ = plots._mono()
    png = plots.surprisal_strip({"m": [(c, 1.0) for c in text]})
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    top = plots.TOP + plots.CELL_H + 1  # the character row, below the one model row
    band = image[top : top + plots.CHAR_PX + 6]
    ink = np.nonzero((band < 128).any(axis=0))[0]
    pos = (ink + 0.5 - plots.NAMES_W) / cell_w  # in cells
    inner = (pos % 1 > 0.1) & (pos % 1 < 0.9)  # a full-width glyph may touch the border pixel
    cells = set(np.floor(pos[inner]).astype(int).tolist())
    assert cells == set(range(0, len(text), 2)), text  # every other cell, and only those


def test_pictures_from_many_threads_equal_one_at_a_time() -> None:
    inputs = [rows_for(t) for t in ("To be or not to be", "In the beginning", "ab\ncd 😀")]
    alone = [plots.surprisal_strip(r) for r in inputs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(plots.surprisal_strip, inputs * 4))
    assert together == alone * 4
    curve = plots.loss_curve([(0, 3.0, 3.1), (10, 2.5, 2.7)], 2.9, 2.4)
    assert size_of(curve)
