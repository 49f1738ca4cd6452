"""A tiny fake of Discord's REST API and gateway on loopback, for one network smoke test.

Just enough for real discord.py to log in, sync slash commands, identify, receive one guild and
one message, and post its answer. Responses carry exactly `application/json` (discord.py checks
the header literally); the gateway sends uncompressed text frames, which discord.py accepts.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType, web

APP_ID = "1100000000000000001"
BOT_ID = APP_ID
GUILD_ID = "1200000000000000001"
CHANNEL_ID = "1300000000000000001"
USER_ID = "1400000000000000001"
STAMP = "2026-01-01T00:00:00+00:00"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json"})


def user(uid: str, name: str, bot: bool = False) -> dict[str, Any]:
    return {"id": uid, "username": name, "discriminator": "0", "global_name": name,
            "avatar": None, "bot": bot}


def message(mid: str, author: dict[str, Any], content: str) -> dict[str, Any]:
    return {"id": mid, "channel_id": CHANNEL_ID, "guild_id": GUILD_ID, "author": author,
            "member": {"roles": [], "joined_at": STAMP, "deaf": False, "mute": False,
                       "flags": 0},
            "content": content, "timestamp": STAMP, "edited_timestamp": None, "tts": False,
            "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": [], "pinned": False, "type": 0}


def guild() -> dict[str, Any]:
    return {
        "id": GUILD_ID, "name": "Loopback", "owner_id": USER_ID, "unavailable": False,
        "member_count": 2, "large": False, "features": [], "emojis": [], "stickers": [],
        "roles": [{"id": GUILD_ID, "name": "@everyone", "permissions": str((1 << 46) - 1),
                   "position": 0, "color": 0, "hoist": False, "managed": False,
                   "mentionable": False, "flags": 0}],
        "channels": [{"id": CHANNEL_ID, "type": 0, "name": "general", "position": 0,
                      "guild_id": GUILD_ID, "permission_overwrites": [], "nsfw": False}],
        "members": [{"user": user(BOT_ID, "babble", bot=True), "roles": [], "joined_at": STAMP,
                     "flags": 0,
                     "deaf": False, "mute": False}],
        "threads": [], "voice_states": [], "presences": [], "stage_instances": [],
        "guild_scheduled_events": [], "soundboard_sounds": [],
    }


class FakeDiscord:
    """The server; `posted` collects the JSON bodies of messages the bot sends."""

    def __init__(self, *triggers: str) -> None:
        self.triggers = triggers  # messages the owner sends once the bot is connected
        self.posted: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._posts = 0
        self._post_seen = asyncio.Event()
        self.commands_synced: list[Any] = []
        self.sync_calls = 0
        self.synced_where: list[tuple[str, int]] = []  # (guild id or "global", commands)
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self.me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self.application)
        app.router.add_put("/api/v10/applications/{app}/commands", self.sync)
        app.router.add_put("/api/v10/applications/{app}/guilds/{guild}/commands", self.sync)
        app.router.add_post("/api/v10/channels/{channel}/messages", self.post_message)
        app.router.add_get("/api/v10/gateway/bot", self.gateway_bot)
        app.router.add_get("/", self.gateway)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") == "Bot refused-token":  # as Discord answers
            return web.Response(status=401, content_type="application/json",
                                text='{"message": "401: Unauthorized", "code": 0}')
        return _json(user(BOT_ID, "babble", bot=True))

    async def application(self, request: web.Request) -> web.Response:
        return _json({"id": APP_ID, "name": "babble", "icon": None, "description": "",
                      "bot_public": True, "bot_require_code_grant": False, "verify_key": "0",
                      "flags": 0, "owner": user(USER_ID, "owner"),
                      "interactions_endpoint_url": None})

    async def sync(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.commands_synced = body
        self.sync_calls += 1
        self.synced_where.append((request.match_info.get("guild", "global"), len(body)))
        return _json([{**c, "id": str(1500 + i), "application_id": APP_ID, "version": "1"}
                      for i, c in enumerate(body)])

    async def post_message(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.posted.put(body)
        self._posts += 1
        self._post_seen.set()
        return _json(message("1600000000000000001", user(BOT_ID, "babble", bot=True),
                             body.get("content", "")))

    async def gateway_bot(self, request: web.Request) -> web.Response:
        return _json({"url": f"ws://127.0.0.1:{self.port}/", "shards": 1,
                      "session_start_limit": {"total": 1000, "remaining": 999,
                                              "reset_after": 0, "max_concurrency": 1}})

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 45000}}))
        seq = 0
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                break
            payload = json.loads(frame.data)
            if payload["op"] == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
            elif payload["op"] == 2:  # identify
                for event, data in self._script():
                    seq += 1
                    await self._send(ws, {"op": 0, "t": event, "s": seq, "d": data})
        return ws

    async def _send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        """Send one dispatch; after a command, wait for the bot's answer (as a person would)."""
        before = self._posts
        await ws.send_str(json.dumps(payload))
        if payload["t"] == "MESSAGE_CREATE" and payload["d"]["content"].startswith("!"):
            while self._posts == before:
                self._post_seen.clear()
                await asyncio.wait_for(self._post_seen.wait(), timeout=30)

    def _script(self) -> list[tuple[str, dict[str, Any]]]:
        ready = {"v": 10, "user": user(BOT_ID, "babble", bot=True), "session_id": "s",
                 "shard": [0, 1],
                 "resume_gateway_url": f"ws://127.0.0.1:{self.port}/",
                 "guilds": [{"id": GUILD_ID, "unavailable": True}],
                 "application": {"id": APP_ID, "flags": 0}}
        said = [("MESSAGE_CREATE", message(str(1700000000000000001 + i), user(USER_ID, "owner"),
                                           text)) for i, text in enumerate(self.triggers)]
        return [("READY", ready), ("GUILD_CREATE", guild()), *said]
