"""Fitting a mixture's weights on held-out text."""

from __future__ import annotations

import torch

from lm.errors import LmError
from lm.models import LanguageModel, Mix
from lm.models.mix import fit_weights
from lm.scoring import lane_logprobs
from lm.vocab import encode_messages


def fit_mix(models: list[LanguageModel], val_messages: list[str] | str,
            lanes: int = 32) -> Mix:
    """A Mix of `models` with weights that maximise the likelihood of the validation text."""
    msgs = [val_messages] if isinstance(val_messages, str) else list(val_messages)
    ids = encode_messages(msgs)
    if len(ids) < 100:
        raise LmError("too little validation text to fit mixture weights (need 100 symbols)")
    lp = torch.stack([lane_logprobs(m, ids, lanes, warmup=64) for m in models])  # [K, N]
    return Mix(list(models), fit_weights(lp)).eval()
