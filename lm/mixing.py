"""Fitting a mixture's weights on held-out text."""

from __future__ import annotations

import torch

from lm.errors import LmError
from lm.models import LanguageModel, Mix
from lm.models.mix import DEFAULT_EDGES, fit_weights
from lm.scoring import restrict
from lm.vocab import decoder_states, encode_messages


def _component_targets(mix: Mix, ids: list[int], chunk: int = 2048):
    """Restricted log-probs of each component for the true symbols [K, N] and the buckets [N]."""
    x = torch.tensor(ids)
    st = torch.tensor(decoder_states(ids))
    tl, bk = [], []
    with torch.inference_mode():
        state = mix.initial_state(1)
        for s in range(0, len(ids) - 1, chunk):
            e = min(s + chunk, len(ids) - 1)
            lps, state = mix.component_logprobs(x[s:e].view(1, -1), state)  # [K, 1, T, V]
            bk.append(mix.buckets(lps)[0])
            lps = restrict(lps[:, 0], st[s + 1 : e + 1])  # [K, T, V]
            tl.append(lps.gather(2, x[s + 1 : e + 1].expand(len(lps), -1)[..., None])[..., 0])
    return torch.cat(tl, dim=1), torch.cat(bk)


def fit_mix(models: list[LanguageModel], val_messages: list[str] | str,
            edges: tuple[float, ...] = DEFAULT_EDGES) -> Mix:
    """A Mix of `models` whose weights maximise the likelihood of the validation text.

    With `edges` (entropy bin edges, nats) the weights depend on each component's entropy;
    edges=() fits one fixed weight per model.
    """
    msgs = [val_messages] if isinstance(val_messages, str) else list(val_messages)
    ids = encode_messages(msgs)
    if len(ids) < 100:
        raise LmError("too little validation text to fit mixture weights (need 100 symbols)")
    n = (len(edges) + 1) ** len(models)
    probe = Mix(list(models), [[1.0 / len(models)] * len(models)] * n, edges)
    targets, buckets = _component_targets(probe, ids)
    return Mix(list(models), fit_weights(targets, buckets, n), edges).eval()
