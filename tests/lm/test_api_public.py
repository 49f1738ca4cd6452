"""What `bot` needs from lm, as lm's public functions: recounting, a mixture's parts, memory
accounting and the batch size the kernels like."""

from __future__ import annotations

import numpy as np
import pytest

import lm
from lm.models import Mix, NGram, NGramConfig
from tests.lm.conftest import TEXT, make

NEW = ["a fresh message", "and another one, with a twist", "a fresh start"] * 20
OLD = TEXT.split("\n")[0]  # counted by make("ngram"), not in NEW


def test_recount_replaces_the_counted_text_and_shares_the_rest():
    mix = make("mix")
    before = lm.score(mix, OLD).nats
    again = lm.recount(mix, NEW)
    gru, ngram = lm.parts(again)
    assert again is not mix and gru is lm.parts(mix)[0]
    assert again.config.weights == mix.config.weights and again.config.edges == mix.config.edges
    fresh = NGram(ngram.config).fit_messages(NEW)
    for text in (OLD, NEW[1], "unseen words"):
        assert lm.score(ngram, text).nats == pytest.approx(lm.score(fresh, text).nats)
    assert lm.score(again, OLD).nats > before + 10  # the old text is no longer counted
    assert lm.score(mix, OLD).nats == before  # the model recounted is left as it was


def test_recount_on_nothing_leaves_an_ngram_that_counted_nothing(tmp_path):
    mix = make("mix")
    empty = lm.recount(mix, [])
    ngram = lm.parts(empty)[1]
    assert lm.score(ngram, OLD).nats > lm.score(lm.parts(mix)[1], OLD).nats + 10
    again = lm.load_checkpoint(lm.save(empty, tmp_path / "empty.pt"))
    assert lm.score(again, OLD).nats == pytest.approx(lm.score(empty, OLD).nats)


def test_recount_counts_each_ngram_config_once():
    order4 = NGram(NGramConfig(order=4)).fit_messages(TEXT.split("\n"))
    order3 = NGram(NGramConfig(order=3)).fit_messages(TEXT.split("\n"))
    twin = NGram(NGramConfig(order=4)).fit_messages(["something else"] * 30)
    parts = lm.parts(lm.recount(Mix([order4, order3, twin], [0.5, 0.25, 0.25]), NEW))
    assert parts[0] is parts[2] and parts[1] is not parts[0]
    assert [p.config.order for p in parts] == [4, 3, 4]


@pytest.mark.parametrize("kind", ["uniform", "gru", "lstm"])
def test_a_model_without_counts_is_returned_as_it_is(kind):
    model = make(kind)
    assert lm.recount(model, NEW) is model
    assert lm.parts(model) == ()


def test_component_finds_a_part_by_kind_or_family():
    mix = make("mix")
    assert lm.component(mix, "rnn") is lm.parts(mix)[0]
    assert lm.component(mix, "ngram") is lm.parts(mix)[1]
    gru = make("gru")
    assert lm.component(gru, "ngram") is gru  # not made of parts: itself
    with pytest.raises(lm.CheckpointError, match="no lstm part"):
        lm.component(mix, "lstm")


def test_memory_bytes_counts_each_block_once():
    gru = make("gru")
    own = sum(t.nbytes for t in [*gru.parameters(), *gru.buffers()])
    base = lm.memory_bytes(gru)
    assert base >= own
    gru.alias = (gru.head.weight[:3], {"same": gru.embed.weight.detach()})  # views: no new memory
    assert lm.memory_bytes(gru) == base
    gru.table = [np.zeros(1000)]  # a new block, inside a list
    assert lm.memory_bytes(gru) == base + 8000
    assert lm.memory_bytes(None) == 0


def test_memory_bytes_of_a_mix_holds_its_parts_and_their_tables():
    mix = make("mix")
    lm.score(mix, "tables are built on first use")
    parts = [lm.memory_bytes(p) for p in lm.parts(mix)]
    assert lm.memory_bytes(mix) >= sum(parts)
    ngram = lm.parts(mix)[1]
    assert parts[1] > sum(t.nbytes for t in ngram.buffers())  # its count tables count too


def test_max_batch_requests_sample_together_as_they_would_alone():
    model = make("gru")
    requests = [(lm.SampleConfig(max_chars=12, seed=seed), "To") for seed in range(lm.MAX_BATCH)]
    together = lm.sample_many(model, requests)
    assert together == [lm.sample(model, cfg, prefix) for cfg, prefix in requests]


def test_public_names_are_all_exported():
    for name in lm.__all__:
        assert hasattr(lm, name), name
