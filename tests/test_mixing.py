import numpy as np
import pytest

from kinfuse_ray.mixing import build_stream


def stream(bundle, ratio, seed=0, tokens=200_000, share=0.5):
    return build_stream(
        bundle.corpus, bundle.general_facts, bundle.domain_facts, ratio, tokens, 128, share, seed
    )


@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.3, 0.77, 0.95])
def test_domain_share_is_exact(bundle, ratio):
    s = stream(bundle, ratio)
    assert s.n_tokens >= 200_000
    assert abs(s.domain_share - ratio) < 0.01
    # The domain sequences really hold domain text: only they lack corpus tokens entirely.
    domain_vocab = {int(t) for fact in bundle.domain_facts for r in fact for t in r}
    if ratio:
        assert set(np.unique(s.sequences[s.is_domain])) <= domain_vocab


def test_exposures_match_the_budget(bundle):
    s = stream(bundle, 0.4)
    expected = 0.4 * s.n_tokens / bundle.mean_fact_tokens / len(bundle.domain_facts)
    assert s.domain_exposures == pytest.approx(expected, rel=0.05)
    # General facts are rehearsed in the rest of the stream at `general_fact_share` of its tokens.
    general_tokens = np.mean([len(r) for fact in bundle.general_facts for r in fact])
    expected_general = 0.6 * 0.5 * s.n_tokens / general_tokens / len(bundle.general_facts)
    assert s.general_exposures == pytest.approx(expected_general, rel=0.05)


def test_no_domain_exposure_at_ratio_zero(bundle):
    s = stream(bundle, 0.0)
    assert s.domain_exposures == 0 and not s.is_domain.any()


def test_same_seed_same_stream_other_seed_other_stream(bundle):
    a, b, c = stream(bundle, 0.5, seed=3), stream(bundle, 0.5, seed=3), stream(bundle, 0.5, seed=4)
    assert np.array_equal(a.sequences, b.sequences) and np.array_equal(a.is_domain, b.is_domain)
    assert not np.array_equal(a.sequences, c.sequences)


def test_ratio_out_of_range_is_refused(bundle):
    with pytest.raises(ValueError, match="ratio"):
        stream(bundle, 1.0)
