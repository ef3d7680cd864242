"""What a forecast returns: a `Prediction` for one size and budget (r* with its interval, the
ratios that keep each tolerance, the learning side and the `Decision`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from kinfuse_ray.config import PREDICT_DEFAULTS
from kinfuse_ray.decision import Decision
from kinfuse_ray.law.checks import SideCheck
from kinfuse_ray.law.curves import SizeCurve


@dataclass(frozen=True)
class Exposures:
    """Ratios in units a team can carry to another setting: how often each general fact is
    rehearsed and each domain fact seen over `tokens`, at the largest fitted size's rates (its
    fact sets and renderings)."""

    tokens: float
    domain_per_token: float
    general_per_token: float

    def at(self, ratio: float) -> tuple[float, float]:
        """(rehearsals per general fact, exposures per domain fact) at `ratio`."""
        return (
            (1 - ratio) * self.tokens * self.general_per_token,
            ratio * self.tokens * self.domain_per_token,
        )


@dataclass(frozen=True)
class ToleranceRow:
    """The ratio up to which retention stays at `tolerance` x plateau at the queried size: its
    median over the draws, its central interval, and the bound it exceeds at the stated
    confidence (the largest ratio with P_keep >= confidence)."""

    tolerance: float
    ratio: float
    interval: tuple[float, float]
    bound: float


@dataclass(frozen=True)
class Prediction:
    """The forecast for one size and token budget: r* with its interval, the ratios that keep
    each tolerance, the learning side, and the decision (kinfuse_ray/decision.py) at the stated
    confidence. Every quantity is evaluated at the queried size itself."""

    n_params: float
    tokens: float
    collapse_ratio: float  # r*: past it half of what was known is lost (not the ratio to use)
    interval: tuple[float, float]
    confidence: float
    tolerance: float  # the tolerance the decision keeps
    decision: Decision
    tolerances: tuple[ToleranceRow, ...] = ()
    acquisition_threshold: float | None = None  # median ratio that learns the domain
    acquisition_interval: tuple[float, float] | None = None
    acquisition_target: float = PREDICT_DEFAULTS.acquisition_target
    acquisition_note: str | None = None  # why the learning side is unknown
    # Retention one trial keeps at the recommended ratio (share of plateau), with its interval.
    expected_retention: tuple[float, tuple[float, float]] | None = None
    # Share of the keep ratio's interval width each source accounts for (held fixed in turn).
    width_sources: dict[str, float] = field(default_factory=dict)
    exposures: Exposures | None = None  # None: the trials did not record them
    # Each side's leave-one-size-out check on the ladder (none: too few sizes to check).
    calibration: tuple[SideCheck, ...] = ()
    warnings: tuple[str, ...] = ()
    rung: str | None = None  # the fitted curve measured at this very size and budget, if any

    def check(self, side: str) -> SideCheck | None:
        """The held-out check of a side, "keeps" or "learns" (None: not checked)."""
        return next((c for c in self.calibration if c.side == side), None)

    @property
    def uncalibrated(self) -> tuple[str, ...]:
        """The sides whose probabilities failed their check: not to be quoted as probabilities."""
        return tuple(c.side for c in self.calibration if not c.calibrated)

    @property
    def keep_row(self) -> ToleranceRow:
        """The table's row at the decision's own tolerance: the keep ratio, the window's upper
        edge."""
        return next(row for row in self.tolerances if row.tolerance == self.tolerance)

    @property
    def learns_at_no_ratio(self) -> bool:
        """The median draw's acquisition curve tops out below the target at this size: no share
        of the mix learns the domain (a capacity limit, not one of exposure)."""
        return self.acquisition_threshold is not None and self.acquisition_threshold > NO_RATIO

    @property
    def recommended_ratio(self) -> float | None:
        """The ratio to use; None where nothing is recommended (no ratio meets the rule, or the
        forecast is not informative: `decision.reasons` say why)."""
        return self.decision.ratio if self.decision.informative else None

    @property
    def window_empty(self) -> bool:
        return self.decision.window_empty

    def to_dict(self) -> dict:
        """Plain JSON: every field, with the recommended ratio and whether the window is empty."""
        return {
            **asdict(self),
            "recommended_ratio": self.recommended_ratio,
            "window_empty": self.window_empty,
            "uncalibrated": list(self.uncalibrated),
        }


NO_RATIO = 0.9999  # a learn ratio above this is the curve's "never" (law/acquisition.py)
EXTRAPOLATION_WARN = 10.0  # warn when the query lies this factor beyond the fitted sizes
EXTRAPOLATION_LIMIT = 100.0  # past this factor, no number: the law's shape is a guess there


def exposures_at(curves: Sequence[SizeCurve], tokens: float) -> Exposures | None:
    """Exposures at the largest fitted size's rates over `tokens` of infusion, or over what the
    rungs infused where the law's D is their pre-training (None: the trials did not record
    them)."""
    largest = max(curves, key=lambda c: c.n_params)
    rates = (largest.domain_per_token, largest.general_per_token)
    infused = largest.infused_tokens or tokens
    return None if any(math.isnan(v) for v in rates) else Exposures(infused, *rates)


def range_warnings(
    curves: Sequence[SizeCurve], uses_tokens: bool, n_params: float, tokens: float
) -> list[str]:
    """What a forecast at (n_params, tokens) should warn of: a budget a law without a D term
    never saw, a size or budget far outside the fitted ones."""
    warnings = []
    budgets = sorted({c.tokens for c in curves})
    if not uses_tokens and tokens not in budgets:
        warnings.append(
            f"token budget {tokens:,.0f} differs from the ladder's "
            f"({', '.join(f'{b:,.0f}' for b in budgets)}): this law has no D term, so it "
            "assumes r* does not move with the budget; every fact is seen in proportion to "
            "the tokens"
        )
    for label, value, fitted in (
        ("size", n_params, [c.n_params for c in curves]),
        ("token budget", tokens, [c.tokens for c in curves]),
    ):
        if value > max(fitted) * EXTRAPOLATION_WARN or value < min(fitted) / EXTRAPOLATION_WARN:
            warnings.append(
                f"extrapolating: {label} {value:.3g} lies far outside the fitted range "
                f"{min(fitted):.3g}-{max(fitted):.3g}"
            )
    return warnings


def beyond_reach(curves: Sequence[SizeCurve], n_params: float, tokens: float) -> list[str]:
    """Why a forecast at (n_params, tokens) is not informative however narrow its interval: a
    size or budget EXTRAPOLATION_LIMIT times or more beyond the fitted ones (empty: in reach)."""
    reasons = []
    for label, value, fitted in (
        ("size", n_params, [c.n_params for c in curves]),
        ("token budget", tokens, [c.tokens for c in curves]),
    ):
        factor = max(value / max(fitted), min(fitted) / value)
        if factor >= EXTRAPOLATION_LIMIT:
            reasons.append(
                f"{label} {value:.3g} lies {factor:,.0f}x beyond the fitted {min(fitted):.3g}-"
                f"{max(fitted):.3g}: past {EXTRAPOLATION_LIMIT:g}x the law is a guess; add rungs "
                "nearer it"
            )
    return reasons


def rung_at(curves: Sequence[SizeCurve], n_params: float, tokens: float) -> str | None:
    """The name of the curve measured at this size and budget (None: a size the ladder lacks)."""
    return next((c.name for c in curves
                 if math.isclose(c.n_params, n_params, rel_tol=1e-9)
                 and math.isclose(c.tokens, tokens, rel_tol=1e-9)), None)  # fmt: skip
