"""Text of the longer replies (`!prob`, `!corpus`, `!model`), kept apart from command logic."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from bot.safety import show_char
from bot.store import CorpusStats, ModelRow

MAX_ECHO = 80  # characters of the user's sentence echoed back


def when(t: float) -> str:
    """A UTC time stamp for replies."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def echo(text: str) -> str:
    """The user's text, quoted and shortened for a reply."""
    one_line = " ".join(text.split())
    return repr(one_line if len(one_line) <= MAX_ECHO else one_line[: MAX_ECHO - 1] + "…")


def prob_table(text: str, scores: dict[str, Any], labels: dict[str, str]) -> str:
    """The `!prob` reply: every model side by side, the surprising characters, a verdict."""
    lines = [f"{echo(text)}: {len(text)} characters + end of message", "```",
             f"{'model':<9}{'log2 P':>10}{'bits/char':>11}{'perplexity':>12}"]
    for name, s in scores.items():
        lines.append(f"{name:<9}{-s.bits:>10.1f}{s.bits_per_char:>11.3f}"
                     f"{2 ** s.bits_per_char:>12.2f}")
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
    factor = 2 ** (scores[runner].bits - b.bits)
    head = f"verdict: most likely under {best} ({b.bits_per_char:.2f} bits/char)"
    if factor < 1.1:
        return f"{head}, about as likely under {runner}"
    size = f"{factor:,.1f}" if factor < 10 else f"{factor:,.0f}" if factor < 1e6 \
        else f"2^{math.log2(factor):.0f}"
    return f"{head}, {size} times more likely than under {runner}"


def model_line(row: ModelRow | None, label: str) -> str:
    """How a version was trained, in one line."""
    if row is None:
        return label
    m = row.metrics
    return (f"{label}, trained {when(row.created_at)} in {m.get('seconds', 0):.0f} s on "
            f"{m.get('corpus_chars', 0):,} characters: held-out {m.get('bpc_before', 0):.3f} → "
            f"{m.get('bpc_after', 0):.3f} bits/char")


def corpus_text(stats: CorpusStats, cap: int, listening: bool, answering: str,
                training: str | None) -> str:
    """The `!corpus` reply."""
    lines = [f"this channel's corpus: {stats.messages:,} messages, {stats.chars:,} characters "
             f"(cap {cap:,}), from {stats.contributors:,} contributor"
             f"{'' if stats.contributors == 1 else 's'}",
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
