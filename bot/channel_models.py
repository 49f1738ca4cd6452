"""Which models answer in a channel: the shipped base, a trained version, or a live n-gram.

Loaded versions and counted n-grams live in one LRU cache (`pool.ModelCache`) under a memory
cap. Keys carry the active version's id, so a training, rollback or forget that changes the
active version is never answered from a stale entry. A checkpoint that cannot be read falls back
to the base model, is logged, and the fallback is reported by `!model`.

With PostgreSQL, versions are read from the database's `checkpoints` rows, and other processes
change what a channel answers with: the store's events (`on_event`) drop the channel's entries,
so a rewritten or forgotten model is never answered from this process's cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import lm
from bot import serving, version_bytes, versions
from bot.cooldown import Clock
from bot.pool import ModelCache, WorkerPool
from bot.serving import BaseModels, ChannelModels
from bot.settings import Settings
from bot.store import ChannelRow, ModelRow, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveNgram:
    """A channel n-gram counted from its corpus at revision `rev`; `model` None if too small."""

    model: lm.LanguageModel | None
    rev: int
    built_at: float  # clock seconds
    nbytes: int


def _nbytes(value: ChannelModels | LiveNgram) -> int:
    return value.nbytes


class ChannelModelSource:
    """Resolves and caches the models of each channel. Use from the event loop."""

    def __init__(self, settings: Settings, pool: WorkerPool, store: Store, base: BaseModels,
                 clock: Clock) -> None:
        self.settings = settings
        self.base = base
        self._pool = pool
        self._store = store
        self._clock = clock
        self.cache: ModelCache[tuple[str, int, int | None], ChannelModels | LiveNgram] = \
            ModelCache(int(settings.model_cache_mb * 2**20), _nbytes)
        self.base_models = ChannelModels(base.answer, base.rnn, None, self.base_label())

    @classmethod
    async def open(cls, settings: Settings, pool: WorkerPool, store: Store,
                   clock: Clock) -> ChannelModelSource:
        """Load the base models on the pool, then build the source."""
        base = await pool.run(serving.load_base, settings.base_model, settings.base_rnn,
                              settings.base_ngram)
        return cls(settings, pool, store, base, clock)

    def base_label(self) -> str:
        """How `!model` names the base model."""
        if self.base.answer is self.base.uniform:
            return "uniform (no base model could be loaded)"
        return f"the shipped base model {self.settings.base_model!r} ({self.base.answer.kind})"

    async def for_channel(self, channel: ChannelRow) -> ChannelModels:
        """The models answering in `channel` now (its active version, or the base)."""
        row = await self._store.active_model(channel.id)
        if row is None:
            return self.base_models
        key = ("version", channel.id, row.id)
        return await self.cache.get_or_load(key, lambda: self._load(row))  # type: ignore[return-value]

    async def _load(self, row: ModelRow) -> ChannelModels:
        try:
            mix, rnn = await self._read(row)
        except lm.LmError as err:
            log.error("channel model v%d (%s) cannot be loaded, using the base model: %s",
                      row.version, row.path, err)
            note = (f"the checkpoint of v{row.version} cannot be read ({err}); answering with "
                    f"the base model until the next !train or !model rollback")
            return ChannelModels(self.base.answer, self.base.rnn, row.id, self.base_label(), 0,
                                 note)
        return ChannelModels(mix, rnn, row.id, f"this channel's model v{row.version}",
                             lm.memory_bytes(mix))

    async def _read(self, row: ModelRow) -> tuple[lm.LanguageModel, lm.LanguageModel]:
        """A version's mix and RNN, from its folder or (PostgreSQL) its database row."""
        if not self._store.shared:
            return await self._pool.run(versions.load_version,
                                        self.settings.checkpoint_dir / row.path)
        data = await self._store.checkpoint(row.id)
        if data is None:
            raise lm.CheckpointError(f"v{row.version} has no stored checkpoint (it was "
                                     "unreadable when a forget rewrote it)")
        return await self._pool.run(version_bytes.load_bytes, data)

    def on_event(self, event: dict[str, Any]) -> None:
        """A process changed a channel: drop what this one cached of it (`reset`: of all)."""
        kind, channel = event.get("kind"), event.get("channel")
        if kind == "reset":
            self.cache.drop_where(lambda key: True)
        elif kind == "corpus" and isinstance(channel, int):  # text left: recount the n-gram
            self.forget(channel, "ngram")
        elif kind in ("version", "forget") and isinstance(channel, int):
            self.forget(channel)

    def adopt(self, channel: ChannelRow, row: ModelRow, mix: lm.LanguageModel) -> None:
        """Swap in a freshly trained version (the old entry is dropped, never changed)."""
        rnn = serving.part(mix, "rnn")
        self.forget(channel.id, "version")
        self.cache.put(("version", channel.id, row.id),
                       ChannelModels(mix, rnn, row.id, f"this channel's model v{row.version}",
                                     lm.memory_bytes(mix)))

    def forget(self, channel: int, kind: str | None = None) -> None:
        """Drop the cached "version" or "ngram" entries (None: both) of a channel row id;
        a load in flight for them is not cached (it may have read a file since rewritten)."""
        self.cache.drop_where(lambda key: key[1] == channel and kind in (None, key[0]))

    async def markov(self, channel: ChannelRow) -> tuple[lm.LanguageModel | None, str]:
        """The channel's n-gram counted from its corpus, else the base n-gram; and its label."""
        rev = await self._store.corpus_rev(channel.id)
        key = ("ngram", channel.id, None)
        live = self.cache.get(key)
        # Recount when the corpus changed, at most every ngram_refresh_s (listening channels
        # change all the time); at once while the channel had too little text for its own.
        stale = (isinstance(live, LiveNgram) and live.rev != rev
                 and (live.model is None
                      or self._clock() - live.built_at >= self.settings.ngram_refresh_s))
        if stale:
            self.cache.drop(key)
        if live is None or stale:  # joins a count already in flight, if any
            live = await self.cache.get_or_load(key, lambda: self._count(channel, rev))
        assert isinstance(live, LiveNgram)
        if live.model is not None:
            return live.model, "this channel's n-gram"
        if self.base.ngram is not None:
            return self.base.ngram, "the base corpus n-gram (this channel has too little text)"
        return None, "no n-gram (the base n-gram is missing and the channel has too little text)"

    async def _count(self, channel: ChannelRow, rev: int) -> LiveNgram:
        texts = await self._store.corpus_texts(channel.id)
        model = await self._pool.run(versions.count_ngram, texts)
        return LiveNgram(model, rev, self._clock(), lm.memory_bytes(model))
