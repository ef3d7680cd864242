"""What a law is fitted with (`FitSettings`) and what a forecast is stated at
(`ForecastSettings`), mapped from a sweep file's sections in one place (`from_sweep`). A fitted
law keeps both; a forecast's settings can change without a refit, a fit's cannot."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from kinfuse_ray.config import EVAL_DEFAULTS, PREDICT_DEFAULTS, EvalConfig, PredictConfig
from kinfuse_ray.decision import Rule


@dataclass(frozen=True)
class FitSettings:
    form: str = "auto"  # a name in FORMS, or "auto": chosen by leave-one-size-out (select_law)
    method: str = PREDICT_DEFAULTS.method  # "joint": every trial; "points": each size's r*
    threshold: float = EVAL_DEFAULTS.collapse_threshold  # the collapse threshold defining r*
    # "Learns the domain": chance-corrected acquisition at least this.
    acquisition_target: float = PREDICT_DEFAULTS.acquisition_target
    n_bootstrap: int = PREDICT_DEFAULTS.bootstrap
    seed: int = 0
    # The joint curve's steepness: "fixed", "moving" (ln k a law in N, and D) or "auto": the one
    # that forecasts held-out sizes' keep ratios better (select_law).
    steepness: str = PREDICT_DEFAULTS.steepness


@dataclass(frozen=True)
class ForecastSettings:
    confidence: float = PREDICT_DEFAULTS.confidence
    tolerance: float = EVAL_DEFAULTS.plateau_tolerance  # the recommended ratio keeps this x plateau
    tolerances: tuple[float, ...] = tuple(PREDICT_DEFAULTS.tolerances)  # the table's rows
    rule: Rule = PREDICT_DEFAULTS.rule  # how the decision picks one ratio (decision.py)


FIT_ONLY = tuple(f.name for f in fields(FitSettings))
FORECAST = tuple(f.name for f in fields(ForecastSettings))


def from_sweep(
    evals: EvalConfig, predict: PredictConfig, seed: int = 0
) -> tuple[FitSettings, ForecastSettings]:
    """The law's settings from a sweep's eval and predict sections (sweeps, `kinfuse fit`)."""
    fit = FitSettings(predict.law, predict.method, evals.collapse_threshold,
                      predict.acquisition_target, predict.bootstrap, seed, predict.steepness)  # fmt: skip
    forecast = ForecastSettings(predict.confidence, evals.plateau_tolerance,
                                tuple(predict.tolerances), predict.rule)  # fmt: skip
    return fit, forecast


def split(**options) -> tuple[FitSettings, ForecastSettings]:
    """Keyword settings (`n_bootstrap=100, confidence=0.8`) sorted into the two types; an unknown
    name is a TypeError, as for any function."""
    unknown = set(options) - {*FIT_ONLY, *FORECAST}
    if unknown:
        raise TypeError(f"unknown law settings: {', '.join(sorted(unknown))}")
    if "tolerances" in options:
        options["tolerances"] = tuple(options["tolerances"])
    pick = lambda names: {k: v for k, v in options.items() if k in names}  # noqa: E731
    return FitSettings(**pick(FIT_ONLY)), ForecastSettings(**pick(FORECAST))


def overridden(
    fit: FitSettings, forecast: ForecastSettings, overrides: dict
) -> tuple[FitSettings, ForecastSettings, list[str]]:
    """`overrides` (None values ignored) applied; a note for each that changes a setting."""
    notes = []
    for key, value in overrides.items():
        owner = fit if key in FIT_ONLY else forecast
        before = getattr(owner, key)
        if value is None or value == before:
            continue
        notes.append(f"--{key.replace('_', '-')} {value} overrides the sweep's {before}")
        if owner is fit:
            fit = replace(fit, **{key: value})
        else:
            forecast = replace(forecast, **{key: value})
    return fit, forecast, notes
