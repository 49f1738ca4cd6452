"""Training batches in which every message is read from the model's initial state.

Inference starts each message fresh (`lm.score`, `!prob`, sampling), so training does too: a
message is the symbol row [B, its bytes, B] and its first window starts from the initial
state, never from the state another message left. Two kinds of step, interleaved at random:

- short messages (one window or less) are sorted by length and read side by side, one row
  each, padded to the longest of the step: exact, with little padding;
- longer messages run in lanes of consecutive windows with the state carried inside a message
  and reset where the next message of the lane begins (`LanguageModel.reset_state`).

A message longer than `PIECE_WINDOWS` windows (a whole file read as one stream) is cut into
pieces at a random offset each pass; a piece after the first starts from the initial state
mid-text, as stream training always has. Padded positions are masked out of the loss.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch

from lm.vocab import BOUNDARY, decoder_states, utf8

PIECE_WINDOWS = 32  # a message longer than this many windows is cut into pieces


@dataclass(frozen=True)
class Batch:
    """One training step's input. x, y, states, mask: [B, T]; reset: [B] or None (all fresh).

    states[i, t] is the UTF-8 decoder state before y[i, t]; mask marks real targets.
    """

    x: torch.Tensor
    y: torch.Tensor
    states: torch.Tensor
    mask: torch.Tensor
    reset: torch.Tensor | None

    def to(self, device: torch.device) -> Batch:
        reset = None if self.reset is None else self.reset.to(device)
        return Batch(self.x.to(device), self.y.to(device), self.states.to(device),
                     self.mask.to(device), reset)


def message_rows(messages: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All messages as [B m B] rows in one array: symbols, decoder states (before each
    symbol) and the offsets of the rows (len(messages) + 1 entries)."""
    rows = [[BOUNDARY, *utf8(m), BOUNDARY] for m in messages]
    offsets = np.cumsum([0] + [len(r) for r in rows])
    ids = np.fromiter((s for r in rows for s in r), dtype=np.int64, count=int(offsets[-1]))
    states = np.fromiter((s for r in rows for s in decoder_states(r)[:-1]), dtype=np.int64,
                         count=int(offsets[-1]))
    return ids, states, offsets


class MessageBatches:
    """An endless, seeded sequence of `Batch`es over the messages (see the module docstring).

    `window` is the symbols read per row and step; each step reads about `tokens` symbols.
    """

    def __init__(self, messages: list[str], window: int, tokens: int, seed: int = 0) -> None:
        if not messages:
            raise ValueError("no messages to make batches of")
        self.ids, self.states, off = message_rows(messages)
        self.window, self.tokens = window, tokens
        self.rng = np.random.default_rng(seed)
        lengths = np.diff(off)
        short = lengths <= window + 1
        self.short = [(int(o), int(n)) for o, n in zip(off[:-1][short], lengths[short],
                                                       strict=True)]
        self.long = [(int(o), int(n)) for o, n in zip(off[:-1][~short], lengths[~short],
                                                      strict=True)]
        self.symbols = int(lengths.sum())
        self._queue: list = []

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if not self._queue:
            self._queue = self._pass()
        kind, item = self._queue.pop()
        return self._short_batch(item) if kind == "short" else self._lane_batch(*item)

    def _pass(self) -> list:
        """One pass over every message: the steps in a random order (popped from the end)."""
        steps: list = [("short", b) for b in self._short_groups()]
        if self.long:
            windows = self._lanes()
            steps += [("long", (windows, k)) for k in range(windows.shape[1])]
        order = self.rng.permutation(len(steps))
        # long steps must come in order within the pass: give them back their sequence
        longs = iter(sorted((s for s in steps if s[0] == "long"), key=lambda s: -s[1][1]))
        return [steps[i] if steps[i][0] == "short" else next(longs) for i in order]

    def _short_groups(self) -> list[list[tuple[int, int]]]:
        """Short messages sorted by length (ties at random), cut into steps of ~`tokens`."""
        if not self.short:
            return []
        keys = np.array([n for _, n in self.short]) + self.rng.random(len(self.short))
        groups, cur, longest = [], [], 0
        for i in np.argsort(keys):
            item = self.short[i]
            if cur and max(longest, item[1] - 1) * (len(cur) + 1) > self.tokens:
                groups.append(cur)
                cur, longest = [], 0
            cur.append(item)
            longest = max(longest, item[1] - 1)
        return [*groups, cur]

    def _short_batch(self, group: list[tuple[int, int]]) -> Batch:
        t = max(n for _, n in group) - 1
        x = np.full((len(group), t), BOUNDARY, dtype=np.int64)
        y = np.zeros((len(group), t), dtype=np.int64)
        st = np.zeros((len(group), t), dtype=np.int64)
        mask = np.zeros((len(group), t), dtype=bool)
        for i, (o, n) in enumerate(group):
            x[i, : n - 1] = self.ids[o : o + n - 1]
            y[i, : n - 1] = self.ids[o + 1 : o + n]
            st[i, : n - 1] = self.states[o + 1 : o + n]
            mask[i, : n - 1] = True
        return Batch(*(torch.from_numpy(a) for a in (x, y, st, mask)), None)

    def _pieces(self) -> list[tuple[int, int]]:
        """Long messages as (offset, length) pieces; very long ones cut at a random offset."""
        limit = PIECE_WINDOWS * self.window + 1
        out = []
        for o, n in self.long:
            if n <= limit:
                out.append((o, n))
                continue
            cut = int(self.rng.integers(1, limit))
            edges = [0, *range(cut, n - 1, limit - 1), n - 1]
            out += [(o + a, b - a + 1) for a, b in zip(edges[:-1], edges[1:], strict=True)
                    if b > a]
        return out

    def _lanes(self) -> np.ndarray:
        """Pieces dealt to lanes (least loaded first); windows [lanes, steps, 3] of
        (offset, symbols to read, fresh start), symbols 0 where a lane has run out."""
        pieces = self._pieces()
        self.rng.shuffle(pieces)
        total = sum(n - 1 for _, n in pieces)
        lanes = max(1, min(len(pieces), self.tokens // self.window,
                           total // (2 * self.window) or 1))
        heap = [(0, i) for i in range(lanes)]
        dealt: list[list[tuple[int, int, int]]] = [[] for _ in range(lanes)]
        for o, n in pieces:
            load, i = heapq.heappop(heap)
            starts = range(0, n - 1, self.window)
            dealt[i] += [(o + a, min(self.window, n - 1 - a), int(k == 0))
                         for k, a in enumerate(starts)]
            heapq.heappush(heap, (load + len(starts), i))
        steps = max(len(d) for d in dealt)
        windows = np.zeros((lanes, steps, 3), dtype=np.int64)
        windows[:, :, 2] = 1
        for i, d in enumerate(dealt):
            if d:
                windows[i, : len(d)] = d
        return windows

    def _lane_batch(self, windows: np.ndarray, k: int) -> Batch:
        lanes, t = windows.shape[0], self.window
        x = np.full((lanes, t), BOUNDARY, dtype=np.int64)
        y = np.zeros((lanes, t), dtype=np.int64)
        st = np.zeros((lanes, t), dtype=np.int64)
        mask = np.zeros((lanes, t), dtype=bool)
        for i in range(lanes):
            o, n, _ = windows[i, k]
            x[i, :n] = self.ids[o : o + n]
            y[i, :n] = self.ids[o + 1 : o + n + 1]
            st[i, :n] = self.states[o + 1 : o + n + 1]
            mask[i, :n] = True
        reset = torch.from_numpy(windows[:, k, 2].astype(bool))
        return Batch(*(torch.from_numpy(a) for a in (x, y, st, mask)), reset)
