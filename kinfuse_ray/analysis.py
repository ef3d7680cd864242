"""From trial results to the sweep's answer: collapse point per size, the law, a recommendation."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from kinfuse_ray.collapse import CollapsePoint, best_safe_ratio
from kinfuse_ray.config import EvalConfig, PredictConfig, TargetPoint
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.files import write_json_atomic
from kinfuse_ray.law import (
    InfusionLaw,
    Prediction,
    SizeCurve,
    curve_name,
    from_sweep,
    select_law,
    size_curve,
    spans_budgets,
)
from kinfuse_ray.spec import Phase, TrialResult


@dataclass(frozen=True)
class SizeResult:
    size: str
    n_params: int
    tokens: int
    collapse: CollapsePoint
    best_safe_ratio: float | None
    acquisition_at_safe: float | None
    acquisition_threshold: float | None = None
    learning_note: str = ""  # why the grid shows no ratio where it starts to learn

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "n_params": self.n_params,
            "tokens": self.tokens,
            "outcome": self.collapse.outcome.value,
            "collapse_ratio": self.collapse.ratio,
            "bracket": list(self.collapse.bracket),
            "plateau": self.collapse.plateau,
            "best_safe_ratio": self.best_safe_ratio,
            "acquisition_at_safe": self.acquisition_at_safe,
            "acquisition_threshold": self.acquisition_threshold,
            "learning_note": self.learning_note,
        }


@dataclass
class Summary:
    """A finished sweep's answer: each size's collapse point and safe ratio, every trial, the
    fitted law and its recommendation for the target (what summary.json holds)."""

    study: str
    sizes: list[SizeResult]
    trials: list[TrialResult]
    law: InfusionLaw | None = None
    law_note: str = ""
    law_comparison: list[dict] = field(default_factory=list)  # every candidate form, best first
    target: str | None = None
    recommendation: Prediction | None = None
    wall_seconds: float = 0.0
    base_runs: list[TrialResult] = field(default_factory=list)
    provenance: str = ""  # what produced it: commit, torch version, kernels (set by the sweep)
    confirmation: list[Confirmation] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "study": self.study,
            "wall_seconds": round(self.wall_seconds, 1),
            "provenance": self.provenance,
            "sizes": [s.to_dict() for s in self.sizes],
            "law": self.law.report() if self.law is not None else None,
            "law_note": self.law_note,
            "law_comparison": self.law_comparison,
            "recommendation": (
                {"target": self.target, **self.recommendation.to_dict()}
                if self.recommendation
                else None
            ),
            "confirmation": [c.to_dict() for c in self.confirmation],
            "trials": [asdict(t) for t in self.trials],
            "base_runs": [asdict(t) for t in self.base_runs],
        }

    def save(self, path: Path) -> Path:
        return write_json_atomic(path, self.to_dict(), indent=2)

    @property
    def forecast(self) -> Forecast | None:
        """The forecast its confirmation run checked (None: none was confirmed)."""
        if not self.confirmation:
            return None
        p = self.recommendation
        return Forecast(
            self.target, p.n_params, p.tokens, self.law.form, self.law.method, p.collapse_ratio,
            p.interval, tuple(self.confirmation), study=self.study,
        )  # fmt: skip

    def parent_metrics(self) -> dict[str, float]:
        metrics = {
            f"collapse_ratio.{s.size}": s.collapse.ratio for s in self.sizes if s.collapse.found
        }
        if self.law is not None:
            metrics.update({f"law.{k}": v for k, v in self.law.parameters.items()})
            metrics["law.keep_widening"] = self.law.keep_widening
            if self.law.held_out_summary:
                metrics.update({f"law.loso_{k}": v for k, v in self.law.held_out_summary.items()})
        if self.recommendation:
            p = self.recommendation
            if p.recommended_ratio is not None:  # None: nothing recommended
                metrics["recommended_ratio"] = p.recommended_ratio
            metrics["forecast_informative"] = float(p.decision.informative)
            metrics.update({f"calibrated.{c.side}": float(c.calibrated) for c in p.calibration})
            if p.decision.c_star is not None and "learns" not in p.uncalibrated:
                metrics["c_star"] = p.decision.c_star
            metrics["predicted_collapse_ratio"] = p.collapse_ratio
            metrics["predicted_collapse_ratio_lo"], metrics["predicted_collapse_ratio_hi"] = (
                p.interval
            )
            if p.acquisition_threshold is not None:
                metrics["predicted_acquisition_threshold"] = p.acquisition_threshold
        for c in self.confirmation:
            role = c.role.replace(" ", "_")
            metrics[f"confirm.{role}.measured_retention"] = c.measured
            if c.predicted is not None:
                metrics[f"confirm.{role}.predicted_retention"] = c.predicted
            if c.acquisition is not None:
                metrics[f"confirm.{role}.measured_acquisition"] = c.acquisition
        return metrics


@dataclass(frozen=True)
class Confirmation:
    """The target size trained at one forecast ratio: the retention (share of its base model's)
    the law predicted for one trial there, against what the trial kept; and what the forecast
    stated about both edges there (P(keeps), P(learns)) against what happened."""

    role: str  # "recommended", "learning edge", "collapse" (or "other")
    target: str
    n_params: int
    tokens: int
    ratio: float
    predicted: float | None  # None: the points method predicts no retention curve
    interval: tuple[float, float] | None
    measured: float
    p_keeps: float | None = None  # stated; kept: measured >= the tolerance
    p_learns: float | None = None  # stated; learned: acquisition >= the target
    kept: bool | None = None
    acquisition: float | None = None
    learned: bool | None = None

    @property
    def covered(self) -> bool | None:
        return (
            None if self.interval is None else self.interval[0] <= self.measured <= self.interval[1]
        )

    @property
    def error(self) -> float | None:
        return None if self.predicted is None else self.measured - self.predicted

    def to_dict(self) -> dict:
        return {**asdict(self), "covered": self.covered, "error": self.error}


@dataclass(frozen=True)
class Forecast:
    """A forecast checked by training its target at the recommended ratio and at the predicted
    collapse point: what the law said and what the target kept (`rows`). A sweep records it on
    its parent run; `records.confirmed_forecasts` reads every one back."""

    target: str
    n_params: int
    tokens: int
    law: str
    method: str
    predicted_collapse: float
    interval: tuple[float, float]
    rows: tuple[Confirmation, ...]
    study: str = ""
    run_id: str = ""
    start_time: int = 0  # when its sweep's run began, ms since the epoch

    def to_dict(self) -> dict:
        return {**asdict(self), "rows": [c.to_dict() for c in self.rows]}

    def record(self) -> dict:
        """What its sweep's parent run holds (the run itself says where and when)."""
        where = ("study", "run_id", "start_time")
        return {k: v for k, v in self.to_dict().items() if k not in where}

    @classmethod
    def from_dict(cls, raw: dict) -> Forecast:
        fields = set(Confirmation.__dataclass_fields__)
        rows = tuple(
            Confirmation(**{k: v for k, v in row.items() if k in fields}) for row in raw["rows"]
        )
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "interval": tuple(raw["interval"]), "rows": rows})


@dataclass(frozen=True)
class ForecastScore:
    """How a set of confirmed forecasts did: predictions inside their intervals, mean error; and
    each edge's stated probability at the ratio trained for it (keeps at the recommended ratio,
    learns at the learning edge) against how often it happened."""

    forecasts: int
    predictions: int  # rows with a predicted retention
    inside: int
    mean_abs_error: float | None  # |measured - predicted| retention
    edges: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # n, stated, held


def score_forecasts(forecasts: list[Forecast]) -> ForecastScore:
    scored = [row for f in forecasts for row in f.rows if row.predicted is not None]
    inside = sum(bool(row.covered) for row in scored)
    error = sum(abs(row.error) for row in scored) / len(scored) if scored else None
    edges = {}
    for edge, role, stated, held in (("keeps", "recommended", "p_keeps", "kept"),
                                     ("learns", "learning edge", "p_learns", "learned")):  # fmt: skip
        rows = [r for f in forecasts for r in f.rows
                if r.role == role and getattr(r, stated) is not None
                and getattr(r, held) is not None]  # fmt: skip
        if rows:
            edges[edge] = (len(rows), float(np.mean([getattr(r, stated) for r in rows])),
                           float(np.mean([getattr(r, held) for r in rows])))  # fmt: skip
    return ForecastScore(len(forecasts), len(scored), inside, error, edges)


def confirmation_rows(
    law: InfusionLaw, prediction: Prediction, results: list[TrialResult]
) -> list[Confirmation]:
    """Predicted against measured for the confirmation run's trials (`results`: its base run
    and its infusion trials). Retention kept is over the general-only trials (ratio 0) where
    there are some, as in `size_curves`, else over the base run."""
    trials = [t for t in results if t.phase is Phase.infuse and t.ratio > 0]
    reference = [t.retention for t in results if t.phase is Phase.infuse and t.ratio == 0]
    base = reference or [t.retention for t in results if t.phase is Phase.base]
    if not trials:
        return []
    plateau = float(np.mean(base)) if base else max(t.retention for t in trials)
    roles = {round(prediction.collapse_ratio, 4): "collapse"}
    if (edge := learning_edge(prediction)) is not None:
        roles[round(edge, 4)] = "learning edge"
    if prediction.decision.ratio is not None:  # the rule's, trained even where not informative
        roles[round(prediction.decision.ratio, 4)] = "recommended"
    out = []
    for t in sorted(trials, key=lambda t: t.ratio):
        expected = law.expected_retention(t.n_params, t.tokens, t.ratio)
        p_keeps, p_learns = law.at(t.n_params, t.tokens).probabilities(t.ratio)
        kept = t.retention / plateau
        learned = (
            None if np.isnan(t.acquisition) else t.acquisition >= prediction.acquisition_target
        )
        out.append(
            Confirmation(
                roles.get(round(t.ratio, 4), "other"), t.size, t.n_params, t.tokens, t.ratio,
                expected and expected[0], expected and expected[1], kept, p_keeps, p_learns,
                kept >= prediction.tolerance, None if learned is None else t.acquisition, learned,
            )
        )  # fmt: skip
    return out


def learning_edge(prediction: Prediction) -> float | None:
    """The smallest ratio that learns the domain with the stated confidence (the window's lower
    edge), where the forecast has a learning side."""
    window = prediction.decision.window
    trainable = window is not None and 0.001 <= window[0] <= 0.999  # a ratio a trial can take
    return window[0] if trainable else None


def size_curves(
    trials: list[TrialResult], evals: EvalConfig, base: list[TrialResult] = ()
) -> list[SizeCurve]:
    """One curve per (size, token budget), every trial of every seed, smallest model first. The
    plateau: the mean retention of the general-only trials (ratio 0) of that size and budget
    where there are some (they are the reference, not part of the curve), else of the size's
    base runs, else the median of the `plateau_points` lowest ratios' mean retention."""
    groups: dict[tuple[str, int, int], list[TrialResult]] = defaultdict(list)
    for t in trials:
        groups[(t.size, t.n_params, t.tokens)].append(t)
    budgets = spans_budgets(trials)  # then a curve is named by size and budget
    out = []
    for (size, n_params, tokens), mine in sorted(groups.items(), key=lambda kv: kv[0][1:]):
        reference = [t.retention for t in mine if t.ratio == 0]
        mine = [t for t in mine if t.ratio > 0]
        if not mine:
            continue
        bases = reference or [
            b.retention for b in base if b.size == size and b.n_params == n_params
        ]
        out.append(size_curve(
            curve_name(size, tokens, budgets), n_params, tokens,
            [(t.ratio, t.retention, t.acquisition) for t in mine],
            float(np.mean(bases)) if bases else None, evals.plateau_points,
            domain_per_token=_rate([t.exposures_per_fact / (t.ratio * t.infused) for t in mine]),
            general_per_token=_rate(
                [t.general_exposures_per_fact / ((1 - t.ratio) * t.infused) for t in mine]
            ),
            infused_tokens=mine[0].infused if mine[0].infused != tokens else None,
        ))  # fmt: skip
    return out


def _rate(values: list[float]) -> float:
    """The median of what was recorded (NaN where older trials did not record it)."""
    known = [v for v in values if not np.isnan(v)]
    return float(np.median(known)) if known else float("nan")


def size_results(
    curves: list[SizeCurve], evals: EvalConfig, acquisition_target: float
) -> list[SizeResult]:
    """The detector's answer per size: collapse point, best safe ratio tried, where it learns."""
    out = []
    for c in curves:
        collapse = c.collapse(evals.collapse_threshold)
        ratios, retention, acquisition = c.mean_curve()
        safe = best_safe_ratio(ratios, retention, collapse.plateau, evals.plateau_tolerance)
        acq = float(acquisition[list(ratios).index(safe)]) if safe is not None else None
        threshold = c.acquisition_threshold(acquisition_target)
        note = ""
        if threshold is None and np.isfinite(acquisition).all():
            top, bottom = float(acquisition.max()), float(acquisition[0])
            note = (f"never learns: acquisition at most {top:.2f} < {acquisition_target:.2f}"
                    if top < acquisition_target
                    else f"learns below the grid: acquisition {bottom:.2f} at its lowest ratio")  # fmt: skip
        out.append(
            SizeResult(
                c.name, int(c.n_params), int(c.tokens), collapse, safe, acq, threshold, note,
            )
        )  # fmt: skip
    return out


def summarise(
    trials: list[TrialResult],
    *,
    name: str,
    evals: EvalConfig,
    predict: PredictConfig,
    seed: int,
    target: TargetPoint | None,
    wall_seconds: float = 0.0,
    base: list[TrialResult] = (),
) -> Summary:
    """Sweep `name`'s answer from its trials (`base`: its base runs): each size's collapse with
    `evals`' rule, the law `predict` asks for, and the forecast for `target`."""
    curves = size_curves(trials, evals, base)
    settings, forecast_settings = from_sweep(evals, predict, seed)
    sizes = size_results(curves, evals, settings.acquisition_target)
    summary = Summary(name, sizes, trials, wall_seconds=wall_seconds, base_runs=list(base))
    try:
        summary.law, ranked = select_law(curves, settings=settings, forecast=forecast_settings)
    except KinfuseError as exc:
        summary.law_note = str(exc)
        return summary
    summary.law_comparison = [
        {"law": c.form, "held_out_log_error": round(c.held_out_error, 4)} for c in ranked
    ]
    if target is not None:
        summary.target = target.name
        summary.recommendation = forecast(summary.law, target)
    return summary


def forecast(law: InfusionLaw, target: TargetPoint) -> Prediction:
    """The law's forecast for `target`, with what it should say about the target."""
    prediction = law.at(target.n_params, target.tokens).prediction()
    return replace(prediction, warnings=(*prediction.warnings, *target.notes))


def collapse_curve(
    trials: list[TrialResult], n_params: int, tokens: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ratios, retention, acquisition) of one size's infusion trials at one budget, by ratio;
    general-only reference trials (ratio 0) left out."""
    mine = sorted(
        (t for t in trials if (t.n_params, t.tokens) == (n_params, tokens) and t.ratio > 0),
        key=lambda t: t.ratio,
    )
    return (
        np.array([t.ratio for t in mine]),
        np.array([t.retention for t in mine]),
        np.array([t.acquisition for t in mine]),
    )
