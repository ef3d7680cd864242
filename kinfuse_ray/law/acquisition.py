"""The learning side as a curve: chance-corrected acquisition against the ratio, one sigmoid in
logit r per size whose location and ceiling move with N (and D) as laws, fitted to every trial
of every size at once (the retention side's joint method's counterpart):

    acquisition(r) = A sigmoid(k (logit r - m)),   m = m0 + m_n ln(N / N0) [+ m_d ln(D / D0)],
                     A = sigmoid(a0 + a_n ln(N / N0) [+ a_d ln(D / D0)]),   one steepness k.

The ratio that learns the domain (acquisition = target) is m + logit(target / A) / k, and no
ratio does where the ceiling A stays at or below the target: why small rungs never learn a set
of facts however much of it they see (their capacity, not their exposure). Gu et al. 2025 find
the learning threshold falls as a power law in N; `AcquisitionFit.slope` (d logit r / d ln N of
the ratio that learns, at the largest rung) is that exponent here. Uncertainty: each size that
learns is left out in turn (every budget of it) and the curve refitted without it predicts its
learn ratio (a jackknife); a new size's learn ratio misses the fitted curve's as those held-out
sizes missed theirs (their errors' root mean square, drawn normal and correlated with the
retention side's new-size deviation as the measured sizes' shifts are), and the exponent's
interval is the jackknife's. The held-out errors carry both a new size's own deviation and what
a few sizes leave unsure in the coefficients; a parametric bootstrap on in-sample scatter with
2-3 degrees of freedom gave intervals 6 logits wide that still missed (docs/findings.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import t as student_t

from kinfuse_ray.law.bootstrap import BootstrapFit
from kinfuse_ray.law.curves import EDGE, SizeCurve, clipped_logit, spans_budgets
from kinfuse_ray.law.fit import Point
from kinfuse_ray.law.forms import solve

SOFT_L1_ACQUISITION = 0.05  # acquisition residual where the loss turns linear (as retention's)
NEVER = float(clipped_logit(1 - EDGE))  # a draw whose ceiling stays below the target never learns


def learning_hint(missed: list[SizeCurve], target: float) -> str:
    """What helps where sizes show no learning threshold in their grid: those whose acquisition
    stays below `target` even at their top ratio need more exposure to the domain; those at or
    above it from their lowest ratio on need lower ratios tried."""

    def top(curve: SizeCurve) -> float:
        acquisition = curve.mean_curve()[2]
        return float(np.nanmax(acquisition)) if np.isfinite(acquisition).any() else -np.inf

    below = [c.name for c in missed if top(c) < target]
    hints = []
    if below:
        hints.append(
            f"{', '.join(below)} stay below it even at the top ratio: more exposure to each "
            "domain fact (more train.tokens, fewer domain facts) or larger rungs"
        )
    if len(below) < len(missed):
        hints.append("the others learn it from their lowest ratio on: lower the ratios tried")
    return "; ".join(hints) or f"lower predict.acquisition_target ({target})"


@dataclass(frozen=True)
class AcquisitionCurve:
    """The curve's laws as fitted once: `params` = location coefficients, ceiling coefficients
    (each an intercept, ln N and, on a size x budget ladder, ln D, centred on the curves'
    means), then ln k."""

    curves: tuple[SizeCurve, ...]
    log_n0: float
    log_d0: float
    budgets: bool
    params: tuple[float, ...]

    @property
    def n_coefficients(self) -> int:
        return 3 if self.budgets else 2

    @property
    def names(self) -> tuple[str, ...]:
        axes = ("0", "_n", "_d")[: self.n_coefficients]
        return (*(f"m{a}" for a in axes), *(f"a{a}" for a in axes), "log_k")

    def design(self, n_params, tokens) -> np.ndarray:
        x_n, x_d = np.broadcast_arrays(
            np.log(np.atleast_1d(np.asarray(n_params, float))) - self.log_n0,
            np.log(np.atleast_1d(np.asarray(tokens, float))) - self.log_d0,
        )
        return np.stack([np.ones_like(x_n), x_n, x_d][: self.n_coefficients], axis=1)

    def split(self, theta) -> tuple[np.ndarray, np.ndarray, float]:
        """(location coefficients, ceiling coefficients, steepness k) of a parameter vector."""
        c = self.n_coefficients
        return theta[:c], theta[c : 2 * c], float(np.exp(np.clip(theta[-1], -5.0, 5.0)))

    def model(self, theta, X: np.ndarray, ratio_logit: np.ndarray, shift=0.0) -> np.ndarray:
        """Acquisition at each row of design `X` and logit ratio (location moved by `shift`)."""
        m, a, k = self.split(theta)
        return expit(X @ a) * expit(k * (ratio_logit - (X @ m + shift)))

    def learn_logit(self, theta, n_params, tokens, target: float, shift=0.0) -> np.ndarray:
        """logit of the lowest ratio reaching `target` at each size (NEVER where the ceiling
        stays at or below it)."""
        m, a, k = self.split(theta)
        X = self.design(n_params, tokens)
        ceiling = expit(X @ a)
        reach = target / np.maximum(ceiling, EDGE)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = X @ m + shift + clipped_logit(np.minimum(reach, 1 - EDGE)) / k
        return np.where(reach < 1 - EDGE, np.minimum(z, NEVER), NEVER)

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every trial as (design row, logit ratio, acquisition, index of its curve)."""
        X = self.design([c.n_params for c in self.curves], [c.tokens for c in self.curves])
        row = np.concatenate([np.full(len(c.ratios), i) for i, c in enumerate(self.curves)])
        x = clipped_logit(np.concatenate([c.ratios for c in self.curves]))
        y = np.concatenate([np.asarray(c.acquisition, float) for c in self.curves])
        return X[row], x, y, row

    def refit(self, y: np.ndarray, starts: list[np.ndarray]) -> np.ndarray:
        X, x, _, _ = self.rows()
        return solve(lambda p: self.model(p, X, x) - y, starts, "soft_l1", SOFT_L1_ACQUISITION)

    def own_shifts(self, theta) -> np.ndarray:
        """Each curve's own location off the law (its shift in logit r), the law's ceiling and
        steepness kept: a size's deviation on the learning side."""
        X, x, y, row = self.rows()
        out = []
        for i in range(len(self.curves)):
            mine = row == i
            out.append(solve(lambda s, mine=mine: self.model(theta, X[mine], x[mine], s[0])
                             - y[mine], [np.zeros(1)], "soft_l1", SOFT_L1_ACQUISITION)[0])  # fmt: skip
        return np.array(out)

    @classmethod
    def fitted(cls, curves: list[SizeCurve], target: float) -> AcquisitionCurve:
        """The point fit, from starts flat in N at the median ratio where acquisition reached
        `target` (a ceiling at the highest acquisition seen, or near 1), and one whose ceiling
        rises with N."""
        unfitted = cls(tuple(curves), float(np.log([c.n_params for c in curves]).mean()),
                       float(np.log([c.tokens for c in curves]).mean()), spans_budgets(curves),
                       ())  # fmt: skip
        _, x, y, _ = unfitted.rows()
        c = unfitted.n_coefficients
        location = float(np.median(x[y >= target])) if (y >= target).any() else float(x.max())
        top = float(clipped_logit(np.clip(np.nanmax(y), 0.05, 0.99)))
        starts = [np.r_[location, np.zeros(c - 1), ceiling, np.zeros(c - 1), log_k]
                  for ceiling in (top, 3.0) for log_k in (0.0, 1.0)]  # fmt: skip
        starts += [np.r_[location, np.zeros(c - 1), 0.0, 1.0, np.zeros(c - 2), 0.0]]
        params = unfitted.refit(y, starts)
        return cls(unfitted.curves, unfitted.log_n0, unfitted.log_d0, unfitted.budgets,
                   tuple(float(v) for v in params))  # fmt: skip


@dataclass(frozen=True)
class AcquisitionFit:
    """The learning side: each size's learning threshold as its grid shows it (`thresholds`:
    name -> (n_params, tokens, ratio), the detector's), the curve fitted to every trial
    (`curve`; None with too few sizes that learn, `note` says why), the measured sizes' own
    location shifts off it (`size_residuals`, for the sizes with a threshold or whose curve
    rises enough to place it: what `rho` is read from), each size with a threshold held out and
    predicted by the curve refitted without it (`held_errors`: measured minus predicted logit of
    its learn ratio; `held_params`: those refits' parameters), a new size's drawn shifts
    (`shifts`) and how a size's shift goes with its deviation in r* (`rho`)."""

    thresholds: dict[str, Point]
    target: float
    curve: AcquisitionCurve | None = None
    size_residuals: tuple[float, ...] = ()
    held_errors: tuple[float, ...] = ()
    held_params: tuple[tuple[float, ...], ...] = ()
    shifts: np.ndarray | None = None
    rho: float = 0.0
    note: str | None = None

    @classmethod
    def of(
        cls, curves: list[SizeCurve], target: float, retention: BootstrapFit, n_draws: int,
        seed: int,
    ) -> AcquisitionFit:  # fmt: skip
        """Thresholds where acquisition reaches `target`, and the curve when enough sizes have
        one (its held-out check and `n_draws` shifts with `n_draws` > 0); `retention` gives the
        sizes' r* residuals the two sides are correlated through."""
        measured = [c for c in curves if np.isfinite(np.asarray(c.acquisition, float)).all()]
        points = {}
        for c in measured:
            a = c.acquisition_threshold(target)
            if a is not None:
                points[c.name] = (c.n_params, c.tokens, a)
        needed = (3 if spans_budgets(measured) else 2) + 1
        found = f"the lowest ratio that learns the domain (acquisition {target}) was found at "
        if len(points) < needed:
            note = (
                f"{found}{len(points)} of {len(curves)} sizes and its law needs {needed}: "
                + learning_hint([c for c in curves if c.name not in points], target)
            )
            return cls(points, target, note=note)
        curve = AcquisitionCurve.fitted(measured, target)
        own = dict(zip((c.name for c in measured), curve.own_shifts(curve.params),
                       strict=True))  # fmt: skip
        # A rung whose ceiling stays below the target still shows where its curve rises (by
        # half the target over its grid): its shift counts towards the correlation.
        located = [c.name for c in measured
                   if c.name in points or np.ptp(c.mean_curve()[2]) >= target / 2]  # fmt: skip
        e = np.array([own[s] for s in located])
        residuals = e - e.mean()
        if n_draws <= 0:  # a point fit (forms compared): no check, no draws
            return cls(points, target, curve, tuple(residuals.tolist()))
        errors, refits = _held_out(measured, points, target)
        if len(refits) < 2:
            note = f"{found}too few sizes to hold one out and predict it from the rest"
            return cls(points, target, note=note)
        scale = math.sqrt(float(errors @ errors) / len(errors))
        drawn = scale * np.random.default_rng(seed).standard_normal(n_draws)
        # A new size's two deviations are drawn with this correlation (0 with fewer than 3
        # sizes in common).
        mine = dict(zip(retention.point.measured, retention.size_residuals, strict=True))
        theirs = dict(zip(located, residuals, strict=True))
        common = [s for s in located if s in mine]
        rho = 0.0
        if len(common) >= 3:
            pairs = np.array([[mine[s], theirs[s]] for s in common])
            if pairs.std(axis=0).min() > 0:
                rho = float(np.clip(np.corrcoef(pairs.T)[0, 1], -0.99, 0.99))
        return cls(points, target, curve, tuple(residuals.tolist()), tuple(errors.tolist()),
                   tuple(tuple(p) for p in refits), drawn, rho)  # fmt: skip

    def learn_logits(
        self, n_params: float, tokens: float, deviation: np.ndarray
    ) -> np.ndarray | None:
        """Per draw, the logit of the lowest ratio that learns the domain at this size (NEVER:
        its ceiling stays below the target): the fitted curve's, shifted as held-out sizes
        missed it, correlated with the retention side's `deviation` as the measured sizes'
        shifts are."""
        if self.curve is None or self.shifts is None:
            return None
        own = self.shifts  # drawn apart from `deviation`: their mix has correlation rho
        scale = _spread(own) / _spread(deviation) if _spread(deviation) > 0 else 0.0
        shift = self.rho * scale * deviation + math.sqrt(1 - self.rho**2) * own
        return self.curve.learn_logit(np.asarray(self.curve.params), n_params, tokens,
                                      self.target, shift)  # fmt: skip

    def slope(self, confidence: float) -> tuple[float, tuple[float, float]] | None:
        """How fast the odds of the ratio that learns move with N at the largest measured size
        (d logit r / d ln N: Gu et al.'s exponent, negative when larger models learn from less
        of the mix), fitted and its jackknife interval over the held-out refits (NaN where a
        refit's ceiling stays below the target there); None without a curve or its check."""
        if self.curve is None or len(self.held_params) < 2:
            return None
        top = max(self.curve.curves, key=lambda c: (c.n_params, c.tokens))
        n = top.n_params * np.exp([-0.25, 0.25])

        def per_fit(theta) -> float:
            z = self.curve.learn_logit(np.asarray(theta), n, top.tokens, self.target)
            return float((z[1] - z[0]) / 0.5) if (z < NEVER).all() else np.nan

        fitted = per_fit(self.curve.params)
        values = np.array([per_fit(theta) for theta in self.held_params])
        values = values[np.isfinite(values)]
        if len(values) < 2:
            return fitted, (np.nan, np.nan)
        m = len(values)
        se = math.sqrt((m - 1) / m * float(((values - values.mean()) ** 2).sum()))
        half = float(student_t.ppf(0.5 + confidence / 2, m - 1)) * se
        return fitted, (fitted - half, fitted + half)


def _held_out(
    measured: list[SizeCurve], points: dict[str, Point], target: float
) -> tuple[np.ndarray, list[tuple[float, ...]]]:
    """Each size with a threshold left out in turn, every budget of it (a new size is what the
    forecast is for): the curve refitted on the rest (while they still show thresholds at two
    sizes), and its errors at the held size's curves (measured minus predicted logit of the
    learn ratio; the predicted is NEVER where the refit's ceiling stays below the target)."""
    errors, refits = [], []
    for n_params in sorted({c.n_params for c in measured if c.name in points}):
        held = [c for c in measured if c.n_params == n_params]
        rest = [c for c in measured if c.n_params != n_params]
        if len({c.n_params for c in rest if c.name in points}) < 2:
            continue
        refit = AcquisitionCurve.fitted(rest, target)
        for c in held:
            if c.name in points:
                predicted = refit.learn_logit(np.asarray(refit.params), c.n_params, c.tokens,
                                              target)[0]  # fmt: skip
                errors.append(float(clipped_logit(points[c.name][2])) - float(predicted))
        refits.append(refit.params)
    return np.array(errors), refits


def _spread(values: np.ndarray) -> float:
    """A scale that heavy-tailed draws do not blow up: the median absolute value."""
    return float(np.median(np.abs(values)))
