"""Soak test: a bot process under mixed load, killed with SIGKILL and restarted on a schedule.

    python scripts/soak.py                       # 10 minutes, the shipped base model
    python scripts/soak.py --minutes 1 --quick   # a short run with a tiny model, to check it works

The bot runs in a child process (this script with --child): the real core, worker pool and
SQLite file, driven over a pipe by a front of a few lines (one JSON object a line each way).
From a seeded schedule the parent sends commands from 20 channels (listening on in 5, where
ordinary messages are stored too), a `!train` every minute, and every two minutes kills the
child with SIGKILL and starts it again on the same database. It then prints:

- commands sent, answered, refused as busy, and lost in flight to a kill;
- acknowledged `!learn` lost: texts whose "learned" reply arrived but that are not in the
  database at the end (must be 0);
- checkpoint folders a kill left unrecorded (removed at the next start) and left at the end (0);
- `PRAGMA integrity_check` of the database at the end (ok);
- event-loop lag in the child, p50/p99/max, sampled every 50 ms.

Not part of `make test`: it takes minutes. Everything lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHANNELS = 20
LISTENING = 5  # the first channels listen
WORDS = ["to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis", "nobler",
         "in", "mind", "suffer"]


class _Replies:
    """The child's Responder: collects reply texts of one message."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def send(self, reply):
        self.texts.append(reply.text)
        return self

    async def edit(self, reply) -> None:
        pass


async def child(folder: Path, base: str) -> None:
    """The bot: read JSON messages on stdin, answer each with a JSON line on stdout."""
    import logging

    from bot.core import Core
    from bot.messages import Incoming
    from bot.settings import Settings

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    settings = Settings(db_path=folder / "soak.db", checkpoint_dir=folder / "channels",
                        plots_dir=folder / "plots", base_model=base)
    core = await Core.open(settings)
    loop = asyncio.get_running_loop()
    lag_file = (folder / "lag.txt").open("a")

    async def ticker() -> None:
        while True:
            t0 = loop.time()
            await asyncio.sleep(0.05)
            lag_file.write(f"{(loop.time() - t0 - 0.05) * 1000:.2f}\n")

    async def handle(req: dict) -> None:
        rec = _Replies()
        msg = Incoming("soak", req["channel"], req["author"], req["author"], req["text"],
                       req["mid"], False, True)
        await core.handle(msg, rec)
        sys.stdout.write(json.dumps({"id": req["id"], "replies": rec.texts}) + "\n")
        sys.stdout.flush()

    tick = asyncio.create_task(ticker())
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    pending: set[asyncio.Task] = set()
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    while not stop.is_set():
        line = await reader.readline()
        if not line:
            break
        task = asyncio.create_task(handle(json.loads(line)))
        pending.add(task)
        task.add_done_callback(pending.discard)
        lag_file.flush()
    await asyncio.gather(*pending, return_exceptions=True)
    tick.cancel()
    await core.close()


def schedule(seed: int, seconds: float, rate: float) -> list[tuple[float, dict]]:
    """The seeded list of (time in seconds, message) the parent sends."""
    rng = random.Random(seed)
    out, t, n = [], 0.0, 0
    while t < seconds:
        t += rng.expovariate(rate)
        n += 1
        ch = rng.randrange(CHANNELS)
        r = rng.random()
        author = f"user{rng.randrange(200)}"
        if r < 0.25:
            text = f"!babble --len {rng.choice((40, 120, 200))}"
        elif r < 0.40:
            text = "!continue " + " ".join(rng.choices(WORDS, k=3))
        elif r < 0.55:
            text = "!prob " + " ".join(rng.choices(WORDS, k=rng.randint(2, 8)))
        elif r < 0.75:
            text, author = f"!learn soak-learn-{n} " + " ".join(rng.choices(WORDS, k=12)), \
                f"learner{ch}"
        elif r < 0.80:
            text = "!corpus"
        elif r < 0.82:
            author = f"forgetter{ch}"
            text = "!forget me" if rng.random() < 0.5 else "!learn forgetful " + rng.choice(WORDS)
        else:
            ch = rng.randrange(LISTENING)
            text = " ".join(rng.choices(WORDS, k=rng.randint(3, 15)))
        out.append((t, {"channel": f"ch{ch}", "author": author, "text": text, "mid": f"m{n}"}))
    trains = [(60.0 * k + 1, {"channel": f"ch{k % LISTENING}", "author": "mod",
                              "text": "!train", "mid": f"t{k}"})
              for k in range(1, int(seconds // 60) + 1)]
    return sorted(out + trains, key=lambda e: e[0])


class Parent:
    """Drives the child over its pipes and keeps the figures."""

    def __init__(self, folder: Path, base: str) -> None:
        self.folder, self.base = folder, base
        self.proc: asyncio.subprocess.Process | None = None
        self.waiting: dict[int, dict] = {}
        self.sent = self.answered = self.busy = self.lost_in_flight = 0
        self.acked_learns: list[str] = []
        self.kills = 0
        self.left_by_kills = 0
        self.reader: asyncio.Task | None = None

    async def start(self) -> None:
        self.left_by_kills += orphans(self.folder)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--child", "--folder", str(self.folder),
            "--base", self.base, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        first = json.loads(await self.proc.stdout.readline())
        assert first == {"ready": True}
        self.reader = asyncio.create_task(self.read(self.proc))

    async def read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            got = json.loads(line)
            req = self.waiting.pop(got["id"], None)
            if req is None:
                continue
            self.answered += 1
            texts = got["replies"]
            if texts and texts[0].startswith("busy"):
                self.busy += 1
            if req["text"].startswith("!learn soak-learn-") and texts \
                    and texts[0].startswith("learned"):
                self.acked_learns.append(req["text"].removeprefix("!learn "))

    async def send(self, req: dict) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        req = {**req, "id": self.sent}
        self.waiting[self.sent] = req
        self.sent += 1
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        await self.proc.stdin.drain()

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)
        self.lost_in_flight += len(self.waiting)
        self.waiting.clear()
        self.kills += 1

    async def stop(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), 120)
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


def orphans(folder: Path) -> int:
    """Checkpoint folders no version row records."""
    db, root = folder / "soak.db", folder / "channels"
    if not db.exists() or not root.is_dir():
        return 0
    con = sqlite3.connect(db)
    try:
        recorded = {r[0] for r in con.execute("SELECT path FROM models")}
    finally:
        con.close()
    found = {f"{c.name}/{v.name}" for c in root.iterdir() if c.is_dir() for v in c.iterdir()}
    return len(found - recorded)


async def parent(args: argparse.Namespace, folder: Path) -> dict:
    base = args.base
    if args.quick:
        sys.path.insert(0, str(ROOT / "scripts"))
        from bench_bot import tiny_base
        base = tiny_base(folder)
    p = Parent(folder, base)
    await p.start()
    for ch in range(LISTENING):
        await p.send({"channel": f"ch{ch}", "author": "mod", "text": "!listen on",
                      "mid": f"l{ch}"})
    seconds = args.minutes * 60
    t0 = time.monotonic()
    next_kill = args.kill_every
    for at, req in schedule(args.seed, seconds, args.rate):
        while time.monotonic() - t0 < at:
            if time.monotonic() - t0 >= next_kill:
                await p.kill()
                await p.start()
                next_kill += args.kill_every
            await asyncio.sleep(min(0.05, max(0.0, at - (time.monotonic() - t0))))
        await p.send(req)
    await asyncio.sleep(5)  # the last answers
    await p.stop()
    return figures(p, folder)


def figures(p: Parent, folder: Path) -> dict:
    con = sqlite3.connect(folder / "soak.db")
    try:
        stored = {r[0] for r in con.execute("SELECT text FROM messages")}
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    lags = [float(x) for x in (folder / "lag.txt").read_text().split()]
    lags.sort()
    return {"sent": p.sent, "answered": p.answered, "busy": p.busy,
            "lost_in_flight_to_kills": p.lost_in_flight, "kills": p.kills,
            "acknowledged_learns": len(p.acked_learns),
            "acknowledged_learns_lost": sum(t not in stored for t in p.acked_learns),
            "folders_left_by_kills": p.left_by_kills, "orphans_at_end": orphans(folder),
            "integrity": integrity, "lag_ms_p50": statistics.median(lags),
            "lag_ms_p99": lags[int(0.99 * (len(lags) - 1))], "lag_ms_max": lags[-1],
            "lag_samples": len(lags)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=4.0, help="messages per second")
    parser.add_argument("--kill-every", type=float, default=120.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", default="base")
    parser.add_argument("--quick", action="store_true", help="a tiny base model")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(child(args.folder, args.base))
        return 0
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        result = asyncio.run(parent(args, Path(tmp)))
    print(json.dumps({"date": started, "minutes": args.minutes, "rate_per_s": args.rate,
                      "kill_every_s": args.kill_every, "seed": args.seed, **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
