"""Fit a law and check it: each size left out in turn and predicted by the rest, forms compared
on those folds, the best one chosen. The only place that loops fitting and validation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy.special import expit

from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.law.checks import (
    HeldOut,
    HeldPoint,
    HeldValue,
    LawComparison,
    keep_widening,
    side_checks,
)
from kinfuse_ray.law.curves import SizeCurve, clipped_logit, spans_budgets
from kinfuse_ray.law.fit import STEEPNESS, PointFit, retention_model
from kinfuse_ray.law.forecast import InfusionLaw, fittable
from kinfuse_ray.law.forms import FORMS
from kinfuse_ray.law.settings import FitSettings, ForecastSettings, split

# Below this many sizes with a collapse, leave-one-size-out cannot score a three-parameter form
# on held-out sizes: the two-parameter power_n is then the law, fixed before looking.
MIN_SIZES_TO_SELECT = 4
# What a fold leaves out with the held curve: only it, every budget of its size, or every size
# at its budget (calibration across sizes and across budgets), or it and every larger size.
HOLD_OUT = {
    "curve": lambda c, held: c is held,
    "size": lambda c, held: c.n_params == held.n_params,
    "budget": lambda c, held: c.tokens == held.tokens,
    # What a team does: fit on the smaller sizes only, forecast a larger one (the folds that
    # leave enough sizes below the held one: the top one or two rungs of a ladder).
    "extrapolate": lambda c, held: c.n_params >= held.n_params,
    # What a family's training history offers: fit on its earlier checkpoints (budgets), forecast
    # a later one (the folds that leave enough budgets below the held one).
    "later": lambda c, held: c.tokens >= held.tokens,
}


def _settings(settings, forecast, options) -> tuple[FitSettings, ForecastSettings]:
    if options:
        return split(**options)
    return settings or FitSettings(), forecast or ForecastSettings()


def select_law(
    curves: list[SizeCurve],
    form: str | None = None,
    validate: bool = True,
    settings: FitSettings | None = None,
    forecast: ForecastSettings | None = None,
    **options,
) -> tuple[InfusionLaw, list[LawComparison]]:
    """The named form (`form`, else `settings.form`), or for "auto" the best by
    leave-one-size-out when MIN_SIZES_TO_SELECT sizes collapsed (else the first form, fixed
    before looking); fitted, and validated (`held_out`) if `validate`. Curves at two or more
    token budgets (a size x budget ladder) choose among the forms with a D term: the ladder was
    run to measure it. Settings as types or as keywords (`n_bootstrap=100`)."""
    settings, forecast = _settings(settings, forecast, options)
    form = form or settings.form
    ranked: list[LawComparison] = []
    if form == "auto":
        collapsed = sum(c.collapse(settings.threshold).found for c in curves)
        with_d = [f for f, spec in FORMS.items() if spec.uses_tokens]
        forms = with_d if spans_budgets(curves) else list(FORMS)
        if collapsed >= MIN_SIZES_TO_SELECT:
            ranked = compare_laws(curves, forms, settings, forecast)
        form = ranked[0].form if ranked else forms[0]
    steepness = settings.steepness
    if steepness == "auto":
        steepness = choose_steepness(curves, replace(settings, form=form))
    law = InfusionLaw.fit(curves, replace(settings, form=form, steepness=steepness), forecast)
    if not validate:
        return law, ranked
    # Each fold's interval from a quarter of the draws: validation need not be as fine.
    folds = replace(law.settings, n_bootstrap=max(50, settings.n_bootstrap // 4))
    held_out = tuple(leave_one_size_out(list(law.curves), folds, forecast))
    calibration = side_checks(held_out, forecast.confidence)
    widening = keep_widening(held_out, forecast.confidence)
    law = replace(law, held_out=held_out, calibration=calibration, keep_widening=widening)
    return law, ranked


def compare_laws(
    curves: list[SizeCurve],
    forms: Sequence[str] = tuple(FORMS),
    settings: FitSettings | None = None,
    forecast: ForecastSettings | None = None,
    **options,
) -> list[LawComparison]:
    """Score each form the data allow by leave-one-size-out over every size (best first)."""
    settings, forecast = _settings(settings, forecast, options)
    budgets = spans_budgets(curves)
    collapsed = sum(c.collapse(settings.threshold).found for c in curves)
    out = []
    for name in forms:
        spec = FORMS[name]
        if (spec.uses_tokens and not budgets) or collapsed - 1 < spec.n_params + 1:
            continue
        points_only = replace(settings, form=name, n_bootstrap=0, steepness="fixed")
        held = leave_one_size_out(curves, points_only, forecast)
        if len(held) == collapsed:  # every fold could fit this form
            out.append(LawComparison(name, float(np.mean([abs(h.log_error) for h in held]))))
    return sorted(out, key=lambda c: (round(c.held_out_error, 4), FORMS[c.form].n_params))


def choose_steepness(curves: list[SizeCurve], settings: FitSettings) -> str:
    """The joint curve's steepness: "moving" (ln k a law in N, and D) where it predicts
    held-out sizes' retention curves (every trial, leave-one-size-out, point fits) better on
    average than "fixed" (held out, the extra parameters' overfit counts against them); else,
    and with fewer than MIN_SIZES_TO_SELECT sizes collapsed, "fixed"."""
    collapsed = [c for c in curves if c.collapse(settings.threshold).found]
    if settings.method != "joint" or len(collapsed) < MIN_SIZES_TO_SELECT:
        return "fixed"
    errors = {
        s: _held_curve_errors(curves, collapsed, replace(settings, steepness=s)) for s in STEEPNESS
    }
    both = sorted(errors["fixed"].keys() & errors["moving"].keys())
    gain = [errors["fixed"][s] - errors["moving"][s] for s in both]
    return "moving" if len(gain) >= 2 and np.mean(gain) > 0 else "fixed"


def _held_curve_errors(
    curves: list[SizeCurve], held: list[SizeCurve], settings: FitSettings
) -> dict[str, float]:
    """Per held-out curve, the mean squared error (share of plateau) of its trials' retention
    as the point fit without it predicts them (its plateau, the law's r* and curve there)."""
    out = {}
    for curve in held:
        try:
            form, rest = fittable([c for c in curves if c is not curve], settings)
        except KinfuseError:
            continue  # too few sizes left
        point = PointFit.fit(rest, form, settings.method, settings.threshold, settings.steepness)
        predicted = retention_model(
            1.0, point.law_logit(curve.n_params, curve.tokens)[0],
            point.shape_at(curve.n_params, curve.tokens), clipped_logit(np.asarray(curve.ratios)),
            settings.threshold,
        )  # fmt: skip
        out[curve.name] = float(
            np.mean((predicted - np.asarray(curve.retention) / curve.plateau) ** 2)
        )
    return out


def _nearest_curve(curves: list[SizeCurve], held: SizeCurve) -> SizeCurve:
    """The curve nearest to `held` among `curves`: in log N, and in log D too where budgets
    differ."""
    return min(curves, key=lambda c: math.hypot(math.log(c.n_params / held.n_params),
                                                 math.log(c.tokens / held.tokens)))  # fmt: skip


def _nearest(values: dict[str, float], curves: list[SizeCurve], held: SizeCurve) -> float:
    """The measured value of the curve nearest to `held` among those of `curves` that have one."""
    return values[_nearest_curve([c for c in curves if c.name in values], held).name]


def _outcomes(curve: SizeCurve, tolerance: float, target: float) -> dict[float, tuple]:
    """Per measured ratio (seeds averaged): did the size keep tolerance x plateau, did it learn
    the domain (None: acquisition unmeasured)."""
    ratios, retention, acquisition = curve.mean_curve()
    return {
        float(r): (float(y >= tolerance * curve.plateau),
                   None if np.isnan(a) else float(a >= target))
        for r, y, a in zip(ratios, retention, acquisition, strict=True)
    }  # fmt: skip


def _held_points(
    sub: InfusionLaw, held: SizeCurve, rest: list[SizeCurve], target: float
) -> tuple[HeldPoint, ...]:
    """P(keeps) and P(learns) by `sub` at each ratio `held` measured, beside what it did there
    and what the nearest remaining size did at its nearest ratio (in logit)."""
    at = sub.at(held.n_params, held.tokens)
    near = _outcomes(_nearest_curve(rest, held), at.tolerance, target)
    out = []
    for r, (kept, learned) in _outcomes(held, at.tolerance, target).items():
        x = float(clipped_logit(r))
        base = near[min(near, key=lambda q: abs(float(clipped_logit(q)) - x))]
        p_keeps, p_learns = at.probabilities(r)
        out.append(HeldPoint("keeps", r, p_keeps, kept, base[0]))
        if p_learns is not None and learned is not None and base[1] is not None:
            out.append(HeldPoint("learns", r, p_learns, learned, base[1]))
    return tuple(out)


# Retention's share is read no closer to 1 than this where the keep ratio is interpolated: a
# share of 1 (or above it, by noise) has no logit, and probes resolve shares of about 1/100.
SHARE_CEILING = 0.99


def keep_crossing(curve: SizeCurve, share: float) -> float | None:
    """The ratio where a size's retention first falls below `share` x plateau, what the keep
    ratio's forecast is checked against: the detector's bracket (that ratio and the one before),
    interpolated where a falling sigmoid is straight, the logit of retention's share against
    logit r. Near the plateau the fall is curved in share against log r (the detector's r*
    interpolation), and a straight line there reads the crossing early."""
    found = curve.collapse(share)
    if not found.found:
        return None
    ratios, retention, _ = curve.mean_curve()
    shares = dict(zip(ratios, np.asarray(retention) / curve.plateau, strict=True))
    lo, hi = found.bracket
    a, b = (float(clipped_logit(min(shares[r], SHARE_CEILING))) for r in (lo, hi))
    frac = (a - float(clipped_logit(share))) / (a - b)
    x_lo, x_hi = float(clipped_logit(lo)), float(clipped_logit(hi))
    return float(expit(x_lo + frac * (x_hi - x_lo)))


def leave_one_size_out(
    curves: list[SizeCurve],
    settings: FitSettings,
    forecast: ForecastSettings | None = None,
    hold_out: str = "curve",
    yardstick: Sequence[SizeCurve] = (),
    validate: bool = False,
) -> list[HeldOut]:
    """Each size with a collapse left out in turn and predicted by the law the others give: its
    r*, the ratio keeping the tolerance and the ratio learning the domain (where the held-out
    size measured them), each beside the nearest remaining size's value as is. With form
    "auto" the remaining sizes choose the form themselves, as a sweep would; with
    `n_bootstrap=0` only points are predicted (intervals collapse onto them). On a size x
    budget ladder each curve is a (size, budget); `hold_out` "size" or "budget" leaves every
    curve of the held one's size or budget out of its fold (`HOLD_OUT`). `yardstick`: the same
    curves measured on a finer grid (more ratios, the fits' among them), what held-out values
    (r*, the keep and learn ratios) and the nearest size's are read from; never fitted.
    `validate`: each fold's law checked on its own folds as a sweep's is (its keep widening)."""
    leaves_out, forecast = HOLD_OUT[hold_out], forecast or ForecastSettings()
    threshold = settings.threshold
    tolerance = forecast.tolerance if settings.method == "joint" else threshold
    finer = {c.name: c for c in yardstick}
    read = [finer.get(c.name, c) for c in curves]
    measured = {c.name: m.ratio for c in read if (m := c.collapse(threshold)).found}
    keeps = {c.name: k for c in read if (k := keep_crossing(c, tolerance)) is not None}
    learns = {c.name: a for c in read
              if (a := c.acquisition_threshold(settings.acquisition_target))}  # fmt: skip
    out = []
    for held in curves:
        if held.name not in measured:
            continue
        rest = [c for c in curves if not leaves_out(c, held)]
        try:
            sub, _ = select_law(rest, validate=validate, settings=settings, forecast=forecast)
        except KinfuseError:
            continue  # too few sizes left
        n, d = held.n_params, held.tokens
        if settings.n_bootstrap:
            p = sub.at(n, d).prediction()
            rstar, r_interval = p.collapse_ratio, p.interval
            keep_at, keep_interval = p.keep_row.ratio, p.keep_row.interval
            learn_at, learn_interval = p.acquisition_threshold, p.acquisition_interval
        else:
            at = sub.at(n, d)
            rstar, keep_at = float(expit(at.z_hat)), at.keep_hat
            r_interval, keep_interval = (rstar, rstar), (keep_at, keep_at)
            learn_at = learn_interval = None
        keep = learn = None
        if held.name in keeps and any(c.name in keeps for c in rest):
            keep = HeldValue(keeps[held.name], keep_at, keep_interval, _nearest(keeps, rest, held))
        if held.name in learns and learn_at is not None and any(c.name in learns for c in rest):
            learn = HeldValue(learns[held.name], learn_at, learn_interval,
                              _nearest(learns, rest, held))  # fmt: skip
        target = settings.acquisition_target
        points = (_held_points(sub, finer.get(held.name, held),
                               [finer.get(c.name, c) for c in rest], target)
                  if settings.n_bootstrap else ())  # fmt: skip
        out.append(HeldOut(held.name, n, sub.form, measured[held.name], rstar, r_interval,
                           _nearest(measured, rest, held), keep, learn, points))  # fmt: skip
    return out
