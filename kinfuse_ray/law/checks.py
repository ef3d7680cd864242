"""What the law is checked with: sizes held out and predicted by the rest (`HeldOut`), whether
r* still moves over the top sizes (`TopSlope`), and forms compared on held-out sizes
(`LawComparison`). Types and pure functions; kinfuse_ray/law/select.py runs the folds."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import t as student_t

from kinfuse_ray.law.bootstrap import BootstrapFit
from kinfuse_ray.law.curves import clipped_logit, spans_budgets


@dataclass(frozen=True)
class HeldValue:
    """One quantity of a held-out size: measured, predicted by the law fitted without it (with
    its interval), and the nearest remaining size's measured value used as is (the baseline)."""

    measured: float
    predicted: float
    interval: tuple[float, float]
    baseline: float

    @property
    def covered(self) -> bool:
        return self.interval[0] <= self.measured <= self.interval[1]

    @property
    def width_logits(self) -> float:
        return float(clipped_logit(self.interval[1]) - clipped_logit(self.interval[0]))

    @property
    def logit_error(self) -> float:
        return float(clipped_logit(self.predicted) - clipped_logit(self.measured))

    @property
    def baseline_logit_error(self) -> float:
        return float(clipped_logit(self.baseline) - clipped_logit(self.measured))


@dataclass(frozen=True)
class HeldOut:
    """One size left out of the fit and predicted by the rest (leave-one-size-out): its r*, and
    where measured, the ratio keeping the tolerance and the ratio learning the domain."""

    size: str
    n_params: float
    form: str  # the law the other sizes chose (or were given)
    measured: float  # the detector's r* of that size
    predicted: float
    interval: tuple[float, float]
    baseline: float  # the nearest remaining size's measured r*, used as is
    keep: HeldValue | None = None
    learn: HeldValue | None = None

    @property
    def rstar(self) -> HeldValue:
        return HeldValue(self.measured, self.predicted, self.interval, self.baseline)

    @property
    def covered(self) -> bool:
        return self.rstar.covered

    @property
    def log_error(self) -> float:
        """Error in log general share, log(1 - r*): the quantity the pilot's power law is in."""
        return math.log((1 - self.predicted) / (1 - self.measured))

    @property
    def baseline_log_error(self) -> float:
        return math.log((1 - self.baseline) / (1 - self.measured))

    def to_dict(self) -> dict:
        return {**asdict(self), "covered": self.covered, "log_error": self.log_error,
                "baseline_log_error": self.baseline_log_error}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict) -> HeldOut:
        def value(v):
            return v and HeldValue(**{**v, "interval": tuple(v["interval"])})

        raw = {
            k: v for k, v in raw.items() if k not in ("covered", "log_error", "baseline_log_error")
        }
        return cls(**{**raw, "interval": tuple(raw["interval"]), "keep": value(raw.get("keep")),
                      "learn": value(raw.get("learn"))})  # fmt: skip


def held_out_summary(held_out: tuple[HeldOut, ...]) -> dict[str, float] | None:
    """Leave-one-size-out: coverage, median |log error| in 1 - r*, and the baseline's."""
    if not held_out:
        return None
    return {
        "sizes": len(held_out),
        "coverage": float(np.mean([h.covered for h in held_out])),
        "median_abs_log_error": float(np.median([abs(h.log_error) for h in held_out])),
        "baseline_median_abs_log_error": float(
            np.median([abs(h.baseline_log_error) for h in held_out])
        ),
    }


@dataclass(frozen=True)
class TopSlope:
    """Does r* still move with N over the top sizes? The slope of their logit r* in log N, with
    a t interval from the sizes' scatter around the law. A diagnostic: the forecast is the law
    evaluated at the queried size either way (with three sizes the test has little power, so a
    slope whose interval includes 0 is "not shown to move", never "saturated")."""

    sizes: tuple[str, ...]
    slope: float
    interval: tuple[float, float]

    @property
    def moving(self) -> bool:
        return self.interval[0] > 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "moving": self.moving}

    @classmethod
    def from_dict(cls, raw: dict) -> TopSlope:
        return cls(tuple(raw["sizes"]), raw["slope"], tuple(raw["interval"]))


def top_slope(fit: BootstrapFit, confidence: float, top: int = 3) -> TopSlope | None:
    """The slope of the top sizes' measured logit r* in log N, with a t interval from the
    size-level scatter around the whole law (a single budget only: with several, N and D mix)."""
    point = fit.point
    if spans_budgets(point.curves) or len(point.measured) < top:
        return None
    by_name = {c.name: c for c in point.curves}
    names = sorted(point.measured, key=lambda s: by_name[s].n_params)[-top:]
    x = np.log([by_name[s].n_params for s in names])
    y = np.array([float(clipped_logit(point.measured[s])) for s in names])
    slope = float(np.polyfit(x, y, 1)[0])
    e = np.array(fit.size_residuals)
    sd = math.sqrt(float(e @ e) / len(e))  # already inflated to an unbiased scale
    se = sd / math.sqrt(float(((x - x.mean()) ** 2).sum()))
    half = float(student_t.ppf(0.5 + confidence / 2, max(fit.degrees_of_freedom, 1))) * se
    return TopSlope(tuple(names), slope, (slope - half, slope + half))


@dataclass(frozen=True)
class LawComparison:
    """One candidate form scored by leave-one-size-out point predictions."""

    form: str
    held_out_error: float  # mean |log error| in 1 - r* over the held-out sizes
