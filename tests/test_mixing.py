import numpy as np
import pytest

from kinfuse_ray.mixing import BLOCK, FactStream, Stream

pytestmark = pytest.mark.unit

SEQ_LEN = 128


def stream(bundle, ratio, seed=0, n_sequences=1600, share=0.5):
    return Stream(
        bundle.corpus,
        bundle.general_facts,
        bundle.domain_facts,
        ratio=ratio,
        n_sequences=n_sequences,
        seq_len=SEQ_LEN,
        fact_share=share,
        seed=seed,
    )


@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.3, 0.77, 0.95])
def test_domain_share_is_exact(bundle, ratio):
    s = stream(bundle, ratio)
    assert s.n_tokens == 1600 * SEQ_LEN
    assert abs(s.domain_share - ratio) < 1 / 1600
    assert s.is_domain().mean() == s.domain_share
    # The domain sequences really hold domain text: only they lack corpus tokens entirely.
    rows = s.rows(0, s.n_sequences)
    domain_vocab = {int(t) for fact in bundle.domain_facts for r in fact for t in r}
    if ratio:
        assert set(np.unique(rows[s.is_domain()])) <= domain_vocab


def test_domain_sequences_are_spread_evenly_over_the_run():
    """Every block of sequences holds its exact share, so no stretch of training is all domain."""
    facts = [[np.array([1, 2, 3], np.int32)]]
    s = Stream(
        np.arange(100, 200, dtype=np.int32), facts, facts,
        ratio=0.3, n_sequences=3 * BLOCK, seq_len=8, fact_share=0.5, seed=0,
    )  # fmt: skip
    per_block = s.is_domain().reshape(3, BLOCK).mean(axis=1)
    assert np.allclose(per_block, 0.3, atol=1 / BLOCK)


def test_any_rows_read_alone_equal_the_same_rows_read_in_one_pass(bundle):
    """Random access is what resumed runs and data-parallel ranks rely on."""
    whole = stream(bundle, 0.4).rows(0, 1600)
    for start, stop in [(0, 1), (7, 300), (799, 801), (1599, 1600), (123, 1600)]:
        assert np.array_equal(stream(bundle, 0.4).rows(start, stop), whole[start:stop])


def test_domain_rows_are_the_fact_stream_back_to_back(bundle):
    s = stream(bundle, 0.4, seed=3)
    domain = s.rows(0, s.n_sequences)[s.is_domain()].ravel()
    assert np.array_equal(domain, FactStream(bundle.domain_facts, [3, 1]).tokens(0, domain.size))


def test_fact_stream_epochs_hold_every_fact_once_and_rotate_paraphrases(bundle):
    facts = bundle.domain_facts
    fs = FactStream(facts, [0, 1])
    rendered = [fs.sentences(e * fs.n, fs.n) for e in range(6)]
    by_fact = {tuple(r): i for i, fact in enumerate(facts) for r in fact}
    for epoch in rendered:
        assert sorted(by_fact[tuple(r)] for r in epoch) == list(range(len(facts)))
    # Closed-form epoch offsets agree with the renderings' lengths; tokens by offset too.
    lengths = [sum(len(r) for r in epoch) for epoch in rendered]
    assert [fs.epoch_start(e) for e in range(7)] == [0, *np.cumsum(lengths).tolist()]
    flat = np.concatenate([r for epoch in rendered for r in epoch])
    for start, stop in [(0, 5), (13, 4000), (fs.epoch_start(3) - 2, fs.epoch_start(5) + 9)]:
        assert np.array_equal(fs.tokens(start, stop), flat[start:stop])
    # A fact with three paraphrases shows each of them once every three epochs.
    seen = {tuple(r) for epoch in rendered[:3] for r in epoch}
    assert all(tuple(r) in seen for r in facts[0])


def test_exposures_match_the_budget(bundle):
    s = stream(bundle, 0.4)
    expected = s.domain_share * s.n_tokens / bundle.mean_fact_tokens / len(bundle.domain_facts)
    assert s.domain_exposures == pytest.approx(expected, rel=0.05)
    # General facts are rehearsed in the rest of the stream at `general_fact_share` of its tokens.
    general_tokens = np.mean([len(r) for fact in bundle.general_facts for r in fact])
    expected_general = 0.6 * 0.5 * s.n_tokens / general_tokens / len(bundle.general_facts)
    assert s.general_exposures == pytest.approx(expected_general, rel=0.05)


def test_general_facts_hold_their_share_of_the_general_text():
    rng = np.random.default_rng(0)
    facts = [[rng.integers(0, 50, n, dtype=np.int32) for n in (6, 9)] for _ in range(20)]
    corpus = np.arange(1000, 6000, dtype=np.int32)  # ids no fact uses
    s = Stream(
        corpus, facts, facts, ratio=0.25, n_sequences=2000, seq_len=32, fact_share=0.3, seed=1
    )
    general = s.rows(0, 2000)[~s.is_domain()]
    assert (general < 1000).mean() == pytest.approx(0.3, abs=0.01)
    runs = general[general >= 1000]
    assert (np.diff(runs) == 1).mean() > 0.95  # corpus text stays in order between paragraphs


def test_memory_does_not_grow_with_the_budget(bundle):
    """A budget of ten billion tokens costs no more memory to set up and read from than one of
    1,600 sequences (peak Python allocations, measured side by side)."""
    import tracemalloc

    def peak_bytes(n_sequences: int) -> int:
        tracemalloc.start()
        made = stream(bundle, 0.5, n_sequences=n_sequences)
        made.rows(made.n_sequences - 8, made.n_sequences)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, huge = peak_bytes(1600), peak_bytes(10_000_000_000 // SEQ_LEN)
    assert huge < 2 * small + (1 << 20), (small, huge)


def test_no_domain_exposure_at_ratio_zero(bundle):
    s = stream(bundle, 0.0)
    assert s.domain_exposures == 0 and not s.is_domain().any()


def test_same_seed_same_stream_other_seed_other_stream(bundle):
    a, b, c = (stream(bundle, 0.5, seed=seed).rows(0, 1600) for seed in (3, 3, 4))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_ratio_out_of_range_is_refused(bundle):
    with pytest.raises(ValueError, match="ratio"):
        stream(bundle, 1.0)
