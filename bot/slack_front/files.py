"""`.txt` files shared with a `!learn` message: checked, then downloaded with the bot token.

Slack serves shared files at `url_private_download` to a request that carries the bot token, so
the token is sent only to Slack's own file host (or to the configured API host, which tests
point at their fake): a file object naming any other address is refused, never fetched.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.messages import Attachment

log = logging.getLogger(__name__)

FILE_HOSTS = ("files.slack.com",)
DOWNLOAD_TIMEOUT_S = 30.0


class NotTheFile(Exception):
    """The file host answered with something other than the file."""


def is_text_file(file: dict[str, Any]) -> bool:
    """A `.txt` upload, or one Slack labels as plain text."""
    name = str(file.get("name") or "")
    return name.lower().endswith(".txt") or file.get("filetype") == "text" \
        or str(file.get("mimetype") or "").startswith("text/plain")


def _trusted(url: str, api_url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return urlsplit(url).scheme in ("https", "http") and (
        host in FILE_HOSTS or host == urlsplit(api_url).hostname)


async def _download(session: aiohttp.ClientSession, url: str, token: str, cap: int) -> bytes:
    """At most `cap` + 1 bytes of the file (one byte over tells that it is too big)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(url, headers=headers, allow_redirects=False) as resp:
        resp.raise_for_status()
        # Slack answers a token it will not serve (no files:read) with its sign-in page, or a
        # redirect to it: neither is the file, and the page must not be learned as text.
        if resp.status != 200 or resp.content_type == "text/html":
            raise NotTheFile(f"HTTP {resp.status}, {resp.content_type}")
        return await resp.content.read(cap + 1)


async def read_files(files: list[dict[str, Any]], token: str, api_url: str,
                     max_bytes: int) -> tuple[tuple[Attachment, ...], list[str]]:
    """The text files within the size cap, as attachments; and why the others were skipped."""
    kept: list[Attachment] = []
    refused: list[str] = []
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for file in files:
            name = str(file.get("name") or file.get("title") or "a file")
            url = str(file.get("url_private_download") or file.get("url_private") or "")
            if not is_text_file(file):
                refused.append(f"{name}: not a .txt file")
            elif int(file.get("size") or 0) > max_bytes:
                refused.append(f"{name}: {int(file['size']) / 1e6:.1f} MB is over the "
                               f"{max_bytes / 1e6:.1f} MB limit")
            elif not _trusted(url, api_url):
                log.warning("not downloading %r: not on Slack's file host", name)
                refused.append(f"{name}: not a file Slack holds")
            else:
                try:
                    data = await _download(session, url, token, max_bytes)
                except (aiohttp.ClientError, TimeoutError, NotTheFile) as err:
                    why = err if isinstance(err, NotTheFile) else type(err).__name__
                    log.warning("download of %r failed: %s", name, why)
                    refused.append(f"{name}: the download failed")
                    continue
                if len(data) > max_bytes:
                    refused.append(f"{name}: over the {max_bytes / 1e6:.1f} MB limit")
                else:
                    kept.append(Attachment(name, data))
    return tuple(kept), refused
