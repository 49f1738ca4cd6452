"""The platform-neutral core: fronts hand it messages and a Responder; it answers.

This module holds the contract every front builds on (re-exported from `bot.messages`):
`Attachment`, `Incoming`, `ReplyFile`, `Reply`, `Sent`, `Responder`, and `Core` with `open`,
`handle`, `run_command`, `message_deleted`, `message_edited`, `import_messages` and `close`.
Typed errors become replies here, in one place; nothing a user types yields a traceback.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import lm
from bot import serving, versions
from bot.channel_models import ChannelModelSource
from bot.commands import CHIME_GAP_S, Context, Services, build_commands
from bot.cooldown import Clock, Cooldowns
from bot.corpus import Corpus
from bot.errors import Busy, CooldownError, UserError
from bot.messages import Attachment, Incoming, Reply, ReplyFile, Responder, Sent, reply_limit
from bot.parsing import parse_options, split_command
from bot.pool import WorkerPool
from bot.safety import safe_text
from bot.settings import Settings
from bot.store import ChannelRow, open_store
from bot.training import Trainer

__all__ = ["Attachment", "Core", "Incoming", "Reply", "ReplyFile", "Responder", "Sent"]

log = logging.getLogger(__name__)
SWEEP_EVERY_S = 3600.0  # between looks for channels whose grace period is over


def error_reply(err: BaseException) -> Reply:
    """The reply for an error raised while handling a command (the one place that decides)."""
    if isinstance(err, UserError | Busy | CooldownError | lm.LmError):
        return Reply(str(err), private=True)
    return Reply("something went wrong on my side; it has been logged", private=True)


class _SafeSent:
    """A sent message whose edits are made safe like every send."""

    def __init__(self, inner: Sent, limit: int) -> None:
        self._inner, self._limit = inner, limit

    async def edit(self, reply: Reply) -> None:
        await self._inner.edit(Reply(safe_text(reply.text, self._limit), reply.files,
                                     reply.private))


class _SafeResponder:
    """Wraps a front's Responder: every text is sanitised and fitted to the length limit."""

    def __init__(self, inner: Responder, limit: int) -> None:
        self._inner, self._limit = inner, limit

    async def send(self, reply: Reply) -> Sent:
        sent = await self._inner.send(Reply(safe_text(reply.text, self._limit), reply.files,
                                            reply.private))
        return _SafeSent(sent, self._limit)


class Core:
    """Commands, listening, corpora and models for every platform. Open with `Core.open`."""

    def __init__(self, services: Services, cooldowns: Cooldowns) -> None:
        self.services = services
        self.settings = services.settings
        self._cooldowns = cooldowns
        self._notified_full: set[int] = set()
        self._rng = random.Random()  # the reply chance's draws
        self._clock = cooldowns.clock
        self._last_chime: dict[int, float] = {}
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="removal-sweep")
        self._closed = False

    @classmethod
    async def open(cls, settings: Settings, clock: Clock = time.monotonic) -> Core:
        """Open the database, start the workers, load the base models.

        Raises StoreError (e.g. the database is locked by another process) with a clear message.
        """
        serving.set_threads(settings.torch_threads)
        store = await open_store(settings)  # SQLite, or PostgreSQL for a postgresql:// BOT_DB
        pool = WorkerPool(settings.sample_workers, settings.queue_limit,
                          settings.train_queue_limit)
        try:
            models = await ChannelModelSource.open(settings, pool, store, clock)
        except BaseException:
            await pool.close()
            await store.close()
            raise
        if not store.shared:  # in PostgreSQL a version's checkpoint is a row: no folders
            orphans = versions.remove_orphans(settings.checkpoint_dir, await store.model_paths())
            if orphans:
                log.warning("removed %d checkpoint folder(s) no version records (left by a "
                            "crash): %s", len(orphans), ", ".join(orphans[:5]))
        corpus = Corpus(store, settings)
        await corpus.start()
        if store.shared:  # trainings are jobs any worker of the deployment takes
            from bot.jobs import open_trainer

            trainer: Any = await open_trainer(settings, pool, store, models, corpus)
        else:
            trainer = Trainer(settings, pool, store, models)
        services = Services(settings, store, pool, corpus, models, trainer,
                            build_commands(settings), [])
        cooldowns = Cooldowns(settings.cooldown_user_rate, settings.cooldown_user_per,
                              settings.cooldown_channel_rate, settings.cooldown_channel_per,
                              clock)
        for note in models.base.notes:
            log.warning("base model: %s", note)
        # What exists now (imported modules, the base models) lives as long as the process:
        # moved out of the cyclic collector's reach, so its full collections stay short (one
        # took 0.13 s in the middle of a burst of commands otherwise).
        gc.freeze()
        return cls(services, cooldowns)

    async def __aenter__(self) -> Core:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel trainings, write pending messages, stop the workers, close the database."""
        if self._closed:
            return
        self._closed = True
        self._sweeper.cancel()
        await asyncio.gather(self._sweeper, return_exceptions=True)
        svc = self.services
        await svc.trainer.close()
        await svc.corpus.close()
        await svc.pool.close()
        await svc.store.close()
        log.info("core closed")

    async def front_state(self, key: str) -> str | None:
        """A fact a front keeps across starts (e.g. what it last registered), or None."""
        return await self.services.store.meta(key)

    async def set_front_state(self, key: str, value: str) -> None:
        await self.services.store.set_meta(key, value)

    async def schedule_removal(self, platform: str, channel_keys: list[str]) -> None:
        """The bot left these channels' server, or they were deleted: their data (corpus,
        models, checkpoints) goes after REMOVAL_GRACE_DAYS, unless `cancel_removal` first."""
        due = time.time() + self.settings.removal_grace_days * 86_400
        await self.services.store.schedule_removals(platform, channel_keys, due)
        if self.settings.removal_grace_days == 0:
            await self.sweep_removals()

    async def schedule_removal_under(self, platform: str, key_prefix: str) -> int:
        """`schedule_removal` for every channel of the platform whose key starts with
        `key_prefix` (all of a Slack workspace's, when the app is uninstalled); how many."""
        keys = await self.services.store.channel_keys(platform, key_prefix)
        await self.schedule_removal(platform, keys)
        return len(keys)

    async def cancel_removal(self, platform: str, channel_keys: list[str]) -> None:
        """The bot is back in these channels: keep their data."""
        await self.services.store.cancel_removals(platform, channel_keys)

    async def sweep_removals(self) -> int:
        """Remove the data of every channel whose grace period is over; how many channels."""
        svc = self.services
        now = time.time()
        due = await svc.store.due_removals(now)
        for platform, key in due:
            if not await svc.store.claim_removal(platform, key, now):
                continue  # the bot came back meanwhile
            channel = await svc.store.find_channel(platform, key)
            if channel is not None:
                await svc.trainer.stop(channel, "the channel's removal")
                await svc.corpus.flush()
                await svc.store.forget_channel(channel.id)
                svc.models.forget(channel.id)
                await svc.trainer.tidy(channel, patient=True)
        if due:
            await svc.corpus.empty_wal_or_queue()
            log.info("removed the data of %d channel(s) after their grace period", len(due))
        return len(due)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep_removals()
            except Exception:  # a full queue or a busy database: the next sweep retries
                log.exception("sweeping removed channels failed; retrying in an hour")
            await asyncio.sleep(SWEEP_EVERY_S)

    async def wait_trainings(self) -> None:
        """Wait until every running training has finished and edited its message."""
        await self.services.trainer.wait()

    def add_help(self, usage: str, text: str) -> None:
        """List a command that a front handles itself (e.g. Discord's `import [N]`) in `!help`.

        usage: without the prefix, its first word the command name; text: one line of help.
        """
        self.services.front_help.append((usage, text))

    def is_command(self, text: str) -> bool:
        """Whether `text` would be taken as a command."""
        return split_command(text, self.settings.command_prefix) is not None

    async def handle(self, msg: Incoming, responder: Responder) -> None:
        """Handle any message: a command is run; an ordinary one is stored if listening."""
        if msg.author_is_bot or self._closed:
            return
        command = split_command(msg.text, self.settings.command_prefix)
        if command is not None:
            await self.run_command(msg, command[0], command[1], responder)
            return
        if not msg.text.strip():
            return
        channel = await self.services.store.find_channel(msg.platform, msg.channel_id)
        if channel is None:
            return
        await self._chime_in(channel, msg, responder)
        if not channel.listening:
            return
        self.services.corpus.listen(channel.id, msg)
        if channel.id in self.services.corpus.full and channel.id not in self._notified_full:
            self._notified_full.add(channel.id)
            await self._send(responder, Reply(
                f"this channel's corpus is full ({self.settings.max_corpus_chars:,} characters): "
                "new messages are not stored. `!forget` frees room"))

    async def admit(self, msg: Incoming, responder: Responder) -> bool:
        """Count one command of `msg`'s author against the cooldowns; False when over a limit.

        Every command counts, known or not, whatever its answer (a front's own commands too:
        it calls this first). The slow-down notice goes out once per wait, later ones are
        dropped, so a flood of commands never gets a flood of answers."""
        try:
            self._cooldowns.check((msg.platform, msg.channel_id), msg.author_id)
        except CooldownError as err:
            if err.first:
                await self._send(responder, error_reply(err))
            return False
        return True

    async def _chime_in(self, channel: ChannelRow, msg: Incoming, responder: Responder) -> None:
        """With the channel's reply chance, babble after an ordinary message (at most once every
        CHIME_GAP_S seconds per channel; a full queue just skips it)."""
        if channel.reply_chance <= 0 or self._rng.random() >= channel.reply_chance:
            return
        now = self._clock()
        if now - self._last_chime.get(channel.id, -math.inf) < CHIME_GAP_S:
            return
        self._last_chime[channel.id] = now
        try:
            reply = await self._dispatch(msg, "babble", "", responder)
        except (Busy, UserError, lm.LmError) as err:
            log.info("no babble on chance in channel %d: %s", channel.id, err)
            return
        if reply is not None:
            await self._send(responder, reply)

    async def run_command(self, msg: Incoming, name: str, args: str,
                          responder: Responder) -> None:
        """Run one command (a text command already split, or a slash command) and reply."""
        if msg.author_is_bot or (msg.shared_channel and name.lower() not in self.services.commands):
            return  # another bot's command: not ours to answer, nor to count
        if not await self.admit(msg, responder):
            return
        try:
            reply = await self._dispatch(msg, name.lower(), args, responder)
        except Exception as err:  # typed errors become their message; the rest is logged
            if not isinstance(err, UserError | Busy | CooldownError | lm.LmError):
                log.exception("command %r in %s:%s failed", name, msg.platform, msg.channel_id)
            reply = error_reply(err)
        if reply is not None:
            await self._send(responder, reply)

    async def _dispatch(self, msg: Incoming, name: str, args: str,
                        responder: Responder) -> Reply | None:
        svc = self.services
        p = self.settings.command_prefix
        command = svc.commands.get(name)
        if command is None:
            raise UserError(f"unknown command {p}{name[:30]}; `{p}help` lists the commands")
        text, options = parse_options(name, args, command.options)
        channel = await svc.store.channel(msg.platform, msg.channel_id)
        safe = _SafeResponder(responder, reply_limit(responder, self.settings.reply_max_chars))
        return await command.run(Context(svc, msg, safe, channel, text, options))

    async def _send(self, responder: Responder, reply: Reply) -> None:
        if not reply.text.strip() and not reply.files:
            return
        try:
            limit = reply_limit(responder, self.settings.reply_max_chars)
            await _SafeResponder(responder, limit).send(reply)
        except Exception:  # a channel we cannot send in: log, keep serving others
            log.exception("could not send a reply")

    async def _channels_holding(self, platform: str, channel_id: str | None,
                                message_id: str) -> list[int]:
        """Row ids of the channels that may hold a platform message (all of the platform's
        channels that do, when `channel_id` is None)."""
        svc = self.services
        if channel_id is not None:
            channel = await svc.store.find_channel(platform, channel_id)
            return [] if channel is None else [channel.id]
        held = await svc.store.channels_with_message(platform, message_id)
        return sorted(set(held) | set(svc.corpus.buffered_channels(message_id)))

    async def message_deleted(self, platform: str, channel_id: str | None,
                              message_id: str, listened_only: bool = False) -> bool:
        """A platform message was deleted: remove its text from the corpus. True if stored.

        `channel_id` None looks in every channel of the platform (Discord ids are unique).
        `listened_only`: keep what a `!learn` in the message taught.
        """
        corpus = self.services.corpus
        return await self._change_stored(
            platform, channel_id, message_id,
            lambda channel: corpus.delete(channel, message_id, listened_only))

    async def message_edited(self, platform: str, channel_id: str | None, message_id: str,
                             new_text: str) -> bool:
        """A platform message was edited: update its stored text. True if it was stored.

        An edit that makes it a command, empty, or too long removes it instead; editing the
        message of a `!learn` (a command still) keeps what it taught: `!forget me` removes that.
        """
        if not new_text.strip() or self.is_command(new_text) \
                or len(new_text) > self.settings.max_message_chars:
            return await self.message_deleted(platform, channel_id, message_id,
                                              listened_only=True)
        corpus = self.services.corpus
        return await self._change_stored(platform, channel_id, message_id,
                                         lambda channel: corpus.edit(channel, message_id,
                                                                     new_text))

    async def _change_stored(self, platform: str, channel_id: str | None, message_id: str,
                             change: Callable[[int], Awaitable[bool]]) -> bool:
        """Apply `change` to each channel that may hold a platform message; True if any held
        it. A channel whose corpus changed answers with a recounted n-gram from then on."""
        changed = False
        for channel in await self._channels_holding(platform, channel_id, message_id):
            if await change(channel):
                self.services.models.forget(channel, "ngram")
                changed = True
        return changed

    async def import_messages(self, msgs: list[Incoming]) -> int:
        """Backfill history (bots, commands and empty messages skipped; stored ids skipped).

        Returns how many messages were added.
        """
        by_channel: dict[tuple[str, str], list[Incoming]] = defaultdict(list)
        for m in msgs:
            if not m.author_is_bot and m.text.strip() and not self.is_command(m.text):
                by_channel[(m.platform, m.channel_id)].append(m)
        added = 0
        for (platform, channel_id), group in by_channel.items():
            channel = await self.services.store.channel(platform, channel_id)
            added += await self.services.corpus.import_messages(channel.id, group)
            self.services.models.forget(channel.id, "ngram")
        return added

    def stats(self) -> dict[str, Any]:
        """Load figures for logs and benchmarks: queue lengths, cache size, trainings."""
        svc = self.services
        return {"sample_jobs": svc.pool.pending[0], "train_jobs": svc.pool.pending[1],
                "cached_models": len(svc.models.cache), "cache_bytes": svc.models.cache.nbytes,
                "trainings": len(svc.trainer.jobs), "pending_writes": svc.corpus.pending}
