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
class HeldPoint:
    """A probability the law fitted without a size stated at one of that size's measured ratios
    (P(keeps) or P(learns) there), what the size did there (1: it kept, or learned; 0: not)
    and what the nearest remaining size did there, as is (the baseline)."""

    side: str  # "keeps" or "learns"
    ratio: float
    predicted: float
    observed: float
    baseline: float


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
    points: tuple[HeldPoint, ...] = ()  # P(keeps), P(learns) at its measured ratios

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
        points = tuple(HeldPoint(**p) for p in raw.get("points", ()))
        return cls(**{**raw, "interval": tuple(raw["interval"]), "keep": value(raw.get("keep")),
                      "learn": value(raw.get("learn")), "points": points})  # fmt: skip


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


def keep_widening(held_out: tuple[HeldOut, ...], confidence: float) -> float:
    """How much the keep ratio's intervals must widen (about their medians, in logits) for the
    held-out sizes' measured keep ratios to fall inside them at `confidence`: the conformal
    quantile (the ceil((n + 1) confidence)-th smallest, the largest with fewer folds) of each
    fold's error over its interval's half-width on the error's side. 1 where they already do:
    the law's own interval is never narrowed by a few folds that it covered."""
    ratios = []
    for h in held_out:
        if h.keep is None:
            continue
        error = float(clipped_logit(h.keep.measured) - clipped_logit(h.keep.predicted))
        edge = h.keep.interval[0] if error < 0 else h.keep.interval[1]
        half = abs(float(clipped_logit(edge) - clipped_logit(h.keep.predicted)))
        if half > 0:  # (no interval: a fold fitted without draws)
            ratios.append(abs(error) / half)
    if not ratios:
        return 1.0
    rank = min(len(ratios), math.ceil((len(ratios) + 1) * confidence))
    return max(1.0, sorted(ratios)[rank - 1])


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


# A side's probabilities hold on a ladder when, leave-one-size-out, they score no worse (Brier)
# than the nearest size's own outcome as is, and what they claim at the stated confidence holds
# at least this share of the nominal rate.
CLAIMS_FLOOR = 0.8


@dataclass(frozen=True)
class SideCheck:
    """One side of the window (keeps retention, learns the domain) checked leave-one-size-out on
    its probabilities at the held-out sizes' measured ratios: whether they mean what they say."""

    side: str  # "keeps" or "learns"
    points: int  # (held-out size, ratio) pairs scored
    brier: float
    baseline_brier: float  # the nearest remaining size's outcome at that ratio, as is
    nominal: float  # the confidence the answer states
    claims: int  # points where the probability was at least `nominal`
    claims_held: float  # the share of those where the size did keep (or learn); NaN: none

    @property
    def calibrated(self) -> bool:
        held = self.claims == 0 or self.claims_held >= CLAIMS_FLOOR * self.nominal
        return self.brier <= self.baseline_brier and held

    def describe(self) -> str:
        claims = (
            f"; of {self.claims} stated at >= {self.nominal:.0%}, {self.claims_held:.0%} held"
            if self.claims
            else ""
        )
        return (
            f"leave-one-size-out over {self.points} measured ratios: Brier {self.brier:.3f} vs "
            f"{self.baseline_brier:.3f} for the nearest size as is{claims}"
        )


def side_checks(held_out: tuple[HeldOut, ...], nominal: float) -> tuple[SideCheck, ...]:
    """Each side the held-out sizes scored, checked (none where no fold scored it)."""
    out = []
    for side in ("keeps", "learns"):
        points = [p for h in held_out for p in h.points if p.side == side]
        if not points:
            continue
        predicted = np.array([p.predicted for p in points])
        observed = np.array([p.observed for p in points])
        baseline = np.array([p.baseline for p in points])
        claimed = predicted >= nominal
        held = float(observed[claimed].mean()) if claimed.any() else float("nan")
        out.append(SideCheck(
            side, len(points), float(np.mean((predicted - observed) ** 2)),
            float(np.mean((baseline - observed) ** 2)), nominal, int(claimed.sum()), held,
        ))  # fmt: skip
    return tuple(out)
