"""Parsing command text: `!name free text --option value ...`, platform-neutral.

Options may stand anywhere in the text, as `--name value` or `--name=value`; a lone `--` ends
the options (everything after it is text, even `--words`). The text between options keeps its
own spacing and newlines. Bad input raises UserError with a message that says what to type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.errors import UserError

_NAME = re.compile(r"[A-Za-z][\w-]*")
_TOKEN = re.compile(r"\S+")


@dataclass(frozen=True)
class Option:
    """A `--name VALUE` option; `parse` turns the value text into a value or raises ValueError."""

    name: str
    metavar: str
    parse: Callable[[str], Any]
    help: str


def split_command(text: str, prefix: str) -> tuple[str, str] | None:
    """(command name in lower case, the rest) if `text` is a command, else None."""
    stripped = text.lstrip()
    if not stripped.startswith(prefix):
        return None
    body = stripped[len(prefix):]
    match = _NAME.match(body)
    if match is None:
        return None  # "!", "! hi", "!!!": an ordinary message
    rest = body[match.end():]
    if rest and not rest[0].isspace():
        return None  # "!babble?": not a command either
    return match.group().lower(), rest.strip()


def parse_options(command: str, args: str, options: tuple[Option, ...]) -> tuple[str, dict]:
    """Split `args` into free text and option values; UserError on unknown or bad options."""
    known = {o.name: o for o in options}
    values: dict[str, Any] = {}
    pieces: list[str] = []
    pos = 0
    tokens = list(_TOKEN.finditer(args))
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        word = tok.group()
        if word == "--":
            pieces.append(args[pos:tok.start()])
            pos = tokens[i + 1].start() if i + 1 < len(tokens) else len(args)
            break
        if word.startswith("--") and len(word) > 2:
            name, eq, raw = word[2:].partition("=")
            opt = known.get(name.lower())
            if opt is None:
                raise UserError(f"unknown option --{name} for !{command}; "
                                f"{describe_options(options)}")
            if not eq:
                if i + 1 >= len(tokens):
                    raise UserError(f"--{opt.name} needs a value: --{opt.name} {opt.metavar}")
                i += 1
                raw = tokens[i].group()
            values[opt.name] = _value(opt, raw)
            pieces.append(args[pos:tok.start()].rstrip(" \t"))
            pos = tokens[i].end()
        i += 1
    pieces.append(args[pos:])
    return "".join(pieces).strip(), values


def _value(opt: Option, raw: str) -> Any:
    try:
        return opt.parse(raw)
    except ValueError as err:
        raise UserError(f"bad value {raw[:40]!r} for --{opt.name}: {err}") from None


def describe_options(options: tuple[Option, ...]) -> str:
    """One line naming every option of a command."""
    if not options:
        return "it takes no options"
    return "options: " + ", ".join(f"--{o.name} {o.metavar}" for o in options)


def number(lo: float, hi: float, integer: bool = False) -> Callable[[str], float | int]:
    """A parser for a number in [lo, hi] (lo excluded when it is 0 and not integer)."""

    def parse(raw: str) -> float | int:
        try:
            value: float | int = int(raw) if integer else float(raw)
        except ValueError:
            raise ValueError(f"expected {'a whole number' if integer else 'a number'}") from None
        if not math.isfinite(value) or value > hi or value < lo or (value == 0 and lo == 0
                                                                     and not integer):
            raise ValueError(f"expected a value {'above' if lo == 0 and not integer else 'from'} "
                             f"{lo:g} up to {hi:g}")
        return value

    return parse


def choice(*names: str) -> Callable[[str], str]:
    """A parser for one of `names` (case-insensitive)."""

    def parse(raw: str) -> str:
        if raw.lower() not in names:
            raise ValueError(f"expected one of {', '.join(names)}")
        return raw.lower()

    return parse
