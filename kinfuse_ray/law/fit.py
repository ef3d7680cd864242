"""One point fit of the law: its parameters and, for the joint method, the shape of every size's
retention curve, from the curves as measured or as a bootstrap draw regenerates them.

- joint (default): every trial of every size and seed at once. A size's retention curve is its
  plateau (the base model's retention) times sigmoid(k (logit r*(N, D) - logit r) + logit t):
  retention falls to t x plateau (t the collapse threshold) exactly at r = r*(N, D). One
  steepness k for all sizes ("fixed"), or ln k linear in ln N (and ln D) ("moving": curves that
  fall more steeply at larger models or budgets); soft-L1 loss, so a stray trial cannot drag
  the law.
- points: the collapse detector's r* per size, then the law through those points (Huber loss in
  logit r*). The method of earlier versions, kept as the comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import expit

from kinfuse_ray.law.curves import SizeCurve, clipped_logit
from kinfuse_ray.law.forms import DEFAULT_FORM, FORMS, Form, solve

HUBER_LOGIT = 0.3  # points method: logit residual where the loss turns linear
SOFT_L1_RETENTION = 0.05  # joint method: retention residual where the loss turns linear


def floor_and_offset(shape, threshold: float) -> tuple[float, float]:
    """A curve's floor (share of plateau kept however much is infused, below the threshold) and
    the sigmoid's offset that puts retention at threshold x plateau exactly at r*."""
    floor = threshold * expit(shape[1])
    offset = clipped_logit((threshold - floor) / (1 - floor))
    return floor, offset if np.ndim(offset) else float(offset)  # per draw, given draws' shapes


def retention_model(plateau, logit_rstar, shape, ratio_logit, threshold: float):
    """plateau x [floor + (1 - floor) sigmoid(k (logit r* - logit r) + offset)], shape = (log k,
    floor parameter): falls from the plateau through threshold x plateau at r* to the floor."""
    floor, offset = floor_and_offset(shape, threshold)
    k = np.exp(np.clip(shape[0], -5.0, 5.0))
    return plateau * (floor + (1 - floor) * expit(k * (logit_rstar - ratio_logit) + offset))


def logit_ratio_keeping(logit_rstar, shape, threshold: float, tolerance: float):
    """logit of the ratio where retention is tolerance x plateau (tolerance above the floor)."""
    floor, offset = floor_and_offset(shape, threshold)
    k = np.exp(np.clip(shape[0], -5.0, 5.0))
    return logit_rstar + (offset - clipped_logit((tolerance - floor) / (1 - floor))) / k


Point = tuple[float, float, float]  # (n_params, tokens, r*)
STEEPNESS = ("fixed", "moving")  # the joint curve's steepness: one for all, or a law in N (D)


def shape_at(shape, x_n, x_d) -> tuple:
    """A curve's (ln k, floor parameter) at centred ln N, ln D, from a shape (or a stack of
    draws' shapes, one per row): a fixed shape as is; a moving one's ln k is ln k0 + k_n x_n
    (+ k_d x_d), its extra entries."""
    shape = np.asarray(shape, float)
    log_k = shape[..., 0]
    for i, x in enumerate((x_n, x_d)[: shape.shape[-1] - 2]):
        log_k = log_k + shape[..., 2 + i] * x
    return log_k, shape[..., 1]


@dataclass(frozen=True)
class PointFit:
    """The law's parameters (and the joint method's curve shape: log steepness, floor parameter)
    fitted once, with the measured curves and collapse points they came from. log N and log D
    are centred on the curves' means."""

    form: Form
    method: str
    threshold: float
    curves: tuple[SizeCurve, ...]  # smallest first
    measured: dict[str, float]  # the detector's r* per collapsed curve (or the given points)
    log_n0: float
    log_d0: float
    params: tuple[float, ...]
    shape: tuple[float, ...] = ()
    steepness: str = "fixed"  # joint: STEEPNESS

    @classmethod
    def fit(cls, curves: list[SizeCurve], form: Form, method: str, threshold: float,
            steepness: str = "fixed") -> PointFit:  # fmt: skip
        """To the curves' trials (joint) or their detected collapse points (points)."""
        curves = sorted(curves, key=lambda c: (c.n_params, c.tokens))
        measured = {c.name: p.ratio for c in curves if (p := c.collapse(threshold)).found}
        return cls._fitted(form, method, threshold, curves, measured, steepness)

    @classmethod
    def through(cls, points: dict[str, Point], form: Form = FORMS[DEFAULT_FORM]) -> PointFit:
        """Through named (n_params, tokens, ratio) points alone: the points method."""
        curves = [SizeCurve(s, n, d, (r,), (0.0,), (0.0,), 1.0) for s, (n, d, r) in points.items()]
        measured = {s: r for s, (_, _, r) in points.items()}
        return cls._fitted(form, "points", 0.5, curves, measured)

    @classmethod
    def _fitted(cls, form, method, threshold, curves, measured, steepness="fixed") -> PointFit:
        unfitted = cls(form, method, threshold, tuple(curves), measured,
                       float(np.log([c.n_params for c in curves]).mean()),
                       float(np.log([c.tokens for c in curves]).mean()), (), (), steepness)  # fmt: skip
        params, shape = unfitted.refit(unfitted.points())
        return replace(unfitted, params=tuple(params), shape=tuple(shape))

    @property
    def steepness_terms(self) -> int:
        """ln k's coefficients past its intercept: none (fixed), ln N (and ln D) (moving)."""
        if self.method != "joint" or self.steepness == "fixed":
            return 0
        return 2 if self.form.uses_tokens else 1

    def shape_at(self, n_params, tokens, shape=None) -> tuple:
        """(ln k, floor parameter) at a size and budget, of this fit's shape or `shape` (one
        draw's, or a stack of them)."""
        shape = self.shape if shape is None else shape
        return shape_at(shape, np.log(n_params) - self.log_n0, np.log(tokens) - self.log_d0)

    @property
    def named_parameters(self) -> dict[str, float]:
        """The fitted law in readable units: b_n (and g_d) exponents of the odds, r_max."""
        named = dict(zip(self.form.parameters, self.params, strict=True))
        if "logit_r_max" in named:
            named["r_max"] = float(expit(named.pop("logit_r_max")))
        return named

    def points(self) -> list[Point]:
        by_name = {c.name: c for c in self.curves}
        return [(by_name[s].n_params, by_name[s].tokens, r) for s, r in self.measured.items()]

    def design(self, n_params, tokens) -> np.ndarray:
        n = np.atleast_1d(np.asarray(n_params, float))
        d = np.atleast_1d(np.asarray(tokens, float))
        return self.form.design(n, d, self.log_n0, self.log_d0)

    def law_logit(self, n_params, tokens, theta=None) -> np.ndarray:
        """logit r* by the law (its parameters, or `theta`) at each size and budget."""
        theta = np.asarray(self.params if theta is None else theta)
        return clipped_logit(self.form.ratio(theta, self.design(n_params, tokens)))

    def refit(
        self,
        points: list[Point],
        start: np.ndarray | None = None,
        retention: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, list[float]]:
        """The parameters and curve shape (empty for points) from the curves (their own
        retention, or `retention` in their place) or, for the points method, from `points`;
        `start`: a previous fit's, where a bootstrap draw starts."""
        f = self.form
        n, d, r = (np.array(v, float) for v in zip(*points, strict=True))
        X_pts = f.design(n, d, self.log_n0, self.log_d0)
        target = clipped_logit(r)

        def point_residuals(theta):
            return clipped_logit(f.ratio(theta, X_pts)) - target

        if self.method == "points" or start is None:
            starts = [start[: f.n_params]] if start is not None else f.start(target, X_pts)
            theta = solve(point_residuals, starts, "huber", HUBER_LOGIT)
        if self.method == "points":
            return theta, []
        curves = self.curves
        X = self.design([c.n_params for c in curves], [c.tokens for c in curves])
        plateau = np.concatenate([np.full(len(c.ratios), c.plateau) for c in curves])
        row = np.concatenate([np.full(len(c.ratios), i) for i, c in enumerate(curves)])
        ratio_logit = clipped_logit(np.concatenate([c.ratios for c in curves]))
        y = np.concatenate(retention or [np.asarray(c.retention, float) for c in curves])
        x_n = np.log([c.n_params for c in curves])[row] - self.log_n0
        x_d = np.log([c.tokens for c in curves])[row] - self.log_d0
        k = f.n_params

        def residuals(p):
            rstar = clipped_logit(f.ratio(p[:k], X))[row]
            shape = shape_at(p[k:], x_n, x_d)
            return retention_model(plateau, rstar, shape, ratio_logit, self.threshold) - y

        extra = np.zeros(self.steepness_terms)
        starts = ([start] if start is not None
                  else [np.r_[theta, lk, -1.0, extra] for lk in (0.0, 1.5)])  # fmt: skip
        p = solve(residuals, starts, "soft_l1", SOFT_L1_RETENTION)
        return p[:k], [float(v) for v in p[k:]]

    def free_logit_rstar(self) -> dict[str, float]:
        """Each collapsed curve's own logit r*, not tied to the law: the detector's (points) or
        the sigmoid's with the fitted steepness (joint)."""
        if self.method == "points":
            return {s: float(clipped_logit(r)) for s, r in self.measured.items()}
        out = {}
        for c in self.curves:
            if c.name not in self.measured:
                continue
            x, y = clipped_logit(np.asarray(c.ratios)), np.asarray(c.retention)

            def residuals(z, x=x, y=y, c=c):
                shape = self.shape_at(c.n_params, c.tokens)
                return retention_model(c.plateau, z[0], shape, x, self.threshold) - y

            start = np.array([clipped_logit(self.measured[c.name])])
            out[c.name] = float(solve(residuals, [start], "soft_l1", SOFT_L1_RETENTION)[0])
        return out

    def size_residuals(self, own_logit: dict[str, float]) -> list[float]:
        """Each curve's own logit r* off the law, centred and inflated for the parameters spent."""
        by_name = {c.name: c for c in self.curves}
        e = np.array([z - self.law_logit(by_name[s].n_params, by_name[s].tokens)[0]
                      for s, z in own_logit.items()])  # fmt: skip
        m, p = len(e), self.form.n_params
        # Residuals of a fit that spent p parameters on m points are too small by sqrt(m / (m - p)).
        return ((e - e.mean()) * math.sqrt(m / (m - p))).tolist()


def point_law(points: list[Point]) -> Callable[[float, float], float]:
    """A quick power_n fit through (n_params, tokens, r*) points, no uncertainty: to seed a
    search with where the next size's collapse is likely (budgets are ignored)."""
    fit = PointFit.through({f"p{i}": (n, 1.0, r) for i, (n, _, r) in enumerate(points)})
    theta = np.asarray(fit.params)
    return lambda n_params, tokens: float(fit.form.ratio(theta, fit.design(n_params, 1.0))[0])
