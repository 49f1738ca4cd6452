"""The commands, platform-neutral: each handler takes a Context and returns a Reply (or sends).

Text commands and slash commands share these handlers: `Core.run_command` calls
`COMMANDS[name]` with the argument text, which `parsing.parse_options` splits the same way for
both. Errors are raised typed (UserError, PermissionDenied, Busy) and turned into replies by
the core in one place.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import lm
from bot import forgetting, replies, serving
from bot.channel_models import ChannelModelSource
from bot.corpus import Corpus
from bot.errors import PermissionDenied, UserError
from bot.messages import Incoming, Reply, ReplyFile, Responder
from bot.parsing import Option, choice, describe_options, number
from bot.pool import WorkerPool
from bot.safety import hide_paths
from bot.settings import Settings
from bot.store import ChannelRow, Store
from bot.training import Trainer, progress_text

CUT_MARK = "…"  # ends a sample that reached --len before the model ended it
CHIME_GAP_S = 30.0  # the least time between two babbles the bot makes on its own in a channel


@dataclass(frozen=True)
class Services:
    """Everything a command may use; built once by `Core.open`."""

    settings: Settings
    store: Store
    pool: WorkerPool
    corpus: Corpus
    models: ChannelModelSource
    trainer: Trainer
    commands: dict[str, Command]
    front_help: list[tuple[str, str]]  # (usage, help) of commands a front handles itself


@dataclass(frozen=True)
class Context:
    """One command being handled: who, where, and how to answer."""

    services: Services
    msg: Incoming
    responder: Responder
    channel: ChannelRow
    text: str  # the free text after the command name, options removed
    options: dict[str, Any]

    def require_moderator(self, what: str) -> None:
        """PermissionDenied unless the front says the author may moderate."""
        if not self.msg.may_moderate:
            raise PermissionDenied(f"{what} is for moderators only")


Handler = Callable[[Context], Awaitable[Reply | None]]


@dataclass(frozen=True)
class Command:
    """A command: its handler, usage line, help, options and limits."""

    name: str
    usage: str
    help: str
    run: Handler
    options: tuple[Option, ...] = ()


def sample_options(s: Settings) -> tuple[Option, ...]:
    """Options of !babble and !continue, bounded by the settings."""
    return (Option("temp", "T", number(0, 5), "temperature: lower is safer, higher is wilder"),
            Option("len", "N", number(1, s.max_babble_chars, integer=True), "most characters"),
            Option("model", "rnn|markov|uniform|mix",
                   choice("rnn", "markov", "uniform", "mix"), "which model (default: mix)"),
            Option("seed", "S", number(0, 2**31 - 1, integer=True), "repeatable samples"),
            Option("n", "K", number(1, s.max_babble_n, integer=True), "how many samples"))


async def _pick_model(ctx: Context, which: str) -> lm.LanguageModel:
    """The model that `--model` names, for this channel."""
    models = ctx.services.models
    if which == "uniform":
        return models.base.uniform
    if which == "markov":
        model, label = await models.markov(ctx.channel)
        if model is None:
            raise UserError(f"there is {label}")
        return model
    current = await models.for_channel(ctx.channel)
    if which == "rnn":
        if current.rnn is None:
            raise UserError("no RNN is available here (the base RNN could not be loaded)")
        return current.rnn
    return current.answer


async def _generate(ctx: Context, prefix: str) -> Reply:
    o = ctx.options
    model = await _pick_model(ctx, o.get("model", "mix"))
    temp = o.get("temp", 1.0)  # below lm's least temperature: the likeliest text, as asked
    config = lm.SampleConfig(temperature=max(temp, lm.MIN_TEMPERATURE),
                             greedy=temp < lm.MIN_TEMPERATURE, max_chars=o.get("len", 200),
                             seed=o.get("seed"), n=o.get("n", 1))
    texts = await ctx.services.pool.run_batched(model, serving.generate_many,
                                                (model, config, prefix),
                                                ctx.services.settings.sample_batch)
    lines = [_shown(prefix, t, cut=len(t) >= config.max_chars) for t in texts]
    if len(lines) > 1:
        lines = [f"{i}. {line}" for i, line in enumerate(lines, 1)]
    tag = f"[{o['model']}] " if "model" in o else ""
    return Reply(tag + "\n".join(lines))


def _shown(prefix: str, text: str, cut: bool) -> str:
    """A sample as the reply shows it: one cut at --len ends with the mark (after its trailing
    whitespace, which chat clients drop anyway); an empty one says that the model ended it."""
    if cut:
        return (prefix + text).rstrip() + CUT_MARK
    return prefix + text if text.strip() else f"{prefix}(the model ended the message here)"


async def babble(ctx: Context) -> Reply:
    """!babble: a message from the channel's model."""
    if ctx.text:
        raise UserError("!babble takes only options; to continue your text, use "
                        "`!continue <text>`")
    return await _generate(ctx, "")


async def continue_(ctx: Context) -> Reply:
    """!continue: continue the given text."""
    if not ctx.text:
        raise UserError("!continue needs text to continue, e.g. `!continue To be or`")
    if len(ctx.text) > ctx.services.settings.max_prob_chars:
        raise UserError(f"that text is {len(ctx.text):,} characters; !continue takes at most "
                        f"{ctx.services.settings.max_prob_chars:,}")
    return await _generate(ctx, ctx.text)


async def prob(ctx: Context) -> Reply:
    """!prob: the sentence's probability under uniform, Markov, RNN (and the channel mix)."""
    text, svc = ctx.text, ctx.services
    cap = svc.settings.max_prob_chars
    if not text:
        raise UserError("!prob needs a sentence, e.g. `!prob To be or not to be`")
    if len(text) > cap:
        raise UserError(f"that sentence is {len(text):,} characters; !prob scores at most "
                        f"{cap:,}")
    current = await svc.models.for_channel(ctx.channel)
    markov, markov_label = await svc.models.markov(ctx.channel)
    named = {"uniform": (svc.models.base.uniform, "every symbol equally likely"),
             "markov": (markov, markov_label),
             "rnn": (current.rnn, f"the RNN of {current.label}"),
             "mix": (current.answer, f"{current.label}, which answers here")}
    named = {k: v for k, v in named.items() if v[0] is not None}
    if named["mix"][0] is current.rnn or current.answer.kind != "mix":
        del named["mix"]
    models = {k: m for k, (m, _) in named.items()}
    # !prob waiting for the same RNN and mix (the base models, say) are answered together
    key = ("prob", models.get("rnn"), models.get("mix"))
    scores, png = await svc.pool.run_batched(key, serving.prob_job, (models, text),
                                             svc.settings.sample_batch)
    labels = {k: _no_paths(svc, label) for k, (_, label) in named.items() if k != "uniform"}
    return Reply(replies.prob_table(text, scores, labels), (ReplyFile("surprisal.png", png),))


async def learn(ctx: Context) -> Reply:
    """!learn: add text (and .txt attachments) to the channel's corpus."""
    corpus, ch = ctx.services.corpus, ctx.channel
    if not ctx.text and not ctx.msg.attachments:
        raise UserError("!learn needs text, e.g. `!learn Thou art more lovely`, or a .txt file")
    parts, skipped = [], []
    for att in ctx.msg.attachments:  # each file on its own: a bad one skips only itself
        try:
            lines, chars = await corpus.learn_file(ch.id, ctx.msg, att)
        except UserError as err:
            skipped.append(str(err))
            continue
        parts.append(f"{replies.count(chars, 'character')} in {replies.count(lines, 'line')} "
                     f"from {att.filename!r}")
    if ctx.text:
        parts.append(replies.count(await corpus.learn(ch.id, ctx.msg, ctx.text), "character"))
    if not parts:
        raise UserError("; ".join(skipped))
    ctx.services.models.forget(ch.id, "ngram")  # the Markov column counts what was just learned
    stats = await ctx.services.store.corpus_stats(ch.id)
    skipped_note = "".join(f". Skipped: {s}" for s in skipped)
    return Reply(f"learned {' and '.join(parts)}; this channel's corpus now holds "
                 f"{replies.count(stats.messages, 'message')}, "
                 f"{replies.count(stats.chars, 'character')}{skipped_note}")


async def listen(ctx: Context) -> Reply:
    """!listen on|off: whether ordinary messages go to the corpus."""
    arg = ctx.text.lower()
    if not arg:
        state = "on" if ctx.channel.listening else "off"
        return Reply(f"listening is {state} here; `!listen on` or `!listen off` changes it")
    if arg not in ("on", "off"):
        raise UserError("usage: !listen on|off")
    ctx.require_moderator("!listen on|off")
    await ctx.services.store.set_listening(ctx.channel.id, arg == "on")
    if arg == "on":
        return Reply("listening: from now on, ordinary messages here are added to this channel's "
                     "corpus with their author (`!forget me` removes yours)")
    return Reply("listening is off: ordinary messages are no longer stored")


async def chance(ctx: Context) -> Reply:
    """!chance [P]: how likely the bot babbles after an ordinary message here (0 to 1)."""
    ch, arg = ctx.channel, ctx.text.strip()
    if not arg:
        return Reply(f"reply chance here: {ch.reply_chance:.0%} of ordinary messages get a "
                     f"babble (at most one every {CHIME_GAP_S:.0f} s); moderators change it "
                     "with `!chance P`, P from 0 to 1 or 0% to 100%")
    ctx.require_moderator("!chance P")
    try:
        p = float(arg.removesuffix("%")) / (100 if arg.endswith("%") else 1)
    except ValueError:
        p = math.nan
    if not 0 <= p <= 1:  # NaN fails too
        raise UserError("usage: !chance P, P from 0 to 1 (or 0% to 100%); 0 turns it off")
    await ctx.services.store.set_reply_chance(ch.id, p)
    if p == 0:
        return Reply("reply chance off: the bot answers commands only")
    return Reply(f"reply chance {p:.0%}: the bot babbles after that share of ordinary messages "
                 f"here, at most once every {CHIME_GAP_S:.0f} s")


async def corpus(ctx: Context) -> Reply:
    """!corpus: size of the corpus, listening, and what model answers here."""
    svc, ch = ctx.services, ctx.channel
    await svc.corpus.flush()
    stats = await svc.store.corpus_stats(ch.id)
    current = await svc.models.for_channel(ch)
    row = await svc.store.active_model(ch.id)
    answering = replies.model_line(None if current.note else row, _no_paths(svc, current.label))
    job = svc.trainer.jobs.get(ch.id)
    return Reply(replies.corpus_text(stats, svc.settings.max_corpus_chars, ch.listening,
                                     answering, job and progress_text(job)))


async def train(ctx: Context) -> Reply | None:
    """!train [--minutes M] | !train cancel: fine-tune this channel's model."""
    svc = ctx.services
    if ctx.text.lower() == "cancel":
        ctx.require_moderator("!train cancel")
        if not svc.trainer.cancel(ctx.channel):
            raise UserError("no training is running here")
        return Reply("cancelling the training…")
    if ctx.text:
        raise UserError("usage: !train [--minutes M] or !train cancel")
    ctx.require_moderator("!train")
    await svc.corpus.flush()
    minutes = ctx.options.get("minutes", svc.settings.train_minutes)
    await svc.trainer.start(ctx.channel, ctx.msg.author_name, ctx.responder, minutes)
    return None


async def model(ctx: Context) -> Reply:
    """!model [rollback]: which model answers here; go back to the previous version."""
    svc, ch = ctx.services, ctx.channel
    if ctx.text.lower() == "rollback":
        ctx.require_moderator("!model rollback")
        if await svc.store.active_model(ch.id) is None:
            raise UserError("this channel already answers with the base model; nothing to roll "
                            "back")
        previous = await svc.store.rollback(ch.id)
        svc.models.forget(ch.id, "version")
        return Reply("rolled back: " + (f"v{previous.version} answers here now" if previous
                                        else "the shipped base model answers here now"))
    if ctx.text:
        raise UserError("usage: !model or !model rollback")
    current = await svc.models.for_channel(ch)
    row = await svc.store.active_model(ch.id)
    lines = [f"answering here: {replies.model_line(None if current.note else row, current.label)}",
             replies.versions_text(await svc.store.models(ch.id), row and row.id),
             f"base: {svc.models.base_label()}"]
    lines += [f"note: {n}" for n in (current.note, *svc.models.base.notes) if n]
    return Reply(_no_paths(svc, "\n".join(dict.fromkeys(lines))))


def _no_paths(svc: Services, text: str) -> str:
    """Text about models as chat may see it: a file by its name, never the server's folders
    (the base model's path, a checkpoint's in a load error)."""
    s = svc.settings
    return hide_paths(text, (str(s.checkpoint_dir), s.base_model, s.base_rnn, s.base_ngram))


async def help_(ctx: Context) -> Reply:
    """!help [command]: what the commands do."""
    p = ctx.services.settings.command_prefix
    name = ctx.text.lower().removeprefix(p)
    if name:
        cmd = ctx.services.commands.get(name)
        if cmd is not None:
            return Reply(f"{p}{cmd.usage}\n{cmd.help}\n{describe_options(cmd.options)}",
                         private=True)
        for usage, text in ctx.services.front_help:
            if usage.split()[0] == name:
                return Reply(f"{p}{usage}\n{text}", private=True)
        raise UserError(f"no command {p}{name}; `{p}help` lists them")
    entries = [(c.usage, c.help) for c in ctx.services.commands.values()]
    entries += ctx.services.front_help
    return Reply("commands:\n" + "\n".join(f"{p}{usage} — {text}" for usage, text in entries),
                 private=True)


def build_commands(s: Settings) -> dict[str, Command]:
    """The command table for these settings (option bounds come from them)."""
    minutes = Option("minutes", "M", number(0, s.train_max_minutes), "training budget")
    table = [
        Command("babble", "babble [options]", "a message in this channel's style", babble,
                sample_options(s)),
        Command("continue", "continue <text> [options]", "continue your text", continue_,
                sample_options(s)),
        Command("prob", "prob <sentence>",
                "how probable a sentence is under uniform, Markov and RNN models", prob),
        Command("learn", "learn <text>", "add text (or a .txt file) to this channel's corpus",
                learn),
        Command("listen", "listen on|off", "store ordinary messages here (moderators switch)",
                listen),
        Command("chance", "chance [P]",
                "how often the bot babbles on its own after a message (moderators set P)",
                chance),
        Command("corpus", "corpus", "corpus size, contributors, and the model answering here",
                corpus),
        Command("train", "train [--minutes M] | train cancel",
                "fine-tune this channel's model on its corpus (moderators)", train, (minutes,)),
        Command("model", "model [rollback]",
                "which model answers here; rollback goes back a version (moderators)", model),
        Command("forget", "forget me [everywhere] | forget all",
                "remove your messages here (or everywhere) and store none again until `!optin`;"
                " all: empty the corpus and drop the model (moderators)", forgetting.forget),
        Command("optin", "optin [everywhere]",
                "let listening and imports store your messages again after `!forget me`",
                forgetting.optin),
        Command("privacy", "privacy", "what is stored about you, for how long, who sees it",
                forgetting.privacy),
        Command("export", "export me", "a file of everything stored about you (privately)",
                forgetting.export),
        Command("help", "help [command]", "this list", help_),
    ]
    return {c.name: c for c in table}
