"""Every command through the real bolt app and the real core, by text and by slash command:
the same answers either way, in the channel or thread asked, privately where the core says so."""

from __future__ import annotations

import re
from pathlib import Path

from bot.core import Core
from bot.slack_front import SlackFront
from bot.slack_front.app import SLASH_NAMES
from tests.bot.helpers import JOHN, lines_of
from tests.slack.fakeslack import FakeSlack
from tests.slack.world import Answer, answers, deliver, mention, message, slash, ts

MANIFEST = Path(__file__).resolve().parents[2] / "slack" / "manifest.yml"
# (command, arguments): run as `!command arguments` in C1, then as `/command arguments` in C2.
STEPS = [("help", ""), ("babble", "--seed 7 --len 40"), ("continue", "To be --seed 7 --len 20"),
         ("prob", "To be or not"), ("learn", "Thou art more lovely and more temperate"),
         ("listen", "on"), ("chance", ""), ("corpus", ""), ("model", ""), ("privacy", ""),
         ("forget", "me"), ("optin", ""), ("export", "me")]
SLASH_OF = {core: slash_name for slash_name, core in SLASH_NAMES.items()}
FAILED = re.compile(r"unknown command|something went wrong|usage:", re.IGNORECASE)


def seen(found: list[Answer]) -> list[tuple[str, str]]:
    """What the asker sees, wherever it was posted."""
    return [(a.kind, a.text) for a in found]


async def run_steps(front: SlackFront, fake: FakeSlack, by_slash: bool) -> list[list[Answer]]:
    out = []
    for name, args in STEPS:
        start = len(fake.calls)
        if by_slash:
            body = slash(fake, "/" + SLASH_OF.get(name, name), args, user="UADMIN", channel="C2")
        else:
            body = message(f"!{name} {args}".strip(), user="UADMIN", channel="C1")
        response = await deliver(front, body)
        assert response.status == 200
        out.append(answers(fake, start))
    return out


async def test_every_command_answers_the_same_by_text_and_by_slash(
        front: SlackFront, fake: FakeSlack, core: Core) -> None:
    assert {name for name, _ in STEPS} | {"train"} == set(core.services.commands)
    by_text = await run_steps(front, fake, by_slash=False)
    by_slash = await run_steps(front, fake, by_slash=True)
    for (name, _), text, slashed in zip(STEPS, by_text, by_slash, strict=True):
        assert text and not any(FAILED.search(a.text) for a in text), (name, text)
        if name == "export":  # the file holds time stamps; both go privately to the DMs
            assert [a.kind for a in text] == [a.kind for a in slashed] == ["dm-files", "private"]
            continue
        assert seen(text) == seen(slashed), name
    answer = dict(zip([name for name, _ in STEPS], by_text, strict=True))
    (help_,) = answer["help"]
    assert help_.kind == "private" and "!import — not on Slack" in help_.text
    assert [a.kind for a in answer["prob"]] == ["public", "files"]
    assert answer["prob"][1].text == "surprisal.png"
    assert "listening: from now on" in answer["listen"][0].text
    assert answer["privacy"][0].kind == "private"
    assert answer["export"][1].text == "sent to you in a direct message"
    assert all(c.token == fake.bot_token for c in fake.calls if "." in c.method)  # Web API


def test_the_manifest_lists_a_slash_command_for_every_command() -> None:
    from bot.commands import build_commands
    from bot.settings import Settings

    listed = set(re.findall(r"^\s*- command: /([\w-]+)\s*$", MANIFEST.read_text(), re.M))
    assert {SLASH_NAMES.get(name, name) for name in listed} == set(build_commands(Settings()))


async def test_a_mention_runs_a_command_once(front: SlackFront, fake: FakeSlack) -> None:
    stamp = ts()
    text = "<@UBOT> prob To be"
    await deliver(front, mention(text, ts=stamp))
    await deliver(front, message(text, ts=stamp))  # the same message, as a message event
    (posted, picture) = answers(fake)
    assert posted.kind == "public" and "'To be'" in posted.text and picture.kind == "files"
    start = len(fake.calls)
    await deliver(front, mention("<@UBOT>"))  # a bare mention babbles
    assert [a.kind for a in answers(fake, start)] == ["public"]
    start = len(fake.calls)
    await deliver(front, message("ask <@UBOT> later"))  # a mention inside a message is no command
    await deliver(front, mention("ask <@UBOT> later"))
    assert answers(fake, start) == []


async def test_answers_stay_in_the_thread_asked(front: SlackFront, fake: FakeSlack) -> None:
    thread = ts()
    await deliver(front, message("!prob In the thread", thread_ts=thread))
    await deliver(front, message("!listen sideways", thread_ts=thread))
    posted, picture, refusal = answers(fake)
    assert posted.where == picture.where == f"C1 {thread}"
    (ephemeral,) = fake.called("chat.postEphemeral")
    assert refusal.kind == "private" and ephemeral.args["thread_ts"] == thread
    assert ephemeral.args["user"] == "U1"


async def test_training_edits_one_message_and_uploads_the_curve(
        front: SlackFront, fake: FakeSlack, core: Core) -> None:
    fake.files["john.txt"] = "\n".join(lines_of(JOHN, 6000)).encode()
    shared = [{"id": "F1", "name": "john.txt", "mimetype": "text/plain", "filetype": "text",
               "size": len(fake.files["john.txt"]), "url_private_download":
               fake.file_url("john.txt")}]
    await deliver(front, message("!learn", user="UADMIN", subtype="file_share", files=shared))
    (learned,) = answers(fake)
    assert learned.text.startswith("learned") and "from 'john.txt'" in learned.text
    (download,) = fake.called("download")
    assert download.token == fake.bot_token
    thread = ts()
    for version, body in enumerate([slash(fake, "/train", "", user="UADMIN", channel="C1"),
                                    message("!train", user="UADMIN", thread_ts=thread)], 1):
        start = len(fake.calls)
        await deliver(front, body)
        await core.wait_trainings()
        first, *edits, curve = answers(fake, start)
        assert first.kind == "public" and first.text.startswith("training this channel's model")
        assert edits and all(e.kind == "edit" for e in edits)
        post = fake.called("chat.postMessage")[-1]
        updates = [c for c in fake.calls[start:] if c.method == "chat.update"]
        assert {u.args["ts"] for u in updates} == {post.answer["ts"]}
        assert edits[-1].text.startswith("training done in"), edits[-1].text
        assert version > 1 or "Model v1 answers here now" in edits[-1].text
        where = "C1" if version == 1 else f"C1 {thread}"
        assert first.where == curve.where == where
        assert curve.kind == "files" and curve.text == "loss-curve.png"


async def test_a_direct_message_is_answered_plainly_and_moderates_nothing(
        front: SlackFront, fake: FakeSlack) -> None:
    await deliver(front, message("<@UBOT> privacy", user="UADMIN", channel="DADMIN"))
    await deliver(front, message("!listen on", user="UADMIN", channel="DADMIN"))
    privacy, refusal = answers(fake)
    assert privacy.kind == refusal.kind == "public"  # a DM is private already
    assert "!forget me" in privacy.text  # a mention in a DM comes as a message event alone
    assert "moderators only" in refusal.text
    assert fake.called("chat.postEphemeral") == []


async def test_import_is_not_on_slack_and_says_why(front: SlackFront, fake: FakeSlack) -> None:
    await deliver(front, message("!import 100", user="UADMIN"))
    await deliver(front, message("!help import"))
    refusal, help_line = answers(fake)
    assert refusal.kind == "private" and refusal.text.startswith("!import is not on Slack")
    assert "once a minute" in help_line.text and help_line.kind == "private"


async def test_a_slash_command_where_the_bot_is_not_a_member_answers_privately(
        front: SlackFront, fake: FakeSlack) -> None:
    fake.fail("chat.postMessage", "not_in_channel")
    await deliver(front, slash(fake, "/babble", "--seed 3", channel="C9"))
    (refused,) = fake.called("chat.postMessage")
    note, reply = answers(fake)
    assert not refused.ok
    assert note.kind == reply.kind == "private" and "/invite @babble" in note.text
    assert reply.text and not FAILED.search(reply.text)
