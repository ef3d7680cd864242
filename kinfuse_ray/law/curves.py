"""The law's data: one `SizeCurve` per model size and token budget, every trial of every seed,
built by one function (`size_curve`) with one plateau rule, from a sweep's trials or your own
rows (`curves_from_points`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logit

from kinfuse_ray.collapse import CollapsePoint, detect_acquisition, detect_collapse
from kinfuse_ray.config import EVAL_DEFAULTS

EDGE = 1e-6  # ratios are kept this far inside (0, 1) before taking logits


def clipped_logit(p: np.ndarray | float) -> np.ndarray:
    return logit(np.clip(p, EDGE, 1 - EDGE))


def checked_ratio(ratio: float) -> float:
    """`ratio` if it is an infusion ratio, a share in (0, 1); else one line saying what it is."""
    if not (isinstance(ratio, int | float | np.number) and 0 < ratio < 1):
        raise ValueError(f"ratio must lie in (0, 1) (a share of the tokens, not percent), got "
                         f"{ratio!r}")  # fmt: skip
    return float(ratio)


def spans_budgets(items: Iterable) -> bool:
    """Whether `items` (curves, trials, per-size results: anything with `tokens`) come from two
    or more token budgets, a size x budget ladder: curves are then named by size and budget and
    the law needs a D term."""
    return len({item.tokens for item in items}) > 1


def curve_name(size: str, tokens: float, budgets: bool) -> str:
    """A curve's name: its size's, with the budget where the ladder has several."""
    return f"{size}-d{tokens:.0f}" if budgets else size


def low_ratio_plateau(
    ratios: Sequence[float], retention: Sequence[float], points: int = EVAL_DEFAULTS.plateau_points
) -> float:
    """Retention before infusion when no base run measured it: the median of the `points` lowest
    ratios' mean retention (the collapse detector's own rule)."""
    r, y = np.asarray(ratios, float), np.asarray(retention, float)
    means = [float(np.mean(y[r == x])) for x in np.unique(r)]
    return float(np.median(means[:points]))


@dataclass(frozen=True)
class SizeCurve:
    """Every infusion trial of one model size at one token budget, all seeds together."""

    name: str
    n_params: float
    tokens: float
    ratios: tuple[float, ...]  # one entry per trial
    retention: tuple[float, ...]
    acquisition: tuple[float, ...]
    plateau: float  # retention before infusion: the base model's (else `low_ratio_plateau`)
    # Renderings per domain fact per domain token, and per general fact per general token, in
    # this size's trials: exposures = r D x the first, rehearsals = (1 - r) D x the second.
    domain_per_token: float = float("nan")
    general_per_token: float = float("nan")
    # The tokens its trials infused where `tokens` (the law's D) is another budget, a
    # checkpoint's pre-training tokens; None: D is the infusion budget.
    infused_tokens: float | None = None

    def __post_init__(self) -> None:
        where = f"SizeCurve {self.name!r}"
        for name in ("n_params", "tokens"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{where}: {name} must be a positive finite number, got {value!r}")
        n = len(self.ratios)
        for name in ("retention", "acquisition"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{where}: {name} has {len(getattr(self, name))} values for {n} ratios"
                )
        r = np.asarray(self.ratios, float)
        if n and not np.all((r > 0) & (r < 1)):
            raise ValueError(f"{where}: ratios must lie in (0, 1) (shares, not percent), got "
                             f"{r.min():g}..{r.max():g}")  # fmt: skip
        for name in ("retention", "acquisition"):  # chance-corrected; acquisition NaN: unmeasured
            v = np.asarray(getattr(self, name), float)
            v = v[~np.isnan(v)] if name == "acquisition" else v
            if len(v) and not np.all(np.isfinite(v) & (v >= -1) & (v <= 1)):
                raise ValueError(f"{where}: {name} must be chance-corrected scores in [-1, 1]")
        if not (math.isfinite(self.plateau) and -1 <= self.plateau <= 1):
            raise ValueError(
                f"{where}: plateau must be a retention in [-1, 1], got {self.plateau!r}"
            )

    def mean_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ratios tried, with retention and acquisition averaged over repeats (seeds)."""
        r = np.asarray(self.ratios, float)
        ratios = np.unique(r)
        ret = np.array([np.mean(np.asarray(self.retention)[r == x]) for x in ratios])
        acq = np.array([np.mean(np.asarray(self.acquisition)[r == x]) for x in ratios])
        return ratios, ret, acq

    def collapse(self, threshold: float) -> CollapsePoint:
        ratios, retention, _ = self.mean_curve()
        return detect_collapse(ratios, retention, threshold, plateau=self.plateau)

    def acquisition_threshold(self, target: float) -> float | None:
        ratios, _, acquisition = self.mean_curve()
        return detect_acquisition(ratios, acquisition, target)


def size_curve(
    name: str,
    n_params: float,
    tokens: float,
    trials: Sequence[tuple[float, float, float]],
    plateau: float | None = None,
    plateau_points: int = EVAL_DEFAULTS.plateau_points,
    **rates: float | None,
) -> SizeCurve:
    """One curve from its trials' (ratio, retention, acquisition), in a canonical order (the same
    trials give the same curve, and bootstrap, wherever they were read from); `plateau` None:
    `low_ratio_plateau`. `rates`: `domain_per_token`, `general_per_token` (and
    `infused_tokens` where D is not the infusion budget)."""
    ordered = sorted(trials)
    ratios, retention, acquisition = (
        tuple(float(v) for v in col) for col in zip(*ordered, strict=True)
    )
    if plateau is None:
        plateau = low_ratio_plateau(ratios, retention, plateau_points)
    return SizeCurve(name, float(n_params), float(tokens), ratios, retention, acquisition,
                     float(plateau), **rates)  # fmt: skip


def curves_from_points(
    n_params: Sequence[float],
    ratios: Sequence[float],
    retention: Sequence[float],
    acquisition: Sequence[float] | None = None,
    *,
    tokens: Sequence[float] | float = 1.0,
    plateau: dict[float, float] | None = None,
) -> list[SizeCurve]:
    """Your own measurements as `SizeCurve`s, one per (size, budget): one entry per trial of
    its non-embedding parameter count, infusion ratio in (0, 1), chance-corrected retention of
    what the model knew (and acquisition of the infused knowledge; NaN-free, default 0: no
    learning side), at `tokens` per trial. `plateau` maps a size to its retention before
    infusion (default: `low_ratio_plateau`). Then `select_law(curves)`."""
    columns = {"n_params": n_params, "ratios": ratios, "retention": retention}
    if acquisition is not None:
        columns["acquisition"] = acquisition
    if not np.isscalar(tokens):
        columns["tokens"] = tokens
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the columns differ in length: {lengths}")
    n = np.asarray(n_params, float)
    d = np.full(len(n), float(tokens)) if np.isscalar(tokens) else np.asarray(tokens, float)
    acq = np.zeros(len(n)) if acquisition is None else np.asarray(acquisition, float)
    rows = list(
        zip(n, d, np.asarray(ratios, float), np.asarray(retention, float), acq, strict=True)
    )
    pairs = sorted({(size, budget) for size, budget, *_ in rows})
    budgets = len({budget for _, budget in pairs}) > 1
    return [
        size_curve(
            curve_name(f"n{size:.0f}", budget, budgets), size, budget,
            [(r, ret, a) for s, b, r, ret, a in rows if (s, b) == (size, budget)],
            (plateau or {}).get(size),
        )
        for size, budget in pairs
    ]  # fmt: skip
