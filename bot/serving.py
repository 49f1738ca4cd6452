"""Serving a channel: loading the models that answer, sampling and scoring with them.

Synchronous model work, run on the pool's threads only; nothing here touches asyncio or SQL.
Every function is safe to call from a worker thread on models that other threads also read,
because a model is made ready (`lm.ready`: its inference tables built) before it is shared
and never changed after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

import lm
from bot import plots

log = logging.getLogger(__name__)


@dataclass(frozen=True)


class BaseModels:
    """The shipped models every channel starts from, loaded once; `notes` explain fallbacks."""

    answer: lm.LanguageModel
    rnn: lm.LanguageModel | None
    ngram: lm.LanguageModel | None
    uniform: lm.LanguageModel
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)


class ChannelModels:
    """What answers in one channel: a trained version, or the base models. Never mutated."""

    answer: lm.LanguageModel
    rnn: lm.LanguageModel | None
    model_id: int | None  # the store's row id of the version; None = base model
    label: str
    nbytes: int = 0  # memory held beyond the shared base models
    note: str = ""  # why a fallback happened, shown by !model


def set_threads(n: int) -> None:
    """Set torch's intra-op threads for the process (0 leaves torch's default)."""
    if n > 0:
        torch.set_num_threads(n)


def load_model(name: str) -> lm.LanguageModel:
    """Load a model by name or path, ready to share; raises lm.LmError with a clear message."""
    return lm.ready(lm.load(name))


def _try_load(name: str, what: str, notes: list[str]) -> lm.LanguageModel | None:
    try:
        return load_model(name)
    except lm.LmError as err:
        log.warning("cannot load the %s %r: %s", what, name, err)
        notes.append(f"the {what} {name!r} could not be loaded ({err})")
        return None


def part(model: lm.LanguageModel, which: str) -> lm.LanguageModel | None:
    """The "rnn" or "ngram" part of a mix (None if it has none, or is not a mix)."""
    if not lm.parts(model):
        return None
    try:
        return lm.component(model, which)
    except lm.LmError:
        return None


def load_base(answer: str, rnn: str, ngram: str) -> BaseModels:
    """Load the shipped models; a missing one falls back (to uniform at worst) and says so.

    An empty `rnn` or `ngram` name means "that part of the `answer` mix".
    """
    notes: list[str] = []
    uniform = load_model("uniform")
    base = _try_load(answer, "base model", notes)
    base_rnn = _try_load(rnn, "base RNN", notes) if rnn else base and part(base, "rnn")
    base_ngram = _try_load(ngram, "base n-gram", notes) if ngram else base and part(base, "ngram")
    if base is None:
        base = base_rnn if base_rnn is not None else uniform
        notes.append(f"answering with {'the base RNN' if base_rnn is not None else 'uniform'}")
    return BaseModels(base, base_rnn, base_ngram, uniform, tuple(notes))


def generate_many(requests: list[tuple[lm.LanguageModel, lm.SampleConfig, str]],
                  ) -> list[list[str]]:
    """(model, config, prefix) requests that share one model, sampled in batched passes of at
    most lm.MAX_BATCH samples, the compiled GRU kernel's largest batch (lm.sample_many):
    each gets the text it would get alone."""
    model, out = requests[0][0], []
    chunk: list[tuple[Any, str]] = []
    for _, config, prefix in requests:
        if chunk and sum(c.n for c, _ in chunk) + config.n > lm.MAX_BATCH:
            out += lm.sample_many(model, chunk)
            chunk = []
        chunk.append((config, prefix))
    return out + lm.sample_many(model, chunk)


def score_models(models: dict[str, lm.LanguageModel], text: str) -> dict[str, lm.Score]:
    """lm.Score of `text` (end of message included) under each named model."""
    return score_models_many([(models, text)])[0]


def score_models_many(requests: list[tuple[dict[str, lm.LanguageModel], str]],
                      ) -> list[dict[str, lm.Score]]:
    """score_models for several requests at once: the texts that one model scores (the shared
    base RNN, say) go through it in one batched pass (lm.score_many)."""
    jobs: dict[int, tuple[Any, list[tuple[int, str, str]]]] = {}  # id(model) -> model, uses
    for i, (models, text) in enumerate(requests):
        for name, model in models.items():
            jobs.setdefault(id(model), (model, []))[1].append((i, name, text))
    out: list[dict[str, Any]] = [{} for _ in requests]
    for model, uses in jobs.values():
        for (i, name, _), score in zip(uses, lm.score_many(model, [t for _, _, t in uses]),
                                       strict=True):
            out[i][name] = score
    return [{name: out[i][name] for name in models} for i, (models, _) in enumerate(requests)]


def prob_job(requests: list[tuple[dict[str, lm.LanguageModel], str]]) -> list[Any]:
    """The scores of several `!prob` (shared models in one pass) and their pictures (PNG bytes).

    If the batch fails, each request is tried alone, so one bad text fails only its own."""
    try:
        results: list[Any] = score_models_many(requests)
    except lm.LmError:
        results = []
        for models, text in requests:
            try:
                results.append(score_models(models, text))
            except lm.LmError as err:
                results.append(err)
    return [scores if isinstance(scores, Exception) else
            (scores, plots.surprisal_strip({k: [(c.char, c.bits) for c in s.per_char]
                                            for k, s in scores.items()}))
            for scores in results]
