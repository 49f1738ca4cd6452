"""Training written once against the model interface.

Truncated backprop through time with the state carried across consecutive windows, AdamW
with warm-up and cosine decay, gradient-norm clipping, validation at intervals, early stopping
keeping the best weights, budgets in steps and in minutes, progress callbacks and cancellation.
Counting models (the n-gram) train through the same entry point by counting.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from lm.errors import LmError
from lm.models import LanguageModel, NGram, build, detach_state, round_to_half
from lm.scoring import lane_logprobs, restricted_nll
from lm.vocab import decoder_states, encode_messages

log = logging.getLogger(__name__)
MIN_TRAIN_CHARS = 2_000  # below this there is too little to hold out a validation split


@dataclass(frozen=True)
class TrainConfig:
    """What to train and for how long. Learning rate per AdamW step; budgets are upper bounds."""

    kind: str = "gru"
    hidden: int = 512
    layers: int = 1
    embed: int = 64
    dropout: float = 0.0
    order: int = 7  # n-gram only
    batch: int = 64  # parallel lanes of the training stream
    bptt: int = 128  # symbols per window
    lr: float = 3e-3
    min_lr_frac: float = 0.05  # cosine decays to lr * this
    warmup: int = 100  # steps
    weight_decay: float = 0.01
    clip: float = 1.0  # max gradient norm
    minutes: float | None = 10.0
    max_steps: int | None = None
    eval_every: int = 200  # steps between validations
    eval_lanes: int = 32
    patience: int = 5  # validations without improvement before stopping
    val_frac: float = 0.1  # the last part of the data is held out
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"  # "fp32", "bf16" (autocast), or "auto": bf16 on CPUs built for it

    def autocast_bf16(self) -> bool:
        """Whether training steps run under bfloat16 autocast (weights stay float32).

        "auto" chooses it on a CPU with native bfloat16 arithmetic (AMX or AVX512-BF16), where
        it made a GRU-512 training step 1.4x faster here; validation is always float32.
        """
        if self.precision not in ("auto", "fp32", "bf16"):
            raise LmError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.precision != "auto":
            return self.precision == "bf16"
        cpu = getattr(torch, "cpu", None)
        native_bf16 = any(getattr(cpu, name, lambda: False)()
                          for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
        return not self.device.startswith("cuda") and native_bf16

    @classmethod
    def finetune(cls, minutes: float | None = 1.0, **overrides) -> TrainConfig:
        """Settings for fine-tuning a trained model on a small corpus (a chat channel's):
        a gentler learning rate, a short warm-up, frequent validation and early stopping."""
        values = dict(lr=1e-3, warmup=10, batch=32, eval_every=20, patience=4, eval_lanes=16,
                      minutes=minutes)
        return cls(**{**values, **overrides})

    def model_config(self) -> dict:
        """The config of the model this trains from scratch."""
        if self.kind == "ngram":
            return {"order": self.order}
        return {"hidden": self.hidden, "layers": self.layers, "embed": self.embed,
                "dropout": self.dropout}


@dataclass(frozen=True)
class Progress:
    """Reported after each validation (and at the end). Losses in nats per symbol."""

    step: int
    total_steps: int | None
    fraction: float  # of the step or time budget, whichever is nearer
    seconds: float
    train_loss: float
    val_loss: float | None
    best_val: float | None


@dataclass
class TrainResult:
    """The best model found, validation loss (nats/symbol) before and after, and the curve."""

    model: LanguageModel
    val_before: float | None
    val_after: float
    steps: int
    seconds: float
    train_chars: int
    val_chars: int
    cancelled: bool = False
    history: list[tuple[int, float, float]] = field(default_factory=list)  # step, train, val

    @property
    def improved(self) -> bool:
        """Whether the new weights beat the starting model on validation."""
        return self.val_before is None or self.val_after < self.val_before

    def summary(self) -> dict:
        """What a checkpoint records about this training."""
        return {"steps": self.steps, "minutes": self.seconds / 60, "val_loss": self.val_after,
                "val_before": self.val_before, "train_chars": self.train_chars,
                "val_chars": self.val_chars, "cancelled": self.cancelled}


def split_stream(messages: list[str], val_frac: float) -> tuple[list[int], list[int]]:
    """Symbols of the messages, cut into train (first part) and validation (last part)."""
    ids = encode_messages(messages)
    if len(ids) < MIN_TRAIN_CHARS:
        raise LmError(f"corpus too small to train: {len(ids)} characters, "
                      f"need at least {MIN_TRAIN_CHARS}")
    cut = int(len(ids) * (1 - val_frac))
    return ids[:cut], ids[cut - 1 :]  # validation starts with the symbol before it


def validate(model: LanguageModel, val: list[int], lanes: int) -> float:
    """Validation loss in nats per symbol (restricted to legal UTF-8, as scoring does)."""
    was = model.training
    model.eval()
    try:
        return float(-lane_logprobs(model, val, lanes, warmup=64).double().mean())
    finally:
        model.train(was)


def _lr(cfg: TrainConfig, step: int, frac: float) -> float:
    """Warm-up then cosine decay over the budget fraction used."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    floor = cfg.lr * cfg.min_lr_frac
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(frac, 1.0)))


def train(messages: list[str] | str, cfg: TrainConfig, init: LanguageModel | None = None,
          progress: Callable[[Progress], None] | None = None,
          cancel: threading.Event | None = None,
          val: list[str] | None = None) -> TrainResult:
    """Train a model (or fine-tune `init`) on messages; a str is one long message.

    Validation is on the messages `val` where given, else on the last `cfg.val_frac` of the
    messages' symbol stream (held out from training).
    """
    msgs = [messages] if isinstance(messages, str) else list(messages)
    if val is None:
        train_ids, val_ids = split_stream(msgs, cfg.val_frac)
    else:
        train_ids, val_ids = encode_messages(msgs), encode_messages(val)
        if len(train_ids) + len(val_ids) < MIN_TRAIN_CHARS or len(val_ids) < 3:
            raise LmError(f"corpus too small to train: {len(train_ids)} characters and "
                          f"{len(val_ids)} to validate on, need {MIN_TRAIN_CHARS} in all")
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(init) if init is not None else build(cfg.kind, cfg.model_config())
    if isinstance(model, NGram):
        return _count(model, init, train_ids, val_ids, cfg)
    if not model.trainable:
        raise LmError(f"a {model.kind} model has nothing to train")
    loop = _Loop(model, cfg, train_ids, val_ids, progress, cancel)
    return loop.run(val_before=validate(init, val_ids, cfg.eval_lanes) if init else None)


def _count(model: NGram, init, train_ids, val_ids, cfg: TrainConfig) -> TrainResult:
    """Train an n-gram: count the training split (fine-tuning adds to the old counts)."""
    t0 = time.monotonic()
    before = validate(init, val_ids, cfg.eval_lanes) if init is not None else None
    old = model.tokens.numpy().tolist() if init is not None else []
    model.fit(old + train_ids)
    val = validate(model, val_ids, cfg.eval_lanes)
    return TrainResult(model.eval(), before, val, 0, time.monotonic() - t0,
                       len(train_ids), len(val_ids))


class _Loop:
    """One gradient-training run: the state of the loop, kept out of the public function."""

    def __init__(self, model: LanguageModel, cfg: TrainConfig, train_ids: list[int],
                 val_ids: list[int], progress, cancel) -> None:
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise LmError("--device cuda was asked for but no CUDA device is available")
        self.dev = torch.device(cfg.device)
        self.model = model.to(self.dev).train()
        self.cfg, self.val_ids = cfg, val_ids
        self.bf16 = cfg.autocast_bf16()
        self.progress, self.cancel = progress, cancel
        # Small corpora get fewer lanes, so that each lane holds a few windows.
        self.batch = max(1, min(cfg.batch, (len(train_ids) - 1) // (4 * cfg.bptt)))
        n = (len(train_ids) - 1) // self.batch
        if n < 3:
            raise LmError(f"corpus too small to train: {len(train_ids)} symbols")
        ds = decoder_states(train_ids)[:-1]
        # Lanes: the stream cut into `batch` contiguous rows, each read left to right.
        self.data = torch.tensor(train_ids[: self.batch * n]).view(self.batch, n).to(self.dev)
        self.dstates = torch.tensor(ds[: self.batch * n]).view(self.batch, n).to(self.dev)
        self.bptt = min(cfg.bptt, n - 1)
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99),
                                     weight_decay=cfg.weight_decay)
        self.rng = np.random.default_rng(cfg.seed)
        self.train_chars = len(train_ids)

    def _fraction(self, step: int, seconds: float) -> float:
        c = self.cfg
        parts = [step / c.max_steps if c.max_steps else 0.0,
                 seconds / (c.minutes * 60) if c.minutes else 0.0]
        return max(parts)

    def _step(self, x, y, ds, state, lr: float):
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            scores, state = self.model.logits(x, state)  # [B, T, V]
        loss = restricted_nll(scores.float(), ds, y).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        return float(loss.detach()), detach_state(state)

    def run(self, val_before: float | None) -> TrainResult:
        cfg, t0 = self.cfg, time.monotonic()
        if not cfg.max_steps and not cfg.minutes:
            raise LmError("give a budget: max_steps or minutes")
        best, best_weights, bad, step, pos = math.inf, None, 0, 0, 0
        state, ema, history, cancelled = None, None, [], False
        n = self.data.shape[1]
        while True:
            frac = self._fraction(step, time.monotonic() - t0)
            cancelled = self.cancel is not None and self.cancel.is_set()
            if frac >= 1 or cancelled:
                break
            if state is None or pos + self.bptt + 1 > n:  # new pass: fresh state, new offset
                pos = int(self.rng.integers(0, max(1, min(self.bptt, n - self.bptt))))
                state = self.model.initial_state(self.batch)
            sl = slice(pos, pos + self.bptt)
            nx = slice(pos + 1, pos + self.bptt + 1)
            loss, state = self._step(self.data[:, sl], self.data[:, nx], self.dstates[:, nx],
                                     state, _lr(cfg, step, frac))
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            step, pos = step + 1, pos + self.bptt
            if step % cfg.eval_every == 0:
                val = validate(self.model, self.val_ids, cfg.eval_lanes)
                history.append((step, ema, val))
                if val < best:
                    best, bad = val, 0
                    best_weights = copy.deepcopy(self.model.state_dict())
                else:
                    bad += 1
                self._report(step, t0, ema, val, best)
                if bad >= cfg.patience:
                    log.info("early stop at step %d: no improvement in %d validations", step, bad)
                    break
        if step and (not history or history[-1][0] != step):
            val = validate(self.model, self.val_ids, cfg.eval_lanes)
            history.append((step, ema, val))
            if val < best:
                best, best_weights = val, copy.deepcopy(self.model.state_dict())
            self._report(step, t0, ema, val, best)
        if best_weights is not None:
            self.model.load_state_dict(best_weights)
        if step:  # the weights returned are float16 values (see round_to_half), measured as such
            round_to_half(self.model)
            best = validate(self.model, self.val_ids, cfg.eval_lanes)
        elif val_before is not None:
            best = val_before
        else:
            best = validate(self.model, self.val_ids, cfg.eval_lanes)
        return TrainResult(self.model.cpu().eval(), val_before, best, step,
                           time.monotonic() - t0, self.train_chars, len(self.val_ids),
                           cancelled, history)

    def _report(self, step, t0, ema, val, best) -> None:
        frac = self._fraction(step, time.monotonic() - t0)
        log.info("step %d train %.4f val %.4f best %.4f", step, ema, val, best)
        if self.progress is not None:
            self.progress(Progress(step, self.cfg.max_steps, min(frac, 1.0),
                                   time.monotonic() - t0, ema, val, best))
