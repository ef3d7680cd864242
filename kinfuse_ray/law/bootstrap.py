"""Uncertainty: a parametric bootstrap of the two-level model a point fit implies. Each size's
collapse deviates from the law by a size-level residual (the measured ones, centred and inflated
for the parameters the law spends) and each trial by trial-level noise (resampled within its
size). Every draw regenerates the data, refits the law, and adds a fresh size-level residual to
the prediction for the queried size: a prediction interval for a new model, not only the law's
confidence band. Nothing is widened by hand; the point estimate may lie anywhere in its interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from kinfuse_ray.law.curves import clipped_logit
from kinfuse_ray.law.fit import PointFit, retention_model


def central_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Draws:
    """Per bootstrap draw: the law's parameters, the curve's shape (joint: log steepness, floor
    parameter and, for a moving steepness, its slopes; no columns for points) and a new size's
    deviation from the law in logit r*."""

    params: np.ndarray  # (draws, parameters)
    shapes: np.ndarray  # (draws, 2 + steepness terms) or (draws, 0)
    deviations: np.ndarray  # (draws,)

    def to_rows(self) -> list[list[float]]:
        return np.column_stack([self.params, self.shapes, self.deviations]).tolist()

    @classmethod
    def from_rows(cls, rows: list[list[float]], n_params: int, n_shape: int) -> Draws:
        a = np.asarray(rows, float).reshape(len(rows), n_params + n_shape + 1)
        return cls(a[:, :n_params], a[:, n_params : n_params + n_shape], a[:, -1])


@dataclass(frozen=True)
class BootstrapFit:
    """A point fit with its draws: the sizes' residuals around it (`size_residuals`, in logit
    r*), one trial's retention noise as a share of plateau (`trial_sd`, joint only) and `draws`."""

    point: PointFit
    size_residuals: tuple[float, ...]
    trial_sd: float
    draws: Draws

    @classmethod
    def fit(cls, point: PointFit, n_draws: int, seed: int) -> BootstrapFit:
        """Draws of `point` regenerated `n_draws` times from `seed`. What a new size will show is
        its r* as the detector measures it: the sizes' scatter around the law is taken in those
        terms (the joint fit's own per-size r* are smoother and would leave the detector's noise
        out of the interval)."""
        measured = {s: float(clipped_logit(r)) for s, r in point.measured.items()}
        residuals = point.size_residuals(measured)
        trial_sd, draws = _draw(point, point.free_logit_rstar(), residuals, n_draws, seed)
        return cls(point, tuple(residuals), trial_sd, draws)

    @property
    def size_scatter(self) -> float:
        """How far a size's (or a (size, budget)'s) collapse point lies off the law: the sd, in
        logit r*, that forecasts draw a new size's deviation with."""
        e = np.array(self.size_residuals)
        return float(np.sqrt(e @ e / len(e)))

    @property
    def degrees_of_freedom(self) -> int:
        """What the sizes' scatter around the law is known from: sizes less parameters."""
        return len(self.size_residuals) - self.point.form.n_params

    def parameter_intervals(self, confidence: float) -> dict[str, tuple[float, float]]:
        """Each readable parameter's central interval over the draws."""
        out = {}
        for i, name in enumerate(self.point.form.parameters):
            values = self.draws.params[:, i]
            values = expit(values) if name == "logit_r_max" else values
            out["r_max" if name == "logit_r_max" else name] = central_interval(values, confidence)
        return out

    def law_draws_logit(self, n_params: float, tokens: float) -> np.ndarray:
        """Per draw, the law's own logit r* at this size (its parameters only)."""
        X = self.point.design(n_params, tokens)
        form = self.point.form
        return np.array([clipped_logit(form.ratio(theta, X))[0] for theta in self.draws.params])


def _draw(point: PointFit, free: dict[str, float], residuals: list[float], n_draws: int,
          seed: int) -> tuple[float, Draws]:  # fmt: skip
    """Regenerate the data from the fitted two-level model, refit, and keep each draw's
    parameters, curve shape (joint) and a fresh size-level residual for the queried size; with
    one trial's noise (joint; 0 for points)."""
    rng = np.random.default_rng(seed)
    e = np.array(residuals)
    curves, threshold = point.curves, point.threshold
    law_z = {c.name: point.law_logit(c.n_params, c.tokens)[0] for c in curves}
    x = {c.name: clipped_logit(np.asarray(c.ratios)) for c in curves}
    noise, trial_sd = {}, 0.0  # joint: trial-level residuals around each size's own curve
    shape_of = {}  # joint: each curve's shape (a moving steepness differs by size)
    if point.method == "joint":
        shape_of = {c.name: point.shape_at(c.n_params, c.tokens) for c in curves}
        for c in curves:
            z = free.get(c.name, law_z[c.name])
            fitted = retention_model(c.plateau, z, shape_of[c.name], x[c.name], threshold)
            noise[c.name] = np.asarray(c.retention) - fitted
        pooled = np.concatenate([noise[c.name] / c.plateau for c in curves])
        trial_sd = float(np.sqrt(np.mean(pooled**2)))
    start = np.r_[point.params, point.shape]
    # Sizes scatter around the law by N(0, tau^2); tau is known only from m - p residuals,
    # so each draw first draws tau (scaled inverse chi-square, as for a regression's
    # prediction interval), then every size's deviation and the new size's from it.
    dof = len(e) - point.form.n_params
    scale2 = float(e @ e) / len(e)  # e is already inflated to an unbiased scale
    rows = []
    for _ in range(n_draws):
        tau = math.sqrt(scale2 * dof / rng.chisquare(dof))
        z = {s: law_z[s] + tau * rng.standard_normal() for s in law_z}
        points = [(c.n_params, c.tokens, float(expit(z[c.name]))) for c in curves if c.name in free]
        retention = None
        if point.method == "joint":
            retention = [
                retention_model(c.plateau, z[c.name], shape_of[c.name], x[c.name], threshold)
                + rng.choice(noise[c.name], len(c.ratios))
                for c in curves
            ]
        theta, drawn_shape = point.refit(points, start, retention)
        rows.append([*map(float, theta), *drawn_shape, tau * rng.standard_normal()])
    return trial_sd, Draws.from_rows(rows, point.form.n_params, len(point.shape))
