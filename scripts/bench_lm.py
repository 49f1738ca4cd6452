"""Benchmarks of the lm package, measured side by side in one run (see BENCHMARKS.md).

    python scripts/bench_lm.py [--sections quality,throughput,finetune,latency] [--minutes 10]

Prints a markdown report and writes the raw figures to out/bench_lm.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import lm  # noqa: E402
from lm.models import NGram, NGramConfig  # noqa: E402
from lm.vocab import BOUNDARY, encode_messages, split_messages  # noqa: E402

CORPORA = ROOT / "data" / "corpora"
SHAKESPEARE = CORPORA / "tinyshakespeare.txt"
SENTENCE = ("First Citizen: Before we proceed any further, hear me speak. "
            "All: Speak, speak. You are all resolved?")[:100]


def split() -> tuple[str, str]:
    """nanoGPT's split of tinyshakespeare: first 90% train, last 10% validation."""
    text = SHAKESPEARE.read_text(encoding="utf-8")
    n = int(len(text) * 0.9)
    return text[:n], text[n:]


READINGS = ("stream", "lines", "paragraphs")


def readings(model, text: str) -> dict[str, float]:
    """nats/char of the text read each way, exactly (every message from a fresh start, its end
    counted; the stream as one message without an end, as nanoGPT reads it)."""
    return {fmt: lm.evaluate(model, text, split=fmt).nats_per_char for fmt in READINGS}


def train_messages(train: str) -> dict[str, list[str]]:
    """The training split's messages by reading, and all of them pooled (what the GRU read)."""
    out = {fmt: split_messages(train, fmt) for fmt in ("lines", "paragraphs")}
    return {**out, "pooled": out["lines"] + out["paragraphs"]}


def first_chars(messages: list[str]) -> dict[str, float]:
    counts = Counter(m[0] for m in messages if m)
    return {c: n / sum(counts.values()) for c, n in counts.items()}


def start_distribution(model) -> dict[str, float]:
    """P(first byte of a message), ASCII bytes as characters."""
    with torch.inference_mode():
        logp, _ = model(torch.tensor([[BOUNDARY]]), model.initial_state(1))
    p = logp[0, 0].exp().tolist()
    return {chr(i): p[i] for i in range(128)}


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def quality(rep: dict) -> None:
    train, val = split()
    models = {name: lm.load(name) for name in ("uniform", "base", "base-rnn", "base-ngram")}
    # the peer: a Markov-chain bot, KN 7-gram with newline as its message boundary
    models["KN-7 Markov bot (lines)"] = NGram(NGramConfig(7)).fit(
        encode_messages(split_messages(train, "lines"))).eval()
    rows: dict = {"readings (nats/char)": {n: readings(m, val) for n, m in models.items()}}
    msgs = train_messages(train)
    starts = {n: start_distribution(models[n]) for n in ("base", "base-rnn", "base-ngram")}
    rows["first character: total variation from the training messages' first characters"] = {
        n: {fmt: total_variation(d, first_chars(m)) for fmt, m in msgs.items()}
        for n, d in starts.items()}
    rows["first character: P('F' | start)"] = {n: d["F"] for n, d in starts.items()}
    rows["!prob on validation lines of 5+ words"] = prob_wins(models, val)
    rows["!babble --len 1000 from base"] = babbles(models["base"])
    rows["base, bits of <end> after a speech"] = lm.score(
        models["base"], "First Citizen:\nBefore we proceed any further, hear me speak."
    ).per_char[-1].bits
    rows["shipped files MB"] = sum(p.stat().st_size for p in (ROOT / "data").glob("*.pt")) / 1e6
    t = time.perf_counter()
    base = lm.load("base")
    rows["load base seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    lm.score(base, SENTENCE)
    rows["first score after load seconds (builds the n-gram tables)"] = time.perf_counter() - t
    rep["quality"] = rows


def prob_wins(models: dict, val: str) -> dict:
    """The RNN column against the Markov column of `!prob` (the base's parts), each line
    scored as `!prob` scores a sentence: from a fresh start, its end counted."""
    lines = [ln.strip() for ln in val.split("\n") if len(ln.split()) >= 5]
    rnn = lm.score_many(models["base-rnn"], lines)
    markov = lm.score_many(models["base-ngram"], lines)
    wins = sum(r.bits < m.bits for r, m in zip(rnn, markov, strict=True))
    return {"lines": len(lines), "rnn wins": wins, "rnn win rate": wins / len(lines),
            "rnn mean bits/char": statistics.fmean(r.bits_per_char for r in rnn),
            "markov mean bits/char": statistics.fmean(m.bits_per_char for m in markov),
            "rnn mean bits of <end>": statistics.fmean(r.per_char[-1].bits for r in rnn)}


def babbles(model, n: int = 60, cap: int = 1000) -> dict:
    texts = [t for seed in range(n // 30) for t in
             lm.sample(model, lm.SampleConfig(max_chars=cap, n=30, seed=seed))]
    lengths = sorted(len(t) for t in texts)
    return {"samples": n, "ended by themselves": sum(x < cap for x in lengths) / n,
            "median length": statistics.median(lengths)}


class PlainGRU(nn.Module):
    """The baseline: embedding, nn.GRU, linear, plain cross-entropy."""

    def __init__(self, hidden: int = 512, embed: int = 64) -> None:
        super().__init__()
        self.embed, self.rnn = nn.Embedding(257, embed), nn.GRU(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 257)

    def forward(self, x, h):
        out, h = self.rnn(self.embed(x), h)
        return self.head(out), h


def plain_loop(seconds: float, batch: int = 64, bptt: int = 128) -> float:
    """chars/s of a plain PyTorch TBPTT loop of the same size as `lm train`'s."""
    train, _ = split()
    data = torch.tensor(list(train.encode()))
    n = len(data) // batch
    data = data[: n * batch].view(batch, n)
    torch.manual_seed(0)
    model = PlainGRU()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    h, pos, steps, t0 = None, 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if pos + bptt + 1 > n:
            pos, h = 0, None
        x, y = data[:, pos : pos + bptt], data[:, pos + 1 : pos + bptt + 1]
        logits, h = model(x, h)
        loss = F.cross_entropy(logits.reshape(-1, 257), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        h, pos, steps = h.detach(), pos + bptt, steps + 1
    return steps * batch * bptt / (time.perf_counter() - t0)


def throughput(rep: dict, minutes: float, batch: int) -> None:
    text = SHAKESPEARE.read_text(encoding="utf-8")
    cfg = lm.TrainConfig(kind="gru", hidden=512, embed=64, dropout=0.0, lr=3e-3, batch=batch,
                         minutes=minutes, eval_every=500, patience=100)
    res = lm.train(text, cfg)
    ours = res.steps * cfg.batch * cfg.bptt / res.seconds
    base = plain_loop(seconds=min(120.0, minutes * 60), batch=batch)
    rep["throughput"] = {
        "lm train chars/s (validation time included)": ours,
        "plain nn.GRU loop chars/s": base, "ratio": ours / base,
        f"lm train val nats/char after {minutes:g} min": res.val_after, "steps": res.steps,
        "batch": batch, "bptt": cfg.bptt,
    }


def finetune(rep: dict) -> None:
    """What a channel's `!train` does (lm.TrainConfig.finetune, 1 minute) on John, one verse a
    message, scored line by line on Mark against a KN 7-gram counted on John."""
    john = (CORPORA / "john_kjv.txt").read_text(encoding="utf-8")
    mark = (CORPORA / "mark_kjv.txt").read_text(encoding="utf-8")
    msgs = [m for m in john.split("\n") if m]
    cut = int(len(msgs) * 0.9)
    base = lm.load("base-rnn")
    res = lm.train(msgs[:cut], lm.TrainConfig.finetune(minutes=1.0), init=base, val=msgs[cut:])
    kn_all = NGram(NGramConfig(7)).fit(encode_messages(msgs))
    kn_train = NGram(NGramConfig(7)).fit(encode_messages(msgs[:cut]))
    mix = lm.fit_mix([res.model, kn_train], msgs[cut:])
    kn = lm.evaluate(kn_all, mark, split="lines").nats_per_char
    tuned = lm.evaluate(mix, mark, split="lines").nats_per_char
    rep["finetune"] = {
        "seconds": res.seconds, "steps": res.steps,
        "held-out John (nats/symbol) before/after": [res.val_before, res.val_after],
        "KN-7 on John, Mark lines": kn,
        "base-rnn, Mark lines": lm.evaluate(base, mark, split="lines").nats_per_char,
        "fine-tuned rnn, Mark lines": lm.evaluate(res.model, mark, split="lines").nats_per_char,
        "channel mix (fine-tuned rnn + KN-7), Mark lines": tuned,
        "channel mix below KN-7 by": kn - tuned,
    }


def _interleaved(fns: dict, runs: int = 60) -> dict[str, tuple[float, float]]:
    """p50 and p95 in ms of each function, timed in turns (one call of each per round), so
    that the machine's drift over the run touches all of them alike."""
    for fn in fns.values():
        fn(0)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(runs):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(i)
            times[name].append((time.perf_counter() - t) * 1000)
    return {name: (statistics.median(x), statistics.quantiles(x, n=20)[18])
            for name, x in times.items()}


def latency(rep: dict) -> None:
    """Scoring 100 characters and sampling 200 on one thread, against a plain eager nn.GRU-512
    doing the same work, timed in turns in the same run (targets are the ratios)."""
    torch.set_num_threads(1)
    models = {name: lm.load(name) for name in ("base", "base-rnn")}
    plain_score, plain_draw = _plain()
    scoring = {name: (lambda i, m=m: lm.score(m, SENTENCE)) for name, m in models.items()}
    drawing = {name: (lambda i, m=m: lm.sample(m, lm.SampleConfig(seed=i, max_chars=200,
                                                                   stop_at_end=False)))
               for name, m in models.items()}
    rows: dict = {}
    for what, fns, plain in (("score 100 chars", scoring, plain_score),
                             ("sample 200 chars", drawing, plain_draw)):
        got = _interleaved({**fns, "plain eager nn.GRU-512": plain})
        for name, (p50, p95) in got.items():
            rows[f"{what}, {name} (p50, p95 ms)"] = [p50, p95]
        for name in fns:
            rows[f"{what}, {name} / plain (p50 ratio)"] = got[name][0] / got[
                "plain eager nn.GRU-512"][0]
    rep["latency"] = rows


def _plain():
    """The references the targets were set against: an eager nn.GRU-512 scoring SENTENCE in
    one call, and sampling 200 characters in a loop of single steps."""
    torch.manual_seed(0)
    plain = PlainGRU().eval()
    ids = torch.tensor([[256, *SENTENCE.encode()]])

    @torch.inference_mode()
    def score(i: int = 0) -> None:
        logits, _ = plain(ids, None)
        F.log_softmax(logits, dim=-1)[0, :-1].gather(1, ids[0, 1:, None]).sum()

    @torch.inference_mode()
    def draw(i: int = 0) -> None:
        gen = torch.Generator().manual_seed(i)
        x, h = torch.tensor([[256]]), None
        for _ in range(200):
            logits, h = plain(x, h)
            x = torch.multinomial(F.softmax(logits[0, -1], dim=-1), 1, generator=gen)[None]

    return score, draw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sections", default="quality,throughput,finetune,latency")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget (throughput)")
    ap.add_argument("--batch", type=int, default=32, help="lanes (throughput)")
    a = ap.parse_args()
    rep: dict = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
                            f"torch {torch.__version__}", "date": time.strftime("%Y-%m-%d")}
    for s in a.sections.split(","):
        t = time.perf_counter()
        if s == "throughput":
            throughput(rep, a.minutes, a.batch)
        else:
            {"quality": quality, "finetune": finetune, "latency": latency}[s](rep)
        print(f"[{s}: {time.perf_counter() - t:.0f} s]", flush=True)
        print(json.dumps(rep[s], indent=2), flush=True)
    out = ROOT / "out" / "bench_lm.json"
    out.parent.mkdir(exist_ok=True)
    old = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**old, **rep}, indent=2))


if __name__ == "__main__":
    main()
