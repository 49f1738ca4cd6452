"""Who is who on Slack: names and moderator rights from `users.info` and a user group, cached.

Moderators are the workspace's admins and owners, and the members of the user group named by
SLACK_MODERATOR_GROUP (its id `S…`, or its handle). One `users.info` per person and one member
list per group are fetched at a time and kept for a while, so a busy channel costs few calls.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

PERSON_TTL_S = 600.0  # a changed name or admin right shows within ten minutes
GROUP_TTL_S = 120.0  # someone added to or removed from the moderator group: two minutes
MAX_CACHED = 10_000
GROUP_ID = re.compile(r"S(?=[A-Z0-9]*\d)[A-Z0-9]{6,}")  # e.g. S0614TZR7
T = TypeVar("T")


@dataclass(frozen=True)
class Person:
    """What the front needs of a Slack user."""

    name: str
    admin: bool  # a workspace admin or owner


class TtlCache(Generic[T]):
    """Values fetched once per key and kept `ttl_s` seconds; concurrent askers share a fetch.

    A failed fetch is not kept: the next asker tries again."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s, self._clock = ttl_s, clock
        self._entries: dict[str, tuple[float, asyncio.Future[T]]] = {}

    async def get(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None or entry[0] < now or _failed(entry[1]):
            if len(self._entries) >= MAX_CACHED:
                self._entries = {k: e for k, e in self._entries.items() if e[0] >= now}
            entry = (now + self._ttl_s, asyncio.ensure_future(fetch()))
            self._entries[key] = entry
        return await asyncio.shield(entry[1])  # one asker cancelled must not cancel the rest


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def display_name(user: dict[str, Any]) -> str:
    """The name Slack shows for a user: display name, else real name, else user name."""
    profile = user.get("profile", {})
    return (profile.get("display_name") or user.get("real_name") or profile.get("real_name")
            or user.get("name") or user.get("id", "someone"))


class People:
    """Names and moderator rights of Slack users."""

    def __init__(self, client: AsyncWebClient, moderator_group: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._group = moderator_group.strip().lstrip("@")
        self._people: TtlCache[Person] = TtlCache(PERSON_TTL_S, clock)
        self._members: TtlCache[frozenset[str]] = TtlCache(GROUP_TTL_S, clock)

    async def person(self, user_id: str) -> Person:
        """The user's name and whether they administer the workspace (their id as name, and
        no rights, when Slack will not say)."""
        try:
            return await self._people.get(user_id, lambda: self._fetch_person(user_id))
        except SlackApiError as err:
            log.warning("users.info for %s failed: %s", user_id, err.response.get("error"))
        except (aiohttp.ClientError, TimeoutError) as err:
            log.warning("users.info for %s failed: %s", user_id, type(err).__name__)
        return Person(user_id, False)

    async def _fetch_person(self, user_id: str) -> Person:
        user = (await self._client.users_info(user=user_id))["user"]
        admin = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        return Person(display_name(user), admin)

    async def may_moderate(self, user_id: str) -> bool:
        """A workspace admin or owner, or a member of the moderator group."""
        if (await self.person(user_id)).admin:
            return True
        if not self._group:
            return False
        try:
            return user_id in await self._members.get(self._group, self._fetch_members)
        except SlackApiError as err:
            log.warning("cannot read the moderator group %s: %s", self._group,
                        err.response.get("error"))
        except (aiohttp.ClientError, TimeoutError) as err:  # Slack out of reach: no rights now
            log.warning("cannot read the moderator group %s: %s", self._group,
                        type(err).__name__)
        return False

    async def _fetch_members(self) -> frozenset[str]:
        group = self._group
        if not GROUP_ID.fullmatch(group):  # a handle: find its id
            listed = (await self._client.usergroups_list())["usergroups"]
            ids = [g["id"] for g in listed if group in (g.get("handle"), g.get("name"))]
            if not ids:
                log.warning("no user group %r in this workspace (SLACK_MODERATOR_GROUP)", group)
                return frozenset()
            group = ids[0]
        return frozenset((await self._client.usergroups_users_list(usergroup=group))["users"])
