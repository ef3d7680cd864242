"""The law on synthetic ladders drawn from a known bounded law, with known noise."""

import json
import math
import re
from dataclasses import replace

import numpy as np
import pytest
from scipy.special import expit, logit

from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.law import InfusionLaw, SizeCurve, point_law, select_law
from kinfuse_ray.presentation import describe_law, describe_prediction, describe_recommendation

pytestmark = pytest.mark.unit

RATIOS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998)
SIZES = (1e4, 3e4, 1e5, 3e5, 1e6, 3e6)
N0 = 1e5


def true_rstar(n, b=0.6, eta0=2.5, r_max=1.0):
    """r* = r_max / (1 + C N^-b): the power_n (r_max = 1) and power_n_sat forms."""
    return r_max * expit(eta0 + b * np.log(n / N0))


def true_acquisition_threshold(n, a0=0.3, b_a=-0.5):
    return expit(logit(a0) + b_a * np.log(n / N0))


def curve(name, n, rstar, rng, seeds=2, trial_sd=0.03, k=3.0, floor=0.25, a_star=0.3, d=1e5,
          ceiling=0.5):  # fmt: skip
    """Retention: plateau 1, falling through 0.5 at r* to `floor`; acquisition: `ceiling` x a
    sigmoid that passes half of it (with the default ceiling, 0.25: the default target) at
    `a_star`."""
    ratios, retention, acquisition = [], [], []
    offset = logit((0.5 - floor) / (1 - floor))
    for _ in range(seeds):
        for r in RATIOS:
            y = floor + (1 - floor) * expit(k * (logit(rstar) - logit(r)) + offset)
            ratios.append(r)
            retention.append(float(min(1.0, y + rng.normal(0, trial_sd))))  # scores are <= 1
            acquisition.append(
                float(ceiling * expit(2 * (logit(r) - logit(a_star))) + rng.normal(0, 0.01))
            )
    return SizeCurve(name, float(n), d, tuple(ratios), tuple(retention), tuple(acquisition), 1.0)


def true_retention(r, n, k=3.0, floor=0.25):
    """The noise-free retention curve `curve` draws from, at the law's r*(n)."""
    offset = logit((0.5 - floor) / (1 - floor))
    return floor + (1 - floor) * expit(k * (logit(true_rstar(n)) - logit(r)) + offset)


def true_ratio_keeping(share, n, k=3.0, floor=0.25):
    """The ratio at which `true_retention` is `share` of the plateau (1)."""
    offset = logit((0.5 - floor) / (1 - floor))
    return expit(logit(true_rstar(n)) - (logit((share - floor) / (1 - floor)) - offset) / k)


def ladder(rng, sizes=SIZES, size_sd=0.15, a_law=true_acquisition_threshold,
           a_ceiling=lambda n: 0.5, **law):  # fmt: skip
    """A ladder whose sizes deviate from the law by N(0, size_sd) in logit r*."""
    out = []
    for n in sizes:
        z = logit(true_rstar(n, **law)) + rng.normal(0, size_sd)
        out.append(curve(f"n{int(n)}", n, float(expit(z)), rng, a_star=float(a_law(n)),
                         ceiling=float(a_ceiling(n))))  # fmt: skip
    return out


def test_the_joint_fit_recovers_a_known_bounded_law():
    law = select_law(ladder(np.random.default_rng(0), size_sd=0.02), "power_n", n_bootstrap=100)[0]
    assert law.parameters["b_n"] == pytest.approx(0.6, abs=0.08)
    lo, hi = law.parameter_intervals()["b_n"]
    assert lo < 0.6 < hi
    for n in (2e5, 1e7):
        assert law.predict_point(n) == pytest.approx(true_rstar(n), abs=0.01)


def test_the_saturating_form_recovers_its_ceiling():
    curves = ladder(np.random.default_rng(1), size_sd=0.02, b=0.8, eta0=1.0, r_max=0.9)
    law = InfusionLaw.fit(curves, form="power_n_sat", n_bootstrap=50)
    assert law.parameters["r_max"] == pytest.approx(0.9, abs=0.03)
    # Its repr names the form and parameters, not the trials and draws it holds.
    assert repr(law).startswith(
        f"InfusionLaw(form='power_n_sat', method='joint', sizes={len(curves)}"
    )
    assert len(repr(law)) < 200


def test_predictions_stay_inside_zero_one_however_far_out():
    """r* and its interval stay in (0, 1) anywhere; 10x beyond the rungs (1e4-3e6) warns, and
    100x or more gives no number to use: NOT INFORMATIVE, saying how far out it is."""
    law = InfusionLaw.fit(ladder(np.random.default_rng(2)), n_bootstrap=50)
    for n in (1e2, 1e8, 1e9, 1e12):
        p = law.predict(n)
        assert 0 < p.collapse_ratio < 1 and 0 < p.interval[0] <= p.interval[1] <= 1
        assert 0 < p.decision.ratio < 1
        assert any("extrapolating" in w for w in p.warnings)
        far = n <= 1e2 or n >= 3e8
        assert (p.recommended_ratio is None) == far
        assert any("x beyond the fitted" in r for r in p.decision.reasons) == far
    head, first, *rest = describe_recommendation(law.predict(1e12), "far").splitlines()
    assert first.strip().startswith("warning: extrapolating") and "NOT INFORMATIVE" in "".join(rest)


def test_prediction_intervals_cover_new_sizes_near_the_nominal_rate():
    """Many ladders drawn with known size-level and trial-level noise; each predicts a new size
    (drawn the same way) at 90%: the share covered lands near 90%."""
    rng = np.random.default_rng(3)
    covered, widths = [], []
    for _ in range(40):
        law = InfusionLaw.fit(ladder(rng), n_bootstrap=100, seed=int(rng.integers(1 << 30)))
        n_new = 1e7
        truth = expit(logit(true_rstar(n_new)) + rng.normal(0, 0.15))
        lo, hi = law.predict(n_new).interval
        covered.append(lo <= truth <= hi)
        widths.append(hi - lo)
    assert 0.78 <= np.mean(covered) <= 1.0, np.mean(covered)
    assert np.median(widths) < 0.05  # informative, not everything-covers


def test_leave_one_size_out_beats_the_nearest_size_on_a_clean_law():
    law = select_law(ladder(np.random.default_rng(4), size_sd=0.05), "power_n", n_bootstrap=100)[0]
    summary = law.held_out_summary
    assert summary["sizes"] == len(SIZES)
    assert summary["median_abs_log_error"] < summary["baseline_median_abs_log_error"]


def test_a_finer_yardstick_reads_held_out_values_and_never_enters_the_fits():
    """leave_one_size_out(yardstick=...): a held-out size's r* and keep ratio are read off its
    curve measured at more ratios, the fits see only the coarse grid, and where the curve is
    the law's own (no noise, no scatter) the finer grid reads the keep ratio closer to its truth
    than the coarse grid's interpolation does."""
    from kinfuse_ray.law import FitSettings, leave_one_size_out

    rng = np.random.default_rng(5)
    fine = [curve(f"n{int(n)}", n, float(true_rstar(n)), rng, seeds=1, trial_sd=0.0)
            for n in SIZES]  # fmt: skip

    def at_every_third_ratio(c: SizeCurve) -> SizeCurve:
        kept = [t for t in zip(c.ratios, c.retention, c.acquisition, strict=True)
                if t[0] in RATIOS[::3]]  # fmt: skip
        ratios, retention, acquisition = zip(*kept, strict=True)
        return replace(c, ratios=ratios, retention=retention, acquisition=acquisition)

    coarse = [at_every_third_ratio(c) for c in fine]
    settings = FitSettings(form="power_n", n_bootstrap=50)
    plain = leave_one_size_out(coarse, settings)
    read = leave_one_size_out(coarse, settings, yardstick=fine)
    assert [h.predicted for h in read] == [h.predicted for h in plain]  # the same fits
    by_name = {c.name: c for c in fine}
    for h in read:
        assert h.measured == pytest.approx(by_name[h.size].collapse(0.5).ratio)
    closer = [
        abs(logit(f.keep.measured) - logit(true_ratio_keeping(0.9, f.n_params)))
        < abs(logit(c.keep.measured) - logit(true_ratio_keeping(0.9, c.n_params)))
        for f, c in zip(read, plain, strict=True) if f.keep and c.keep
    ]  # fmt: skip
    assert len(closer) >= 4 and all(closer)


def test_the_keep_ratio_is_read_where_a_falling_sigmoid_is_straight():
    """keep_crossing interpolates the logit of retention's share against logit r: exact on a
    sigmoid's shoulder, where the detector's rule (straight in share against log r) reads the
    crossing early on a coarse grid."""
    from kinfuse_ray.law.select import keep_crossing

    rstar, k, ratios = 0.8, 2.0, (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
    shares = tuple(float(expit(k * (logit(rstar) - logit(r)))) for r in ratios)
    c = SizeCurve("n", 1e5, 1e5, ratios, shares, (0.0,) * len(ratios), 1.0)
    truth = logit(rstar) - logit(0.9) / k
    assert logit(keep_crossing(c, 0.9)) == pytest.approx(truth, abs=1e-9)
    assert logit(c.collapse(0.9).ratio) < truth - 0.05


def _held(measured: float, predicted: float, interval: tuple[float, float]):
    from kinfuse_ray.law import HeldOut, HeldValue

    keep = HeldValue(measured, predicted, interval, predicted)
    return HeldOut("n", 1e5, "power_n", 0.5, 0.5, (0.4, 0.6), 0.5, keep)


def test_the_keep_widening_is_the_conformal_quantile_of_held_out_misses():
    """keep_widening: each fold's error over its interval's half-width on the error's side (in
    logits); the ceil((n + 1) 0.9)-th smallest; never below 1."""
    from kinfuse_ray.law.checks import keep_widening

    p, lo, hi = 0.5, expit(-1.0), expit(0.5)  # half-widths 1 below, 0.5 above the median
    inside = [_held(expit(x), p, (lo, hi)) for x in (-0.5, 0.2, -0.9, 0.0)]
    assert keep_widening(tuple(inside), 0.9) == 1.0  # covered: the law's own interval stays
    below = _held(expit(-2.0), p, (lo, hi))  # 2 logits below: twice the lower half-width
    above = _held(expit(1.5), p, (lo, hi))  # 1.5 above: three times the upper half-width
    assert keep_widening((*inside, below), 0.9) == pytest.approx(2.0)
    assert keep_widening((*inside, below, above), 0.9) == pytest.approx(3.0)
    many = tuple(inside * 5) + (below, above)  # 22 folds: the 21st smallest, 2.0
    assert keep_widening(many, 0.9) == pytest.approx(2.0)
    assert keep_widening((), 0.9) == 1.0


def test_a_widened_law_spreads_every_keep_ratio_about_its_median_and_says_so():
    """The widening scales the keep ratio's draws about their median at every tolerance (the
    interval, P(keeps) and the decision with it); r* is untouched; the law's description says
    by how much; law.json keeps it."""
    fitted = select_law(ladder(np.random.default_rng(6)), "power_n", n_bootstrap=100)[0]
    law, wide = replace(fitted, keep_widening=1.0), replace(fitted, keep_widening=2.0)
    p, q = law.predict(1e7), wide.predict(1e7)
    assert q.interval == p.interval
    for a, b in zip(p.tolerances, q.tolerances, strict=True):
        assert logit(b.ratio) == pytest.approx(logit(a.ratio), abs=1e-9)
        width = logit(a.interval[1]) - logit(a.interval[0])
        assert logit(b.interval[1]) - logit(b.interval[0]) == pytest.approx(2 * width, rel=0.02)
        assert b.bound < a.bound  # a wider spread keeps its confidence at a smaller ratio
    assert "widened x2.00" in describe_law(wide) and "widened" not in describe_law(law)
    assert InfusionLaw.from_dict(wide.to_dict()).keep_widening == 2.0


def test_a_ladder_whose_shoulders_scatter_gets_its_keep_ratio_widened():
    """Sizes whose curves differ in steepness (the keep ratio's shoulder moves apart from r*):
    the law's fixed shape puts held-out keep ratios outside its intervals, and select_law
    widens them; the same ladder with one steepness is left as it is."""

    def shouldered(k_of):
        rng = np.random.default_rng(8)
        return [curve(f"n{int(n)}", n, float(true_rstar(n)), rng, k=k_of(i), trial_sd=0.01)
                for i, n in enumerate(SIZES)]  # fmt: skip

    steep = (1.5, 5.0, 2.0, 6.0, 1.5, 5.0)
    scattered = select_law(shouldered(lambda i: steep[i]), "power_n", n_bootstrap=100,
                           steepness="fixed")[0]  # fmt: skip
    one_shape = select_law(shouldered(lambda i: 3.0), "power_n", n_bootstrap=100,
                           steepness="fixed")[0]  # fmt: skip
    assert scattered.keep_widening > 1.5
    assert one_shape.keep_widening < scattered.keep_widening


def test_a_ladder_that_stops_moving_is_reported_and_still_forecast_at_the_target():
    curves = ladder(np.random.default_rng(5), size_sd=0.05, b=1.5, eta0=0.0, r_max=0.93)
    law = InfusionLaw.fit(curves, form="power_n", n_bootstrap=100)
    assert not law.top_slope.moving
    p = law.predict(1e8)
    # Evaluated at the queried size, not at the largest rung: the point is the law's there.
    assert p.collapse_ratio == law.predict_point(1e8) != pytest.approx(law.predict_point(SIZES[-1]))
    assert p.interval[0] < p.collapse_ratio < p.interval[1] < 1.0


def test_a_ladder_still_moving_is_reported_moving():
    law = InfusionLaw.fit(ladder(np.random.default_rng(6), size_sd=0.05), n_bootstrap=100)
    assert law.top_slope.moving


def test_the_window_and_recommendation_follow_the_tolerances():
    law = InfusionLaw.fit(ladder(np.random.default_rng(7), size_sd=0.05), n_bootstrap=100)
    p = law.predict(1e7)
    rows = {row.tolerance: row for row in p.tolerances}
    assert set(rows) == {0.95, 0.9, 0.8}
    assert (
        rows[0.95].ratio < rows[0.9].ratio < rows[0.8].ratio < p.collapse_ratio
    )  # stricter, lower
    # Against the true curve at 1e7: the ratio keeping 90% sits where the truth has it, and
    # the recommended one (that tolerance, at 90% confidence) keeps at least that.
    assert rows[0.9].ratio == pytest.approx(true_ratio_keeping(0.9, 1e7), rel=0.1)
    assert p.recommended_ratio == rows[0.9].bound < rows[0.9].ratio
    assert true_retention(p.recommended_ratio, 1e7) >= 0.9
    assert p.acquisition_threshold == pytest.approx(float(true_acquisition_threshold(1e7)), rel=0.5)
    d = p.decision
    assert not d.window_empty and d.informative and d.learns
    assert d.best_window[0] < d.window[0] < d.window[1] < d.best_window[1]  # stricter: narrower
    assert d.window[1] == pytest.approx(p.recommended_ratio)
    assert d.p_keep >= 0.9 - 0.01 and d.c_star >= 0.9
    # The rules, on the same draws: domain_first at the window's lower edge, balanced where
    # P_keep and P_learn are jointly highest, retention_first at the upper edge.
    balanced = law.predict(1e7, rule="balanced").decision
    first = law.predict(1e7, rule="domain_first").decision
    assert first.ratio == pytest.approx(d.window[0])
    assert first.ratio < balanced.ratio < p.recommended_ratio
    assert min(balanced.p_keep, balanced.p_learn) == pytest.approx(d.c_star, abs=0.02)


def test_the_printed_window_is_the_tested_one_and_empty_only_when_its_edges_cross():
    rng = np.random.default_rng(13)
    seen = set()
    for a_b in (-0.5, 0.4, 1.2):  # acquisition falling with N, then rising ever faster

        def a_law(n, a_b=a_b):
            return expit(logit(0.5) + a_b * np.log(n / N0))

        law = InfusionLaw.fit(ladder(rng, a_law=a_law, b=0.2), n_bootstrap=100)
        for n in (1e6, 1e7):
            p = law.predict(n)
            text, (lo, hi) = describe_prediction(p), p.decision.window
            assert ("EMPTY" in text) == (lo > hi) == p.window_empty
            shown = f"{lo:.3f}" in text and f"{hi:.3f}" in text
            assert shown, text
            seen.add(p.window_empty)
    assert seen == {True, False}


def test_a_recommendation_below_the_learning_threshold_says_so():
    """Acquisition that needs more of the mix as models grow meets a collapse point that barely
    moves: at the target, keeping retention means not learning the domain."""

    def rising(n):
        return expit(logit(0.5) + 1.2 * np.log(n / N0))

    curves = ladder(np.random.default_rng(8), size_sd=0.05, a_law=rising, b=0.2)
    law = InfusionLaw.fit(curves, n_bootstrap=100)
    p = law.predict(1e7)
    assert p.acquisition_threshold > p.recommended_ratio
    assert p.window_empty and p.decision.learns is False
    text = describe_prediction(p)
    assert "EMPTY" in text and "probably does not learn the domain" in text
    # No draw both keeps and learns anywhere: balanced has nothing to balance, domain_first
    # learns and gives up retention.
    assert p.decision.c_star == 0 and law.predict(1e7, rule="balanced").decision.ratio is None
    first = law.predict(1e7, rule="domain_first").decision
    assert first.ratio == pytest.approx(first.window[0])
    assert first.ratio > p.recommended_ratio


def test_the_learning_side_is_evaluated_at_the_target_size():
    """Acquisition falls with N here: the learning threshold forecast for a size 30x past the
    ladder lies below the largest rung's, as its own law says."""

    def falling(n):
        return true_acquisition_threshold(n, a0=0.6, b_a=-0.3)

    curves = ladder(np.random.default_rng(14), size_sd=0.05, a_law=falling)
    law = InfusionLaw.fit(curves, n_bootstrap=100)
    far, top = law.predict(1e8), law.predict(SIZES[-1])
    assert far.acquisition_threshold < top.acquisition_threshold
    assert far.acquisition_threshold == pytest.approx(float(falling(1e8)), rel=0.3)


def test_the_learning_side_is_a_curve_whose_ceiling_and_location_move_with_size():
    """Acquisition rises with the ratio to a ceiling that grows with N from a location that
    falls with N, as the quickstart's rungs do: the curve fitted to every trial recovers the
    ratio that learns at a size past the ladder, a size whose ceiling stays below the target
    learns at no ratio, and the learning exponent comes out negative, with its interval."""

    def location(n):
        return expit(logit(0.85) - 0.4 * np.log(n / N0))

    def ceiling(n):
        return expit(0.5 + 0.5 * np.log(n / N0))

    def truth(n):  # where ceiling x sigmoid(2 (logit r - logit location)) reaches 0.25
        return expit(logit(location(n)) + logit(0.25 / ceiling(n)) / 2)

    curves = ladder(np.random.default_rng(22), size_sd=0.05, a_law=location, a_ceiling=ceiling)
    law = InfusionLaw.fit(curves, n_bootstrap=100)
    assert law.predict(1e7).acquisition_threshold == pytest.approx(float(truth(1e7)), abs=0.05)
    assert ceiling(1e3) < 0.25 and law.at(1e3).probabilities(0.99)[1] < 0.1
    slope, (lo, hi) = law.acquisition.slope(0.9)
    assert lo < slope < hi < 0
    assert law.acquisition.thresholds.keys() == {c.name for c in curves}


def test_the_learn_ratio_is_as_unsure_as_its_held_out_sizes_were():
    """Each size that learns is held out and predicted by the curve refitted without it; a new
    size's learn ratio spreads as those misses did (90% of draws within 1.645 of their root
    mean square, in logits; more where the retention side's heavier-tailed deviation is mixed
    in), so a ladder whose sizes learn off the law's trend states a far wider learn ratio than
    one whose sizes follow it."""

    def width(scatter: float) -> tuple[float, float]:
        rng = np.random.default_rng(5)
        shifts = dict(zip(SIZES, rng.normal(0, scatter, len(SIZES)), strict=True))

        def location(n):
            return expit(logit(0.85) - 0.4 * np.log(n / N0) + shifts.get(n, 0.0))

        curves = ladder(rng, size_sd=0.05, a_law=location, a_ceiling=lambda n: 0.9)
        law = InfusionLaw.fit(curves, n_bootstrap=400)
        acquisition = law.acquisition
        assert len(acquisition.held_errors) == len(acquisition.thresholds) == len(SIZES)
        draws = law.at(5e5).learn  # (correlated with retention's draws: the same spread)
        lo, hi = np.quantile(draws, [0.05, 0.95])
        errors = np.asarray(acquisition.held_errors)
        return float(hi - lo), 2 * 1.645 * math.sqrt(float(errors @ errors) / len(errors))

    clean, scattered = width(0.0), width(0.6)
    for stated, from_errors in (clean, scattered):
        assert stated == pytest.approx(from_errors, rel=0.25)
    assert scattered[0] > 2 * clean[0]


def test_a_size_without_a_learning_threshold_in_its_grid_says_why():
    """The per-size table says why a rung shows no ratio where it starts to learn: its
    acquisition never reaches the target (capacity), or already does at the lowest ratio."""
    from kinfuse_ray.analysis import size_results
    from kinfuse_ray.config import EvalConfig

    never, early, learns = ladder(np.random.default_rng(23), sizes=SIZES[:3], a_law=lambda n: 0.6)
    never = replace(never, acquisition=tuple(0.4 * a for a in never.acquisition))
    early = replace(early, acquisition=tuple(0.3 + 0.5 * a for a in early.acquisition))
    rows = size_results([never, early, learns], EvalConfig(), acquisition_target=0.25)
    notes = [r.learning_note for r in rows]
    assert re.fullmatch(r"never learns: acquisition at most 0\.\d\d < 0\.25", notes[0])
    assert re.fullmatch(r"learns below the grid: acquisition 0\.\d\d at its lowest ratio", notes[1])
    assert notes[2] == "" and rows[2].acquisition_threshold is not None


def test_a_curve_that_steepens_with_size_gets_a_steepness_law():
    """Retention curves that fall more steeply at larger sizes (ln k rising 0.3 per e-fold of
    N): leave-one-size-out prefers a steepness that moves with N, which recovers the slope and
    puts the keep ratio 10x past the ladder where the truth has it; curves of one steepness keep
    a fixed one (the extra parameter must earn its place)."""

    def k(n):
        return float(3.0 * (n / N0) ** 0.3)

    rng = np.random.default_rng(24)
    curves = [curve(f"n{int(n)}", n, float(true_rstar(n)), rng, k=k(n)) for n in SIZES]
    law, _ = select_law(curves, "power_n", n_bootstrap=50)
    point = law.retention.point
    assert point.steepness == "moving" and point.shape[2] == pytest.approx(0.3, abs=0.1)
    truth = true_ratio_keeping(0.9, 3e7, k=k(3e7))
    assert law.predict(3e7).keep_row.ratio == pytest.approx(truth, rel=0.03)
    assert "curve steepness moves with size" in describe_law(law)
    assert InfusionLaw.from_dict(json.loads(json.dumps(law.to_dict()))).predict(3e7) == (
        law.predict(3e7)
    )
    fixed, _ = select_law(ladder(np.random.default_rng(24), size_sd=0.05), "power_n",
                          n_bootstrap=50)  # fmt: skip
    assert fixed.retention.point.steepness == "fixed"
    assert "curve steepness" not in describe_law(fixed)


def test_a_weak_ladder_is_not_informative():
    """A ladder as the old quickstart was: shallow curves (steepness 1), a floor that rises
    toward the threshold at large N, 60 four-way probes of noise, one seed. No single ratio is
    recommended, and the text says where the width comes from."""
    rng = np.random.default_rng(15)
    curves = []
    for i, n in enumerate(SIZES[:5]):
        rstar = float(expit(logit(true_rstar(n)) + rng.normal(0, 0.5)))
        floor = 0.2 + 0.06 * i
        offset = logit((0.5 - floor) / (1 - floor))
        ratios, retention = [], []
        for r in RATIOS:
            y = floor + (1 - floor) * expit(1.0 * (logit(rstar) - logit(r)) + offset)
            acc = 0.25 + 0.75 * y  # chance-corrected y as 4-way accuracy, then 60 probes
            hits = rng.binomial(60, acc) / 60
            ratios.append(r)
            retention.append(float((hits - 0.25) / 0.75))
        acq = tuple(float(0.5 * expit(2 * (logit(r) - logit(0.3)))) for r in ratios)
        curves.append(SizeCurve(f"n{i}", n, 1e5, tuple(ratios), tuple(retention), acq, 1.0))
    p = InfusionLaw.fit(curves, n_bootstrap=200).predict(1e7)
    assert not p.decision.informative
    # Nothing recommended: None in the API and in the JSON, whatever ratio the rule reached.
    assert p.decision.ratio is not None and p.recommended_ratio is None
    assert p.to_dict()["recommended_ratio"] is None
    text = describe_prediction(p)
    assert "NOT INFORMATIVE" in text and "recommended infusion ratio" not in text
    assert "held fixed" in text and "to narrow it" in text


def test_a_learning_side_not_found_says_which_way_helps():
    """Acquisition that stays below the target even at the top ratio needs more exposure (more
    tokens, fewer facts, larger rungs), not lower ratios; acquisition above it from the lowest
    ratio on needs lower ratios tried."""
    rng = np.random.default_rng(21)
    missing = InfusionLaw.fit(ladder(rng, a_law=lambda n: 0.9999), n_bootstrap=20).acquisition.note
    assert "stay below it even at the top ratio: more exposure" in missing
    assert "lower the ratios" not in missing
    early = InfusionLaw.fit(ladder(rng, a_law=lambda n: 1e-4), n_bootstrap=20).acquisition.note
    assert "learn it from their lowest ratio on: lower the ratios tried" in early
    assert "more exposure" not in early


def test_a_measured_rung_whose_window_is_empty_says_so_not_add_a_rung():
    """At a size the ladder measured, a not-informative forecast whose medians show no ratio
    doing both says that, and its advice for size scatter is more seeds there, not another rung
    near the target; at a new size the advice stays."""

    law = InfusionLaw.fit(ladder(np.random.default_rng(5), a_law=lambda n: 0.96), n_bootstrap=50)
    at_rung, new = law.predict(SIZES[2]), law.predict(2e5)
    assert (at_rung.rung, new.rung) == ("n100000", None)
    assert at_rung.decision.best_window[0] > at_rung.decision.best_window[1]  # learns > keeps

    def unsure(p):  # as a noisier ladder would leave it: not informative, size scatter first
        decision = replace(p.decision, informative=False, reasons=("width 2.5 logits > 2",))
        return replace(
            p, decision=decision, width_sources={"size scatter": 0.6, "law parameters": 0.2}
        )

    text = describe_prediction(unsure(at_rung))
    assert "no ratio does both at this size (n100000, a measured rung)" in text
    assert "more seeds of n100000" in text and "another rung near the target" not in text
    assert "another rung near the target" in describe_prediction(unsure(new))


def test_below_four_sizes_the_form_is_the_fixed_default():
    rng = np.random.default_rng(9)
    law, ranked = select_law(ladder(rng, sizes=SIZES[:3]), n_bootstrap=20)
    assert law.form == "power_n" and ranked == []
    law, ranked = select_law(ladder(rng), n_bootstrap=20)
    assert {c.form for c in ranked} == {"power_n", "power_n_sat"}  # one budget: no _nd forms
    assert law.form == ranked[0].form


def test_the_points_method_is_kept_for_comparison():
    curves = ladder(np.random.default_rng(10), size_sd=0.05)
    points = InfusionLaw.fit(curves, method="points", n_bootstrap=100)
    assert points.parameters["b_n"] == pytest.approx(0.6, abs=0.15)
    p = points.predict(1e6)
    # No retention curve: the decision keeps the collapse threshold itself, at 90% confidence.
    assert [row.tolerance for row in p.tolerances] == [points.settings.threshold] == [p.tolerance]
    assert p.recommended_ratio < true_rstar(1e6) < p.interval[1]


def test_too_few_sizes_and_an_unfitted_law_say_so():
    rng = np.random.default_rng(11)
    with pytest.raises(KinfuseError, match="3 or more sizes"):
        select_law(ladder(rng, sizes=SIZES[:2]), "power_n")[0]
    with pytest.raises(KinfuseError, match="unknown law form 'power_q'"):
        InfusionLaw.fit(ladder(rng), form="power_q")


def test_save_and_load_round_trip(tmp_path):
    law = select_law(ladder(np.random.default_rng(12)), "power_n", n_bootstrap=50)[0]
    law = law.sourced(study="s", sweep="s", commit="abc1234", data="0123456789ab")
    law.save(tmp_path / "law.json")
    again = InfusionLaw.load(tmp_path / "law.json")
    assert again.predict(3e6) == law.predict(3e6)
    # Where it came from travels with it; the measurements' digest is the same read back.
    assert again.source == {"study": "s", "sweep": "s", "commit": "abc1234",
                            "data": "0123456789ab"}  # fmt: skip
    assert (
        again.measurements
        == law.measurements
        != select_law(ladder(np.random.default_rng(13)), "power_n", n_bootstrap=50)[0].measurements
    )
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(KinfuseError, match="not a saved infusion law"):
        InfusionLaw.load(tmp_path / "bad.json")
    (tmp_path / "summary.json").write_text(json.dumps({"study": "q", "sizes": [], "trials": []}))
    with pytest.raises(KinfuseError, match="a sweep's summary.json, not a saved law: load the law"):
        InfusionLaw.load(tmp_path / "summary.json")
    old = json.loads((tmp_path / "law.json").read_text())
    del old["format"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    with pytest.raises(KinfuseError, match="older kinfuse-ray .* refit it"):
        InfusionLaw.load(tmp_path / "old.json")


def test_point_law_seeds_a_search_through_the_points():
    points = [(n, 1e5, float(true_rstar(n))) for n in SIZES[:3]]
    guess = point_law(points)(SIZES[4], 1e5)
    assert math.isclose(guess, float(true_rstar(SIZES[4])), abs_tol=1e-3)


@pytest.mark.parametrize(
    ("query", "name"),
    [({"n_params": -1}, "n_params"), ({"n_params": float("nan")}, "n_params"),
     ({"n_params": float("inf")}, "n_params"), ({"n_params": 0}, "n_params"),
     ({"n_params": 1e6, "tokens": 0}, "tokens"), ({"n_params": 1e6, "tokens": -5}, "tokens")],
)  # fmt: skip
def test_a_query_outside_positive_finite_numbers_is_refused_by_name(query, name):
    law = InfusionLaw.fit(ladder(np.random.default_rng(16)), n_bootstrap=20)
    for ask in (law.predict, law.predict_point):
        with pytest.raises(ValueError, match=f"^{name} must be a positive finite number"):
            ask(**query)


def test_the_api_refuses_wrong_units_and_warns_where_python_shows_it():
    """A ratio in percent is refused; a size meant in billions, tokens in trillions or size and
    tokens swapped answer, but with a KinfuseWarning a notebook shows (not only in
    `p.warnings`); a query inside the ladder warns of nothing."""
    import warnings

    from kinfuse_ray.errors import KinfuseWarning

    law = InfusionLaw.fit(ladder(np.random.default_rng(16)), n_bootstrap=20)
    for ratio in (80, 1.0, 0, -0.1, "0.5"):
        with pytest.raises(ValueError, match=r"^ratio must lie in \(0, 1\) .*not percent"):
            law.expected_retention(1e6, 1e5, ratio)
        with pytest.raises(ValueError, match=r"^ratio must lie in \(0, 1\)"):
            law.at(1e6).probabilities(ratio)
    for query in (
        {"n_params": 7},
        {"n_params": 1e6, "tokens": 2},
        {"n_params": 1e5, "tokens": 1e6},
    ):
        with pytest.warns(KinfuseWarning) as caught:
            p = law.predict(**query)
        assert [str(w.message) for w in caught] == list(p.warnings)
    with pytest.warns(KinfuseWarning):  # once per distinct warning, over a list of sizes too
        law.predict(np.array([7.0, 8.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        law.predict(SIZES[2], 1e5)


def test_the_cli_refuses_a_size_that_is_not_a_positive_finite_number(tmp_path, capsys):
    from kinfuse_ray import cli

    select_law(ladder(np.random.default_rng(17)), "power_n", n_bootstrap=20)[0].save(
        tmp_path / "law.json"
    )
    for bad in ("nan", "inf", "-3"):
        with pytest.raises(SystemExit) as ended:
            cli.main(["predict", "--law-file", str(tmp_path / "law.json"), "--n-params", bad])
        assert ended.value.code == 2
        assert "must be a positive finite number" in capsys.readouterr().err
    assert cli.main(["predict", "--law-file", str(tmp_path / "law.json"), "--n-params", "1e6"]) == 0
    said = capsys.readouterr().out
    assert "collapse point r* = " in said
    # Named by its size once: "for 1,000,000 non-embedding params", not "for N = 1,000,000 (...)".
    assert "recommendation for 1,000,000 non-embedding params, " in said and "N = " not in said


def test_a_law_from_plain_points_and_vectorised_forecasts():
    """Your own (size, ratio, retention, acquisition) rows fit the law without building the
    project's structures; a list of sizes gives one forecast each; bad rows are refused with a
    ValueError that names what is wrong."""
    from kinfuse_ray import curves_from_points

    rng = np.random.default_rng(3)
    curves = ladder(rng, size_sd=0.02)
    rows = [(c.n_params, r, ret, acq) for c in curves
            for r, ret, acq in zip(c.ratios, c.retention, c.acquisition, strict=True)]  # fmt: skip
    n, r, ret, acq = (list(col) for col in zip(*rows, strict=True))
    mine = curves_from_points(n, r, ret, acq, tokens=1e5, plateau={c.n_params: 1.0 for c in curves})
    assert [c.n_params for c in mine] == sorted(c.n_params for c in curves)
    law = InfusionLaw.fit(mine, n_bootstrap=50)
    reference = InfusionLaw.fit(curves, n_bootstrap=50)
    assert law.parameters == pytest.approx(reference.parameters, rel=1e-6)
    sizes = np.array([2e5, 1e6])
    points = law.predict_point(sizes)
    assert points.shape == (2,) and points[1] == law.predict_point(1e6)
    forecasts = law.predict(sizes)
    assert [f.n_params for f in forecasts] == [2e5, 1e6]
    assert forecasts[1].collapse_ratio == law.predict(1e6).collapse_ratio

    for bad, says in (
        (dict(n_params=n, ratios=[x * 100 for x in r], retention=ret), "ratios must lie in (0, 1)"),
        (dict(n_params=n[:-1], ratios=r, retention=ret), "differ in length"),
        (dict(n_params=[-x for x in n], ratios=r, retention=ret), "positive finite"),
        (dict(n_params=n, ratios=r, retention=[x * 2 for x in ret]), "retention must be"),
    ):
        with pytest.raises(ValueError, match=re.escape(says)):
            curves_from_points(**bad)


def test_a_size_by_budget_ladder_recovers_the_budget_exponent_and_reads_it():
    """r* = 1 / (1 + C N^-b D^-g) with g = 0.5 on 4 sizes x 3 budgets: "auto" chooses a form
    with a D term, its g_d interval holds the truth and excludes both the share view (g = 0)
    and the exposure view (g = 1), and forecasts beyond the ladder on both axes land near it."""
    from kinfuse_ray.presentation import describe_budget_exponent, describe_law

    rng = np.random.default_rng(3)

    def rstar(n, d):
        return float(expit(2.5 + 0.6 * np.log(n / N0) + 0.5 * np.log(d / 1e5)))

    curves = [
        curve(f"n{int(n)}-d{int(d)}", n, rstar(n, d), rng, d=d, trial_sd=0.02)
        for n in (1e4, 3e4, 1e5, 3e5)
        for d in (5e4, 1e5, 2e5)
    ]
    law, ranked = select_law(curves, "auto", n_bootstrap=200)
    assert law.form in ("power_nd", "power_nd_sat") and {c.form for c in ranked} <= {
        "power_nd",
        "power_nd_sat",
    }
    lo, hi = law.parameter_intervals()["g_d"]
    assert 0 < lo < 0.5 < hi < 1
    assert "between the share view" in describe_budget_exponent(lo, hi)
    assert "D 50,000 to 200,000 tokens" in describe_law(law)
    # The parameters are named in the law as printed, with the centre they are read at.
    assert re.search(r"r\* = (r_max )?sigmoid\(eta0 \+ b_n ln\(N / [\d,]+\) \+ g_d ln\(D / "
                     r"[\d,]+\)\)", describe_law(law))  # fmt: skip
    assert law.predict_point(1e6, 4e5) == pytest.approx(rstar(1e6, 4e5), abs=0.01)
    assert law.predict_point(1e6, 4e5) > law.predict_point(1e6, 1e5)  # g > 0: more budget, more r
    # The learning side's laws take a D term too, and read off a new budget.
    assert "m_d" in law.acquisition.curve.names
    assert law.predict(1e6, 4e5).acquisition_threshold is not None
    # Its check holds out a size at a time, every budget of it: one refit per size.
    learning_sizes = {n for n, _, _ in law.acquisition.thresholds.values()}
    assert len(law.acquisition.held_params) == len(learning_sizes) >= 3
    assert len(law.acquisition.held_errors) == len(law.acquisition.thresholds)
    # Where only two sizes learn (at every budget), none can be held out and predicted by the
    # rest: the learning side is stated as unknown, not as the unchecked curve.
    two = [curve(c.name, c.n_params, rstar(c.n_params, c.tokens), rng, d=c.tokens,
                 trial_sd=0.02, a_star=0.7, ceiling=0.5 if c.n_params >= 1e5 else 0.1)
           for c in curves]  # fmt: skip
    unknown = InfusionLaw.fit(two, form="power_nd", n_bootstrap=20)
    assert len({n for n, _, _ in unknown.acquisition.thresholds.values()}) == 2
    assert unknown.acquisition.note.endswith(
        "too few sizes to hold one out and predict it from the rest"
    )
    assert unknown.predict(1e6, 4e5).acquisition_threshold is None


@pytest.mark.parametrize(
    ("lo", "hi", "reading"),
    [(-0.2, 1.3, "holds both"), (-0.2, 0.4, "consistent with the share view"),
     (0.7, 1.2, "consistent with the exposure view"), (-0.9, -0.1, "falls"),
     (1.2, 1.9, "faster than the exposure view")],
)  # fmt: skip
def test_the_budget_exponent_is_read_as_the_view_its_interval_allows(lo, hi, reading):
    from kinfuse_ray.presentation import describe_budget_exponent

    assert reading in describe_budget_exponent(lo, hi)


def test_curves_from_points_name_each_size_and_budget_and_duplicates_are_refused():
    from kinfuse_ray.law import curves_from_points

    n = [1e4] * 4 + [3e4] * 4
    d = [5e4, 5e4, 1e5, 1e5] * 2
    curves = curves_from_points(n, [0.3, 0.9] * 4, [1.0, 0.2] * 4, tokens=d)
    # One naming rule with a sweep's curves (analysis.size_curves): size, then -d<tokens>.
    assert [c.name for c in curves] == ["n10000-d50000", "n10000-d100000",
                                        "n30000-d50000", "n30000-d100000"]  # fmt: skip
    twin = curves[:1] * 2
    with pytest.raises(KinfuseError, match="curve names must be unique"):
        InfusionLaw.fit(twin, form="power_n")


def test_a_fitted_law_is_frozen_and_states_forecasts_at_other_settings_without_refitting():
    import dataclasses

    law = InfusionLaw.fit(ladder(np.random.default_rng(18)), n_bootstrap=50)
    with pytest.raises(dataclasses.FrozenInstanceError):
        law.forecast = None
    with pytest.raises(dataclasses.FrozenInstanceError):
        law.retention.point.params = ()
    stricter = law.with_forecast(tolerance=0.95)
    assert law.forecast.tolerance == 0.9 and stricter.retention is law.retention
    assert stricter.predict(1e7) == law.predict(1e7, tolerance=0.95)
    assert stricter.predict(1e7).recommended_ratio < law.predict(1e7).recommended_ratio


def test_a_new_form_is_one_registry_entry_and_fits(monkeypatch):
    """A form with a curvature term in log N: registered here (and, for sweep files, named in
    config.LawForm), it fits, predicts, reports its parameters and saves like the rest."""
    from typing import get_args

    from kinfuse_ray.config import LawForm
    from kinfuse_ray.law import FORMS, Form

    assert set(FORMS) == set(get_args(LawForm))  # the schema and the registry name the same
    quadratic = Form("power_n_quad", ("b_n", "c_n"), lambda x_n, x_d: [x_n, x_n**2])
    monkeypatch.setitem(FORMS, quadratic.name, quadratic)
    law = InfusionLaw.fit(ladder(np.random.default_rng(19), size_sd=0.02), form="power_n_quad",
                          n_bootstrap=30)  # fmt: skip
    assert set(law.parameters) == {"eta0", "b_n", "c_n"}
    assert law.parameters["b_n"] == pytest.approx(0.6, abs=0.15)
    assert abs(law.parameters["c_n"]) < 0.1  # the truth is a straight line in log N
    assert law.predict_point(1e7) == pytest.approx(true_rstar(1e7), abs=0.02)
    assert law.predict(1e7).decision.ratio is not None


def test_settings_split_by_type_and_a_law_file_of_format_2_says_refit(tmp_path):
    from kinfuse_ray.law.settings import FIT_ONLY, split

    fit, forecast = split(n_bootstrap=7, confidence=0.8, form="power_n_sat")
    assert (fit.n_bootstrap, fit.form, forecast.confidence) == (7, "power_n_sat", 0.8)
    assert "confidence" not in FIT_ONLY and {"threshold", "form"} <= set(FIT_ONLY)
    with pytest.raises(TypeError, match="unknown law settings: bogus"):
        split(bogus=1)
    (tmp_path / "old.json").write_text(json.dumps({"format": 2, "params_": [0.1, 0.2]}))
    with pytest.raises(KinfuseError, match=r"law format 2, this version reads 5\): refit it"):
        InfusionLaw.load(tmp_path / "old.json")


def test_a_learning_side_that_fails_its_check_is_never_quoted_as_a_probability():
    """Acquisition whose ceiling jumps between two rungs (0.3, then 0.95; its location the same
    at every size) follows no law:
    leave-one-size-out, its P(learns) scores worse than the nearest size as is. The forecast
    still gives the learn ratio's median and interval, but no P(learns), P(both), c* or window
    at the confidence, and a rule that rests on the learning side is not informative; the smooth
    ladder's is quoted."""

    def step(n):
        return 0.3 if n < 2e5 else 0.95

    law, _ = select_law(ladder(np.random.default_rng(21), size_sd=0.05, a_law=lambda n: 0.8,
                               a_ceiling=step), "power_n", n_bootstrap=100)  # fmt: skip
    checks = {c.side: c for c in law.calibration}
    assert checks["keeps"].calibrated and not checks["learns"].calibrated
    assert checks["learns"].brier > checks["learns"].baseline_brier
    p = law.predict(1e7)
    assert p.uncalibrated == ("learns",) and p.to_dict()["uncalibrated"] == ["learns"]
    text = describe_prediction(p)
    assert "learning side not calibrated on this ladder" in text
    assert "P(keeps) 0." in text and "P(learns), P(both): not calibrated on this ladder" in text
    assert "c* =" not in text and "window at 90% confidence:" not in text
    assert re.search(r"P\(keeps\) 0\.\d\d", text) and not re.search(r"P\(learns\) \d", text)
    assert "P(learns): NOT CALIBRATED ON THIS LADDER" in describe_law(law)
    balanced = law.predict(1e7, rule="balanced").decision
    assert not balanced.informative and "not calibrated" in balanced.reasons[-1]
    again = InfusionLaw.from_dict(json.loads(json.dumps(law.to_dict())))
    assert again.predict(1e7).uncalibrated == ("learns",)

    smooth, _ = select_law(ladder(np.random.default_rng(21), size_sd=0.05), "power_n",
                           n_bootstrap=100)  # fmt: skip
    q = smooth.predict(1e7)
    assert q.uncalibrated == () and {c.side for c in q.calibration} == {"keeps", "learns"}
    assert "c* =" in describe_prediction(q)


def test_what_one_run_keeps_is_stated_as_the_least_it_keeps():
    """One run's retention at the recommended ratio is uncertain upwards past its own plateau (a
    run can measure above it), so the answer states the least it keeps, never a share above 1."""
    law = InfusionLaw.fit(ladder(np.random.default_rng(3)), n_bootstrap=100)
    p = law.predict(SIZES[-1] * 2)
    point, (least, _) = p.expected_retention
    line = next(x for x in describe_prediction(p).splitlines() if "one run keeps" in x)
    assert (
        f"one run keeps {point:.2f} of its retention there (at least {least:.3f} with 95% " in line
    )
    assert "interval" not in line.split("one run keeps")[1]
