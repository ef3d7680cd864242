"""The decision from paired draws (kinfuse_ray/decision.py), on draws whose answer is known."""

import numpy as np
import pytest
from scipy.special import expit, logit

from kinfuse_ray.decision import DecisionCurves, decide

pytestmark = pytest.mark.unit

RNG = np.random.default_rng(0)


def draws(keep: float, learn: float, sd: float = 0.3, n: int = 4000, rho: float = 0.0):
    """Paired logit draws centred on the ratios `keep` and `learn`, correlated by `rho`."""
    u, v = RNG.standard_normal((2, n))
    return logit(keep) + sd * u, logit(learn) + sd * (rho * u + np.sqrt(1 - rho**2) * v)


def test_windows_probabilities_and_rules_on_known_normal_draws():
    keep, learn = draws(0.8, 0.3)
    d, curves = decide(keep, learn, 0.9)
    z = 1.2816 * 0.3  # the normal's 90th percentile, in logits
    assert d.best_window == pytest.approx((0.3, 0.8), abs=0.01)
    assert d.window == pytest.approx((expit(logit(0.3) + z), expit(logit(0.8) - z)), abs=0.01)
    assert d.ratio == pytest.approx(d.window[1]) and d.p_keep == pytest.approx(0.9, abs=0.01)
    assert d.keep_width_logits == pytest.approx(2 * 1.645 * 0.3, rel=0.05)
    assert d.informative and d.learns and not d.window_empty and d.c_star > 0.99
    balanced, _ = decide(keep, learn, 0.9, "balanced")
    first, _ = decide(keep, learn, 0.9, "domain_first")
    assert first.ratio == pytest.approx(d.window[0])
    assert first.ratio < balanced.ratio < d.ratio
    assert np.all(np.diff(curves.p_keep) <= 0) and np.all(np.diff(curves.p_learn) >= 0)


def test_both_is_computed_from_the_pairs_not_assumed_independent():
    """Sides tied by a shared deviation (rho = -1: a size that keeps longer also learns
    earlier) make P(both) exceed the product of the marginals where they overlap."""
    keep, learn = draws(0.5, 0.5, sd=0.5, rho=-1.0)
    curves = DecisionCurves.from_draws(keep, learn)
    mid = np.argmin(np.abs(curves.grid - 0.5))
    assert curves.p_both[mid] == pytest.approx(
        min(curves.p_keep[mid], curves.p_learn[mid]), abs=0.02
    )
    assert curves.p_both[mid] > curves.p_keep[mid] * curves.p_learn[mid] + 0.2


def test_empty_only_when_the_edges_cross_and_not_informative_when_unresolved():
    keep, learn = draws(0.4, 0.6, sd=0.1)  # learning needs more than keeping allows: clear
    d, _ = decide(keep, learn, 0.9)
    assert d.window_empty and d.window[0] > d.window[1] and d.c_star < 0.05
    assert d.informative and d.learns is False  # a clear "no": an answer, flagged
    keep, learn = draws(0.5, 0.5, sd=0.3)  # a coin flip whether any ratio does both
    d, _ = decide(keep, learn, 0.9)
    assert not d.informative and any("c*" in r for r in d.reasons)
    keep, learn = draws(0.8, 0.1, sd=1.0)  # the keep ratio known within a factor e^3.3
    d, _ = decide(keep, learn, 0.9)
    assert not d.informative and any("width" in r for r in d.reasons)


def test_without_a_learning_side_only_retention_first_answers():
    keep, _ = draws(0.8, 0.3)
    d, curves = decide(keep, None, 0.9)
    assert d.ratio is not None and d.window is None and d.learns is None and curves.p_learn is None
    assert decide(keep, None, 0.9, "balanced")[0].ratio is None
    with pytest.raises(ValueError, match="unknown rule"):
        decide(keep, None, 0.9, "greedy")
