"""Events between the processes of a PostgreSQL deployment (LISTEN/NOTIFY): part of PgStore.

A transaction that changes what a channel answers with sends a NOTIFY, delivered at commit to
every process's listening connection, which hands the event to its subscribers on the event
loop. Kinds: `version` (a version added or rolled back), `corpus` (text left a corpus),
`forget` (a channel's versions rewritten or its data removed), `optout`, `job`; and `reset`,
made locally when the listening connection came back after a loss (events may be missed).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

log = logging.getLogger(__name__)
EVENTS = "babble_events"  # the NOTIFY channel
RELISTEN_S = 1.0  # between attempts to get the listening connection back
# The listening connection is asked a question every PING_S: a cut network sends no reset, and
# a connection that silently stopped answering would hear nothing again, caches going stale.
PING_S = 1.0
PING_TIMEOUT_S = 2.0
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

Event = dict[str, Any]  # {"kind": ..., "channel": row id or None, "origin": ..., ...}


def _passwords(url: str) -> set[str]:
    """The password a URL carries, as written and decoded, in its user part or its query
    (asyncpg reads `?password=` too)."""
    try:
        parts = urlsplit(url)
        found = {parts.password or "", *re.findall(r"(?:^|&)password=([^&]*)", parts.query)}
    except ValueError:
        return set()
    return {p for w in found for p in (w, unquote(w)) if p}


def redact(url: str) -> str:
    """A database URL as logs and errors may show it: any password replaced by `***`."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            host = parts.netloc.rsplit("@", 1)[1]
            parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
        query = re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query)
        return urlunsplit(parts._replace(query=query))
    except ValueError:
        return "(a database URL that cannot be parsed)"


def hide_password(text: str, url: str) -> str:
    """`text` with the URL's password, should it appear, replaced."""
    for password in sorted(_passwords(url), key=len, reverse=True):
        text = text.replace(password, "***")
    return text


class Events:
    """Mixed into PgStore: the listening connection and the subscribers."""

    _url: str
    origin: str
    _subscribers: list[Callable[[Event], None]]
    _listener: asyncpg.Connection | None
    _relisten: asyncio.Task[None] | None
    _watch: asyncio.Task[None] | None
    _closed: bool

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call `callback(event)` on the event loop for every change any process announces
        (this one's included: `event["origin"] == self.origin`). A `{"kind": "reset"}` event
        means some may have been missed (the listening connection was lost): drop everything."""
        self._subscribers.append(callback)

    async def _listen(self) -> None:
        con = await asyncpg.connect(self._url)
        try:
            await con.add_listener(EVENTS, self._heard)
        except BaseException:  # retried every RELISTEN_S: never leave a connection behind
            con.terminate()
            raise
        con.add_termination_listener(self._lost)
        self._listener = con

    def _start_watch(self) -> None:
        self._watch = asyncio.get_running_loop().create_task(self._watch_listener(),
                                                             name="pg-listener-watch")

    async def _watch_listener(self) -> None:
        """Replace a listening connection that stopped answering (its `_lost` reconnects)."""
        while not self._closed:
            await asyncio.sleep(PING_S)
            con = self._listener
            if con is None or con.is_closed() or (self._relisten is not None
                                                  and not self._relisten.done()):
                continue
            try:
                await asyncio.wait_for(con.fetchval("SELECT 1"), PING_TIMEOUT_S)
            except DB_ERRORS:
                if not self._closed:
                    log.warning("the connection that listens for changes stopped answering")
                    con.terminate()

    def _heard(self, _con: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("ignoring a malformed event on %s", EVENTS)
            return
        self._publish(event)

    def _publish(self, event: Event) -> None:
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:  # one subscriber's bug must not starve the others
                log.exception("an event subscriber failed on %s", event.get("kind"))

    def _lost(self, _con: object) -> None:
        if self._closed or (self._relisten is not None and not self._relisten.done()):
            return
        log.warning("lost the database connection that listens for changes; reconnecting")
        self._relisten = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._closed:
            try:
                await self._listen()
            except DB_ERRORS as err:
                log.warning("cannot listen for changes yet (%s); retrying",
                            hide_password(str(err), self._url))
                await asyncio.sleep(RELISTEN_S)
                continue
            self._publish({"kind": "reset", "channel": None, "origin": ""})
            return

    async def _notify(self, con: asyncpg.Connection, kind: str, channel: int | None,
                      **extra: Any) -> None:
        """Announce a change; delivered to every listener when the transaction commits."""
        payload = json.dumps({"kind": kind, "channel": channel, "origin": self.origin, **extra})
        await con.execute("SELECT pg_notify($1, $2)", EVENTS, payload)
