"""A fake Slack on loopback: the Web API methods the front calls, file hosting, response URLs
and a Socket Mode WebSocket, answering as Slack does and recording every call.

It is a real aiohttp server, so the real slack_sdk clients talk to it over HTTP exactly as they
would to slack.com (retry handlers, file upload steps and all). Errors are scripted per method
with `fail`, rate limits included (HTTP 429 with Retry-After, as Slack sends them).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"
TEAM = "T1"
BOT_USER = "UBOT"


@dataclass
class Call:
    """One request the fake received."""

    method: str  # a Web API method, "upload", "download" or "respond"
    args: dict[str, Any]
    token: str = ""
    ok: bool = True  # False: answered with an error
    answer: dict[str, Any] = field(default_factory=dict)  # what it answered, when ok


@dataclass
class Failure:
    """A scripted answer to the next call of a method."""

    error: str
    status: int = 200
    retry_after: int | None = None


def _users() -> dict[str, dict[str, Any]]:
    def user(uid: str, name: str, **flags: bool) -> dict[str, Any]:
        return {"id": uid, "name": name.lower(), "real_name": name,
                "profile": {"display_name": name, "real_name": name}, **flags}

    return {"U1": user("U1", "Ann"), "U2": user("U2", "Bob"),
            "UADMIN": user("UADMIN", "Ada", is_admin=True),
            "UOWNER": user("UOWNER", "Olga", is_owner=True),
            "UMOD": user("UMOD", "Mo"), BOT_USER: user(BOT_USER, "babble", is_bot=True)}


@dataclass
class FakeSlack:
    """Slack's side of every conversation; `url` is the Web API base once started."""

    users: dict[str, dict[str, Any]] = field(default_factory=_users)
    groups: dict[str, tuple[str, list[str]]] = field(
        default_factory=lambda: {"S0614MODS": ("babble-mods", ["UMOD"])})
    files: dict[str, bytes] = field(default_factory=dict)  # name -> content, to download
    member_of: list[str] = field(default_factory=lambda: ["C1"])  # the bot's channels
    calls: list[Call] = field(default_factory=list)
    acks: list[dict[str, Any]] = field(default_factory=list)  # Socket Mode acknowledgements
    refuse_socket: bool = False  # answer the WebSocket handshake with 403
    stall: dict[str, float] = field(default_factory=dict)  # method -> seconds before answering
    download_answer: Any = None  # a handler answering file downloads instead (a sign-in page)
    bot_token: str = BOT_TOKEN
    app_token: str = APP_TOKEN
    root: str = ""  # http://127.0.0.1:PORT/ once started
    url: str = ""
    _failures: dict[str, list[Failure]] = field(default_factory=lambda: defaultdict(list))
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _socket: web.WebSocketResponse | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files/{name}", self._download)
        app.router.add_post("/respond/{id}", self._respond)
        app.router.add_get("/socket", self._ws)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.root = f"http://127.0.0.1:{port}/"
        self.url = self.root + "api/"
        return self.url

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(self, method: str, error: str, status: int = 200,
             retry_after: int | None = None) -> None:
        """Answer the next call of `method` with an error instead."""
        self._failures[method].append(Failure(error, status, retry_after))

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def file_url(self, name: str) -> str:
        return f"{self.root}files/{name}"

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Until `predicate()` holds for what the fake has received."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._changed.set()

    # The Web API.

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update(await request.post())
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        call = Call(method, args, token, ok=False)
        self._record(call)
        if method in self.stall:  # longer than the client waits: it times out
            await asyncio.sleep(self.stall[method])
        if self._failures[method]:
            failure = self._failures[method].pop(0)
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None \
                else {}
            return web.json_response({"ok": False, "error": failure.error},
                                     status=failure.status, headers=headers)
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        answer = getattr(self, "_" + method.replace(".", "_"), None)
        if answer is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        call.ok, call.answer = True, answer(args)
        return web.json_response({"ok": True, **call.answer})

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://test.slack.com/", "team": "Test", "user": "babble",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": "BBOT"}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.root.replace("http://", "ws://") + "socket"}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args["channel"], "ts": self._next_ts(),
                "message": {"text": args.get("text"), "user": BOT_USER}}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args["channel"], "ts": args["ts"], "text": args.get("text")}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._next_ts()}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": {"id": "D" + str(args["users"])}}

    def _users_conversations(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channels": [{"id": c} for c in self.member_of],
                "response_metadata": {"next_cursor": ""}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"user": self.users[args["user"]]}

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"usergroups": [{"id": gid, "handle": handle}
                               for gid, (handle, _) in self.groups.items()]}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"users": self.groups[args["usergroup"]][1]}

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ts)}"
        return {"upload_url": f"{self.root}upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"files": [{"id": f["id"], "title": f["title"]} for f in json.loads(args["files"])]}

    # Files, response URLs and Socket Mode.

    async def _upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        self._record(Call("upload", {"file_id": request.match_info["file_id"], "data": data}))
        return web.Response(text=f"OK - {len(data)}")

    async def _download(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        name = request.match_info["name"]
        self._record(Call("download", {"name": name}, token))
        if self.download_answer is not None:
            return await self.download_answer(request)
        if token != self.bot_token or name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name])

    async def _respond(self, request: web.Request) -> web.Response:
        self._record(Call("respond", await request.json()))
        return web.Response(text="ok")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_socket:
            self._record(Call("socket", {}, ok=False))
            return web.Response(status=403)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._socket = ws
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "A1"}})
        self._record(Call("socket", {}))
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                self.acks.append(json.loads(message.data))
                self._changed.set()
        return ws

    async def send_envelope(self, envelope: dict[str, Any]) -> None:
        """Deliver an envelope over the open Socket Mode connection."""
        assert self._socket is not None, "no Socket Mode connection"
        await self._socket.send_json(envelope)
