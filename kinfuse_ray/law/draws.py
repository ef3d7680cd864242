"""A fitted law's draws read at one size and budget (`AtSize`): per draw, where retention keeps
each tolerance, where the domain is learned, and what one trial keeps at a ratio. The arrays
`InfusionLaw.predict` and the decision are made of."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy.special import expit

from kinfuse_ray.decision import decide, width_sources
from kinfuse_ray.law.acquisition import AcquisitionFit
from kinfuse_ray.law.bootstrap import BootstrapFit, central_interval
from kinfuse_ray.law.checks import SideCheck
from kinfuse_ray.law.curves import checked_ratio, clipped_logit
from kinfuse_ray.law.fit import logit_ratio_keeping, retention_model
from kinfuse_ray.law.prediction import (
    Prediction,
    ToleranceRow,
    beyond_reach,
    exposures_at,
    range_warnings,
    rung_at,
)
from kinfuse_ray.law.settings import FitSettings, ForecastSettings


@dataclass(frozen=True)
class AtSize:
    retention: BootstrapFit
    acquisition: AcquisitionFit
    settings: FitSettings
    forecast: ForecastSettings
    n_params: float
    tokens: float
    calibration: tuple[SideCheck, ...] = ()
    keep_widening: float = 1.0  # the keep ratio's spread x this (checks.keep_widening)

    @property
    def joint(self) -> bool:
        return self.settings.method == "joint"

    @property
    def tolerance(self) -> float:
        """The tolerance the decision keeps: the points method knows only the threshold."""
        return self.forecast.tolerance if self.joint else self.settings.threshold

    @cached_property
    def law_z(self) -> np.ndarray:
        """Per draw, the law's own logit r* here (its parameters only)."""
        return self.retention.law_draws_logit(self.n_params, self.tokens)

    @cached_property
    def z_hat(self) -> float:
        """The law's own logit r* here (its fitted parameters, no draw)."""
        return float(self.retention.point.law_logit(self.n_params, self.tokens)[0])

    @property
    def keep_hat(self) -> float:
        """The ratio keeping the decision's tolerance by the fitted law and curve (no draw)."""
        if not self.joint:
            return float(expit(self.z_hat))
        shape = self.retention.point.shape_at(self.n_params, self.tokens)
        return float(expit(logit_ratio_keeping(self.z_hat, shape, self.settings.threshold,
                                               self.tolerance)))  # fmt: skip

    @property
    def z(self) -> np.ndarray:
        """Per draw, a new size's logit r* here: the law's and the size's own deviation."""
        return self.law_z + self.retention.draws.deviations

    @cached_property
    def keep(self) -> np.ndarray:
        """Per draw, the logit of the ratio that keeps the decision's tolerance."""
        return self.keep_logits(self.z, self.tolerance)

    @cached_property
    def learn(self) -> np.ndarray | None:
        """Per draw, the logit of the ratio that learns the domain (None: no learning side),
        paired with the retention draws."""
        return self.acquisition.learn_logits(
            self.n_params, self.tokens, self.retention.draws.deviations
        )

    def interval(self, values: np.ndarray) -> tuple[float, float]:
        return central_interval(values, self.forecast.confidence)

    def keep_logits(self, z: np.ndarray, tolerance: float, shapes=None) -> np.ndarray:
        """Per draw, the logit of the ratio up to which retention stays at `tolerance` x plateau,
        spread about its median by the law's keep widening (where held-out sizes fell outside
        the keep ratio's own intervals). The points method has no curve: its only tolerance is
        the collapse threshold (r*)."""
        if not self.joint:
            keep = np.asarray(z, float)
        else:
            shapes = self.shapes if shapes is None else self.at_size(shapes)
            keep = np.array([logit_ratio_keeping(zb, sh, self.settings.threshold, tolerance)
                             for zb, sh in zip(z, shapes, strict=True)])  # fmt: skip
        if self.keep_widening == 1.0:
            return keep
        middle = np.median(keep)
        return middle + self.keep_widening * (keep - middle)

    def at_size(self, shapes: np.ndarray) -> np.ndarray:
        """Draws' curve shapes read at this size: one (ln k, floor parameter) row per draw."""
        point = self.retention.point
        return np.column_stack(point.shape_at(self.n_params, self.tokens, shapes))

    @cached_property
    def shapes(self) -> np.ndarray:
        """Per draw, the retention curve's shape at this size."""
        return self.at_size(self.retention.draws.shapes)

    def keep_by_tolerance(self) -> dict[float, np.ndarray]:
        """keep_logits at every tolerance of the table and the decision's."""
        table = self.forecast.tolerances if self.joint else ()
        return {tol: self.keep if tol == self.tolerance else self.keep_logits(self.z, tol)
                for tol in sorted({*table, self.tolerance})}  # fmt: skip

    def probabilities(self, ratio: float) -> tuple[float, float | None]:
        """(P(keeps), P(learns); None: no learning side) at `ratio`, from the draws."""
        x = float(clipped_logit(checked_ratio(ratio)))
        learn = None if self.learn is None else float(np.mean(self.learn <= x))
        return float(np.mean(x <= self.keep)), learn

    def expected_retention(self, ratio: float) -> tuple[float, tuple[float, float]] | None:
        """What one trial of a new size keeps at `ratio` (share of plateau), with its interval:
        the joint method's curve (None for points)."""
        checked_ratio(ratio)
        if not self.joint:
            return None
        point, threshold = self.retention.point, self.settings.threshold
        x = float(clipped_logit(ratio))
        shape = point.shape_at(self.n_params, self.tokens)
        best = float(retention_model(1.0, self.z_hat, shape, x, threshold))
        rng = np.random.default_rng(self.settings.seed)
        drawn = [retention_model(1.0, zb, shape, x, threshold)
                 + rng.normal(0, self.retention.trial_sd)
                 for zb, shape in zip(self.z, self.shapes, strict=True)]  # fmt: skip
        return best, self.interval(np.array(drawn))

    def held_fixed_widths(self) -> dict[str, float]:
        """The keep ratio's interval width with each source of uncertainty held fixed in turn
        (a new size's scatter around the law; the curve's shape; the law's parameters, which the
        trials' noise and the sizes' scatter move): joint only."""
        point, deviations = self.retention.point, self.retention.draws.deviations
        held = {
            "size scatter": self.keep_logits(self.law_z, self.tolerance),
            "curve shape": self.keep_logits(
                self.z, self.tolerance, np.tile(point.shape, (len(self.z), 1))
            ),
            "law parameters": self.keep_logits(self.z_hat + deviations, self.tolerance),
        }
        tail = (1 - self.forecast.confidence) / 2
        return {k: float(np.quantile(v, 1 - tail) - np.quantile(v, tail)) for k, v in held.items()}

    def prediction(self) -> Prediction:
        """The forecast here: r* with its interval, the ratio keeping each tolerance, the
        learning side and the decision."""
        c, point = self.forecast.confidence, self.retention.point
        keep_by = self.keep_by_tolerance()
        rows = tuple(
            ToleranceRow(
                t,
                float(expit(np.median(k))),
                self.interval(expit(k)),
                float(expit(np.quantile(k, 1 - c))),
            )  # fmt: skip
            for t, k in sorted(keep_by.items(), reverse=True)
        )
        learn = self.learn
        learn_checked = all(ch.calibrated for ch in self.calibration if ch.side == "learns")
        decision, _ = decide(keep_by[self.tolerance], learn, c, self.forecast.rule,
                             learn_calibrated=learn_checked)  # fmt: skip
        if far := beyond_reach(point.curves, self.n_params, self.tokens):
            decision = replace(decision, informative=False, reasons=(*decision.reasons, *far))
        widths = self.joint and width_sources(self.held_fixed_widths(), decision.keep_width_logits)
        expected = None if decision.ratio is None else self.expected_retention(decision.ratio)
        return Prediction(
            n_params=self.n_params,
            tokens=self.tokens,
            collapse_ratio=float(expit(self.z_hat)),
            interval=self.interval(expit(self.z)),
            confidence=c,
            tolerance=self.tolerance,
            decision=decision,
            tolerances=rows,
            acquisition_threshold=None if learn is None else float(expit(np.median(learn))),
            acquisition_interval=None if learn is None else self.interval(expit(learn)),
            acquisition_target=self.settings.acquisition_target,
            acquisition_note=self.acquisition.note,
            expected_retention=expected,
            width_sources=widths or {},
            exposures=exposures_at(point.curves, self.tokens),
            calibration=self.calibration,
            warnings=tuple(range_warnings(point.curves, point.form.uses_tokens, self.n_params,
                                          self.tokens)),
            rung=rung_at(point.curves, self.n_params, self.tokens),
        )  # fmt: skip
