"""Text of the longer replies (`!prob`, `!corpus`, `!model`), kept apart from command logic."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from bot.safety import show_char
from bot.store import CorpusStats, ModelRow

MAX_ECHO = 80  # characters of the user's sentence echoed back
GAP = "  "  # between columns of the !prob table, so that no two figures ever touch
EXACT_BELOW = 20.0  # bits: a factor of 2^20 (about a million) or more is shown as 2^N


def count(n: int, noun: str, plural: str = "") -> str:
    """`n` and the noun in agreement: "1 line", "2,000 lines"."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def power_of_two(bits: float, decimals: int) -> str:
    """2**bits as a reader takes it: the number while it is short, else "2^N" (never
    computed, so no size overflows; NaN and infinity read "2^nan", "2^inf")."""
    if not bits < EXACT_BELOW:
        return f"2^{bits:,.{min(decimals, 1)}f}"
    return f"{2.0 ** bits:,.{decimals}f}"


def when(t: float) -> str:
    """A UTC time stamp for replies."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def echo(text: str) -> str:
    """The user's text, quoted and shortened for a reply."""
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= MAX_ECHO else one_line[: MAX_ECHO - 1] + "…")


def prob_table(text: str, scores: dict[str, Any], labels: dict[str, str]) -> str:
    """The `!prob` reply: every model side by side, the surprising characters, a verdict.

    Figures stay in log space (bits); the perplexity, 2^(bits/char), is shown as 2^N when
    large, so no sentence overflows a float."""
    table = [("model", "log2 P", "bits/char", "perplexity")]
    table += [(name, f"{-s.bits:,.1f}", f"{s.bits_per_char:.3f}",
               power_of_two(s.bits_per_char, 2)) for name, s in scores.items()]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines = [f"{echo(text)}: {count(len(text), 'character')} + end of message", "```"]
    lines += [GAP.join([row[0].ljust(widths[0])]
                       + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)])
              for row in table]
    lines.append("```")
    lines += [f"{name}: {label}" for name, label in labels.items()]
    judge = next((n for n in ("mix", "rnn", "markov") if n in scores), "uniform")
    worst = sorted((c for c in scores[judge].per_char), key=lambda c: -c.bits)[:3]
    lines.append(f"most surprising under {judge}: "
                 + ", ".join(f"{show_char(c.char)} {c.bits:.1f} bits" for c in worst))
    best = min(scores, key=lambda n: scores[n].bits)
    lines.append(verdict(best, scores))
    return "\n".join(lines)


def verdict(best: str, scores: dict[str, Any]) -> str:
    """One line: which model finds the sentence most likely, and by how much."""
    b = scores[best]
    others = [n for n in scores if n != best]
    if not others:
        return f"verdict: only {best} could score it"
    runner = min(others, key=lambda n: scores[n].bits)
    gap = scores[runner].bits - b.bits  # bits: the factor is 2^gap, often far beyond a float
    head = f"verdict: most likely under {best} ({b.bits_per_char:.2f} bits/char)"
    if gap < math.log2(1.1):
        return f"{head}, about as likely under {runner}"
    size = power_of_two(gap, 1 if gap < math.log2(10) else 0)
    return f"{head}, {size} times more likely than under {runner}"


def model_line(row: ModelRow | None, label: str) -> str:
    """How a version was trained, in one line."""
    if row is None:
        return label
    m = row.metrics
    return (f"{label}, trained {when(row.created_at)} in {m.get('seconds', 0):.0f} s on "
            f"{count(m.get('corpus_chars', 0), 'character')}: held-out "
            f"{m.get('bpc_before', 0):.3f} → {m.get('bpc_after', 0):.3f} bits/char")


def corpus_text(stats: CorpusStats, cap: int, listening: bool, answering: str,
                training: str | None) -> str:
    """The `!corpus` reply."""
    lines = [f"this channel's corpus: {count(stats.messages, 'message')}, "
             f"{count(stats.chars, 'character')} (cap {cap:,}), from "
             f"{count(stats.contributors, 'contributor')}",
             f"listening: {'on' if listening else 'off'}",
             f"answering here: {answering}"]
    if training:
        lines.append(training)
    return "\n".join(lines)


def versions_text(rows: Sequence[ModelRow], active: int | None) -> str:
    """The list of a channel's model versions for `!model`."""
    if not rows:
        return "versions: none yet (`!train` makes one)"
    return "versions: " + ", ".join(
        f"v{r.version} {when(r.created_at)}{' (active)' if r.id == active else ''}" for r in rows)
