"""Running the Slack front: check the tokens, open the core, connect over Socket Mode.

Socket Mode needs no public address: the bot opens a WebSocket to Slack with the app-level
token, and uses the Web API with the bot token. Start-up failures people meet first (a token
pasted wrong, Socket Mode off) become one SettingsError line naming the docs/slack.md step.
SIGTERM and Ctrl-C close the socket first (no new events), let running answers finish, then
close the core, which flushes pending corpus writes and stops its workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import SettingsError
from bot.settings import Settings
from bot.signals import stop_on_signals
from bot.slack_front.app import SlackFront

log = logging.getLogger(__name__)

API_TIMEOUT_S = 30
RATE_LIMIT_RETRIES = 3  # each waits the Retry-After Slack sends
DRAIN_S = 10.0  # at shutdown, how long answers under way may take
REFUSED = ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
           "not_allowed_token_type")


def check_tokens(settings: Settings) -> None:
    """SettingsError unless both tokens are set and each is of its kind (a swap is common)."""
    bot, app = settings.slack_bot_token.strip(), settings.slack_app_token.strip()
    if not bot or not app:
        missing = " and ".join(n for n, v in (("SLACK_BOT_TOKEN", bot), ("SLACK_APP_TOKEN", app))
                               if not v)
        raise SettingsError(f"the Slack front needs {missing} (docs/slack.md, step 3)")
    if not bot.startswith("xoxb-"):
        raise SettingsError("SLACK_BOT_TOKEN must be the Bot User OAuth Token, which starts "
                            "with xoxb- (docs/slack.md, step 3)")
    if not app.startswith("xapp-"):
        raise SettingsError("SLACK_APP_TOKEN must be an app-level token, which starts with "
                            "xapp- (docs/slack.md, step 3)")


def make_client(settings: Settings) -> AsyncWebClient:
    """The Web API client: the bot token, SLACK_API_URL, and retries that wait out Slack's
    rate limits (HTTP 429 with Retry-After) and dropped connections."""
    base_url = settings.slack_api_url.rstrip("/") + "/"
    return AsyncWebClient(token=settings.slack_bot_token.strip(), base_url=base_url,
                          timeout=API_TIMEOUT_S, retry_handlers=[
                              AsyncConnectionErrorRetryHandler(),
                              AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)])


def _refusal(err: SlackApiError) -> str:
    return str(err.response.get("error") or "no reason given")


def _unreachable(client: AsyncWebClient, err: BaseException) -> SettingsError:
    return SettingsError(f"cannot reach Slack at {client.base_url} ({type(err).__name__}): "
                         "check the network connection and SLACK_API_URL, and try again")


async def who_am_i(client: AsyncWebClient) -> dict[str, Any]:
    """`auth.test`: the bot's user and workspace, or SettingsError if Slack refuses the token."""
    try:
        return dict((await client.auth_test()).data)  # type: ignore[arg-type]
    except SlackApiError as err:
        if _refusal(err) in REFUSED:
            raise SettingsError(f"Slack refused SLACK_BOT_TOKEN ({_refusal(err)}): copy the Bot "
                                "User OAuth Token again (docs/slack.md, step 3)") from None
        raise SettingsError(f"Slack's auth.test failed ({_refusal(err)})") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        raise _unreachable(client, err) from None


async def socket_url(client: AsyncWebClient, app_token: str) -> str:
    """A Socket Mode WebSocket URL (`apps.connections.open`), or SettingsError."""
    try:
        return str((await client.apps_connections_open(app_token=app_token.strip()))["url"])
    except SlackApiError as err:
        if _refusal(err) in REFUSED:
            raise SettingsError(f"Slack refused SLACK_APP_TOKEN ({_refusal(err)}): make an "
                                "app-level token with connections:write (docs/slack.md, step 3)"
                                ) from None
        raise SettingsError(f"Slack would not open a Socket Mode connection ({_refusal(err)}): "
                            "turn Socket Mode on (docs/slack.md, step 2)") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        raise _unreachable(client, err) from None


def run(settings: Settings) -> None:
    """Serve Slack until SIGTERM or Ctrl-C."""
    check_tokens(settings)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        log.warning("interrupted during shutdown")


async def _until(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> bool:
    """Run `work` unless `stop` is set first (then cancel it); whether it finished."""
    task, stopped = asyncio.ensure_future(work), asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    task.result()  # its error, if it failed
    return True


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Check the bot token, open the core, serve until `stop` is set (by default, by SIGTERM
    or SIGINT), then close in order."""
    from bot.core import Core  # the heavy imports (torch) happen here, not at package import

    client = make_client(settings)
    me = await who_am_i(client)
    log.info("Slack: signed in as %s (%s) in workspace %s", me.get("user"), me.get("user_id"),
             me.get("team"))
    if stop is None:
        stop = stop_on_signals()
    core = await Core.open(settings)
    try:
        front = SlackFront(core, settings, client)
        handler = AsyncSocketModeHandler(front.app, settings.slack_app_token.strip(),
                                         web_client=client)
        try:
            handler.client.wss_uri = await socket_url(client, settings.slack_app_token)
            if await _until(stop, handler.connect_async()):  # it retries until it connects
                log.info("Slack: connected over Socket Mode; in %d channels",
                         await front.keep_present(str(me.get("team_id", ""))))
                await stop.wait()
            log.info("closing the Slack connection")
        finally:
            await handler.close_async()
        try:
            await asyncio.wait_for(front.drain(), DRAIN_S)
        except TimeoutError:
            log.warning("answers still under way after %.0f s: cancelled", DRAIN_S)
    finally:
        await core.close()
        log.info("core closed; bye")
