"""A mixture of models, itself a model: P(x) = sum_i w_i P_i(x).

The weights may depend on how sure each component is: every component's entropy (in nats)
falls into one of len(edges)+1 bins, and each combination of bins has its own weights. With no
edges this is a plain fixed-weight mixture. Only the components' own distributions are used,
so the mixture works for any models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lm import native
from lm.models.base import LanguageModel, State, Stepper
from lm.runners import Runner, TorchRunner, runner
from lm.vocab import VOCAB_SIZE

DEFAULT_EDGES = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)  # entropy bin edges, nats


@dataclass(frozen=True)
class MixConfig:
    """Components ({"kind", "config", "extra"} each), entropy bin edges in nats, and one
    weight vector (summing to 1) per combination of bins: (len(edges)+1)**K of them."""

    components: tuple[dict, ...] = ()
    weights: tuple[tuple[float, ...], ...] = ()
    edges: tuple[float, ...] = ()


class Mix(LanguageModel):
    """Probabilities averaged with weights chosen per position; state = component states."""

    kind = "mix"

    def __init__(self, parts: list[LanguageModel], weights, edges=()) -> None:
        super().__init__()
        table = [list(weights)] if weights and not isinstance(weights[0], list | tuple) \
            else [list(w) for w in weights]
        k, bins = len(parts), len(edges) + 1
        if k < 2 or len(table) != bins**k or any(len(w) != k for w in table):
            raise ValueError(f"a mix of {k} models with {bins} bins needs {bins ** k} "
                             f"weight vectors of {k}")
        for w in table:
            if any(x < 0 for x in w) or not math.isclose(sum(w), 1.0, rel_tol=1e-4):
                raise ValueError(f"mixture weights must be >= 0 and sum to 1, got {w}")
        self.parts = nn.ModuleList(parts)
        self.config = MixConfig(tuple(p.spec() for p in parts),
                                tuple(tuple(float(x) for x in w) for w in table),
                                tuple(float(e) for e in edges))
        self.register_buffer("log_w", torch.tensor(table).clamp_min(1e-12).log(),
                             persistent=False)  # [buckets, K]
        self.register_buffer("edges", torch.tensor(self.config.edges), persistent=False)

    def spec(self) -> dict:
        c = self.config
        config = {"components": [p.spec() for p in self.parts],
                  "weights": [list(w) for w in c.weights], "edges": list(c.edges)}
        return {"kind": self.kind, "config": config, "extra": {}}

    def initial_state(self, batch: int) -> State:
        return tuple(p.initial_state(batch) for p in self.parts)

    def component_logprobs(self, ids: torch.Tensor, state: State):
        """Each component's log-probs [K, B, T, V] and the new states."""
        outs, states = [], []
        for p, s in zip(self.parts, state, strict=True):
            lp, s = p(ids, s)
            outs.append(lp)
            states.append(s)
        return torch.stack(outs), tuple(states)

    def buckets(self, lps: torch.Tensor) -> torch.Tensor:
        """Bucket index [B, T] of each position from the components' entropies."""
        bucket = torch.zeros(lps.shape[1:3], dtype=torch.long, device=lps.device)
        if len(self.edges) == 0:
            return bucket
        ent = -(lps.exp() * lps.clamp_min(-1e4)).sum(-1)  # [K, B, T] nats
        bins = torch.bucketize(ent, self.edges)  # [K, B, T]
        for b in bins:
            bucket = bucket * (len(self.edges) + 1) + b
        return bucket

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        lps, states = self.component_logprobs(ids, state)  # [K, B, T, V]
        return self.combine(lps), states

    def combine(self, lps: torch.Tensor) -> torch.Tensor:
        """The mixture [B, T, V] of the components' log-probs lps [K, B, T, V]."""
        log_w = self.log_w[self.buckets(lps)].permute(2, 0, 1)  # [K, B, T]
        return torch.logsumexp(lps + log_w[..., None], dim=0)

    def make_runner(self) -> Runner:
        """How scoring and sampling read this model (lm/runners.py): each part through its
        own runner, mixed by the compiled kernel (the arithmetic of `combine`); the model's
        forward where the kernels are not available."""
        if not native.available():
            return TorchRunner(self)
        c = self.config
        return MixRunner(self, tuple(runner(p) for p in self.parts),
                         np.ascontiguousarray(c.weights, dtype=np.float64),
                         np.ascontiguousarray(c.edges, dtype=np.float64))

    def recounted(self, messages: list[str], cache: dict) -> Mix:
        """This mixture with its parts recounted (see LanguageModel), its weights kept; itself
        where no part changed."""
        parts = [p.recounted(messages, cache) for p in self.parts]
        if all(new is old for new, old in zip(parts, self.parts, strict=True)):
            return self
        return Mix(parts, self.config.weights, self.config.edges).eval()


@dataclass(frozen=True)
class MixRunner(Runner):
    """A mixture on the compiled kernel: its parts' runners, the weight table [buckets, K]
    and the entropy edges [E] (float64), as MixConfig gives them."""

    model: Mix
    parts: tuple[Runner, ...]
    table: np.ndarray
    edges: np.ndarray

    def logprobs(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        outs, states = [], []
        for part, s in zip(self.parts, state, strict=True):
            lp, s = part.logprobs(ids, s)
            outs.append(lp)
            states.append(s)
        lps = torch.stack(outs).float()  # [K, B, T, V]
        if lps.device.type != "cpu":
            with torch.inference_mode():
                return self.model.combine(lps), tuple(states)
        k, b, t, v = lps.shape
        out = torch.empty(b, t, v)
        native.mix_forward(lps.contiguous().view(k, b * t, v), self.edges, self.table,
                           out.view(b * t, v))
        return out, tuple(states)

    def stepper(self, batch: int, out: np.ndarray | None = None) -> Stepper:
        return _MixStepper(self, batch, out)


class _MixStepper(Stepper):
    """Sampling's reader: each part's reader writes into a slice of one buffer, then the
    kernel mixes the slices into `out`."""

    def __init__(self, runner: MixRunner, batch: int, out: np.ndarray | None) -> None:
        super().__init__(runner.model, batch, out)
        self.lps = np.empty((len(runner.parts), batch, VOCAB_SIZE), dtype=np.float32)
        self.parts = [p.stepper(batch, out=self.lps[k]) for k, p in enumerate(runner.parts)]
        self.mix = native.MixStep(self.lps, runner.edges, runner.table, self.out)

    def feed(self, ids: np.ndarray) -> np.ndarray:
        for part in self.parts:
            part.feed(ids)
        self.mix()
        return self.out


def fit_weights(target_logp: torch.Tensor, buckets: torch.Tensor, n_buckets: int,
                iters: int = 50, prior: float = 50.0) -> list[list[float]]:
    """EM for per-bucket mixture weights from each model's log-prob of the true symbols [K, N].

    `prior` pseudo-positions pull a sparsely populated bucket towards the global weights.
    """
    k = target_logp.shape[0]
    lp = target_logp.double()
    glob = torch.full((k,), 1.0 / k, dtype=torch.float64)
    w = glob.expand(n_buckets, k).clone()
    for _ in range(iters):
        post = torch.softmax(lp + w[buckets].T.log(), dim=0)  # [K, N] responsibilities
        glob = post.mean(dim=1)
        sums = torch.zeros(n_buckets, k, dtype=torch.float64).index_add_(0, buckets, post.T)
        counts = torch.bincount(buckets, minlength=n_buckets).double()[:, None]
        w = ((sums + prior * glob) / (counts + prior)).clamp_min(1e-6)
        w = w / w.sum(dim=1, keepdim=True)
    return w.tolist()
