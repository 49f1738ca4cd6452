"""`!forget` and `!optin`: consent, kept.

`!forget me` removes the caller's messages from the channel's corpus and from every file that
held them (database, its WAL, every stored model version's n-gram), and records that listening
and imports must not store them here again until `!optin`. `everywhere` does the same in every
channel of the platform. When the database refuses the erasure (a full disk) it is queued and
retried, and the reply says so; the opt-out holds in memory from the first moment.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import TYPE_CHECKING

from bot import replies
from bot.errors import Busy, StoreError, UserError
from bot.messages import Reply, ReplyFile
from bot.store import EVERYWHERE, ChannelRow

if TYPE_CHECKING:
    from bot.commands import Context, Services

log = logging.getLogger(__name__)


async def forget(ctx: Context) -> Reply:
    """!forget me [everywhere] | !forget all."""
    words = ctx.text.lower().split()
    if words in (["me"], ["me", "everywhere"]):
        return await _forget_me(ctx, everywhere=len(words) == 2)
    if words != ["all"]:
        raise UserError("usage: !forget me (your messages here), !forget me everywhere, "
                        "or !forget all (moderators)")
    ctx.require_moderator("!forget all")
    svc, ch = ctx.services, ctx.channel
    await svc.trainer.stop(ch, "`!forget all`")
    await svc.corpus.flush()
    removed, _ = await svc.store.forget_channel(ch.id)
    svc.models.forget(ch.id)
    await svc.trainer.tidy(ch, patient=True)  # Busy here: `!forget all` again finishes it
    await svc.corpus.empty_wal_or_queue()
    return Reply(f"forgot this channel: {replies.count(removed, 'message')} and every trained "
                 "model are gone; the shipped base model answers here again")


async def _erase(svc: Services, ch: ChannelRow, platform: str, author: str,
                 everywhere: bool) -> tuple[int, list[str]]:
    """The whole erasure: rows (one channel or all), WAL, then every stored version of each
    channel touched rewritten. Returns (messages removed, notes for the reply)."""
    if everywhere:
        counts = await svc.corpus.forget_author_everywhere(platform, author)
    else:
        counts = {ch.id: await svc.corpus.forget_author(ch.id, author)}
    notes, rewritten, stopped = [], 0, False
    touched = [c for c, n in counts.items() if n]
    if ch.id in svc.trainer.unscrubbed:  # an earlier rewrite did not finish: finish it now
        touched.append(ch.id)
    for channel_id in dict.fromkeys(touched):
        row = ch if channel_id == ch.id else await svc.store.channel_by_id(channel_id)
        if row is None:
            continue
        svc.models.forget(row.id)
        was_stopped, done = await svc.trainer.scrub(row)
        stopped |= was_stopped
        rewritten += done.rewritten
    if stopped:
        notes.append("the running training was cancelled, as it had read them")
    if rewritten:
        notes.append(f"the n-gram of {replies.count(rewritten, 'stored model version')} was "
                     "recounted without them")
    if rewritten or stopped:
        notes.append("the RNN's weights hold no verbatim text, but were trained on it: the "
                     "next `!train` learns without it")
    elif any(counts.values()):
        notes.append("the next `!train` learns without them")
    return sum(counts.values()), notes


async def _forget_me(ctx: Context, everywhere: bool) -> Reply:
    svc, ch, msg = ctx.services, ctx.channel, ctx.msg
    scope = EVERYWHERE if everywhere else msg.channel_id
    where = "in any channel here" if everywhere else "here"
    await svc.corpus.set_optout(msg.platform, scope, msg.author_id, True)
    kept = (f"listening and imports will not store your messages {where} again "
            f"(`!optin{' everywhere' if everywhere else ''}` undoes that)")
    try:
        removed, notes = await _erase(svc, ch, msg.platform, msg.author_id, everywhere)
    except (StoreError, sqlite3.Error, Busy) as err:  # each part is safe to do again
        log.warning("erasure refused, queued for retries: %s", err)

        async def again() -> None:
            await _erase(svc, ch, msg.platform, msg.author_id, everywhere)

        svc.corpus.queue_erasure(again)
        return Reply(f"I could not finish erasing your messages {where} yet: the bot's storage "
                     f"or its model queue refused for now. The erasure is queued and retried "
                     f"every {svc.corpus.retry_s:g} s until it succeeds; {kept}")
    head = f"removed {replies.count(removed, 'message')} you contributed {where}"
    return Reply("; ".join([head, *notes, kept]))


async def optin(ctx: Context) -> Reply:
    """!optin [everywhere]: lift an opt-out made by `!forget me`."""
    words = ctx.text.lower().split()
    if words not in ([], ["everywhere"]):
        raise UserError("usage: !optin (here) or !optin everywhere")
    msg = ctx.msg
    scope = EVERYWHERE if words else msg.channel_id
    changed = await ctx.services.corpus.set_optout(msg.platform, scope, msg.author_id, False)
    where = "in every channel here" if words else "here"
    if ctx.services.corpus.opted_out(msg.platform, msg.channel_id, msg.author_id):
        return Reply("you opted out everywhere; `!optin everywhere` lifts that")
    if not changed:
        return Reply(f"you had not opted out {where}; nothing changed")
    return Reply(f"opted in {where}: listening and imports may store your messages again")


PRIVACY = (
    "what this bot stores: the text you give it with `!learn`; in channels where a moderator "
    "turned `!listen on`, your ordinary messages; and history a moderator `!import`s. Each "
    "with your user id, display name and the message id, per channel.\n"
    "what it makes of it: each channel's language model, trained on that channel's text only. "
    "Anyone in the channel can get text in its style (`!babble`); the n-gram part of a model "
    "holds the text verbatim, the RNN part holds weights, not text.\n"
    "for how long: until you `!forget me` (here) or `!forget me everywhere`, a moderator "
    "`!forget all`s the channel, or the message is deleted on the platform.\n"
    "who sees the stored text: the bot's operator (the database on their machine), and "
    "you: `!export me` sends you all of it.\n"
    "`!forget me` also stops listening and imports from storing you again; `!optin` undoes that."
)


async def privacy(ctx: Context) -> Reply:
    """!privacy: what is stored, for how long, who sees it, how to remove it."""
    return Reply(PRIVACY, private=True)


async def export(ctx: Context) -> Reply:
    """!export me: a JSON file of everything stored of the caller on this platform."""
    if ctx.text.lower().split() != ["me"]:
        raise UserError("usage: !export me")
    msg = ctx.msg
    await ctx.services.corpus.flush()
    rows = await ctx.services.store.author_messages(msg.platform, msg.author_id)
    data = json.dumps({"platform": msg.platform, "author_id": msg.author_id, "messages": rows},
                      ensure_ascii=False, indent=1).encode()
    return Reply(f"everything stored of you here: {replies.count(len(rows), 'message')} "
                 "(`!forget me everywhere` removes it all)",
                 (ReplyFile("my-data.json", data),), private=True)
