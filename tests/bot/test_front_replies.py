"""Replies a front makes itself go through the core's sanitiser (issue item 11), on SimCord."""

from __future__ import annotations

import pytest

from tests.discord.conftest import core, front_settings, simcord_bot  # noqa: F401
from tests.discord.conftest import world as world  # noqa: F401  (a fixture)
from tests.discord.world import World

pytestmark = pytest.mark.simcord(shard_count=1)

# Shows as "cat.txt.exe"-like text in a chat that honours the override; is really a .png.
NAME = "cat\u202egnp.txt\x85@everyone.png"


async def test_skipped_upload_names_are_sanitised(world: World) -> None:
    await world.alice.send(world.general, "!learn", attachments=[(NAME, b"\x89PNG")])
    text = world.general.last_message.content
    assert text.startswith("Skipped: cat\ufffdgnp.txt\ufffd@\u200beveryone.png: not a .txt")
    result = await world.alice.slash(world.general, "learn", file=(NAME, b"\x89PNG"))
    assert result.response.content == text
