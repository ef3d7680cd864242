import numpy as np
import pytest

from kinfuse_ray.collapse import Outcome, best_safe_ratio, detect_collapse

pytestmark = pytest.mark.unit

RATIOS = np.array([0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95])


def cliff(r_star, plateau=0.8, sharpness=12.0):
    """Retention with a sharp drop centred on r_star (in log r)."""
    return plateau / (1 + np.exp(sharpness * (np.log(RATIOS) - np.log(r_star))))


@pytest.mark.parametrize("r_star", [0.3, 0.5, 0.7, 0.85])
def test_finds_a_known_cliff_inside_its_bracket(r_star):
    found = detect_collapse(RATIOS, cliff(r_star))
    assert found.outcome is Outcome.collapsed
    lo, hi = found.bracket
    assert lo < r_star <= hi and lo <= found.ratio <= hi
    assert found.ratio == pytest.approx(r_star, rel=0.15)


def test_order_of_trials_does_not_matter():
    y = cliff(0.5)
    perm = np.random.default_rng(0).permutation(len(RATIOS))
    assert detect_collapse(RATIOS[perm], y[perm]) == detect_collapse(RATIOS, y)


def test_flat_curve_is_no_collapse_not_an_invented_one():
    noisy_plateau = 0.8 + np.random.default_rng(1).normal(0, 0.03, len(RATIOS))
    found = detect_collapse(RATIOS, noisy_plateau)
    assert found.outcome is Outcome.no_collapse and found.ratio is None
    assert found.bracket == (0.95, 1.0)


def test_collapse_below_the_range_and_no_plateau():
    y = np.array([0.8, 0.1, 0.05, 0.0, 0.0, 0.0, 0.0])
    assert detect_collapse(RATIOS, y, plateau_points=1).outcome is Outcome.collapsed
    already_low = np.array([0.1, 0.8, 0.7, 0.05, 0.0, 0.0, 0.0])  # plateau 0.45: 0.1 is below half
    assert detect_collapse(RATIOS, already_low).outcome is Outcome.below_range
    assert detect_collapse(RATIOS, np.zeros(len(RATIOS))).outcome is Outcome.no_plateau


def test_threshold_moves_r_star_monotonically():
    y = 0.8 * np.clip(1.2 - RATIOS, 0, 1)  # a gradual slope, where the threshold matters
    r_low = detect_collapse(RATIOS, y, threshold=0.3).ratio
    r_high = detect_collapse(RATIOS, y, threshold=0.7).ratio
    assert r_high < r_low


def test_best_safe_ratio_stops_at_the_first_drop():
    y = np.array([0.8, 0.79, 0.78, 0.7, 0.3, 0.79, 0.1])  # a recovery after a drop does not count
    assert best_safe_ratio(RATIOS, y, plateau=0.8, tolerance=0.9) == 0.4
    assert best_safe_ratio(RATIOS, y, plateau=0.8, tolerance=0.5) == 0.6


def test_the_base_models_retention_is_the_plateau_when_given():
    """A coarse pass that skips low ratios sees a lower 'plateau' than the base model had:
    with the base model's retention the collapse is found where it is."""
    ratios, y = [0.8, 0.9, 0.95, 0.98], [0.7, 0.55, 0.4, 0.2]
    own = detect_collapse(ratios, y)  # plateau: median of 0.7, 0.55
    base = detect_collapse(ratios, y, plateau=1.0)
    assert own.plateau == pytest.approx(0.625) and base.plateau == 1.0
    assert base.ratio < own.ratio and base.bracket == (0.9, 0.95)


def test_acquisition_threshold_is_the_first_crossing_interpolated_in_log_r():
    from kinfuse_ray.collapse import detect_acquisition

    ratios = [0.1, 0.3, 0.5, 0.9]
    r = detect_acquisition(ratios, [0.05, 0.1, 0.3, 0.5], target=0.2)
    assert 0.3 < r < 0.5
    assert r == pytest.approx(np.exp(np.log(0.3) + 0.5 * np.log(0.5 / 0.3)))
    assert detect_acquisition(ratios, [0.05, 0.1, 0.1, 0.1], target=0.2) is None  # never
    assert detect_acquisition(ratios, [0.3, 0.4, 0.5, 0.6], target=0.2) is None  # below range
