"""The runners on compiled kernels (lm/native.c) compute what the models' forwards compute."""

from __future__ import annotations

import copy
import gc
from pathlib import Path

import pytest
import torch

import lm
from lm import native, score
from lm.models import GRU, LSTM, Mix, NGram, NGramConfig, RecurrentConfig, round_to_half
from lm.models.mix import MixRunner
from lm.models.ngram import NGramRunner
from lm.models.recurrent import GRURunner
from lm.runners import TorchRunner, ready, runner
from lm.vocab import encode_messages
from tests.lm.conftest import make

pytestmark = pytest.mark.skipif(not native.available(), reason="kernels not built")

IDS = torch.tensor([[256, *"Wherefore art thou 😀 Ω? to be".encode()]] * 3)
CORPUS = Path(__file__).resolve().parents[2] / "data" / "corpora" / "tinyshakespeare.txt"


@pytest.fixture
def kernels_off(monkeypatch):
    """The kernels switched off for runners built from here on (as with LM_NATIVE=0)."""
    monkeypatch.setenv("LM_NATIVE", "0")
    native._load.cache_clear()
    yield
    native._load.cache_clear()  # monkeypatch restores LM_NATIVE; the next call loads again


def run(r, ids, steps=False):
    """Log-probs [B, T, V] and the final state from runner r, reading ids whole or one symbol
    at a time."""
    state = r.initial_state(ids.shape[0])
    if not steps:
        return r.logprobs(ids, state)
    outs = []
    for t in range(ids.shape[1]):
        lp, state = r.logprobs(ids[:, t : t + 1], state)
        outs.append(lp)
    return torch.cat(outs, dim=1), state


def reference(model, ids):
    """The model's own forward: the torch (or numpy) reference."""
    with torch.no_grad():
        return model(ids, model.initial_state(ids.shape[0]))


def half_gru(hidden=32):
    torch.manual_seed(0)
    m = GRU(RecurrentConfig(hidden=hidden, embed=8)).eval()
    for p in m.parameters():  # weights of a trained size, so the gates are not all saturated
        torch.nn.init.normal_(p, std=0.3)
    round_to_half(m)
    return m


@pytest.mark.parametrize("batch", [1, 3])
def test_gru_kernel_matches_the_fused_layer(batch):
    m = half_gru()
    ids = IDS[:batch]
    r = runner(m)
    assert isinstance(r, GRURunner)  # the kernel is what runs
    got, h = run(r, ids)
    ref, h_ref = reference(m, ids)
    assert torch.allclose(got, ref, atol=1e-4) and torch.allclose(h, h_ref, atol=1e-5)
    step, h_step = run(r, ids, steps=True)  # carrying the state gives the same numbers
    assert torch.allclose(step, got, atol=1e-5) and torch.allclose(h_step, h, atol=1e-6)


@pytest.mark.parametrize("isa", native.isas())
def test_every_copy_of_the_gru_kernel_this_cpu_runs_matches_torch(isa):
    m = half_gru(hidden=36)  # not a multiple of the vector width: the scalar tail runs too
    tables = m.kernel_tables()
    for batch in (1, 3):
        ids = IDS[:batch].contiguous()
        h = torch.zeros(batch, 36)
        got = torch.empty(batch, ids.shape[1], 257)
        native.gru_forward(tables, ids, h, logp=got, isa=isa)
        ref, h_ref = reference(m, ids)
        assert torch.allclose(got, ref, atol=1e-4) and torch.allclose(h, h_ref[0], atol=1e-5)


@pytest.mark.parametrize("isa", native.isas())
def test_a_batch_computes_exactly_what_each_sequence_computes_alone(isa):
    """Sampling draws the same text alone or batched: the batched kernel's arithmetic is the
    single sequence's, bit for bit, also where the widths leave columns to plain C."""
    tables = half_gru(hidden=36).kernel_tables()  # 3H = 108 and V = 257: neither divides by 16
    rows = torch.stack([IDS[0], IDS[0].flip(0), IDS[0].roll(5)])  # [3, T]
    h, alone = torch.zeros(3, 36), torch.zeros(3, 36)
    out, one = torch.empty(3, 1, 257), torch.empty(1, 1, 257)
    for t in range(rows.shape[1]):
        native.gru_forward(tables, rows[:, t : t + 1].contiguous(), h, logp=out, isa=isa)
        for b in range(3):
            native.gru_forward(tables, rows[b : b + 1, t : t + 1].contiguous(), alone[b : b + 1],
                               logp=one, isa=isa)
            assert torch.equal(one[0], out[b]) and torch.equal(alone[b], h[b])


def test_the_gru_kernel_needs_float16_weights_and_torch_serves_the_rest():
    m = half_gru()
    with torch.no_grad():
        m.rnn.weight_hh_l0[0, 0] += 1e-4  # no longer a float16 value
    assert m.kernel_tables() is None and isinstance(runner(m), TorchRunner)
    lstm = LSTM(RecurrentConfig(hidden=16, embed=8)).eval()
    assert isinstance(runner(lstm), TorchRunner)
    got, _ = run(runner(m), IDS[:1], steps=True)
    assert torch.allclose(got, reference(m, IDS[:1])[0], atol=1e-5)


def test_more_sequences_than_the_kernel_takes_go_through_the_fused_layer():
    m = half_gru()
    ids = IDS[:1].repeat(12, 1)
    got, h = run(runner(m), ids)
    ref, h_ref = reference(m, ids)
    assert torch.allclose(got, ref, atol=1e-5) and torch.allclose(h, h_ref, atol=1e-6)


@pytest.mark.parametrize("kind", ["ngram", "gated-mix"])
def test_ngram_and_mix_kernels_match_their_forward(kind):
    m = make(kind)
    if kind == "gated-mix":
        m = Mix([half_gru(24), m.parts[1]], [list(w) for w in m.config.weights],
                m.config.edges).eval()
    r = runner(m)
    assert isinstance(r, NGramRunner if kind == "ngram" else MixRunner)
    got, state = run(r, IDS)
    step, _ = run(r, IDS, steps=True)
    ref, ref_state = reference(m, IDS)
    assert torch.allclose(got, ref, atol=1e-4) and torch.allclose(step, ref, atol=1e-4)
    flat = state if isinstance(state, tuple) else (state,)
    flat_ref = ref_state if isinstance(ref_state, tuple) else (ref_state,)
    assert all(torch.allclose(a.float(), b.float(), atol=1e-5)
               for a, b in zip(flat, flat_ref, strict=True))


def test_ngram_index_finds_every_context_of_a_real_corpus():
    """The kernel's hash index, on tens of thousands of contexts (probing chains included),
    gives the distributions numpy's binary search gives, for seen and unseen contexts."""
    text = CORPUS.read_text(encoding="utf-8")[:40_000]
    m = NGram(NGramConfig(order=7)).fit(encode_messages(text.split("\n\n"))).eval()
    assert len(m.tables().ctx) > 20_000
    ids = torch.tensor([[256, *text[5_000:5_300].encode(), *"Zyzzyva 😀 qq".encode()]])
    got, _ = run(runner(m), ids)
    assert torch.allclose(got, reference(m, ids)[0], atol=1e-5)


def test_scores_agree_with_and_without_kernels(kernels_off, monkeypatch):
    m = Mix([half_gru(), make("ngram")], [0.4, 0.6]).eval()
    assert isinstance(runner(m), TorchRunner)
    ref = score(m, "Wherefore art thou, Ω?")
    monkeypatch.delenv("LM_NATIVE")
    native._load.cache_clear()
    assert isinstance(runner(ready(m)), MixRunner)  # made ready again: now on the kernels
    assert score(m, "Wherefore art thou, Ω?").nats == pytest.approx(ref.nats, abs=1e-3)


def test_a_copy_never_reads_the_original_s_memory():
    """A runner holds its own tables: a deep copy of a model (fine-tuning starts from one)
    carries copies of them, and reads nothing of the original once that is gone."""
    m = Mix([half_gru(), make("ngram")], [0.4, 0.6]).eval()
    want, _ = run(runner(m), IDS[:1])
    twin = copy.deepcopy(m)
    del m
    gc.collect()
    for _ in range(3):  # whatever reuses the freed memory, the copy reads its own
        torch.randn(1 << 20)
        got, _ = run(runner(twin), IDS[:1])
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("how", ["LM_NATIVE=0", "not built"])
def test_without_kernels_the_models_still_answer(how, monkeypatch, kernels_off):
    """Switched off, or installed without a compiler: no kernels, and scoring and sampling
    run on the torch path."""
    if how == "not built":
        monkeypatch.delenv("LM_NATIVE")
        monkeypatch.setattr(native, "library_file", lambda: None)
        native._load.cache_clear()
    assert not native.available()
    m = make("mix")
    assert isinstance(runner(m), TorchRunner)
    assert lm.score(m, "To be").nats > 0
    assert len(lm.sample(m, lm.SampleConfig(seed=1, max_chars=5))) == 1
