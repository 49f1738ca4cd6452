"""Fitting a mixture's weights on held-out text."""

from __future__ import annotations

import torch

from lm.errors import LmError
from lm.models import LanguageModel, Mix
from lm.models.mix import DEFAULT_EDGES, fit_weights
from lm.runners import runner
from lm.scoring import message_groups, restrict
from lm.vocab import BOUNDARY, decoder_states, encode


def _component_targets(mix: Mix, messages: list[str], max_symbols: int = 16_384):
    """Restricted log-probs of each component for the true symbols [K, N] and the buckets [N]
    over the messages, each read from a fresh start with its end (as scoring reads them)."""
    tl, bk = [], []
    for group in message_groups(messages, max_symbols):
        width = len(group[-1])
        x = torch.full((len(group), width), BOUNDARY, dtype=torch.long)
        st = torch.zeros((len(group), width), dtype=torch.long)
        for r, row in enumerate(group):
            x[r, : len(row)] = torch.tensor(row)
            st[r, : len(row)] = torch.tensor(decoder_states(row)[:-1])
        t, b = _rows_targets(mix, x, st)
        for r, row in enumerate(group):
            tl.append(t[:, r, : len(row) - 1])
            bk.append(b[r, : len(row) - 1])
    return torch.cat(tl, dim=1), torch.cat(bk)


def _rows_targets(mix: Mix, x: torch.Tensor, st: torch.Tensor, chunk: int = 2048):
    """Component log-probs of each next symbol [K, B, L-1] and buckets [B, L-1] of rows x
    [B, L] read side by side from a fresh start; st: decoder states before each symbol."""
    tl, bk = [], []
    with torch.inference_mode():
        state = mix.initial_state(x.shape[0])
        for s in range(0, x.shape[1] - 1, chunk):
            e = min(s + chunk, x.shape[1] - 1)
            lps, state = _parts_logprobs(mix, x[:, s:e], state)  # [K, B, T, V]
            bk.append(mix.buckets(lps))
            lps = restrict(lps, st[:, s + 1 : e + 1])  # [K, B, T, V]
            nxt = x[:, s + 1 : e + 1].expand(len(lps), -1, -1)[..., None]
            tl.append(lps.gather(3, nxt)[..., 0])
    return torch.cat(tl, dim=2), torch.cat(bk, dim=1)


def _parts_logprobs(mix: Mix, ids: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
    """Each part's log-probs [K, B, T, V] through its runner (its kernel where it has one),
    and the parts' new states."""
    outs, states = [], []
    for part, st in zip(mix.parts, state, strict=True):
        lp, st = runner(part).logprobs(ids, st)
        outs.append(lp)
        states.append(st)
    return torch.stack(outs), tuple(states)


def fit_mix(models: list[LanguageModel], val_messages: list[str] | str,
            edges: tuple[float, ...] = DEFAULT_EDGES) -> Mix:
    """A Mix of `models` whose weights maximise the likelihood of the validation messages,
    each read from a fresh start with its end symbol.

    With `edges` (entropy bin edges, nats) the weights depend on each component's entropy;
    edges=() fits one fixed weight per model.
    """
    msgs = [val_messages] if isinstance(val_messages, str) else list(val_messages)
    if sum(len(encode(m)) + 1 for m in msgs) < 100:
        raise LmError("too little validation text to fit mixture weights (need 100 symbols)")
    n = (len(edges) + 1) ** len(models)
    probe = Mix(list(models), [[1.0 / len(models)] * len(models)] * n, edges)
    targets, buckets = _component_targets(probe, msgs)
    return Mix(list(models), fit_weights(targets, buckets, n), edges).eval()
