"""The decision search (`search.strategy: decision`): which (size, ratio) trials of the ladder run
next, chosen for the forecast at the target rather than for each size's r* alone.

A size's candidates are the sweep file's ratios: the search runs a subset of the grid's trials,
so its answer compares cell for cell with the grid's. It runs in rounds, after every base run:
each round is chosen from the results of the rounds before it alone, so the trials it runs do
not depend on which trial finishes first. Two phases:

1. Bracket. Each size walks the grid, one ratio a round, to the two neighbouring ratios its
   retention falls through the collapse threshold between (the collapse rule's bracket): the
   two ends of the ladder first, then, once both collapsed, every size. A walk starts at the
   ratio nearest to where the sizes collapsed so far put it (`point_law` through their r*,
   between the r* of its smaller and larger neighbours; with fewer than two, the middle of what
   is open) and goes on from what its own trials rule out.
2. Narrow. With every size bracketed, the law is fitted to the trials so far (power_n unless the
   sweep names a form; power_nd over several budgets) and a round runs the unmeasured (size,
   ratio) beside a size's measured ones whose outcome most reduces the variance of the target's keep ratio: linearised over the
   bootstrap draws (those inside the keep ratio's 90% range), Cov(keep, y)^2 / (Var(y) +
   noise^2), y being the draw's retention there and noise one trial's; as many as run at once.

It stops once the keep ratio's interval at the target is within `search.width` logits, or when
one more trial would spend more than `search.budget` of the grid's trial-tokens (every size at
every ratio); what the other sizes still need to bracket theirs is kept back from the budget.
Trials stop early on collapse as under every strategy.

On a size x budget ladder each budget is searched in turn, with the curves the budgets before it
measured (`known`): every size's walk starts at once, at the ratio the law through every curve so
far places its collapse at this budget (over (N, D) once this budget has curves of its own), and
narrowing reads the target at this budget from every trial so far.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from scipy.special import expit, logit

from kinfuse_ray.config import (
    EVAL_DEFAULTS,
    EvalConfig,
    PredictConfig,
    SearchConfig,
    TargetPoint,
)
from kinfuse_ray.console import say
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.law import (
    FitSettings,
    ForecastSettings,
    InfusionLaw,
    from_sweep,
    point_law,
    size_curve,
)
from kinfuse_ray.law.bootstrap import central_interval
from kinfuse_ray.law.curves import SizeCurve, curve_name, spans_budgets
from kinfuse_ray.law.fit import retention_model
from kinfuse_ray.law.forms import DEFAULT_FORM
from kinfuse_ray.search import GridRatios, LadderSearch
from kinfuse_ray.spec import Phase, TrialResult, TrialSpec


def variance_reduction(keep: np.ndarray, outcome: np.ndarray, noise_sd: float) -> float:
    """How much one observation of `outcome` (per draw, paired with `keep`), measured with noise
    of `noise_sd`, is expected to reduce the variance of `keep`: the linear-Gaussian update."""
    covariance = float(np.mean((keep - keep.mean()) * (outcome - outcome.mean())))
    return covariance**2 / (float(outcome.var()) + noise_sd**2)


class DecisionRatios(GridRatios):
    """One size under the decision search: the grid's ratios are its candidates; those the
    ladder-level search gave it run, and it says where its collapse bracket may still lie."""

    def __init__(
        self,
        ratios: list[float],
        threshold: float = EVAL_DEFAULTS.collapse_threshold,
        plateau_points: int = EVAL_DEFAULTS.plateau_points,
    ):
        super().__init__(ratios, threshold, plateau_points)
        self.assigned: list[float] = []
        self.acquisition: dict[float, float] = {}

    def _wanted(self) -> list[float]:
        return self.assigned

    def planned(self) -> int:
        return len(self.assigned) + bool(self.open_bracket())

    @property
    def reference(self) -> float | None:
        """Retention before infusion: the base run's, else the collapse rule's from the lowest
        ratios once they are in (None before)."""
        if self.plateau is not None:
            return self.plateau
        lowest = self.ratios[: self.plateau_points]
        if all(r in self.results for r in lowest):
            return float(np.median([self.results[r] for r in lowest]))
        return None

    def _kept(self) -> dict[float, bool]:
        """Per measured ratio (failed trials left out), whether retention stayed at or above the
        threshold x the reference (which must be known)."""
        plateau = self.reference
        return {r: y / plateau >= self.threshold for r, y in self.results.items() if y == y}

    def open_bracket(self) -> list[float]:
        """The grid ratios the collapse bracket may still need: between the highest ratio that
        kept retention above the threshold and the lowest that fell below it (the collapse rule's
        first). Empty once bracketed by neighbours, or when the grid holds no collapse."""
        plateau = self.reference
        if plateau is None:
            return [r for r in self.ratios[: self.plateau_points] if r not in self.results]
        if plateau <= 0:
            return []
        kept = self._kept()
        below = [i for i, r in enumerate(self.ratios) if kept.get(r) is False]
        hi = below[0] if below else len(self.ratios)
        above = [i for i, r in enumerate(self.ratios[:hi]) if kept.get(r)]
        lo = above[-1] if above else -1
        return [r for r in self.ratios[lo + 1 : hi] if r not in self.results]

    def least_to_bracket(self) -> int:
        """Trials it needs at least to bracket its collapse: one per side not yet seen."""
        if not self.open_bracket():
            return 0
        if self.reference is None:
            return 2
        return 2 - len(set(self._kept().values()))

    def next_bracket_ratio(self, predicted: float | None, floor: float, ceiling: float
                           ) -> float | None:  # fmt: skip
        """The next ratio of the bracket walk (one a round), among the open ones between
        the grid ratios around `floor` and `ceiling` (where the other sizes put this one's
        collapse; all open ones if none lie there): the nearest to `predicted` in logit, else
        the middle one."""
        if self.waiting:
            return None
        open_ = [r for r in self.open_bracket() if r not in self.proposed]
        if not open_:
            return None
        low = max((r for r in self.ratios if r <= floor), default=self.ratios[0])
        high = min((r for r in self.ratios if r >= ceiling), default=self.ratios[-1])
        open_ = [r for r in open_ if low <= r <= high] or open_
        if self.reference is None or predicted is None:
            return open_[len(open_) // 2]
        return min(open_, key=lambda r: abs(logit(r) - logit(predicted)))


class DecisionSearch(LadderSearch):
    """The decision search, in rounds: every base run first, then each round's trials chosen
    from the results of the rounds before it alone, so the trials it runs do not depend on which
    trial happens to finish first (a replay of the same results picks the same trials)."""

    def __init__(
        self,
        strategies: dict[str, DecisionRatios],
        n_params: dict[str, int],
        tokens: int,
        base: list[str],
        capacity: Callable[[], int] | None = None,
        *,
        target: TargetPoint,
        settings: FitSettings,
        forecast: ForecastSettings,
        budget: float,
        width: float,
        slots: int = 2,
        known: Sequence[SizeCurve] = (),
    ):
        """`target` the forecast's model; `settings`/`forecast` the sweep's law settings (the
        search fits power_n when the form is auto, power_nd once its curves span budgets);
        `budget` the share of the grid's trial-tokens it may spend; `width` the keep ratio's
        interval (logits) at which it stops; `slots` the trials that run at once (a narrowing
        round's size); `known` the curves other budgets of a size x budget ladder measured."""
        super().__init__(strategies, n_params, tokens, base, capacity)
        self.known = [c for c in known if c.tokens != tokens]
        self.settings = settings
        self.forecast, self.target, self.width = forecast, target, width
        self.slots = max(1, slots)
        grid = sum(len(s.ratios) for s in strategies.values()) * tokens
        self.budget_tokens = budget * grid
        self.spent = 0  # trial-tokens of finished infusion trials
        self.most_trained = 0  # the most one of them trained
        self.stopped: str | None = None
        self._fitted: tuple[int, InfusionLaw | None] | None = None  # not saved

    # -- Tune's side -------------------------------------------------------------------------
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        trial = self.running.get(trial_id)
        super().on_trial_complete(trial_id, result, error)
        if trial is None or trial.phase is Phase.base:
            return
        trained = int((result or {}).get("tokens", self.tokens))
        self.spent += trained
        self.most_trained = max(self.most_trained, trained)
        if result and "acquisition" in result:
            self.strategies[trial.size].acquisition[trial.ratio] = float(result["acquisition"])

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({**self.__dict__, "_fitted": None}, f)

    # -- choosing ----------------------------------------------------------------------------
    @property
    def _sizes(self) -> dict[str, DecisionRatios]:
        """The sizes it searches, in ladder order: those with a base model to continue from
        (all, where none needs a base run); a size whose base run failed gets no trial."""
        return {s: strategy for s, strategy in self.strategies.items() if s in self.ready}

    def _searching(self) -> bool:
        return False  # a round is chosen once the last one is in: none then, nothing left

    def _refill(self) -> None:
        """The next round, once every base run and every trial of the last round is in."""
        if self.stopped or self.queue_base or self.running:
            return
        cells = self._bracket_round()
        if not cells and not self.stopped:  # bracketing done (not stopped by the budget)
            cells = self._narrowing_round()
        for size, ratio in cells:
            strategy = self.strategies[size]
            strategy.assigned.append(ratio)
            if size not in self.started:
                self.started.append(size)
            self.queue += [TrialSpec(Phase.infuse, size, r) for r in strategy.propose()]

    def _bracket_round(self) -> list[tuple[str, float]]:
        """One step of each size's walk to its bracket: the ends of the ladder alone until both
        have collapsed (a size no law places would walk the whole grid), then every size. What
        the others still need to bracket theirs is kept back from the budget."""
        # With other budgets' curves the law places every size from the start.
        found = len(self._sizes) if self.known else sum(self._found(s) for s in self._sizes)
        cells: list[tuple[str, float]] = []
        for size in self._bracket_order():
            if size not in self.started and len(self.started) + len(cells) >= 2 and found < 2:
                continue
            ratio = self.strategies[size].next_bracket_ratio(*self._prior(size))
            if ratio is not None:
                cells.append((size, ratio))
        return self._within_budget(cells)

    def _within_budget(self, cells: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """The first of `cells` the budget affords with what the other sizes still need to
        bracket theirs kept back; where it cannot keep that back for any, as many as it affords."""
        kept: list[tuple[str, float]] = []
        for size, ratio in cells:
            picked = {s for s, _ in kept} | {size}
            reserve = sum(self.strategies[s].least_to_bracket() for s in self._sizes
                          if s not in picked)  # fmt: skip
            if self.spent + (len(kept) + 1 + reserve) * self._trial_tokens() <= self.budget_tokens:
                kept.append((size, ratio))
        for size, ratio in cells if not kept else []:
            if self.spent + (len(kept) + 1) * self._trial_tokens() <= self.budget_tokens:
                kept.append((size, ratio))
        if cells and not kept:
            self._stop(f"one more trial would pass the budget of {self.budget_tokens:,.0f} "
                       f"trial-tokens ({self.spent:,} spent)")  # fmt: skip
        return kept

    def _found(self, size: str) -> bool:
        found = self.strategies[size].collapse()
        return found is not None and found.found

    def _bracket_order(self) -> list[str]:
        """Sizes already walking first, then the rest farthest first (in log N) from those
        started: the ends of the ladder, then sizes between them, whose collapse the law then
        interpolates rather than extrapolates."""
        order = list(self.started)
        log_n = {s: math.log(self.n_params[s]) for s in self._sizes}
        rest = [s for s in self._sizes if s not in order]
        while rest:
            far = max(rest, key=lambda s: (min((abs(log_n[s] - log_n[p]) for p in order),
                                              default=log_n[s]), log_n[s]))  # fmt: skip
            order.append(far)
            rest.remove(far)
        return order

    def _trial_tokens(self) -> float:
        """What one more trial may spend: train.tokens, or the most a finished one trained (a
        trial trains whole batches, a little past train.tokens)."""
        return float(max(self.tokens, self.most_trained))

    def _stop(self, why: str) -> None:
        self.stopped = why
        say(f"decision search stops: {why}")

    def _prior(self, size: str) -> tuple[float | None, float, float]:
        """Where the sizes collapsed so far put this size's collapse: (the law through them,
        None below two sizes; at least the largest smaller size's r*; at most the smallest
        larger size's), r* rising with size."""
        n = self.n_params[size]
        found = [
            (self.n_params[s], self.tokens, c.ratio)
            for s in self._sizes
            if s != size and (c := self.strategies[s].collapse()) is not None and c.found
        ]
        floor = max((r for m, _, r in found if m < n), default=0.0)
        ceiling = min((r for m, _, r in found if m > n), default=1.0)
        if self.known and (law := self._law()) is not None:
            predicted = float(expit(law.retention.point.law_logit(n, self.tokens)[0]))
        elif len({m for m, _, _ in found}) >= 2:
            predicted = point_law(found)(n, self.tokens)
        else:
            return None, floor, ceiling
        return min(max(predicted, floor), ceiling), floor, ceiling

    def _curve(self, size: str) -> str:
        """The name of `size`'s curve at this budget, as the analysis names it."""
        return curve_name(size, self.tokens, bool(self.known))

    def _law(self) -> InfusionLaw | None:
        """The law fitted to every trial so far (refitted when a result came in; None: the
        trials do not fit one yet)."""
        key = sum(len(s.results) for s in self.strategies.values())
        if self._fitted is None or self._fitted[0] != key:
            curves = list(self.known)
            for size, strategy in self._sizes.items():
                rows = [(r, y, strategy.acquisition.get(r, float("nan")))
                        for r, y in strategy.results.items() if y == y]  # fmt: skip
                if rows and (strategy.reference or 0) > 0:
                    curves.append(size_curve(self._curve(size), self.n_params[size],
                                             self.tokens, rows, strategy.reference))  # fmt: skip
            form = self.settings.form
            if form == "auto":  # D's term once the curves span budgets
                form = "power_nd" if spans_budgets(curves) else DEFAULT_FORM
            try:
                law = InfusionLaw.fit(curves, replace(self.settings, form=form), self.forecast)
            except KinfuseError:
                law = None
            self._fitted = (key, law)
        return self._fitted[1]

    def _narrowing_round(self) -> list[tuple[str, float]]:
        """The `slots` unmeasured (size, ratio) that most narrow the target's keep ratio (none:
        the search is done, narrow enough, out of budget or with no law to narrow)."""
        law = self._law()
        if law is None:
            self._stop("the trials so far fit no law, and bracketing is done")
            return []
        at = law.at(self.target.n_params, self.target.tokens)
        lo, hi = central_interval(at.keep, self.forecast.confidence)
        if hi - lo <= self.width:
            self._stop(f"the keep ratio's interval at {self.target.name} is {hi - lo:.2f} logits "
                       f"(<= {self.width:g})")  # fmt: skip
            return []
        # Draws past the interval's ends would decide the covariances on their own.
        keep = at.keep
        inside = (keep >= np.percentile(keep, 5)) & (keep <= np.percentile(keep, 95))
        fit = law.retention
        own = fit.point.free_logit_rstar()
        scores = {}
        for size, strategy in self._sizes.items():
            name = self._curve(size)
            if name not in own:
                continue
            n = self.n_params[size]
            offset = own[name] - float(fit.point.law_logit(n, self.tokens)[0])
            z = fit.law_draws_logit(n, self.tokens) + offset
            shapes = fit.point.shape_at(n, self.tokens, fit.draws.shapes)
            measured = [i for i, r in enumerate(strategy.ratios) if r in strategy.proposed]
            for i, r in enumerate(strategy.ratios):
                if r in strategy.proposed or not measured[0] - 1 <= i <= measured[-1] + 1:
                    continue  # measured, or far off what the size measured
                y = retention_model(1.0, z, shapes, float(logit(r)), fit.point.threshold)
                scores[(size, r)] = variance_reduction(keep[inside], y[inside], fit.trial_sd)
        if not scores:
            self._stop("every ratio beside what each size measured is measured")
            return []
        best = sorted(scores, key=scores.get, reverse=True)[: self.slots]
        return self._within_budget(best)


def replay(search: LadderSearch, measured: dict[tuple[str, float], TrialResult],
           base: dict[str, TrialResult], slots: int = 2) -> list[TrialResult]:  # fmt: skip
    """What `search` runs on results already measured (a grid sweep's, by size and ratio; base
    runs by size): Tune played with `slots` trials in flight, the oldest finishing first, each
    trial answered by its measured result; the infusion trials it ran. Trials are deterministic
    on one numeric path and the decision search chooses in rounds, so this is what a live sweep
    of the same seed runs."""
    running: list[tuple[str, dict]] = []
    ran: list[TrialResult] = []
    step = 0
    while True:
        while len(running) < slots:
            step += 1
            config = search.suggest(f"t{step}")
            if not isinstance(config, dict):
                break
            running.append((f"t{step}", config["trial"]))
        if not running:
            return ran
        trial_id, trial = running.pop(0)
        if trial["phase"] == Phase.base:
            found = base[trial["size"]]
        else:
            found = measured[(trial["size"], trial["ratio"])]
            ran.append(found)
        search.on_trial_complete(trial_id, {"retention": found.retention,
                                            "acquisition": found.acquisition,
                                            "tokens": found.tokens_trained})  # fmt: skip


def decision_search(
    search: SearchConfig,
    ratios: list[float],
    evals: EvalConfig,
    predict: PredictConfig,
    *,
    seed: int,
    target: TargetPoint,
    n_params: dict[str, int],
    tokens: int,
    base: list[str],
    plateaus: dict[str, float],
    capacity: Callable[[], int] | None = None,
    slots: int = 2,
    known: Sequence[SizeCurve] = (),
) -> DecisionSearch:
    """A fresh decision search by a sweep's `search`, `eval` and `predict` settings over its
    `ratios` for the sizes of `n_params` (`base`: those whose base run is still to do;
    `plateaus`: base-model retention already known; `slots`: trials run at once; `known`: the
    curves of a size x budget ladder's other budgets)."""
    strategies = {}
    for size in n_params:
        strategies[size] = DecisionRatios(ratios, evals.collapse_threshold, evals.plateau_points)
        strategies[size].plateau = plateaus.get(size)
    settings, forecast = from_sweep(evals, predict, seed)
    return DecisionSearch(
        strategies, n_params, tokens, base, capacity, target=target, settings=settings,
        forecast=forecast, budget=search.budget, width=search.width, slots=slots, known=known,
    )  # fmt: skip
