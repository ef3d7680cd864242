"""The decision search replayed on a whole ladder's results, measured or drawn from a law: what
`benchmarks/decision_search.py` compares with the grid, and what `kinfuse plan
--simulate-decision` costs before anything runs. On a size x budget ladder each budget is
searched in turn, placed from the budgets before it, as `kinfuse sweep` runs them.
"""

from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
from scipy.special import logit

from kinfuse_ray.analysis import size_curves
from kinfuse_ray.config import SweepConfig, parse_sweep
from kinfuse_ray.decision_search import decision_search, replay
from kinfuse_ray.law import InfusionLaw
from kinfuse_ray.law.fit import retention_model
from kinfuse_ray.plan import SimulatedSearch
from kinfuse_ray.spec import Phase, TrialResult


def replay_ladder(
    sweep: SweepConfig, measured: dict[tuple[str, int, float], TrialResult],
    base: list[TrialResult], slots: int = 2,
) -> tuple[list[TrialResult], str]:  # fmt: skip
    """What `sweep`'s decision search runs on results already measured (infusion trials by size,
    budget and ratio; base runs), as `replay` plays it: on a size x budget ladder each budget
    in turn, placed from the budgets before it, as `kinfuse sweep` runs them. The infusion
    trials it ran, and why it stopped (at each budget)."""
    chosen: list[TrialResult] = []
    stops = []
    for part in [sweep.at_budget(d) for d in sweep.budgets] if sweep.budgets else [sweep]:
        tokens = part.train.tokens
        search = decision_search(
            part.search, part.ratios, part.eval, part.predict, seed=part.seed,
            target=part.target_point, n_params=part.n_params, tokens=tokens,
            base=[b.size for b in base], plateaus={}, slots=slots,
            known=size_curves(chosen, sweep.eval, base) if chosen else (),
        )  # fmt: skip
        here = {(size, r): t for (size, d, r), t in measured.items() if d == tokens}
        chosen += replay(search, here, {b.size: b for b in base}, slots)
        stopped = search.stopped or "every trial it asked for ran"
        stops.append(f"{tokens:,} tokens: {stopped}" if sweep.budgets else stopped)
    return chosen, "; ".join(stops)


def simulate_decision(
    sweep: SweepConfig, law: InfusionLaw, ladders: int = 3, seed: int = 0
) -> SimulatedSearch:
    """`sweep`'s decision search (its ratios above 0) replayed on `ladders` ladders drawn from
    `law`: each rung's collapse at the law's r* for its (N, D) plus a size deviation drawn from
    the law's size scatter, its trials on the law's retention curve plus one trial's noise, its
    acquisition on the law's learning curve where it has one. Where the law puts the middle
    rung's collapse outside the sweep's grid (another family, another scale) its r* is moved by
    a constant in logit so that rung collapses mid-grid: the law lends the slope, curve shape and
    scatter, not the place. Early stopping is not simulated: every trial costs its tokens."""
    raw = sweep.model_dump(mode="json")
    raw["search"]["strategy"] = "decision"
    raw["ratios"] = [r for r in raw["ratios"] if r > 0]
    decision = parse_sweep(raw, f"{sweep.name}, searched by decision")
    fit, rng = law.retention, np.random.default_rng(seed)
    budgets = decision.budgets or [decision.train.tokens]
    d_mid = float(np.exp(np.mean(np.log(budgets))))
    n = decision.n_params
    middle = sorted(n, key=n.get)[len(n) // 2]
    z_mid = float(fit.point.law_logit(n[middle], d_mid)[0])
    inside = logit(decision.ratios[1]) <= z_mid <= logit(decision.ratios[-2])
    moved = 0.0 if inside else float(logit(np.median(decision.ratios))) - z_mid
    scatter = float(np.std(fit.size_residuals)) if fit.size_residuals else 0.0
    runs, spent, stops = [], [], []
    for _ in range(ladders):
        deviation = {size: rng.normal(0, scatter) for size in n}
        base = [_synthetic(size, n[size], budgets[0], 0.0, 1.0, 0.0) for size in n]
        measured = {}
        for size, d, r in itertools.product(n, budgets, decision.ratios):
            z = float(fit.point.law_logit(n[size], d)[0]) + moved + deviation[size]
            shape = fit.point.shape_at(n[size], d)
            kept = retention_model(1.0, z, shape, float(logit(r)), fit.point.threshold)
            kept = float(np.clip(kept + rng.normal(0, fit.trial_sd), -1, 1))
            learned = _acquisition(law, n[size], d, r)
            measured[(size, d, r)] = _synthetic(size, n[size], d, r, kept, learned)
        with contextlib.redirect_stdout(io.StringIO()):  # its "search stops" lines, per ladder
            chosen, stopped = replay_ladder(decision, measured, base)
        runs.append({size: sum(t.size == size for t in chosen) for size in n})
        spent.append(sum(t.tokens_trained for t in chosen))
        stops.append(stopped)
    grid = len(n) * len(decision.ratios) * sum(budgets)
    return SimulatedSearch(tuple(runs), tuple(spent), grid, moved, tuple(stops))


def _acquisition(law: InfusionLaw, n_params: int, tokens: int, ratio: float) -> float:
    """The learning curve's acquisition at (N, D, r) (0 where the law has no curve)."""
    curve = law.acquisition.curve
    if curve is None:
        return 0.0
    X = curve.design(n_params, tokens)
    return float(curve.model(np.asarray(curve.params), X, np.array([logit(ratio)]))[0])


def _synthetic(size: str, n_params: int, tokens: int, ratio: float, retention: float,
               acquisition: float) -> TrialResult:  # fmt: skip
    """A trial result of a simulated ladder: its scores, trained to the end; what a real trial
    also records (loss, exposures, speed) unknown (NaN)."""
    phase = Phase.base if ratio == 0 else Phase.infuse
    return TrialResult(phase, size, n_params, ratio, tokens, tokens, retention, acquisition,
                       float("nan"), float("nan"), float("nan"), False, 0.0)  # fmt: skip
