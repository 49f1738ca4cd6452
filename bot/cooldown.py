"""Cooldowns: at most `rate` commands per `per` seconds, per user and per channel.

Every command counts, whatever its answer. A refused key is told once how long to wait; its
further refusals until then are silent, so the notice cannot be used to flood a channel either.
The clock is injected (`time.monotonic` by default) so tests and simulated platforms control time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable

from bot.errors import CooldownError

Clock = Callable[[], float]  # seconds, monotonic
_PRUNE_AT = 10_000  # notice records kept before the expired ones are dropped


class Window:
    """A sliding-window rate limit for many keys."""

    def __init__(self, scope: str, rate: int, per: float, clock: Clock) -> None:
        self.scope = scope
        self.rate = rate  # 0 turns the limit off
        self.per = per  # seconds
        self._clock = clock
        self._hits: dict[Hashable, deque[float]] = {}
        self._told: dict[Hashable, float] = {}  # key -> clock time its last notice runs out

    def retry_after(self, key: Hashable) -> float:
        """Seconds until `key` may act again; 0 when it may act now."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            return 0.0
        while hits and hits[0] <= now - self.per:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return 0.0
        return 0.0 if len(hits) < self.rate else hits[0] + self.per - now

    def hit(self, key: Hashable) -> None:
        """Record one command by `key`."""
        if self.rate > 0:
            self._hits.setdefault(key, deque()).append(self._clock())
            self._told.pop(key, None)

    def tell(self, key: Hashable, wait: float) -> bool:
        """Whether a refusal of `key` (for `wait` seconds) is the first of its wait, and so
        deserves a notice; notes it."""
        now = self._clock()
        if self._told.get(key, now) > now:
            return False
        if len(self._told) >= _PRUNE_AT:  # keys that never came back
            self._told = {k: t for k, t in self._told.items() if t > now}
        self._told[key] = now + wait
        return True


class Cooldowns:
    """The per-user and per-channel limits, checked together and recorded together."""

    def __init__(self, user_rate: int, user_per: float, channel_rate: int, channel_per: float,
                 clock: Clock) -> None:
        self.clock = clock
        self.user = Window("your", user_rate, user_per, clock)
        self.channel = Window("this channel's", channel_rate, channel_per, clock)

    def check(self, channel: Hashable, user: Hashable) -> None:
        """Record a command, or raise CooldownError (recording nothing) when over a limit;
        its `first` says whether this is the first refusal of that wait."""
        user_key = (channel, user)
        for window, key in ((self.user, user_key), (self.channel, channel)):
            wait = window.retry_after(key)
            if wait > 0:
                raise CooldownError(window.scope, wait, window.tell(key, wait))
        self.user.hit(user_key)
        self.channel.hit(channel)
