"""One vocabulary for every model: the 256 byte values of UTF-8 plus one boundary symbol.

The boundary symbol (id 256) marks both the start and the end of a message, as index 0 does
in makemore: a message "hi" is the symbol sequence [B, h, i, B] and its probability is the
product of the probabilities of h, i and B, each given what precedes it.

Sampling must produce valid UTF-8, so next-symbol distributions are restricted to the bytes
that can legally follow (`allowed_mask`); scoring applies exactly the same restriction, so
what sampling draws from is what scoring measures.
"""

from __future__ import annotations

import re

import numpy as np
import torch

BOUNDARY = 256
VOCAB_SIZE = 257
VOCAB_NAME = "utf8-bytes+boundary"

# UTF-8 decoder states: which bytes may come next.
#  0: at a character boundary          1: one continuation byte left (80..BF)
#  2: two continuation bytes left      3: three continuation bytes left
#  4: after E0 (A0..BF, then 1 more)   5: after ED (80..9F, then 1 more)
#  6: after F0 (90..BF, then 2 more)   7: after F4 (80..8F, then 2 more)
N_STATES = 8


def _transitions() -> tuple[np.ndarray, np.ndarray]:
    """Return (allowed[state, symbol] bool, next_state[state, symbol] int8); -1 = illegal."""
    allowed = np.zeros((N_STATES, VOCAB_SIZE), dtype=bool)
    nxt = np.full((N_STATES, VOCAB_SIZE), -1, dtype=np.int8)
    for b in range(0x00, 0x80):
        nxt[0, b] = 0
    for b in range(0xC2, 0xE0):
        nxt[0, b] = 1
    for b in range(0xE1, 0xF0):
        nxt[0, b] = 2
    nxt[0, 0xE0], nxt[0, 0xED] = 4, 5
    for b in range(0xF1, 0xF4):
        nxt[0, b] = 3
    nxt[0, 0xF0], nxt[0, 0xF4] = 6, 7
    nxt[0, BOUNDARY] = 0
    for b in range(0x80, 0xC0):
        nxt[1, b], nxt[2, b], nxt[3, b] = 0, 1, 2
    for b in range(0xA0, 0xC0):
        nxt[4, b] = 1
    for b in range(0x80, 0xA0):
        nxt[5, b] = 1
    for b in range(0x90, 0xC0):
        nxt[6, b] = 2
    for b in range(0x80, 0x90):
        nxt[7, b] = 2
    allowed[:] = nxt >= 0
    return allowed, nxt


ALLOWED, NEXT_STATE = _transitions()
NEXT_STATE_ROWS = NEXT_STATE.tolist()  # the same as lists: 20x faster to index one by one
# Additive log-mask per decoder state: 0 where allowed, -inf elsewhere.  [N_STATES, VOCAB_SIZE]
LOG_MASK = torch.from_numpy(np.where(ALLOWED, 0.0, -np.inf).astype(np.float32))


def utf8(text: str) -> bytes:
    """UTF-8 bytes of `text`; a lone surrogate (not encodable) becomes '?'."""
    return text.encode("utf-8", errors="replace")


def encode(text: str) -> list[int]:
    """UTF-8 bytes of `text` as symbol ids (0..255); no boundary symbols added."""
    return list(utf8(text))


def encode_messages(messages: list[str]) -> list[int]:
    """Messages joined as one stream B m1 B m2 B ...: each boundary ends one and starts the next."""
    out = [BOUNDARY]
    for m in messages:
        out.extend(utf8(m))
        out.append(BOUNDARY)
    return out


MESSAGE_FORMATS = ("stream", "lines", "paragraphs")
_BLANK_LINE = re.compile(r"\n[ \t\r]*\n")


def split_messages(text: str, fmt: str = "stream") -> list[str]:
    """The messages of a text file: the whole text as one (`stream`), each non-empty line
    (`lines`: a chat log), or each block between blank lines (`paragraphs`: a play's speeches,
    a forum's posts), without the newlines around it."""
    if fmt == "stream":
        return [text]
    if fmt == "lines":
        return [m for m in text.split("\n") if m]
    if fmt == "paragraphs":
        return [p.strip("\n") for p in _BLANK_LINE.split(text) if p.strip()]
    raise ValueError(f"unknown message format {fmt!r}: one of {', '.join(MESSAGE_FORMATS)}")


def split_messages_at(text: str, pos: int, fmt: str) -> tuple[list[str], list[str]]:
    """The messages of `text` before and after `pos` (a character offset), cut at the last
    message boundary at or before it, so no message is split (a stream is cut at `pos`)."""
    if fmt == "lines":
        edge = text.rfind("\n", 0, pos)
        pos = pos if edge < 0 else edge
    elif fmt == "paragraphs":
        edges = [m.start() for m in _BLANK_LINE.finditer(text, 0, pos)]
        pos = edges[-1] if edges else pos
    return split_messages(text[:pos], fmt), split_messages(text[pos:], fmt)


def decode(ids: list[int]) -> str:
    """Symbols back to text, dropping boundaries; invalid bytes become U+FFFD."""
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def decoder_states(ids: list[int], start: int = 0) -> list[int]:
    """State before each symbol of `ids` (len(ids) + 1 entries, the last is the state after all).

    An illegal symbol resets to state 0 (the mask then gives it probability 0, i.e. infinite
    surprisal; text that came from a Python str never contains one).
    """
    states = [start]
    s = start
    nxt = NEXT_STATE_ROWS
    for i in ids:
        s = nxt[s][i]
        if s < 0:
            s = 0
        states.append(s)
    return states


def char_spans(text: str) -> list[tuple[str, int]]:
    """Each character of `text` with its length in bytes, in order."""
    if text.isascii():
        return [(c, 1) for c in text]
    return [(c, len(utf8(c))) for c in text]
