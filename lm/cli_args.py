"""The argument parser of `python -m lm` (kept apart from what the commands do)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from lm.errors import LmError
from lm.models import kinds
from lm.vocab import MESSAGE_FORMATS

Command = Callable[[argparse.Namespace], None]


class ArgParser(argparse.ArgumentParser):
    """A parser whose errors are one-line LmErrors, with no usage dump."""

    def error(self, message: str) -> None:
        raise LmError(f"{self.prog}: {message}")


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def _model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="base",
                   help="checkpoint path, or uniform, base, base-rnn, base-ngram")


def _formats(p: argparse.ArgumentParser, several: bool = False) -> None:
    help_ = ("how the file splits into messages: one stream, each line, or each block between "
             "blank lines; every message is read from a fresh start with its end counted, as "
             "the bot reads what people type. A chat export (one message a line) is 'lines'; "
             "a play or a forum dump with blank lines between posts is 'paragraphs'")
    if several:
        p.add_argument("--format", nargs="+", default=["stream"], choices=MESSAGE_FORMATS,
                       help=help_ + "; several: the text read each of those ways (a base "
                            "model for chat: stream lines paragraphs)")
    else:
        p.add_argument("--format", default="stream", choices=MESSAGE_FORMATS, help=help_)
    p.add_argument("--lines", action="store_true", help="each line a message (--format lines)")


def _train(sub, run: Command) -> None:
    p = sub.add_parser("train", help="train or fine-tune a model on a text file")
    p.add_argument("--data", required=True, help="UTF-8 text file")
    _formats(p, several=True)
    p.add_argument("--kind", default="gru", choices=kinds(trainable=True))
    p.add_argument("--init", help="checkpoint (or model name) to fine-tune")
    p.add_argument("--keep-if-worse", action=argparse.BooleanOptionalAction, default=True,
                   help="with --init: save even if validation got worse (default yes)")
    p.add_argument("--out", required=True, help="checkpoint to write")
    p.add_argument("--minutes", type=float, default=10.0,
                   help="wall-clock budget, validations included (0: none)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--steps", type=_positive_int, help="step budget")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="training arithmetic: bf16 autocast, fp32, or auto (bf16 on CPUs "
                        "with native bfloat16)")
    for name, typ, default in [("hidden", int, 512), ("layers", int, 1), ("embed", int, 64),
                               ("dropout", float, 0.0), ("order", int, 7), ("batch", int, 64),
                               ("bptt", int, 128), ("lr", float, 3e-3), ("warmup", int, 100),
                               ("eval-every", int, 200), ("patience", int, 5), ("seed", int, 0)]:
        p.add_argument(f"--{name}", type=typ, default=default)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _sample(sub, run: Command) -> None:
    p = sub.add_parser("sample", help="generate text")
    _model(p)
    p.add_argument("--prefix", default="", help="text to continue")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--max-chars", type=int, default=200)
    p.add_argument("--seed", type=int)
    p.add_argument("--n", type=int, default=1, help="number of samples")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _score(sub, run: Command) -> None:
    p = sub.add_parser("score", help="log-probability of one message")
    _model(p)
    p.add_argument("text")
    p.add_argument("--no-end", action="store_true", help="leave the end-of-message symbol out")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _eval(sub, run: Command) -> None:
    p = sub.add_parser("eval", help="nats per character of a file (exact)")
    _model(p)
    p.add_argument("--file", required=True)
    _formats(p)
    p.add_argument("--lanes", type=_positive_int, default=1,
                   help="a stream only: read it in this many pieces side by side, faster and "
                        "approximate (each piece starts fresh after --warmup symbols)")
    p.add_argument("--warmup", type=int, default=256,
                   help="with --lanes: symbols each piece re-reads before its own")
    p.add_argument("--check", action="store_true",
                   help="with --lanes: measure what the lanes add on a sample of the file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _mix(sub, run: Command) -> None:
    p = sub.add_parser("mix", help="mix models with weights fitted on validation text")
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--data", required=True, help="text to fit the weights on")
    p.add_argument("--val-split", action="store_true", help="use only its last 10%%")
    _formats(p, several=True)
    p.add_argument("--static", action="store_true",
                   help="one fixed weight per model (default: weights by each model's entropy)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def _info(sub, run: Command) -> None:
    p = sub.add_parser("info", help="what a checkpoint holds")
    _model(p)
    p.set_defaults(func=run)


def build_parser(commands: Mapping[str, Command]) -> ArgParser:
    """All subcommands of `python -m lm`, each running commands[its name]."""
    root = ArgParser(prog="python -m lm", description="Train, sample, score, evaluate, mix "
                     "and inspect character-level language models.")
    root.add_argument("-v", "--verbose", action="store_true")
    sub = root.add_subparsers(dest="command", required=True, parser_class=ArgParser)
    for name, add in (("train", _train), ("sample", _sample), ("score", _score),
                      ("eval", _eval), ("mix", _mix), ("info", _info)):
        add(sub, commands[name])
    return root
