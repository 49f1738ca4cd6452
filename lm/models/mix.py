"""A mixture of models, itself a model: P(x) = sum_i w_i P_i(x).

The weights may depend on how sure each component is: every component's entropy (in nats)
falls into one of len(edges)+1 bins, and each combination of bins has its own weights. With no
edges this is a plain fixed-weight mixture. Only the components' own distributions are used,
so the mixture works for any models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from lm import native
from lm.models.base import LanguageModel, State, Stepper
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
        self._np = (np.ascontiguousarray(table, dtype=np.float64),  # for the compiled kernel
                    np.ascontiguousarray(self.config.edges, dtype=np.float64))

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
        """The mixture [B, T, V] of the components' log-probs lps [K, B, T, V]: in the compiled
        kernel (lm/native.c) where it applies, else in torch (the same arithmetic)."""
        if native.usable(lps):
            k, b, t, v = lps.shape
            lps = lps.float().contiguous()
            out = torch.empty(b, t, v)
            work = np.empty(k * v, dtype=np.float32)
            native.library().mix_forward(k, b * t, v, lps.data_ptr(), len(self._np[1]),
                                         *self._addresses(), work.ctypes.data, out.data_ptr())
            return out
        log_w = self.log_w[self.buckets(lps)].permute(2, 0, 1)  # [K, B, T]
        return torch.logsumexp(lps + log_w[..., None], dim=0)

    def _addresses(self) -> tuple[int, int]:
        """Where the edges and the weight table live (asked each time: a copy moves them)."""
        table, edges = self._np
        return edges.ctypes.data, table.ctypes.data

    def stepper(self, batch: int, out: np.ndarray | None = None) -> Stepper:
        return _MixStepper(self, batch, out)


class _MixStepper(Stepper):
    """Sampling's reader: each component's reader writes into a slice of one buffer, then the
    mixture of the slices goes to `out`."""

    def __init__(self, model: Mix, batch: int, out: np.ndarray | None) -> None:
        super().__init__(model, batch, out)
        self.lps = np.empty((len(model.parts), batch, VOCAB_SIZE), dtype=np.float32)
        self.parts = [p.stepper(batch, out=self.lps[k]) for k, p in enumerate(model.parts)]
        self.work = np.empty(len(self.parts) * VOCAB_SIZE, dtype=np.float32)
        lib = native.library()
        self.call = None if lib is None else partial(
            lib.mix_forward, len(self.parts), batch, VOCAB_SIZE, self.lps.ctypes.data,
            len(model._np[1]), *model._addresses(), self.work.ctypes.data,
            self.out.ctypes.data)

    def feed(self, ids: np.ndarray) -> np.ndarray:
        for part in self.parts:
            part.feed(ids)
        if self.call is None:  # no compiled kernels
            with torch.inference_mode():
                mixed = self.model.combine(torch.from_numpy(self.lps[:, :, None]))  # [B, 1, V]
            self.out[:] = mixed[:, 0].numpy()
        else:
            self.call()
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
