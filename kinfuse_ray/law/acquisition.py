"""The learning side: the lowest ratio that learns the domain, per size, and its own law through
them (the points method: Gu et al. 2025 find this threshold falls as a power law in N), drawn
jointly with the retention side."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinfuse_ray.law.bootstrap import BootstrapFit
from kinfuse_ray.law.curves import SizeCurve
from kinfuse_ray.law.fit import Point, PointFit
from kinfuse_ray.law.forms import DEFAULT_FORM, FORMS


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
class AcquisitionFit:
    """Each size's learning threshold (`thresholds`: name -> (n_params, tokens, ratio)), the law
    through them (`fit`; None with too few, `note` says why) and how a size's deviation in r*
    goes with its deviation here (`rho`)."""

    thresholds: dict[str, Point]
    fit: BootstrapFit | None = None
    rho: float = 0.0
    note: str | None = None

    @classmethod
    def of(
        cls, curves: list[SizeCurve], target: float, retention: BootstrapFit, n_draws: int,
        seed: int,
    ) -> AcquisitionFit:  # fmt: skip
        """Thresholds where acquisition reaches `target`, and their law when enough sizes have
        one; `retention` gives the sizes' r* residuals the two sides are correlated through."""
        points = {}
        for c in curves:
            a = c.acquisition_threshold(target)
            if a is not None:
                points[c.name] = (c.n_params, c.tokens, a)
        needed = FORMS[DEFAULT_FORM].n_params + 1
        if len(points) < needed:
            note = (
                f"the lowest ratio that learns the domain (acquisition {target}) was found at "
                f"{len(points)} of {len(curves)} sizes and its law needs {needed}: "
                + learning_hint([c for c in curves if c.name not in points], target)
            )
            return cls(points, note=note)
        fit = BootstrapFit.fit(PointFit.through(points), n_draws, seed)
        # A new size's two deviations are drawn with this correlation (0 with fewer than 3
        # sizes in common).
        mine = dict(zip(retention.point.measured, retention.size_residuals, strict=True))
        theirs = dict(zip(points, fit.size_residuals, strict=True))
        common = [s for s in points if s in mine]
        rho = 0.0
        if len(common) >= 3:
            pairs = np.array([[mine[s], theirs[s]] for s in common])
            if pairs.std(axis=0).min() > 0:
                rho = float(np.clip(np.corrcoef(pairs.T)[0, 1], -0.99, 0.99))
        return cls(points, fit, rho)

    def learn_logits(
        self, n_params: float, tokens: float, deviation: np.ndarray, seed: int
    ) -> np.ndarray | None:
        """Per draw, the logit of the lowest ratio that learns the domain at this size, paired
        with the retention draws: this law's own parameter draw, and a new size's deviation
        correlated with the retention side's `deviation` as the measured sizes' residuals are."""
        if self.fit is None:
            return None
        base = self.fit.law_draws_logit(n_params, tokens)
        own = self.fit.draws.deviations
        sd = float(deviation.std())
        u = deviation / sd if sd > 0 else np.zeros_like(deviation)
        v = np.random.default_rng(seed + 1).standard_normal(len(base))
        return base + float(own.std()) * (self.rho * u + math.sqrt(1 - self.rho**2) * v)
