"""What a trial is and what it returns: the vocabulary every layer shares (no torch, no Ray).

A sweep is a set of trials. A `TrialSpec` names one (its phase, ladder size and infusion ratio);
its `key` is its identity within the sweep, used for its MLflow run, its record of being done
and its Ray Train run folder. A `TrialResult` is what a finished trial contributes to the
analysis, whether it comes from Tune, from a base run reused from the shared store, or from
MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    base = "base"  # general-only training from scratch; shared by a size's infusion trials
    infuse = "infuse"  # training on the mix at ratio r


@dataclass(frozen=True)
class TrialSpec:
    phase: Phase
    size: str
    ratio: float

    @property
    def key(self) -> str:
        return f"{self.phase}-{self.size}-r{self.ratio:g}"

    def to_config(self) -> dict:
        """The form Tune carries in a trial's config (plain values: Tune saves it as JSON)."""
        return {"trial": {"phase": self.phase.value, "size": self.size, "ratio": self.ratio}}

    @classmethod
    def from_config(cls, config: dict) -> TrialSpec:
        """Back from a trial's config: its `to_config()` under "trial"."""
        return cls(Phase(config["trial"]["phase"]), config["trial"]["size"],
                   float(config["trial"]["ratio"]))  # fmt: skip

    @classmethod
    def of(cls, trial: Any) -> TrialSpec:
        """The spec of a Tune trial (or result): whatever carries the trial's `config`."""
        return cls.from_config(trial.config)


@dataclass(frozen=True)
class TrialResult:
    phase: Phase
    size: str
    n_params: int
    ratio: float
    tokens: int  # the trial's token budget D: what the law reads as D
    tokens_trained: int  # fewer than `tokens` when the trial stopped early
    retention: float
    acquisition: float
    val_loss: float
    exposures_per_fact: float
    tokens_per_s: float
    stopped_early: bool
    seconds: float  # the trial's wall time, evaluation and start-up included
    # Complete renderings per general fact in its general text (rehearsals); NaN when unknown.
    general_exposures_per_fact: float = float("nan")
    # The tokens it infused where D is another budget (a checkpoint's pre-training tokens); NaN:
    # D is the trial's own tokens.
    infused_tokens: float = float("nan")

    @property
    def infused(self) -> float:
        """The tokens the trial trained on the mix: what its exposures per fact are per."""
        return self.tokens if math.isnan(self.infused_tokens) else self.infused_tokens

    @classmethod
    def from_dict(cls, raw: dict) -> TrialResult:
        """Back from its record in a summary.json (keys it does not know are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known} | {"phase": Phase(raw["phase"])})

    @classmethod
    def from_metrics(
        cls, spec: TrialSpec, metrics: dict, *, n_params: int, tokens: int,
        pretrained_tokens: int | None = None,
    ) -> TrialResult:  # fmt: skip
        """From a trial's final metrics as the training loop reports them; `tokens` its own
        budget. An infusion trial of a checkpoint rung given `pretrained_tokens` has those as its
        D, with `tokens` what it infused."""
        budget = pretrained_tokens if pretrained_tokens and spec.phase is Phase.infuse else None
        return cls(
            phase=spec.phase,
            size=spec.size,
            n_params=n_params,
            ratio=spec.ratio,
            tokens=budget or tokens,
            tokens_trained=int(metrics["tokens"]),
            retention=metrics["retention"],
            acquisition=metrics["acquisition"],
            val_loss=metrics["val_loss"],
            exposures_per_fact=metrics["exposures_per_fact"],
            tokens_per_s=metrics["tokens_per_s"],
            stopped_early=bool(metrics["stopped_early"]),
            seconds=metrics.get("time_total_s", metrics.get("seconds", 0.0)),
            general_exposures_per_fact=metrics.get("general_exposures_per_fact", float("nan")),
            infused_tokens=float("nan") if budget is None else tokens,
        )
