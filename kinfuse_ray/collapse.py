"""Find a model size's collapse point r* from its retention-vs-ratio curve.

The rule (documented in the README and tested):
1. The plateau is the base model's retention (before any infusion) where the schedule has one,
   else the median retention of the `plateau_points` lowest ratios tried.
2. Normalised retention is retention / plateau.
3. r* is the first ratio, scanning upwards, where normalised retention falls below `threshold`;
   it is interpolated linearly in log r between that ratio and the one before it, and those two
   ratios are its bracket.
4. If no ratio falls below the threshold there is no collapse within the searched range (r* is
   only known to exceed the largest ratio); if the lowest ratio already falls below it, r* lies
   below the searched range; if the plateau itself is not above chance, nothing can be said.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from kinfuse_ray.config import EVAL_DEFAULTS

MIN_PLATEAU = 0.05  # chance-corrected retention below this is noise, not a plateau


class Outcome(StrEnum):
    collapsed = "collapsed"
    no_collapse = "no collapse within the searched range"
    below_range = "collapsed below the searched range"
    no_plateau = "retention never rose above chance"


@dataclass(frozen=True)
class CollapsePoint:
    outcome: Outcome
    ratio: float | None  # r*, when it was found
    bracket: tuple[float, float]  # r* lies within these ratios
    plateau: float
    threshold: float

    @property
    def found(self) -> bool:
        return self.outcome is Outcome.collapsed


def detect_collapse(
    ratios: list[float] | np.ndarray,
    retention: list[float] | np.ndarray,
    threshold: float = EVAL_DEFAULTS.collapse_threshold,
    plateau_points: int = EVAL_DEFAULTS.plateau_points,
    plateau: float | None = None,
) -> CollapsePoint:
    """Apply the rule above to one size's trials (any order; ratios must be > 0 to interpolate).
    `plateau`: the base model's retention, when there is one."""
    order = np.argsort(ratios)
    r = np.asarray(ratios, dtype=float)[order]
    y = np.asarray(retention, dtype=float)[order]
    if len(r) == 0:
        raise ValueError("no trials to detect a collapse from")
    if plateau is None:
        plateau = float(np.median(y[:plateau_points]))
    if plateau < MIN_PLATEAU:
        return CollapsePoint(
            Outcome.no_plateau, None, (float(r[0]), float(r[-1])), plateau, threshold
        )
    below = np.flatnonzero(y / plateau < threshold)
    if len(below) == 0:
        return CollapsePoint(Outcome.no_collapse, None, (float(r[-1]), 1.0), plateau, threshold)
    i = int(below[0])
    if i == 0:
        return CollapsePoint(Outcome.below_range, None, (0.0, float(r[0])), plateau, threshold)
    lo, hi = r[i - 1], r[i]
    y_lo, y_hi = y[i - 1] / plateau, y[i] / plateau
    frac = (y_lo - threshold) / (y_lo - y_hi)
    r_star = float(np.exp(np.log(lo) + frac * (np.log(hi) - np.log(lo))))
    return CollapsePoint(Outcome.collapsed, r_star, (float(lo), float(hi)), plateau, threshold)


def best_safe_ratio(
    ratios: list[float] | np.ndarray,
    retention: list[float] | np.ndarray,
    plateau: float,
    tolerance: float = EVAL_DEFAULTS.plateau_tolerance,
) -> float | None:
    """The largest ratio tried below which every trial kept retention >= tolerance x plateau."""
    order = np.argsort(ratios)
    safe = None
    for r, y in zip(np.asarray(ratios)[order], np.asarray(retention)[order], strict=True):
        if plateau <= 0 or y < tolerance * plateau:
            break
        safe = float(r)
    return safe


def detect_acquisition(
    ratios: list[float] | np.ndarray, acquisition: list[float] | np.ndarray, target: float
) -> float | None:
    """The lowest ratio at which acquisition reaches `target`: the first ratio, scanning upwards,
    at or above it, interpolated in log r from the ratio before. None when no ratio reaches it,
    or the lowest one already does (the threshold then lies below the searched range)."""
    order = np.argsort(ratios)
    r = np.asarray(ratios, dtype=float)[order]
    y = np.asarray(acquisition, dtype=float)[order]
    above = np.flatnonzero(y >= target)
    if len(above) == 0 or above[0] == 0:
        return None
    i = int(above[0])
    frac = (target - y[i - 1]) / (y[i] - y[i - 1])
    return float(np.exp(np.log(r[i - 1]) + frac * (np.log(r[i]) - np.log(r[i - 1]))))
