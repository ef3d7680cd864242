"""From trial results to the sweep's answer: collapse point per size, the law, a recommendation."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kinfuse_ray.collapse import CollapsePoint, best_safe_ratio, detect_collapse
from kinfuse_ray.config import EvalConfig, SweepConfig
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.law import CollapseRecord, InfusionLaw, Prediction, candidates, compare_laws


@dataclass(frozen=True)
class TrialResult:
    phase: str  # "base" (general only) or "infuse"
    size: str
    n_params: int
    ratio: float
    tokens: int  # the trial's token budget D
    tokens_trained: int  # fewer than `tokens` when the trial stopped early
    retention: float
    acquisition: float
    val_loss: float
    exposures_per_fact: float
    tokens_per_s: float
    stopped_early: bool
    seconds: float  # the trial's wall time, evaluation and start-up included


@dataclass(frozen=True)
class SizeResult:
    size: str
    n_params: int
    tokens: int
    collapse: CollapsePoint
    best_safe_ratio: float | None
    acquisition_at_safe: float | None
    acquisition_curve: tuple[tuple[float, float], ...] = ()  # (ratio, mean acquisition)


@dataclass
class Summary:
    study: str
    sizes: list[SizeResult]
    trials: list[TrialResult]
    law: InfusionLaw | None = None
    law_note: str = ""
    law_comparison: list[dict] = field(default_factory=list)  # every candidate law, best first
    target: str | None = None
    recommendation: Prediction | None = None
    wall_seconds: float = 0.0
    base_runs: list[TrialResult] = field(default_factory=list)  # those run by this sweep

    def to_dict(self) -> dict:
        law = None
        if self.law is not None:
            law = {
                "form": self.law.form,
                "target": self.law.target,
                "params": self.law.exponents,
                "intervals": self.law.exponent_intervals(),
                "confidence": self.law.confidence,
                "validation": asdict(self.law.validation_) if self.law.validation_ else None,
            }
        return {
            "study": self.study,
            "wall_seconds": round(self.wall_seconds, 1),
            "sizes": [
                {
                    "size": s.size,
                    "n_params": s.n_params,
                    "tokens": s.tokens,
                    "outcome": s.collapse.outcome.value,
                    "collapse_ratio": s.collapse.ratio,
                    "bracket": list(s.collapse.bracket),
                    "plateau": s.collapse.plateau,
                    "best_safe_ratio": s.best_safe_ratio,
                    "acquisition_at_safe": s.acquisition_at_safe,
                }
                for s in self.sizes
            ],
            "law": law,
            "law_note": self.law_note,
            "law_comparison": self.law_comparison,
            "recommendation": (
                {"target": self.target, **asdict(self.recommendation)}
                if self.recommendation
                else None
            ),
            "trials": [asdict(t) for t in self.trials],
            "base_runs": [asdict(t) for t in self.base_runs],
        }

    def save(self, path: Path) -> Path:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    def parent_metrics(self) -> dict[str, float]:
        metrics = {
            f"collapse_ratio.{s.size}": s.collapse.ratio for s in self.sizes if s.collapse.found
        }
        if self.law is not None:
            metrics.update({f"law.{k}": v for k, v in self.law.exponents.items()})
        if self.recommendation:
            metrics["recommended_ratio"] = self.recommendation.safe_ratio
            metrics["predicted_collapse_ratio"] = self.recommendation.ratio
        return metrics

    def table(self) -> str:
        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        lines = [
            f"{'size':<12}{'n_params':>10}  {'collapse r*':>11}  {'bracket':<13}  {'best safe':>9}  note"
        ]
        for s in self.sizes:
            c = s.collapse
            lines.append(
                f"{s.size:<12}{s.n_params:>10,}  {fmt(c.ratio):>11}  "
                f"{f'{c.bracket[0]:.2f}-{c.bracket[1]:.2f}':<13}  {fmt(s.best_safe_ratio):>9}  "
                f"{'' if c.found else c.outcome.value}"
            )
        return "\n".join(lines)


def size_results(trials: list[TrialResult], evals: EvalConfig) -> list[SizeResult]:
    """Apply the collapse rule to each (size, token budget) group, smallest model first.
    Repeated trials at one ratio (several seeds or sweeps) are averaged."""
    groups: dict[tuple[str, int, int], list[TrialResult]] = defaultdict(list)
    for t in trials:
        groups[(t.size, t.n_params, t.tokens)].append(t)
    out = []
    for (size, n_params, tokens), mine in sorted(groups.items(), key=lambda kv: kv[0][1:]):
        ratios = sorted({t.ratio for t in mine})
        retention = [np.mean([t.retention for t in mine if t.ratio == r]) for r in ratios]
        acquisition = [np.mean([t.acquisition for t in mine if t.ratio == r]) for r in ratios]
        collapse = detect_collapse(
            ratios, retention, evals.collapse_threshold, evals.plateau_points
        )
        safe = best_safe_ratio(ratios, retention, collapse.plateau, evals.plateau_tolerance)
        acq = float(acquisition[ratios.index(safe)]) if safe is not None else None
        curve = tuple((float(r), float(a)) for r, a in zip(ratios, acquisition, strict=True))
        out.append(SizeResult(size, n_params, tokens, collapse, safe, acq, curve))
    return out


def collapse_records(sizes: list[SizeResult]) -> list[CollapseRecord]:
    """The points a law is fitted to: every size whose collapse was found."""
    return [
        CollapseRecord(
            s.n_params, s.tokens, s.collapse.ratio, s.collapse.bracket, s.size, s.acquisition_curve
        )
        for s in sizes
        if s.collapse.found
    ]


def summarise(trials: list[TrialResult], sweep: SweepConfig, wall_seconds: float = 0.0) -> Summary:
    sizes = size_results(trials, sweep.eval)
    summary = Summary(sweep.name, sizes, trials, wall_seconds=wall_seconds)
    p = sweep.predict
    options = dict(
        confidence=p.confidence,
        safety_margin=p.safety_margin,
        n_bootstrap=p.bootstrap,
        seed=sweep.seed,
    )
    try:
        ranked = compare_laws(collapse_records(sizes), *candidates(p.law, p.law_target), **options)
    except KinfuseError as exc:
        summary.law_note = str(exc)
        return summary
    summary.law = ranked[0].law
    summary.law_comparison = [
        {
            "law": c.name,
            "aicc": round(c.aicc, 2),
            "held_out_log_error": None if c.held_out_error is None else round(c.held_out_error, 4),
        }
        for c in ranked
    ]
    if p.target is not None:
        target_n = p.target.size.non_embedding_params(sweep.data.vocab_size, sweep.data.seq_len)
        summary.target = p.target.size.name
        summary.recommendation = summary.law.predict(
            target_n, p.target.tokens or sweep.train.tokens
        )
    return summary


def collapse_curve(
    trials: list[TrialResult], size: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mine = sorted((t for t in trials if t.size == size), key=lambda t: t.ratio)
    return (
        np.array([t.ratio for t in mine]),
        np.array([t.retention for t in mine]),
        np.array([t.acquisition for t in mine]),
    )
