"""The pictures: valid PNGs for any text, characters aligned with their cells, thread-safe."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

from matplotlib.backends.backend_agg import RendererAgg
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


def test_the_character_row_advances_one_cell_per_character() -> None:
    prop, cell_w, _ = plots._mono()
    measure = RendererAgg(1, 1, plots.DPI)
    for text in ("To be, or not", "fi ffl -> == www", "Ωμέγα мир ÄÖÜ ß", "↵∎◌□ $a$"):
        width = measure.get_text_width_height_descent(f"M{text}M", prop, ismath=False)[0]
        assert width == (len(text) + 2) * cell_w, text


def test_pictures_from_many_threads_equal_one_at_a_time() -> None:
    inputs = [rows_for(t) for t in ("To be or not to be", "In the beginning", "ab\ncd 😀")]
    alone = [plots.surprisal_strip(r) for r in inputs]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(plots.surprisal_strip, inputs * 4))
    assert together == alone * 4
    curve = plots.loss_curve([(0, 3.0, 3.1), (10, 2.5, 2.7)], 2.9, 2.4)
    assert size_of(curve)
