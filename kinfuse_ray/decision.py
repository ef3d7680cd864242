"""From the law's uncertainty draws at one target size to one decision about the infusion ratio.

Every bootstrap draw of the law gives, at the target, the ratio up to which retention stays at
the tolerance (`keep`) and the ratio from which the domain is learned (`learn`), as a pair: the
same draw, so whatever ties the two sides (a size that holds up well may learn well too) stays
in the answer. From them, on a grid of ratios r:

    P_keep(r)  = share of draws with r <= keep      (retention >= tolerance x plateau)
    P_learn(r) = share of draws with r >= learn     (acquisition >= the target)
    P_both(r)  = share of draws with learn <= r <= keep

- The best-estimate window is [median learn, median keep].
- The window at confidence c is [smallest r with P_learn >= c, largest r with P_keep >= c]: the
  same c on both sides. It is EMPTY only when its lower edge lies above its upper edge.
- c* = max over r of min(P_keep, P_learn): the highest confidence at which some ratio does both.
- The recommended ratio follows a named rule: `retention_first` (default), the largest r with
  P_keep >= c; `balanced`, where c* is reached; `domain_first`, the smallest r with P_learn >= c.
- The forecast is NOT INFORMATIVE when the keep ratio's c interval is wider than
  `MAX_WIDTH_LOGITS`, or when c* lies between 1 - `MIN_C_STAR` and `MIN_C_STAR`: the draws
  neither show a ratio that does both nor show that none does, so one number would claim more
  than the ladder knows. (A c* near 0 is an answer: no ratio does both, and the text says so.)

Pure functions over arrays: no I/O, no prose (kinfuse_ray/presentation.py writes the text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np
from scipy.special import expit

from kinfuse_ray.config import Rule

RULES: tuple[str, ...] = get_args(Rule)
MAX_WIDTH_LOGITS = 2.0  # a keep ratio known only within an odds factor of e^2 = 7.4 is no answer
MIN_C_STAR = 0.6  # below this, no ratio is more likely than not by a margin to do both
GRID = expit(np.linspace(-6.0, 6.0, 481))  # 0.0025 to 0.9975, even in logit


def _share_at_most(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """For each grid point g, the share of `values` at or below g."""
    return np.searchsorted(np.sort(values), grid, side="right") / len(values)


def _share_at_least(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """For each grid point g, the share of `values` at or above g."""
    return 1.0 - np.searchsorted(np.sort(values), grid, side="left") / len(values)


@dataclass(frozen=True)
class DecisionCurves:
    """P_keep, P_learn and P_both on a grid of ratios, from paired draws (logits)."""

    grid: np.ndarray
    p_keep: np.ndarray
    p_learn: np.ndarray | None  # None: no acquisition law (the window's lower side is unknown)
    p_both: np.ndarray | None

    @classmethod
    def from_draws(
        cls, keep_logit: np.ndarray, learn_logit: np.ndarray | None, grid: np.ndarray = GRID
    ) -> DecisionCurves:
        keep, g = np.asarray(keep_logit, float), np.log(grid / (1 - grid))
        p_keep = _share_at_least(keep, g)
        if learn_logit is None:
            return cls(grid, p_keep, None, None)
        learn = np.asarray(learn_logit, float)
        p_learn = _share_at_most(learn, g)
        both = (learn[:, None] <= g) & (g <= keep[:, None])
        return cls(grid, p_keep, p_learn, both.mean(axis=0))


@dataclass(frozen=True)
class Decision:
    """One recommendation at a stated confidence, and what it rests on."""

    rule: str
    confidence: float
    ratio: float | None  # None: no ratio meets the rule at this confidence
    p_keep: float | None
    p_learn: float | None
    p_both: float | None
    best_window: tuple[float, float] | None  # [median learn, median keep]; None: learn unknown
    window: tuple[float, float] | None  # at `confidence` on both sides; None: learn unknown
    c_star: float | None  # max over r of min(P_keep, P_learn)
    c_star_ratio: float | None
    keep_interval: tuple[float, float]  # central `confidence` interval of the keep ratio
    keep_width_logits: float
    learns: bool | None  # P_learn >= 0.5 at the ratio: the domain is more likely learned than not
    informative: bool
    reasons: tuple[str, ...] = ()  # why it is not informative

    @property
    def window_empty(self) -> bool:
        """No ratio both learns the domain and keeps retention at `confidence`."""
        return self.window is not None and self.window[0] > self.window[1]


def _quantile(logits: np.ndarray, q: float) -> float:
    return float(expit(np.quantile(logits, q)))


def decide(
    keep_logit: np.ndarray,
    learn_logit: np.ndarray | None,
    confidence: float,
    rule: str = "retention_first",
    learn_calibrated: bool = True,
) -> tuple[Decision, DecisionCurves]:
    """The decision at `confidence` by `rule` from paired draws of the keep and learn ratios
    (logits) at the target size. A learning side that failed its held-out check
    (`learn_calibrated` False) does not make a forecast uninformative through c*: its
    probabilities are not stated at all."""
    if rule not in RULES:
        raise ValueError(f"unknown rule '{rule}' (choose from {', '.join(RULES)})")
    keep = np.asarray(keep_logit, float)
    curves = DecisionCurves.from_draws(keep, learn_logit)
    tail = (1 - confidence) / 2
    keep_interval = (_quantile(keep, tail), _quantile(keep, 1 - tail))
    width = float(np.quantile(keep, 1 - tail) - np.quantile(keep, tail))
    keep_at_c = _quantile(keep, 1 - confidence)  # the largest r with P_keep >= c
    best_window = window = c_star = c_star_ratio = None
    if learn_logit is not None:
        learn = np.asarray(learn_logit, float)
        best_window = (_quantile(learn, 0.5), _quantile(keep, 0.5))
        window = (_quantile(learn, confidence), keep_at_c)
        worst = np.minimum(curves.p_keep, curves.p_learn)
        i = int(np.argmax(worst))
        c_star, c_star_ratio = float(worst[i]), float(curves.grid[i])
    if rule == "retention_first":
        ratio = keep_at_c
    elif learn_logit is None:
        ratio = None  # balanced and domain_first need the learning side
    elif rule == "balanced":
        ratio = c_star_ratio if c_star > 0 else None
    else:
        ratio = window[0]
    p_keep = p_learn = p_both = None
    if ratio is not None:  # exactly at the ratio, from the draws (not the grid's nearest point)
        x = float(np.log(ratio / (1 - ratio)))
        p_keep = float(np.mean(x <= keep))
        if learn_logit is not None:
            p_learn = float(np.mean(learn <= x))
            p_both = float(np.mean((learn <= x) & (x <= keep)))
    reasons = []
    if width > MAX_WIDTH_LOGITS:
        reasons.append(f"width {width:.1f} logits > {MAX_WIDTH_LOGITS:g}")
    if learn_calibrated and c_star is not None and 1 - MIN_C_STAR < c_star < MIN_C_STAR:
        reasons.append(f"c* {c_star:.2f} between {1 - MIN_C_STAR:g} and {MIN_C_STAR:g}")
    if not learn_calibrated and rule != "retention_first":
        reasons.append(f"rule {rule} rests on the learning side, not calibrated on this ladder")
    decision = Decision(
        rule=rule,
        confidence=confidence,
        ratio=ratio,
        p_keep=p_keep,
        p_learn=p_learn,
        p_both=p_both,
        best_window=best_window,
        window=window,
        c_star=c_star,
        c_star_ratio=c_star_ratio,
        keep_interval=keep_interval,
        keep_width_logits=width,
        learns=None if p_learn is None else p_learn >= 0.5,
        informative=not reasons,
        reasons=tuple(reasons),
    )
    return decision, curves


def width_sources(widths: dict[str, float], full: float) -> dict[str, float]:
    """Share of the keep ratio's interval width (logits) each source accounts for: the width
    lost when that source alone is held fixed, as a share of the full width."""
    if full <= 0:
        return {k: 0.0 for k in widths}
    return {k: max(0.0, (full - w) / full) for k, w in widths.items()}
