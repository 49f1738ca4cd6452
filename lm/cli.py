"""`python -m lm`: train, sample, score, eval, mix and info from the command line.

`main(argv)` runs one command and turns user errors into one line on stderr; the parser is in
`lm.cli_args`, the work in the library.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lm.checkpoint import save, summary
from lm.cli_args import build_parser
from lm.errors import LmError
from lm.hub import BASE_PATH, NAMES, load
from lm.mixing import fit_mix
from lm.models import GRADIENT, training_of
from lm.models.mix import DEFAULT_EDGES
from lm.sampling import SampleConfig, sample
from lm.scoring import evaluate, score
from lm.trainer import TrainConfig, train
from lm.vocab import split_messages, split_messages_at

log = logging.getLogger("lm")


def read_text(path: str) -> str:
    """A UTF-8 text file, or a clear LmError."""
    p = Path(path)
    if not p.is_file():
        raise LmError(f"{path}: no such file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise LmError(f"{path}: not valid UTF-8 (byte {e.start})") from e


def _formats(a: argparse.Namespace) -> list[str]:
    """The message formats asked for (--lines is short for --format lines)."""
    if a.lines:
        return ["lines"]
    return a.format if isinstance(a.format, list) else [a.format]


def _train_val(text: str, formats: list[str],
               val_frac: float) -> tuple[list[str], list[str] | None]:
    """Training and validation messages of the text read each of `formats` ways; None for
    validation where it is one stream, which `lm.train` splits itself. Each format splits at
    the same point, a stream's split point (for lines and paragraphs, the last message boundary
    before it), so no format validates on what another trained on."""
    if formats == ["stream"]:
        return [text], None
    train_msgs, val_msgs = [], []
    for fmt in formats:
        before, after = split_messages_at(text, int(len(text) * (1 - val_frac)), fmt)
        train_msgs += before
        val_msgs += after
    return train_msgs, val_msgs


def cmd_train(a: argparse.Namespace) -> None:
    import torch
    from tqdm import tqdm

    if a.threads:
        torch.set_num_threads(a.threads)
    init = load(a.init) if a.init else None
    cfg = TrainConfig(kind=a.kind, hidden=a.hidden, layers=a.layers, embed=a.embed,
                      dropout=a.dropout, order=a.order, batch=a.batch, bptt=a.bptt, lr=a.lr,
                      warmup=a.warmup, minutes=a.minutes if a.minutes > 0 else None,
                      max_steps=a.steps,
                      eval_every=a.eval_every, patience=a.patience, seed=a.seed,
                      device=a.device, precision=a.precision)
    kind = init.kind if init is not None else cfg.kind
    bar = tqdm(total=100, unit="%", disable=a.quiet or training_of(kind) != GRADIENT)

    def progress(p) -> None:
        bar.update(round(p.fraction * 100) - bar.n)
        bar.set_postfix(train=f"{p.train_loss:.3f}", val=f"{p.val_loss:.3f}")

    msgs, val = _train_val(read_text(a.data), _formats(a), cfg.val_frac)
    res = train(msgs, cfg, init=init, progress=progress, val=val)
    bar.close()
    if a.init and a.keep_if_worse is False and not res.improved:
        raise LmError(f"not saved: validation {res.val_after:.4f} is not better than "
                      f"{res.val_before:.4f} before fine-tuning")
    save(res.model, a.out, {**res.summary(), "data": str(a.data), "formats": _formats(a),
                            "init": a.init})
    print(json.dumps({"out": a.out, **res.summary()}))


def cmd_sample(a: argparse.Namespace) -> None:
    cfg = SampleConfig(temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                       greedy=a.greedy, max_chars=a.max_chars, seed=a.seed, n=a.n)
    cfg.validate()
    texts = sample(load(a.model), cfg, prefix=a.prefix)
    if a.json:
        print(json.dumps({"samples": texts}, ensure_ascii=False))
    else:
        print("\n---\n".join(a.prefix + t for t in texts))


def cmd_score(a: argparse.Namespace) -> None:
    s = score(load(a.model), a.text, include_end=not a.no_end)
    if a.json:
        print(json.dumps(s.to_dict(), ensure_ascii=False))
        return
    end = "including" if s.include_end else "excluding"
    print(f"{s.nats:.3f} nats = {s.bits:.3f} bits over {s.chars} characters ({end} the end "
          f"symbol): {s.bits_per_char:.3f} bits/char, perplexity {s.perplexity:.2f}")
    for c in s.per_char:
        print(f"  {c.char!r:>10} {c.bits:7.2f} bits")


_READINGS = {"stream": "the file as one stream from a fresh start, no end symbol",
             "lines": "each line a message from a fresh start, its end counted as a character",
             "paragraphs": "each block between blank lines a message from a fresh start, its "
                           "end counted as a character"}


def cmd_eval(a: argparse.Namespace) -> None:
    fmt = _formats(a)[0]
    ev = evaluate(load(a.model), read_text(a.file), split=fmt, lanes=a.lanes, warmup=a.warmup,
                  check=a.check)
    if a.json:
        print(json.dumps({**ev.to_dict(), "format": fmt}))
        return
    print(f"{ev.nats_per_char:.4f} nats/char = {ev.bits_per_char:.4f} bits/char "
          f"over {ev.chars} characters ({fmt}: {_READINGS[fmt]})")
    if ev.lanes > 1:
        measured = ("" if ev.lane_error is None else
                    f"; on a sample, lanes added {ev.lane_error:+.4f} nats/char")
        print(f"approximate: read in {ev.lanes} lanes, each from a fresh state after "
              f"{a.warmup} symbols of warm-up{measured}")


def cmd_mix(a: argparse.Namespace) -> None:
    models = [load(m) for m in a.models]
    text = read_text(a.data)
    val = text[int(len(text) * 0.9):] if a.val_split else text
    formats = _formats(a)
    msgs = [m for fmt in formats for m in split_messages(val, fmt)]
    mix = fit_mix(models, msgs, edges=() if a.static else DEFAULT_EDGES)
    parts = [getattr(m, "summary", {}) for m in models]
    save(mix, a.out, {"fitted_on": str(a.data), "val_split": a.val_split, "formats": formats,
                      "parts": parts})
    print(json.dumps({"out": a.out, "weights": mix.config.weights, "edges": mix.config.edges}))


def cmd_info(a: argparse.Namespace) -> None:
    if a.model == "uniform":
        print(json.dumps(load("uniform").describe()))
        return
    path = BASE_PATH if a.model in NAMES else a.model  # base, base-rnn, base-ngram: one file
    print(json.dumps(summary(path), indent=2, default=str))


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "score": cmd_score, "eval": cmd_eval,
            "mix": cmd_mix, "info": cmd_info}


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 2 on a user error (one line on stderr), 130 when
    interrupted."""
    try:
        args = build_parser(COMMANDS).parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        args.func(args)
    except LmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help has printed and exits
        return e.code if isinstance(e.code, int) else 0
    return 0
