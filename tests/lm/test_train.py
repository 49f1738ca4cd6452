"""Training lowers the loss for every kind; fine-tuning starts from and reports the old model."""

from __future__ import annotations

import threading
import time
import types

import pytest
import torch

import lm
from lm import LmError, TrainConfig, load_checkpoint, save, score, train
from lm.trainer import MIN_TRAIN_CHARS, split_messages_val
from tests.lm.conftest import TEXT as SHORT
from tests.lm.conftest import make

TEXT = SHORT * 3

SMALL = dict(hidden=32, embed=16, batch=8, bptt=32, lr=1e-2, warmup=5, eval_every=10,
             minutes=None)


@pytest.mark.parametrize("kind", ["gru", "lstm", "rnn"])
def test_a_few_steps_lower_the_loss(kind):
    res = train(TEXT, TrainConfig(kind=kind, max_steps=30, **SMALL))
    vals = [v for _, _, v in res.history]
    assert res.steps == 30 and len(vals) == 3
    assert vals[-1] < vals[0] < 5.6  # below uniform over 257 (5.55) and falling
    # the best weights come back rounded to float16 values, measured again after rounding
    assert res.val_after == pytest.approx(min(vals), abs=1e-3)
    assert all(torch.equal(p, p.half().float()) for p in res.model.parameters())


def test_ngram_trains_by_counting():
    res = train(TEXT, TrainConfig(kind="ngram", order=5))
    assert res.model.kind == "ngram" and res.val_after < 1.0


def test_fine_tuning_from_a_checkpoint(tmp_path):
    first = train(TEXT, TrainConfig(kind="gru", max_steps=20, **SMALL))
    path = save(first.model, tmp_path / "base.pt", first.summary())
    init = load_checkpoint(path)
    res = train(TEXT.upper(), TrainConfig(kind="gru", max_steps=20, **SMALL), init=init)
    assert res.val_before is not None and res.val_after < res.val_before
    assert res.improved and res.model.config == init.config


def test_cancel_from_another_thread_stops_training():
    cancel = threading.Event()
    cancel.set()
    res = train(TEXT, TrainConfig(kind="gru", max_steps=1000, **SMALL), cancel=cancel)
    assert res.cancelled and res.steps == 0


def test_progress_callback_and_seed_repeatability():
    seen = []
    a = train(TEXT, TrainConfig(kind="gru", max_steps=20, seed=5, **SMALL), progress=seen.append)
    b = train(TEXT, TrainConfig(kind="gru", max_steps=20, seed=5, **SMALL))
    assert [p.step for p in seen] == [10, 20] and seen[-1].fraction == 1.0
    assert a.history == b.history


def test_too_small_corpus_is_refused_with_the_minimum():
    with pytest.raises(LmError, match=str(MIN_TRAIN_CHARS)):
        train("tiny", TrainConfig(kind="gru", max_steps=5))


def test_small_corpus_gets_fewer_lanes_and_trains():
    text = (TEXT * 2)[:2500]  # about 20 windows of 128 in all
    res = train(text, TrainConfig(kind="gru", hidden=16, embed=8, max_steps=6, minutes=None,
                                  eval_every=3, warmup=1))
    assert res.steps == 6 and res.val_after < 5.6


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_train(precision):
    res = train(TEXT, TrainConfig(kind="gru", max_steps=30, precision=precision, **SMALL))
    vals = [v for _, _, v in res.history]
    assert vals[-1] < vals[0] < 5.6
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # master weights


def test_unknown_precision_is_refused():
    with pytest.raises(LmError, match="precision"):
        train(TEXT, TrainConfig(kind="gru", max_steps=2, precision="fp8", **SMALL))


def test_a_diverged_training_is_an_error_never_a_result():
    init = train(TEXT, TrainConfig(kind="gru", max_steps=10, **SMALL)).model
    with torch.no_grad():
        init.head.weight[0, 0] = float("inf")  # every later loss is NaN
    with pytest.raises(LmError, match="training diverged: the validation loss was nan"):
        train(TEXT, TrainConfig(kind="gru", max_steps=20, **SMALL), init=init)


def test_a_loss_that_is_not_a_number_never_counts_as_improved():
    res = train(TEXT, TrainConfig(kind="gru", max_steps=10, **SMALL))
    nan = type(res)(res.model, 3.0, float("nan"), 1, 0.0, 1, 1)
    assert not nan.improved and res.improved


def test_minutes_is_a_hard_cap_that_holds_the_last_validation():
    train(TEXT, TrainConfig(kind="gru", max_steps=1, **SMALL))  # lazy set-up paid before timing
    budget = 0.02 * 60
    t0 = time.monotonic()
    res = train(TEXT, TrainConfig(kind="gru", **{**SMALL, "minutes": budget / 60}))
    wall = time.monotonic() - t0
    assert wall <= budget + 0.3, wall  # 0.3 s for a step or validation slower than the last
    assert res.steps >= 1 and res.history[-1][0] == res.steps  # the last step validated
    assert res.seconds <= wall


def test_validation_is_exact_one_pass_per_message():
    res = train(TEXT, TrainConfig(kind="gru", max_steps=5, **SMALL))
    _, val = split_messages_val([TEXT], TrainConfig().val_frac)
    want = score(res.model, val[0]).nats / (len(val[0]) + 1)  # ASCII: a byte a character
    assert res.val_after == pytest.approx(want, rel=1e-5)


def test_the_module_is_not_shadowed_by_the_function():
    import lm.trainer as trainer

    assert isinstance(trainer, types.ModuleType) and trainer.train is lm.train


def test_kinds_that_do_not_train_are_refused():
    with pytest.raises(LmError, match="uniform model is not trained.*gru"):
        train(TEXT, TrainConfig(kind="uniform", max_steps=2))
    with pytest.raises(LmError, match="mix model is not trained"):
        train(TEXT, TrainConfig(max_steps=2), init=make("mix"))
