"""Training written once against the model interface.

Every message read from the model's initial state (`lm.batches`), truncated backprop through
time with the state carried across the windows of a long message, AdamW
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

import torch

from lm.batches import Batch, MessageBatches
from lm.errors import LmError
from lm.models import LanguageModel, NGram, build, detach_state, round_to_half
from lm.scoring import messages_nll, restricted_nll
from lm.vocab import utf8

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
        values = dict(lr=1e-3, warmup=10, batch=32, eval_every=20, patience=4,
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
        """Whether the new weights beat the starting model on validation (a loss that is not
        a number never does)."""
        return math.isfinite(self.val_after) and (self.val_before is None
                                                  or self.val_after < self.val_before)

    def summary(self) -> dict:
        """What a checkpoint records about this training."""
        return {"steps": self.steps, "minutes": self.seconds / 60, "val_loss": self.val_after,
                "val_before": self.val_before, "train_chars": self.train_chars,
                "val_chars": self.val_chars, "cancelled": self.cancelled}


def symbols(messages: list[str]) -> int:
    """Symbols the messages make as [B m B] rows, both boundaries counted."""
    return sum(len(utf8(m)) + 2 for m in messages)


def split_messages_val(messages: list[str], val_frac: float) -> tuple[list[str], list[str]]:
    """Train (first part) and validation (last part, about `val_frac` of the symbols) messages.

    Whole messages are held out; a single message (a stream) is cut in two texts.
    """
    total = symbols(messages)
    if total < MIN_TRAIN_CHARS:
        raise LmError(f"corpus too small to train: {total} characters, "
                      f"need at least {MIN_TRAIN_CHARS}")
    if len(messages) == 1:
        text = messages[0]
        cut = int(len(text) * (1 - val_frac))
        return [text[:cut]], [text[cut:]]
    need, held, k = val_frac * total, 0, len(messages)
    while k > 1 and held < need:
        k -= 1
        held += len(utf8(messages[k])) + 2
    return messages[:k], messages[k:]


def validate(model: LanguageModel, val: list[str]) -> float:
    """Validation loss in nats per symbol: each message read from a fresh start with its end
    symbol, exactly as `lm.score` reads it (restricted to legal UTF-8)."""
    was = model.training
    model.eval()
    try:
        nats, count = messages_nll(model, val)
        return nats / max(count, 1)
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

    Every message is read from the model's initial state, as scoring and sampling read it.
    Validation is on the messages `val` where given, else on the last `cfg.val_frac` of the
    messages (whole messages held out; a single message is cut in two).
    """
    msgs = [messages] if isinstance(messages, str) else list(messages)
    if val is None:
        msgs, val = split_messages_val(msgs, cfg.val_frac)
    elif symbols(msgs) + symbols(val) < MIN_TRAIN_CHARS or not val:
        raise LmError(f"corpus too small to train: {symbols(msgs)} characters and "
                      f"{symbols(val)} to validate on, need {MIN_TRAIN_CHARS} in all")
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(init) if init is not None else build(cfg.kind, cfg.model_config())
    if isinstance(model, NGram):
        return _count(model, init, msgs, val)
    if not model.trainable:
        raise LmError(f"a {model.kind} model has nothing to train")
    loop = _Loop(model, cfg, msgs, val, progress, cancel)
    return loop.run(val_before=validate(init, val) if init else None)


def _count(model: NGram, init, msgs: list[str], val: list[str]) -> TrainResult:
    """Train an n-gram: count the training messages (fine-tuning adds to the old counts)."""
    t0 = time.monotonic()
    before = validate(init, val) if init is not None else None
    model.fit_messages(msgs, keep=init is not None)
    after = validate(model, val)
    return TrainResult(model.eval(), before, after, 0, time.monotonic() - t0,
                       symbols(msgs), symbols(val))


class _Loop:
    """One gradient-training run: the state of the loop, kept out of the public function."""

    def __init__(self, model: LanguageModel, cfg: TrainConfig, msgs: list[str],
                 val: list[str], progress, cancel) -> None:
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise LmError("--device cuda was asked for but no CUDA device is available")
        self.dev = torch.device(cfg.device)
        self.model = model.to(self.dev).train()
        self.cfg, self.val = cfg, val
        self.bf16 = cfg.autocast_bf16()
        self.progress, self.cancel = progress, cancel
        self.train_chars = symbols(msgs)
        if self.train_chars < 3 * min(cfg.bptt, 16):
            raise LmError(f"corpus too small to train: {self.train_chars} symbols")
        # Small corpora get smaller steps, so that a pass holds a few of them.
        tokens = max(cfg.bptt, min(cfg.batch * cfg.bptt, self.train_chars // 4))
        self.batches = MessageBatches(msgs, cfg.bptt, tokens, cfg.seed)
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99),
                                     weight_decay=cfg.weight_decay)

    def _fraction(self, step: int, seconds: float) -> float:
        c = self.cfg
        parts = [step / c.max_steps if c.max_steps else 0.0,
                 seconds / (c.minutes * 60) if c.minutes else 0.0]
        return max(parts)

    def _state(self, batch: Batch, lanes):
        """The state a step starts from: fresh rows, or lanes carried with some reset."""
        rows = batch.x.shape[0]
        if batch.reset is None or lanes is None or bool(batch.reset.all()):
            return self.model.initial_state(rows)
        return self.model.reset_state(lanes, batch.reset)

    def _step(self, batch: Batch, state, lr: float):
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            scores, state = self.model.logits(batch.x, state)  # [B, T, V]
        nll = restricted_nll(scores.float(), batch.states, batch.y)  # [B, T]
        loss = (nll * batch.mask).sum() / batch.mask.sum().clamp_min(1)
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
        best, best_weights, bad, step = math.inf, None, 0, 0
        lanes, ema, history, cancelled = None, None, [], False
        while True:
            frac = self._fraction(step, time.monotonic() - t0)
            cancelled = self.cancel is not None and self.cancel.is_set()
            if frac >= 1 or cancelled:
                break
            batch = next(self.batches).to(self.dev)
            loss, state = self._step(batch, self._state(batch, lanes), _lr(cfg, step, frac))
            if batch.reset is not None:
                lanes = state
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            step += 1
            if step % cfg.eval_every == 0:
                val = validate(self.model, self.val)
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
            val = validate(self.model, self.val)
            history.append((step, ema, val))
            if val < best:
                best, best_weights = val, copy.deepcopy(self.model.state_dict())
            self._report(step, t0, ema, val, best)
        if step and best_weights is None:  # no validation was a number: it diverged
            raise LmError(f"training diverged: the validation loss was {history[-1][2]:.4g}"
                          f" after {step} steps; try a lower learning rate than {cfg.lr:g}")
        if best_weights is not None:
            self.model.load_state_dict(best_weights)
        if step:  # the weights returned are float16 values (see round_to_half), measured as such
            round_to_half(self.model)
            best = validate(self.model, self.val)
        elif val_before is not None:
            best = val_before
        else:
            best = validate(self.model, self.val)
        return TrainResult(self.model.cpu().eval(), val_before, best, step,
                           time.monotonic() - t0, self.train_chars, symbols(self.val),
                           cancelled, history)

    def _report(self, step, t0, ema, val, best) -> None:
        frac = self._fraction(step, time.monotonic() - t0)
        log.info("step %d train %.4f val %.4f best %.4f", step, ema, val, best)
        if self.progress is not None:
            self.progress(Progress(step, self.cfg.max_steps, min(frac, 1.0),
                                   time.monotonic() - t0, ema, val, best))
