"""Listening on Slack: what is stored, edits and deletions keyed by channel, bots and other
subtypes skipped, retried events answered once, moderators, and files shared with `!learn`."""

from __future__ import annotations

from bot.core import Core
from bot.slack_front import SlackFront
from bot.slack_front.people import People
from tests.bot.helpers import rows
from tests.slack.fakeslack import FakeSlack
from tests.slack.world import answers, deleted, deliver, edited, event_body, message, ts


async def stored(core: Core, channel: str = "C1") -> list[tuple[str, str, str]]:
    """(ts, author name, text) of the channel's stored messages."""
    await core.services.corpus.flush()
    return rows(core.settings.db_path,
                "SELECT m.platform_msg_id, m.author_name, m.text FROM messages m JOIN channels c "
                "ON m.channel = c.id WHERE c.platform = 'slack' AND c.channel_key = ? "
                "ORDER BY m.id", (f"T1:{channel}",))


async def listen(front: SlackFront, channel: str) -> None:
    await deliver(front, message("!listen on", user="UADMIN", channel=channel))


async def test_edits_and_deletes_reach_only_their_own_channel(
        front: SlackFront, core: Core, fake: FakeSlack) -> None:
    await listen(front, "C1")
    await listen(front, "C3")
    stamp = ts()  # the same ts in two channels: two different messages
    await deliver(front, message("the quick brown fox &amp; <@U2>", ts=stamp, channel="C1"))
    await deliver(front, message("another channel's words", ts=stamp, channel="C3"))
    assert await stored(core) == [(stamp, "Ann", "the quick brown fox & @U2")]
    await deliver(front, edited(stamp, "the slow brown fox", "the quick brown fox"))
    assert await stored(core) == [(stamp, "Ann", "the slow brown fox")]
    await deliver(front, deleted(stamp, channel="C3"))
    assert await stored(core, "C3") == []
    assert await stored(core) == [(stamp, "Ann", "the slow brown fox")]
    await deliver(front, deleted(stamp))
    assert await stored(core) == []


async def test_bots_and_other_subtypes_are_not_stored(front: SlackFront, core: Core) -> None:
    await listen(front, "C1")
    stamp = ts()
    await deliver(front, message("a person, in a thread", thread_ts=ts(), ts=stamp))
    await deliver(front, message("a bot's words", bot_id="B9"))
    await deliver(front, message("a bot message", subtype="bot_message"))
    await deliver(front, message("<@U1> has joined the channel", subtype="channel_join"))
    assert [text for _, _, text in await stored(core)] == ["a person, in a thread"]
    # A link preview changes the message but not its text; a tombstone deletes it.
    await deliver(front, edited(stamp, "a person, in a thread", "a person, in a thread"))
    assert len(await stored(core)) == 1
    tombstone = edited(stamp, "This message was deleted.", "a person, in a thread")
    tombstone["event"]["message"]["subtype"] = "tombstone"
    await deliver(front, tombstone)
    assert await stored(core) == []


async def test_a_retried_event_is_answered_once(front: SlackFront, fake: FakeSlack) -> None:
    body = message("!babble --seed 2")
    first = await deliver(front, body)
    again = await deliver(front, body)  # Slack thought the first delivery failed
    assert first.status == again.status == 200
    assert len(fake.called("chat.postMessage")) == 1


async def test_admins_owners_and_the_group_moderate(front: SlackFront, fake: FakeSlack) -> None:
    for user in ("U1", "UADMIN", "UOWNER", "UMOD", "U1"):
        await deliver(front, message("!listen off", user=user))
    replies = [a.text for a in answers(fake)]
    assert ["moderators only" in text for text in replies] == [True, False, False, False, True]
    assert len(fake.called("users.info")) == 4  # one per person, then from the cache
    assert len(fake.called("usergroups.users.list")) == len(fake.called("usergroups.list")) == 1
    by_id = People(front.client, "S0614MODS")  # the group named by its id: no look-up
    assert await by_id.may_moderate("UMOD") and not await by_id.may_moderate("U2")
    assert len(fake.called("usergroups.list")) == 1


async def test_learn_reads_text_files_only_from_slack(front: SlackFront, fake: FakeSlack,
                                                      core: Core) -> None:
    fake.files["words.txt"] = b"a line to learn\nand another\n"
    files = [{"name": "words.txt", "mimetype": "text/plain", "size": 28,
              "url_private_download": fake.file_url("words.txt")},
             {"name": "cat.png", "mimetype": "image/png", "size": 10,
              "url_private_download": fake.file_url("cat.png")},
             {"name": "elsewhere.txt", "mimetype": "text/plain", "size": 10,
              "url_private_download": "https://example.invalid/elsewhere.txt"}]
    await deliver(front, message("!learn", subtype="file_share", files=files))
    skipped, learned = answers(fake)
    assert "cat.png: not a .txt file" in skipped.text
    assert "elsewhere.txt: not a file Slack holds" in skipped.text
    assert "from 'words.txt'" in learned.text
    assert [c.args["name"] for c in fake.called("download")] == ["words.txt"]
    assert [text for _, _, text in await stored(core)] == ["a line to learn", "and another"]


def removals(core: Core) -> list[str]:
    return [key for (key,) in rows(core.settings.db_path,
                                   "SELECT channel_key FROM removals ORDER BY channel_key")]


async def test_a_channel_the_bot_leaves_is_removed_after_the_grace_period(
        front: SlackFront, core: Core, fake: FakeSlack) -> None:
    def member(kind: str, user: str, channel: str) -> dict:
        return event_body({"type": kind, "user": user, "channel": channel, "team": "T1"})

    await deliver(front, member("member_left_channel", "U1", "C1"))  # someone else left
    assert removals(core) == []
    await deliver(front, member("member_left_channel", "UBOT", "C1"))
    await deliver(front, member("member_left_channel", "UBOT", "C4"))
    await deliver(front, event_body({"type": "channel_deleted", "channel": "C5"}))
    assert removals(core) == ["T1:C1", "T1:C4", "T1:C5"]
    await deliver(front, member("member_joined_channel", "UBOT", "C4"))  # invited back
    assert removals(core) == ["T1:C1", "T1:C5"]
    fake.fail("users.conversations", "missing_scope")  # an installation from an older manifest
    assert await front.keep_present("T1") == 0
    assert await front.keep_present("T1") == 1  # at start: the bot is in C1 after all
    assert removals(core) == ["T1:C5"]


async def test_uninstalling_the_app_removes_the_workspace_after_the_grace_period(
        front: SlackFront, core: Core) -> None:
    for key in ("T1:C1", "T1:C2", "T10:C1", "T2:C1"):
        await core.services.store.channel("slack", key)
    await deliver(front, event_body({"type": "app_uninstalled"}))  # sent by workspace T1
    assert removals(core) == ["T1:C1", "T1:C2"]  # not T10's, whose id starts the same
