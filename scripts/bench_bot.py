"""Benchmarks of the bot core (issue 3): event-loop lag, command latency, model-cache memory.

    python scripts/bench_bot.py             # the full run, with the shipped base model
    python scripts/bench_bot.py --quick     # a small run with a tiny model, to check it works
    python scripts/bench_bot.py --pg        # part 2's burst: SQLite, then PostgreSQL (below)

1. Event-loop lag (p50, p99, max), sampled every 10 ms while a channel fine-tune runs in the
   same process (target: p99 at most 50 ms).
2. N `!babble` / `!continue` / `!prob` commands from C channels at once through the core, with the
   real worker pool and database: p50/p95 latency and commands per second; then the same while
   one training runs (target: p95 under 2 s without training).
3. Memory: peak RSS with M channel models loaded through the LRU cache, against the cap.

--pg runs only part 2's burst without training, twice in one run: in one process on SQLite,
then split over two bot processes (each its own half of the channels, as two shards) on one
PostgreSQL server, fired at the same moment; p95 over all N commands side by side. The server is
--pg-url, or a throwaway one started like the tests' (tests/pg/server.py).

Prints a report and writes JSON (--out). Everything lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import lm  # noqa: E402
from bot.core import Core  # noqa: E402
from bot.messages import Incoming, Reply  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.training import channel_folder  # noqa: E402

CORPORA = ROOT / "data" / "corpora"
SENTENCES = ["To be, or not to be, that is the question", "In the beginning was the Word",
             "Friends, Romans, countrymen, lend me your ears",
             "Now is the winter of our discontent"]
log = logging.getLogger("bench")


class Sink:
    """A Responder that counts replies and keeps the last text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def send(self, reply: Reply) -> Sink:
        self.texts.append(reply.text)
        return self

    async def edit(self, reply: Reply) -> None:
        self.texts.append(reply.text)


def msg(channel: str, text: str, user: str = "bench") -> Incoming:
    return Incoming("bench", channel, user, user, text, may_moderate=True)


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MiB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
                  if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) in the same unit as values."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


def corpus_lines(chars: int, offset: int) -> list[str]:
    """About `chars` characters of Shakespeare lines, starting further in for each channel."""
    text = (CORPORA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    start = (offset * 7919) % max(1, len(text) - chars)
    return [line for line in text[start:start + chars].splitlines() if line.strip()]


def tiny_base(folder: Path) -> str:
    """A small GRU + 4-gram mix for --quick (seconds to build)."""
    msgs = corpus_lines(20_000, 0)
    rnn = lm.train(msgs, lm.TrainConfig(kind="gru", hidden=64, embed=16, max_steps=20,
                                        minutes=None, batch=8, bptt=32, eval_every=10)).model
    ngram = lm.train(msgs, lm.TrainConfig(kind="ngram", order=4)).model
    path = folder / "tiny-base.pt"
    lm.save(lm.fit_mix([rnn, ngram], msgs[-40:]), path)
    return str(path)


async def lag_while(core: Core, seconds: float, every: float = 0.010) -> list[float]:
    """Event-loop lag samples in ms: how late a 10 ms sleep wakes up, for `seconds`."""
    loop = asyncio.get_running_loop()
    samples, end = [], loop.time() + seconds
    while loop.time() < end:
        t0 = time.perf_counter()
        await asyncio.sleep(every)
        samples.append(max(0.0, (time.perf_counter() - t0 - every) * 1000))
    return samples


def lag_summary(samples: list[float]) -> dict[str, float]:
    return {"samples": len(samples), "p50_ms": pct(samples, 50), "p99_ms": pct(samples, 99),
            "max_ms": max(samples)}


async def start_training(core: Core, channel: str, minutes: float) -> Sink:
    """Give a channel a corpus and start `!train`; returns the sink of its messages."""
    await core.import_messages([msg(channel, line) for line in corpus_lines(60_000, 99)])
    sink = Sink()
    await core.handle(msg(channel, f"!train --minutes {minutes:g}"), sink)
    return sink


async def bench_lag(core: Core, seconds: float, minutes: float) -> dict:
    """Part 1: loop lag while a fine-tune runs."""
    sink = await start_training(core, "lag-train", minutes)
    samples = await lag_while(core, seconds)
    await core.handle(msg("lag-train", "!train cancel"), Sink())
    await core.wait_trainings()
    return {**lag_summary(samples), "training_messages": sink.texts[-1:]}


async def burst(core: Core, n: int, channels: int, prefix: str = "ch") -> dict:
    """Part 2: n commands from `channels` channels at once; latency in seconds."""
    async def one(i: int) -> tuple[float, str]:
        kind = i % 3
        text = ("!babble" if kind == 0 else f"!continue {SENTENCES[i % 4][:20]}" if kind == 1
                else f"!prob {SENTENCES[i % 4]}")
        sink = Sink()
        t0 = time.perf_counter()
        await core.handle(msg(f"{prefix}{i % channels}", text, f"user{i}"), sink)
        return time.perf_counter() - t0, sink.texts[0] if sink.texts else ""

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    lat = [r[0] for r in results]
    busy = sum(1 for _, t in results if t.startswith("busy"))
    slowed = sum(1 for _, t in results if t.startswith("slow down") or not t)
    return {"commands": n, "channels": channels, "busy": busy, "slowed": slowed, "wall_s": wall,
            "commands_per_s": n / wall, "p50_s": pct(lat, 50), "p95_s": pct(lat, 95),
            "max_s": max(lat), "latencies_s": lat}


async def prepare(core: Core, channels: int, prefix: str = "ch") -> None:
    """Give each channel text (so !prob counts its own n-gram), then warm up: load models,
    count n-grams."""
    for c in range(channels):
        await core.import_messages([msg(f"{prefix}{c}", line)
                                    for line in corpus_lines(4000, c)])
    await burst(core, channels, channels, prefix)


async def bench_commands(core: Core, n: int, channels: int, minutes: float) -> dict:
    """Part 2 twice: without, then with, one training running."""
    await prepare(core, channels)
    # three bursts in a row: the first also pays one-off costs (a full garbage collection over
    # the models loaded so far, per-thread fonts, kernel tables for a batch of 8)
    runs = []
    for _ in range(3):  # each burst 10 commands a channel, one a user: within the cooldowns
        await asyncio.sleep(core.settings.cooldown_channel_per)
        runs.append(await burst(core, n, channels))
        del runs[-1]["latencies_s"]  # the percentiles say it; the JSON stays short
    quiet = {**runs[0], "p95_runs_s": [r["p95_s"] for r in runs],
             "commands_per_s_runs": [r["commands_per_s"] for r in runs]}
    sink = await start_training(core, "cmd-train", minutes)
    await asyncio.sleep(core.settings.cooldown_channel_per)  # the training is going by then
    busy = await burst(core, n, channels)
    del busy["latencies_s"]
    await core.handle(msg("cmd-train", "!train cancel"), Sink())
    await core.wait_trainings()
    return {"without_training": quiet, "with_training": busy,
            "training_messages": sink.texts[-1:]}


async def make_versions(core: Core, count: int) -> None:
    """Give `count` channels a trained-looking version: base RNN + own n-gram, saved to disk."""
    svc = core.services
    rnn = svc.models.base.rnn
    for c in range(count):
        lines = corpus_lines(6000, 1000 + c)
        ngram = lm.train(lines, lm.TrainConfig(kind="ngram")).model
        mix = lm.fit_mix([rnn, ngram], lines[-30:]) if rnn is not None else ngram
        channel = await svc.store.channel("bench", f"mem{c}")
        rel = f"{channel_folder(channel)}/v1"
        (core.settings.checkpoint_dir / rel).mkdir(parents=True)
        lm.save(mix, core.settings.checkpoint_dir / rel / "model.pt")
        await svc.store.add_model(channel.id, rel, mix.kind, {"bench": True})


async def bench_memory(core: Core, count: int) -> dict:
    """Part 3: load `count` channel models through the cache; RSS against the cap."""
    await make_versions(core, count)
    rss_before, _ = rss_mb()
    for c in range(count):
        await core.handle(msg(f"mem{c}", "!babble --len 20"), Sink())
    rss_after, peak = rss_mb()
    cache = core.services.models.cache
    return {"models": count, "cap_mb": cache.cap_bytes / 2**20, "cached": len(cache),
            "cached_mb": cache.nbytes / 2**20, "evictions": cache.evictions,
            "rss_before_mb": rss_before, "rss_after_mb": rss_after, "peak_rss_mb": peak}


async def run(args: argparse.Namespace, folder: Path) -> dict:
    base = tiny_base(folder) if args.quick else args.base
    # the defaults a user gets (cooldowns, queue limit), but for the folders, the base model
    # and the cache size that part 3 measures
    settings = bench_settings(args, folder, base)
    out: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "python": platform.python_version(), "torch": torch.__version__,
                             "torch_threads": torch.get_num_threads(),
                             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                 "settings": {"base_model": base, "queue_limit": settings.queue_limit,
                              "cooldowns": [settings.cooldown_user_rate,
                                            settings.cooldown_user_per,
                                            settings.cooldown_channel_rate,
                                            settings.cooldown_channel_per],
                              "sample_workers": settings.sample_workers,
                              "model_cache_mb": args.cache_mb, "quick": args.quick}}
    async with await Core.open(settings) as core:
        out["base"] = core.services.models.base_label()
        out["memory"] = await bench_memory(core, args.models)
        out["commands"] = await bench_commands(core, args.commands, args.channels,
                                               args.train_minutes)
        out["lag"] = await bench_lag(core, args.lag_seconds, args.train_minutes)
    return out


def bench_settings(args: argparse.Namespace, folder: Path, base: str) -> Settings:
    """The defaults a user gets (cooldowns, queue limit), but for the folders, the base model
    and the cache size that part 3 measures."""
    return Settings(db_path=folder / "bench.db", checkpoint_dir=folder / "channels",
                    plots_dir=folder / "plots", base_model=base, model_cache_mb=args.cache_mb)


async def pg_child(args: argparse.Namespace, folder: Path) -> None:
    """One of --pg's bot processes: its channels ready, then one burst per `go` line on stdin,
    its latencies as a JSON line on stdout."""
    settings = dataclasses.replace(bench_settings(args, folder, args.base),
                                   db_url=args.pg_child, train_here=False)
    prefix = f"p{args.part}-ch"
    async with await Core.open(settings) as core:
        await prepare(core, args.channels, prefix)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "go":
            print(json.dumps(await burst(core, args.commands, args.channels, prefix)),
                  flush=True)


def pg_bursts(args: argparse.Namespace, url: str, base: str, runs: int) -> list[dict]:
    """--pg's two processes on `url`, each half the commands and channels, fired together."""
    cmd = [sys.executable, __file__, "--pg-child", url, "--base", base,
           "--commands", str(args.commands // 2), "--channels", str(args.channels // 2)]
    kids = [subprocess.Popen([*cmd, "--part", str(k)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True) for k in range(2)]
    try:
        for kid in kids:
            assert kid.stdout.readline().strip() == "ready", "a bot process did not start"
        out = []
        for _ in range(runs):  # within the cooldowns: a pause as long as theirs between bursts
            time.sleep(Settings().cooldown_channel_per)
            for kid in kids:
                kid.stdin.write("go\n")
                kid.stdin.flush()
            halves = [json.loads(kid.stdout.readline()) for kid in kids]
            lat = halves[0]["latencies_s"] + halves[1]["latencies_s"]
            out.append({"commands": len(lat), "p50_s": pct(lat, 50), "p95_s": pct(lat, 95),
                        "max_s": max(lat), "wall_s": max(h["wall_s"] for h in halves),
                        "busy": sum(h["busy"] for h in halves)})
        return out
    finally:
        for kid in kids:
            kid.stdin.close()
            kid.wait(60)


async def sqlite_bursts(args: argparse.Namespace, folder: Path, base: str,
                        runs: int) -> list[dict]:
    """The same burst in one process on SQLite."""
    async with await Core.open(bench_settings(args, folder, base)) as core:
        await prepare(core, args.channels)
        out = []
        for _ in range(runs):
            await asyncio.sleep(core.settings.cooldown_channel_per)
            out.append(await burst(core, args.commands, args.channels))
        return out


def run_pg(args: argparse.Namespace, folder: Path) -> dict:
    """--pg: the burst on SQLite (one process), then on PostgreSQL (two processes)."""
    base = tiny_base(folder) if args.quick else args.base
    lite = asyncio.run(sqlite_bursts(args, folder, base, 3))
    server = None
    if args.pg_url is None:
        from tests.pg.server import PgServer

        server = PgServer().start()
    try:
        url = args.pg_url or server.database()
        pg = pg_bursts(args, url, base, 3)
    finally:
        if server is not None:
            server.stop()
    return {"sqlite_one_process": lite, "postgresql_two_processes": pg,
            "machine": {"cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                      time.gmtime())}}


def report_pg(r: dict) -> str:
    lines = []
    for name, runs in (("SQLite, one process", r["sqlite_one_process"]),
                       ("PostgreSQL, two processes", r["postgresql_two_processes"])):
        lines.append(f"{runs[0]['commands']} commands, {name}: p95 "
                     + ", ".join(f"{x['p95_s']:.2f}" for x in runs) + " s (three bursts); "
                     f"p50 {runs[-1]['p50_s']:.2f} s, max {runs[-1]['max_s']:.2f} s, busy "
                     f"{sum(x['busy'] for x in runs)}")
    return "\n".join(lines)


def report(r: dict) -> str:
    """The results as text, for the terminal and BENCHMARKS.md."""
    m, c, lag = r["memory"], r["commands"], r["lag"]
    lines = [f"machine: {r['machine']}", f"base model: {r['base']}",
             f"1. event-loop lag during a fine-tune: p50 {lag['p50_ms']:.1f} ms, p99 "
             f"{lag['p99_ms']:.1f} ms, max {lag['max_ms']:.1f} ms ({lag['samples']} samples)"]
    for name in ("without_training", "with_training"):
        b = c[name]
        lines.append(f"2. {b['commands']} commands from {b['channels']} channels, {name}: "
                     f"p50 {b['p50_s']:.2f} s, p95 {b['p95_s']:.2f} s, max {b['max_s']:.2f} s, "
                     f"{b['commands_per_s']:.1f} commands/s, busy {b['busy']}, "
                     f"slowed by cooldowns {b['slowed']}")
        if "p95_runs_s" in b:
            lines.append("   the same burst three times in a row: p95 "
                         + ", ".join(f"{x:.2f}" for x in b["p95_runs_s"]) + " s; "
                         + ", ".join(f"{x:.0f}" for x in b["commands_per_s_runs"])
                         + " commands/s")
    lines.append(f"3. {m['models']} channel models: {m['cached']} cached, {m['cached_mb']:.0f} "
                 f"MiB of {m['cap_mb']:.0f} MiB cap, {m['evictions']} evictions; RSS "
                 f"{m['rss_before_mb']:.0f} → {m['rss_after_mb']:.0f} MiB, peak "
                 f"{m['peak_rss_mb']:.0f} MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and a tiny model")
    parser.add_argument("--base", default="base", help="base model name or checkpoint path")
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--cache-mb", type=float, default=512.0)
    parser.add_argument("--lag-seconds", type=float, default=30.0)
    parser.add_argument("--train-minutes", type=float, default=2.0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--pg", action="store_true",
                        help="only the burst: SQLite in one process, then PostgreSQL in two")
    parser.add_argument("--pg-url", help="PostgreSQL server for --pg (default: a throwaway one)")
    parser.add_argument("--pg-child", help=argparse.SUPPRESS)  # one of --pg's processes
    parser.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.commands, args.channels, args.models = 30, 6, 8
        args.lag_seconds, args.train_minutes = 4.0, 0.5
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-bot-") as tmp:
        if args.pg_child:
            asyncio.run(pg_child(args, Path(tmp)))
            return 0
        results = run_pg(args, Path(tmp)) if args.pg else asyncio.run(run(args, Path(tmp)))
    print(report_pg(results) if args.pg else report(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
