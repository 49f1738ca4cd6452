"""The tutorial's simplest language model: every symbol equally likely."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lm.models.base import LanguageModel, State
from lm.vocab import VOCAB_SIZE


@dataclass(frozen=True)
class UniformConfig:
    """The uniform model has nothing to configure."""


class Uniform(LanguageModel):
    """P(next symbol) = 1/257 for every symbol.

    After the UTF-8 restriction that scoring and sampling apply, a symbol's probability is
    1/|allowed| where |allowed| is the number of legal symbols in the decoder state: 180 at a
    character boundary (128 ASCII bytes, 51 lead bytes, the boundary symbol), 64 before a
    plain continuation byte, fewer after E0, ED, F0, F4. So an ASCII message of n characters
    scores exactly (n + 1) * ln(180) nats with its end symbol.
    """

    kind = "uniform"

    def __init__(self, config: UniformConfig | None = None) -> None:
        super().__init__()
        self.config = config or UniformConfig()

    def initial_state(self, batch: int) -> State:
        return None

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        b, t = ids.shape
        out = torch.full((b, t, VOCAB_SIZE), -math.log(VOCAB_SIZE), device=ids.device)  # [B, T, V]
        return out, state
