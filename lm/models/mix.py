"""A weighted mixture of models, itself a model: P(x) = sum_i w_i P_i(x)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lm.models.base import LanguageModel, State


@dataclass(frozen=True)
class MixConfig:
    """Component descriptions ({"kind", "config"} each) and their mixture weights (sum 1)."""

    components: tuple[dict, ...] = ()
    weights: tuple[float, ...] = ()


class Mix(LanguageModel):
    """Probabilities averaged with fixed weights; the state is the tuple of component states."""

    kind = "mix"

    def __init__(self, parts: list[LanguageModel], weights: list[float]) -> None:
        super().__init__()
        if len(parts) < 2 or len(parts) != len(weights):
            raise ValueError("a mix needs at least two models and one weight per model")
        if any(w < 0 for w in weights) or not math.isclose(sum(weights), 1.0, rel_tol=1e-4):
            raise ValueError(f"mixture weights must be >= 0 and sum to 1, got {weights}")
        self.parts = nn.ModuleList(parts)
        self.config = MixConfig(
            components=tuple(p.spec() for p in parts), weights=tuple(float(w) for w in weights)
        )
        self.register_buffer("log_w", torch.tensor(weights).log(), persistent=False)

    def spec(self) -> dict:
        comps = [p.spec() for p in self.parts]
        config = {"components": comps, "weights": list(self.config.weights)}
        return {"kind": self.kind, "config": config, "extra": {}}

    def part(self, kind: str) -> LanguageModel:
        """The first component of the given kind (e.g. "ngram")."""
        for p in self.parts:
            if p.kind == kind:
                return p
        raise KeyError(kind)

    def initial_state(self, batch: int) -> State:
        return tuple(p.initial_state(batch) for p in self.parts)

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        outs, states = [], []
        for p, s in zip(self.parts, state, strict=True):
            lp, s = p(ids, s)
            outs.append(lp)
            states.append(s)
        stacked = torch.stack(outs) + self.log_w.view(-1, 1, 1, 1)  # [K, B, T, V]
        return torch.logsumexp(stacked, dim=0), tuple(states)


def fit_weights(target_logp: torch.Tensor, iters: int = 50) -> list[float]:
    """EM for mixture weights from each model's log-prob of the true symbols [K, N]."""
    k = target_logp.shape[0]
    log_w = torch.full((k,), -math.log(k), dtype=torch.float64)
    lp = target_logp.double()
    for _ in range(iters):
        post = torch.softmax(lp + log_w[:, None], dim=0)  # [K, N] responsibilities
        log_w = post.mean(dim=1).clamp_min(1e-6).log()
    w = log_w.exp()
    return (w / w.sum()).tolist()
