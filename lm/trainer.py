"""Training written once against the model interface.

Every message read from the model's initial state (`lm.batches`), truncated backprop through
time with the state carried across the windows of a long message, AdamW
with warm-up and cosine decay, gradient-norm clipping, validation at intervals, early stopping
keeping the best weights, budgets in steps and in minutes (a hard cap: the last validation
fits inside it), progress callbacks and cancellation. Models that learn by counting (the
registry says which) train through the same entry point by counting.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lm.batches import Batch, MessageBatches
from lm.errors import LmError
from lm.models import (
    COUNTING,
    LanguageModel,
    build,
    config_from,
    detach_state,
    kinds,
    round_to_half,
    training_of,
)
from lm.scoring import messages_nll, restricted_nll
from lm.vocab import utf8

log = logging.getLogger(__name__)
MIN_TRAIN_CHARS = 2_000  # below this there is too little to hold out a validation split
# The time kept free for the last validation: this many times the last one, plus a margin for
# copying and rounding the weights.
VAL_RESERVE = 1.5
SLACK_S = 0.05


@dataclass(frozen=True)
class TrainConfig:
    """What to train and for how long. Learning rate per AdamW step; budgets are upper bounds,
    and `minutes` is a hard one: `train` returns within it, its last validation included.
    The defaults train a small GRU for one minute; `lm train` has its own defaults."""

    kind: str = "gru"
    hidden: int = 256
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
    minutes: float | None = 1.0
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
        """The config of the model this trains from scratch: the fields of this config that
        the kind's own config has (hidden and layers for a GRU, order for an n-gram)."""
        return config_from(self.kind, self)


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
    messages (whole messages held out; a single message is cut in two). With `cfg.minutes`
    the call returns within that many minutes of wall-clock time, everything included.
    """
    t0 = time.monotonic()
    kind = init.kind if init is not None else cfg.kind
    if training_of(kind) is None:
        raise LmError(f"a {kind} model is not trained by lm; train one of the kinds "
                      f"{', '.join(kinds(trainable=True))}")
    msgs = [messages] if isinstance(messages, str) else list(messages)
    if val is None:
        msgs, val = split_messages_val(msgs, cfg.val_frac)
    elif symbols(msgs) + symbols(val) < MIN_TRAIN_CHARS or not val:
        raise LmError(f"corpus too small to train: {symbols(msgs)} characters and "
                      f"{symbols(val)} to validate on, need {MIN_TRAIN_CHARS} in all")
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(init) if init is not None else build(cfg.kind, cfg.model_config())
    if training_of(kind) == COUNTING:
        return _count(model, init is not None, msgs, val, t0)
    return _Loop(model, cfg, msgs, val, progress, cancel, t0).run(fine_tune=init is not None)


def _count(model: LanguageModel, fine_tune: bool, msgs: list[str], val: list[str],
           t0: float) -> TrainResult:
    """Train a counting model: count the training messages (fine-tuning adds to the old
    counts). Counting is quick and has no budget."""
    before = validate(model, val) if fine_tune else None
    model.fit_messages(msgs, keep=fine_tune)
    after = validate(model, val)
    return TrainResult(model.eval(), before, after, 0, time.monotonic() - t0,
                       symbols(msgs), symbols(val))


class _Loop:
    """One gradient-training run: the state of the loop, kept out of the public function."""

    def __init__(self, model: LanguageModel, cfg: TrainConfig, msgs: list[str],
                 val: list[str], progress, cancel, t0: float) -> None:
        if not cfg.max_steps and not cfg.minutes:
            raise LmError("give a budget: max_steps or minutes")
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise LmError("--device cuda was asked for but no CUDA device is available")
        self.dev = torch.device(cfg.device)
        self.model = model.to(self.dev).train()
        self.cfg, self.val, self.t0 = cfg, val, t0
        self.deadline = t0 + cfg.minutes * 60 if cfg.minutes else math.inf
        self.val_s = 0.0  # how long the last validation took, in seconds
        # the last steps' durations in seconds; the first step's apart, as it pays for lazy
        # set-up (torch imports its optimizer machinery on first use) and is used only alone
        self.step_s: deque[float] = deque(maxlen=8)
        self.first_step_s = 0.0
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

    def _fraction(self, step: int) -> float:
        c = self.cfg
        parts = [step / c.max_steps if c.max_steps else 0.0,
                 (time.monotonic() - self.t0) / (c.minutes * 60) if c.minutes else 0.0]
        return max(parts)

    def _budget_left(self, step: int) -> bool:
        """Whether one more step fits: the step, then a validation, before the deadline."""
        if self.cfg.max_steps and step >= self.cfg.max_steps:
            return False
        need = max(self.step_s, default=self.first_step_s) + VAL_RESERVE * self.val_s + SLACK_S
        return self.deadline == math.inf or time.monotonic() + need < self.deadline

    def _timed_validation(self) -> float:
        """Validation loss of the weights as they are, its duration kept for the budget."""
        t = time.monotonic()
        loss = validate(self.model, self.val)
        self.val_s = time.monotonic() - t
        return loss

    def _validate_rounded(self) -> tuple[float, dict]:
        """Validation loss of the weights rounded to float16 values (as `train` returns them,
        see round_to_half) and those weights; training goes on from the unrounded ones."""
        current = copy.deepcopy(self.model.state_dict())
        round_to_half(self.model)
        loss = self._timed_validation()
        rounded = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(current)
        return loss, rounded

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

    def run(self, fine_tune: bool) -> TrainResult:
        """Train until a budget, early stopping or cancellation; the best weights seen.

        The model is validated first (as `val_before` when fine-tuning; with a time budget, to
        know how long a validation takes), then every `eval_every` steps and after the last
        step, each time with its weights rounded to float16 values, which is what comes back.
        """
        cfg = self.cfg
        self.best, self.best_weights, self.history = math.inf, None, []
        first = self._timed_validation() if fine_tune else None
        start = self._validate_rounded() if not fine_tune and cfg.minutes else None
        step, ema, lanes, bad, cancelled = 0, math.nan, None, 0, False
        while True:
            cancelled = self.cancel is not None and self.cancel.is_set()
            if cancelled or not self._budget_left(step):
                break
            t = time.monotonic()
            batch = next(self.batches).to(self.dev)
            loss, state = self._step(batch, self._state(batch, lanes),
                                     _lr(cfg, step, self._fraction(step)))
            if batch.reset is not None:
                lanes = state
            ema = loss if step == 0 else 0.95 * ema + 0.05 * loss
            if step:
                self.step_s.append(time.monotonic() - t)
            else:
                self.first_step_s = time.monotonic() - t
            step += 1
            if step % cfg.eval_every == 0:
                bad = 0 if self._checkpoint(step, ema) else bad + 1
                if bad >= cfg.patience:
                    log.info("early stop at step %d: no improvement in %d validations", step, bad)
                    break
        return self._result(step, ema, first, start, cancelled)

    def _result(self, step: int, ema: float, first: float | None,
                start: tuple[float, dict] | None, cancelled: bool) -> TrainResult:
        """The best weights after `step` steps (validated once more if the last steps were
        not); with no step taken, the model as it came (rounded, if it was validated so)."""
        if step and (not self.history or self.history[-1][0] != step):
            self._checkpoint(step, ema)  # the budget kept time for this validation
        if step and self.best_weights is None:  # no validation was a number: it diverged
            raise LmError(f"training diverged: the validation loss was "
                          f"{self.history[-1][2]:.4g} after {step} steps; try a lower "
                          f"learning rate than {self.cfg.lr:g}")
        if not step and start is not None:
            self.best, self.best_weights = start
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        else:
            self.best = first if first is not None else validate(self.model, self.val)
        return TrainResult(self.model.cpu().eval(), first, self.best, step,
                           time.monotonic() - self.t0, self.train_chars, symbols(self.val),
                           cancelled, self.history)

    def _checkpoint(self, step: int, ema: float) -> bool:
        """Validate the rounded weights, keep them if they are the best yet, report; whether
        they were."""
        val, weights = self._validate_rounded()
        self.history.append((step, ema, val))
        better = val < self.best
        if better:
            self.best, self.best_weights = val, weights
        self._report(step, ema, val, self.best)
        return better

    def _report(self, step, ema, val, best) -> None:
        frac = self._fraction(step)
        log.info("step %d train %.4f val %.4f best %.4f", step, ema, val, best)
        if self.progress is not None:
            self.progress(Progress(step, self.cfg.max_steps, min(frac, 1.0),
                                   time.monotonic() - self.t0, ema, val, best))
