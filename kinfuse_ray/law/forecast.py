"""The fitted law, frozen: a retention fit with its draws, the learning side, the checks, and the
settings it was fitted with. `InfusionLaw.fit(curves, ...)` builds one; `predict(n_params,
tokens, rule, *, confidence, tolerance)` states a forecast (at the law's own forecast settings
unless given); `with_forecast(...)` is the same law stating its forecasts otherwise."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.special import expit

from kinfuse_ray.decision import DecisionCurves, Rule
from kinfuse_ray.errors import KinfuseError, KinfuseWarning
from kinfuse_ray.law.acquisition import AcquisitionFit
from kinfuse_ray.law.bootstrap import BootstrapFit
from kinfuse_ray.law.checks import HeldOut, SideCheck, TopSlope, held_out_summary, top_slope
from kinfuse_ray.law.curves import SizeCurve, spans_budgets
from kinfuse_ray.law.draws import AtSize
from kinfuse_ray.law.fit import PointFit
from kinfuse_ray.law.forms import FORMS, Form
from kinfuse_ray.law.prediction import Prediction
from kinfuse_ray.law.settings import FitSettings, ForecastSettings, split
from kinfuse_ray.law.store import (
    acquisition_from_dict,
    acquisition_to_dict,
    fit_from_dict,
    fit_to_dict,
    read_law,
    write_law,
)  # fmt: skip


def fittable(curves: list[SizeCurve], settings: FitSettings) -> tuple[Form, list[SizeCurve]]:
    """The form and the curves a fit uses (those with a plateau and trials), or one line on why
    they cannot be fitted."""
    form = FORMS.get(settings.form)
    if form is None:
        raise KinfuseError(f"unknown law form '{settings.form}' (choose from {', '.join(FORMS)})")
    if settings.method not in ("joint", "points"):
        raise KinfuseError(f"unknown fit method '{settings.method}' (choose from joint, points)")
    curves = [c for c in curves if c.plateau > 0 and len(c.ratios)]
    names = [c.name for c in curves]
    if len(set(names)) < len(names):  # the fit keys each curve by its name
        raise KinfuseError(f"curve names must be unique (one per size and budget): {names}")
    collapsed = sum(c.collapse(settings.threshold).found for c in curves)
    needed = form.n_params + 1  # one more size than parameters, else no residual is left
    if collapsed < needed:
        raise KinfuseError(
            f"the {form.name} law needs collapse points at {needed} or more sizes, got "
            f"{collapsed}; add sizes or widen the ratios so more sizes collapse"
        )
    if form.uses_tokens and not spans_budgets(curves):
        raise KinfuseError(f"the {form.name} law needs sizes at 2 or more token budgets")
    return form, curves


@dataclass(frozen=True)
class InfusionLaw:
    """The knowledge-infusion scaling law r*(N, D), fitted: `retention` (the law and its draws),
    `acquisition` (the learning side), `top_slope` and `held_out` (checks), and its settings."""

    settings: FitSettings
    forecast: ForecastSettings
    retention: BootstrapFit
    acquisition: AcquisitionFit
    top_slope: TopSlope | None = None
    held_out: tuple[HeldOut, ...] = ()
    calibration: tuple[SideCheck, ...] = ()  # each side's held-out check (select_law)
    keep_widening: float = 1.0  # the keep ratio's spread x this, from held_out (select_law)
    # Where it came from, as law.json records it and `kinfuse predict` echoes it: the study and
    # sweep, the commit that fitted it, digests of the data and of the measurements.
    source: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def fit(cls, curves: list[SizeCurve], settings: FitSettings | None = None,
            forecast: ForecastSettings | None = None, **options) -> InfusionLaw:  # fmt: skip
        """The law of `settings.form` fitted to one `SizeCurve` per size (and budget); settings
        as types or keywords (`form="power_n_sat", n_bootstrap=100`). `select_law` chooses the
        form and adds the held-out check."""
        if options:
            settings, forecast = split(**{"form": "power_n", **options})
        settings, forecast = settings or FitSettings("power_n"), forecast or ForecastSettings()
        form, curves = fittable(curves, settings)
        steepness = "fixed" if settings.steepness == "auto" else settings.steepness
        point = PointFit.fit(curves, form, settings.method, settings.threshold, steepness)
        retention = BootstrapFit.fit(point, settings.n_bootstrap, settings.seed)
        acquisition = AcquisitionFit.of(list(point.curves), settings.acquisition_target,
                                        retention, settings.n_bootstrap, settings.seed)  # fmt: skip
        slope = top_slope(retention, forecast.confidence)
        return cls(settings, forecast, retention, acquisition, slope)

    def sourced(self, **source: str) -> InfusionLaw:
        """The same law, recording where it came from (study, sweep, commit, data)."""
        return replace(self, source={**self.source, **source})

    @property
    def measurements(self) -> str:
        """A digest of the measurements it was fitted to (every curve's ratios and scores):
        two laws with the same digest rest on the same trials."""
        rows = json.dumps([asdict(c) for c in self.curves], sort_keys=True, allow_nan=True)
        return hashlib.sha256(rows.encode()).hexdigest()[:12]

    def with_forecast(self, **changes) -> InfusionLaw:
        """The same fit, stating its forecasts at other settings (confidence, tolerance, ...)."""
        return replace(self, forecast=replace(self.forecast, **changes))

    def __repr__(self) -> str:  # the fitted state holds every trial and draw: keep it short
        params = ", ".join(f"{p:+.3f}" for p in self.retention.point.params)
        return (f"InfusionLaw(form={self.form!r}, method={self.method!r}, "
                f"sizes={len(self.curves)}, params=[{params}])")  # fmt: skip

    form = property(lambda self: self.settings.form)
    method = property(lambda self: self.settings.method)
    curves = property(lambda self: self.retention.point.curves)
    measured = property(lambda self: self.retention.point.measured, doc="detector r* per curve")
    size_scatter = property(lambda self: self.retention.size_scatter)
    parameters = property(lambda self: self.retention.point.named_parameters)
    held_out_summary = property(lambda self: held_out_summary(self.held_out))

    def parameter_intervals(self) -> dict[str, tuple[float, float]]:
        return self.retention.parameter_intervals(self.forecast.confidence)

    def report(self) -> dict:
        """The fit as a sweep's summary.json gives it: form, parameters with their intervals,
        the held-out check and the slope over the top sizes."""
        return {
            "form": self.form, "method": self.method, "params": self.parameters,
            "intervals": self.parameter_intervals(), "confidence": self.forecast.confidence,
            "held_out": [h.to_dict() for h in self.held_out],
            "held_out_summary": self.held_out_summary,
            "calibration": [{**asdict(c), "calibrated": c.calibrated} for c in self.calibration],
            "top_slope": self.top_slope and self.top_slope.to_dict(),
            "learning_slope": (slope := self.acquisition.slope(self.forecast.confidence))
            and {"slope": slope[0], "interval": slope[1]},
        }  # fmt: skip

    # --- forecasts -----------------------------------------------------------------------------
    def at(self, n_params: float, tokens: float | None = None, **changes) -> AtSize:
        """The law's draws read at one size and budget (budget: the largest fitted size's when
        None), at its forecast settings with `changes` (None values ignored)."""
        tokens = max(self.curves, key=lambda c: c.n_params).tokens if tokens is None else tokens
        for name, value in (("n_params", n_params), ("tokens", tokens)):
            if not (isinstance(value, int | float | np.number) and math.isfinite(value)
                    and value > 0):  # fmt: skip
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        forecast = replace(self.forecast, **{k: v for k, v in changes.items() if v is not None})
        return AtSize(self.retention, self.acquisition, self.settings, forecast,
                      float(n_params), float(tokens), self.calibration,
                      self.keep_widening)  # fmt: skip

    def predict_point(self, n_params: float, tokens: float | None = None) -> float | np.ndarray:
        """The fitted collapse ratio alone, without its interval (an array of sizes: an array)."""
        if np.ndim(n_params):
            return np.array([self.predict_point(n, tokens) for n in np.asarray(n_params).ravel()])
        return float(expit(self.at(n_params, tokens).z_hat))

    def predict(self, n_params: float, tokens: float | None = None, rule: Rule | None = None, *,
                confidence: float | None = None, tolerance: float | None = None,
                ) -> Prediction | list[Prediction]:  # fmt: skip
        """The forecast for a model of `n_params` non-embedding parameters trained on `tokens`:
        r* with its interval, the ratio keeping each tolerance, the learning side, and the
        decision by `rule`, all at this size. An array of sizes gives a list, one each. What
        the law's range does not support (a size or budget far outside the fitted ones: 7 for
        7e9, tokens in trillions, size and tokens swapped) is also raised as a
        `KinfuseWarning`, so a notebook shows it."""
        changes = dict(rule=rule, confidence=confidence, tolerance=tolerance)
        sizes = np.ravel(n_params) if np.ndim(n_params) else [n_params]
        predictions = [self.at(n, tokens, **changes).prediction() for n in sizes]
        for warning in dict.fromkeys(w for p in predictions for w in p.warnings):
            warnings.warn(warning, KinfuseWarning, stacklevel=2)
        return predictions if np.ndim(n_params) else predictions[0]

    def expected_retention(self, n_params: float, tokens: float, ratio: float):
        """What one trial of a new size keeps at `ratio` (share of plateau), with its interval."""
        return self.at(n_params, tokens).expected_retention(ratio)

    def decision_curves(self, n_params: float, tokens: float | None = None) -> DecisionCurves:
        """P_keep, P_learn and P_both over a grid of ratios at this size (the plot's input)."""
        at = self.at(n_params, tokens)
        return DecisionCurves.from_draws(at.keep, at.learn)

    # --- law.json ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "settings": asdict(self.settings), "forecast": asdict(self.forecast),
            "retention": fit_to_dict(self.retention),
            "acquisition": acquisition_to_dict(self.acquisition),
            "top_slope": self.top_slope and asdict(self.top_slope),
            "held_out": [asdict(h) for h in self.held_out],
            "calibration": [asdict(c) for c in self.calibration],
            "keep_widening": self.keep_widening,
            "source": self.source,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict) -> InfusionLaw:
        forecast = {**raw["forecast"], "tolerances": tuple(raw["forecast"]["tolerances"])}
        retention = fit_from_dict(raw["retention"])
        return cls(FitSettings(**raw["settings"]), ForecastSettings(**forecast),
                   retention, acquisition_from_dict(raw["acquisition"], retention.point.curves),
                   raw["top_slope"] and TopSlope.from_dict(raw["top_slope"]),
                   tuple(HeldOut.from_dict(h) for h in raw["held_out"]),
                   tuple(SideCheck(**c) for c in raw.get("calibration", ())),
                   raw.get("keep_widening", 1.0), raw.get("source") or {})  # fmt: skip

    def save(self, path: str | Path) -> None:
        write_law(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> InfusionLaw:
        return read_law(path, cls.from_dict)
