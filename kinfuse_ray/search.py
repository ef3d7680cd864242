"""Which trial runs next: a Ray Tune searcher that knows the ladder.

Under the continued schedule each size's infusion trials need that size's base checkpoint, so
`LadderSearch` hands out every base run first and a size's infusion trials once its own base
run has finished. Which ratios a size tries is up to its strategy:

- `GridRatios`: every ratio of the sweep file, all at once.
- `OptunaRatios`: Optuna's TPE sampler, for those who prefer it (see the class).
- `BisectRatios`: the sweep file's ratios as a coarse pass, then bisection in log r inside the
  bracket around the collapse until the bracket is narrower than the requested relative
  precision (hi / lo - 1 <= precision). A size whose coarse pass shows no collapse (or no
  plateau) is finished: nothing inside the range could change that. A size hands out its
  plateau ratios first; if two other sizes have found a collapse (final or still narrowing)
  before it hands out the rest, it replaces the coarse pass's upper ratios by two ratios around
  the collapse point that the law fitted so far predicts (ladder-aware seeding).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable

import numpy as np
from ray.tune.search import Searcher

from kinfuse_ray.collapse import CollapsePoint, detect_collapse
from kinfuse_ray.config import EVAL_DEFAULTS, EvalConfig, SearchConfig
from kinfuse_ray.law import point_law
from kinfuse_ray.spec import Phase, TrialSpec


class RatioStrategy:
    """Which ratios one size tries. A subclass says, from the results so far, which ratios it
    wants (`_wanted`); this class proposes each once and applies the collapse rule."""

    def __init__(
        self,
        threshold: float = EVAL_DEFAULTS.collapse_threshold,
        plateau_points: int = EVAL_DEFAULTS.plateau_points,
    ):
        self.threshold, self.plateau_points = threshold, plateau_points
        self.plateau: float | None = None  # the base model's retention, once its run is done
        self.results: dict[float, float] = {}
        self.proposed: set[float] = set()

    def _wanted(self) -> list[float]:
        raise NotImplementedError

    def propose(self) -> list[float]:
        """Ratios that may start now (each is proposed once)."""
        fresh = [r for r in self._wanted() if r not in self.proposed]
        self.proposed.update(fresh)
        return fresh

    def observe(self, ratio: float, retention: float) -> None:
        self.results[ratio] = retention

    @property
    def waiting(self) -> bool:
        return len(self.results) < len(self.proposed)

    @property
    def finished(self) -> bool:
        return not self.waiting and all(r in self.proposed for r in self._wanted())

    def planned(self) -> int:
        """How many trials this size runs in all, as far as its results tell so far."""
        raise NotImplementedError

    def collapse(self) -> CollapsePoint | None:
        """The collapse rule (the same the sweep's analysis applies) on the results so far."""
        if len(self.results) < (1 if self.plateau is not None else self.plateau_points):
            return None
        ratios = sorted(self.results)
        retention = [self.results[r] for r in ratios]
        return detect_collapse(
            ratios, retention, self.threshold, self.plateau_points, plateau=self.plateau
        )


class GridRatios(RatioStrategy):
    def __init__(
        self,
        ratios: list[float],
        threshold: float = EVAL_DEFAULTS.collapse_threshold,
        plateau_points: int = EVAL_DEFAULTS.plateau_points,
    ):
        super().__init__(threshold, plateau_points)
        self.ratios = sorted(ratios)

    def _wanted(self) -> list[float]:
        return self.ratios

    def planned(self) -> int:
        return len(self.ratios)


class BisectRatios(RatioStrategy):
    def __init__(
        self,
        coarse: list[float],
        precision: float,
        threshold: float = EVAL_DEFAULTS.collapse_threshold,
        plateau_points: int = EVAL_DEFAULTS.plateau_points,
    ):
        super().__init__(threshold, plateau_points)
        self.coarse = sorted(coarse)
        self.precision = precision
        self.seeded = False

    @property
    def seedable(self) -> bool:
        """Only the plateau ratios have been handed out: the rest may still be replaced."""
        return all(r not in self.proposed for r in self.coarse[self.plateau_points :])

    def seed(self, predicted: float) -> None:
        """Keep the plateau ratios; in place of the rest of the coarse pass, try two ratios
        around a predicted collapse point."""
        low, top = self.coarse[: self.plateau_points], self.coarse[-1]
        around = {
            min(predicted / (1 + self.precision), top),
            min(predicted * (1 + self.precision), top),
        }
        self.coarse = sorted(set(low) | {r for r in around if r > low[-1]})
        self.seeded = True

    def planned(self) -> int:
        """The coarse pass, plus the bisection steps that narrow the current bracket (before the
        coarse pass is in: its widest gap) to the precision."""
        done = len(set(self.coarse) | self.proposed)
        found = self.collapse() if all(r in self.results for r in self.coarse) else None
        if found is not None and not found.found:
            return done
        lo, hi = (
            found.bracket
            if found
            else max(zip(self.coarse, self.coarse[1:], strict=False), key=lambda p: p[1] / p[0])
        )
        width = math.log(hi / lo) / math.log(1 + self.precision)
        return done + max(0, math.ceil(math.log2(width))) if width > 1 else done

    def _wanted(self) -> list[float]:
        """The plateau ratios first (so a seed can still replace the rest), then the rest of the
        coarse pass; once all of it is in, one bisection step at a time in log r until the
        bracket is narrow enough or the range holds no collapse to narrow down."""
        plateau = self.coarse[: self.plateau_points]
        if not all(r in self.proposed for r in plateau):
            return plateau
        if self.waiting or any(r not in self.results for r in self.coarse):
            return self.coarse
        found = self.collapse()
        if found is None or not found.found:
            return self.coarse
        lo, hi = found.bracket
        if hi / lo - 1 <= self.precision:
            return self.coarse
        return [*self.coarse, math.sqrt(lo * hi)]


class OptunaRatios(RatioStrategy):
    """Optuna's TPE sampler over log r above the plateau ratios, one trial at a time, each
    scored by how far its normalised retention lies from the collapse threshold, so it samples
    ever closer to the cliff; the collapse rule then reads r* off all its ratios."""

    def __init__(
        self,
        coarse: list[float],
        n_trials: int,
        threshold: float = EVAL_DEFAULTS.collapse_threshold,
        plateau_points: int = EVAL_DEFAULTS.plateau_points,
        seed: int = 0,
    ):
        super().__init__(threshold, plateau_points)
        coarse = sorted(coarse)
        self.plateau_ratios = coarse[:plateau_points]
        self.low, self.high = coarse[plateau_points - 1], coarse[-1]
        self.n_trials, self.seed = n_trials, seed
        self.told: list[tuple[float, float]] = []  # (ratio, objective): the study's history
        self.next_ratio: float | None = None
        self._study, self._asked = None, {}

    def planned(self) -> int:
        return len(self.plateau_ratios) + self.n_trials

    def _optuna(self):
        import optuna

        if self._study is None:  # (re)built from the history after a restore
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=3)
            self._study = optuna.create_study(direction="minimize", sampler=sampler)
            space = {"ratio": optuna.distributions.FloatDistribution(self.low, self.high, log=True)}
            for ratio, value in self.told:
                trial = optuna.trial.create_trial(
                    params={"ratio": ratio}, distributions=space, value=value
                )
                self._study.add_trial(trial)
        return self._study

    def _wanted(self) -> list[float]:
        plateau_in = all(r in self.results for r in self.plateau_ratios)
        if not plateau_in or self.waiting:
            return self.plateau_ratios
        if self.next_ratio is None or self.next_ratio in self.proposed:
            if len(self.told) >= self.n_trials:
                return self.plateau_ratios
            trial = self._optuna().ask()
            self.next_ratio = trial.suggest_float("ratio", self.low, self.high, log=True)
            self._asked[self.next_ratio] = trial
        return [*self.plateau_ratios, self.next_ratio]

    def observe(self, ratio: float, retention: float) -> None:
        super().observe(ratio, retention)
        trial = self._asked.pop(ratio, None)
        if trial is not None:
            plateau = float(np.median([self.results[r] for r in self.plateau_ratios]))
            value = abs(retention / plateau - self.threshold) if plateau > 0 else 1.0
            self._optuna().tell(trial, value)
            self.told.append((ratio, value))

    def __getstate__(self) -> dict:
        # The study holds locks; its history in `told` is enough to rebuild it.
        return {**self.__dict__, "_study": None, "_asked": {}, "next_ratio": None}


class LadderSearch(Searcher):
    def __init__(
        self,
        strategies: dict[str, RatioStrategy],
        n_params: dict[str, int],
        tokens: int,
        base: list[str],
        capacity: Callable[[], int] | None = None,
    ):
        """`strategies` by size name, in ladder order; `base` names the sizes whose base run is
        still to do (their infusion trials wait for it); `capacity`, if given, says how many
        trials may run at once (asked again at every suggestion, so it may grow)."""
        super().__init__(metric="retention", mode="max")
        self.strategies = strategies
        self.n_params, self.tokens = n_params, tokens
        self.queue_base = list(base)
        self.ready = [s for s in strategies if s not in base]
        self.started: list[str] = []
        self.queue: list[TrialSpec] = []
        self.running: dict[str, TrialSpec] = {}
        self.capacity = capacity

    # -- Tune's side -------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | str | None:
        if self.capacity is not None and len(self.running) >= self.capacity():
            return None  # Tune asks again later
        trial = self._next()
        if trial is None:
            busy = self.queue_base or self.running or self._searching()
            return None if busy else Searcher.FINISHED
        self.running[trial_id] = trial
        return trial.to_config()

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        trial = self.running.pop(trial_id, None)
        if trial is None:
            return
        size = trial.size
        if trial.phase is Phase.base:
            if not error:
                self.ready.append(size)
                if result and "retention" in result:
                    self.strategies[size].plateau = float(result["retention"])
            return
        retention = float("nan") if error or not result else float(result["retention"])
        self.strategies[size].observe(trial.ratio, retention)

    # Tune checkpoints the searcher with the experiment, so a resumed sweep keeps its brackets.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    # -- choosing ----------------------------------------------------------------------------
    def _searching(self) -> bool:
        """Whether a size may still want trials once the ones running are in."""
        return any(not self.strategies[s].finished for s in self.ready)

    def _next(self) -> TrialSpec | None:
        if self.queue_base:
            return TrialSpec(Phase.base, self.queue_base.pop(0), 0.0)
        if not self.queue:
            self._refill()
        return self.queue.pop(0) if self.queue else None

    def _refill(self) -> None:
        """Sizes already searching come first (their next bisection step), then a new size."""
        for size in self.started:
            self._enqueue(size)
        if self.queue:
            return
        for size in self.ready:
            if size not in self.started:
                self.started.append(size)
                self._enqueue(size)
                if self.queue:
                    return

    def _enqueue(self, size: str) -> None:
        self._seed(size)
        self.queue += [TrialSpec(Phase.infuse, size, r) for r in self.strategies[size].propose()]

    def _seed(self, size: str) -> None:
        """Seed a new size from the collapse points found so far (final or still narrowing:
        waiting for the last bisection step would leave a core idle)."""
        strategy = self.strategies[size]
        if not isinstance(strategy, BisectRatios) or strategy.seeded or not strategy.seedable:
            return
        found = {s: self.strategies[s].collapse() for s in self.started if s != size}
        points = [
            (self.n_params[s], self.tokens, c.ratio)
            for s, c in found.items()
            if c is not None and c.found
        ]
        if len(points) >= 2:
            strategy.seed(point_law(points)(self.n_params[size], self.tokens))


def ratio_strategies(
    search: SearchConfig,
    ratios: list[float],
    evals: EvalConfig,
    seed: int,
    sizes: list[str],
    plateaus: dict[str, float] | None = None,
) -> dict[str, RatioStrategy]:
    """A fresh strategy of `search`'s kind over `ratios` for each of `sizes` (in ladder order),
    with `evals`' collapse rule; `plateaus`: base-model retention already known (base runs done
    before this sweep began)."""
    rule = {"threshold": evals.collapse_threshold, "plateau_points": evals.plateau_points}

    def strategy(size: str) -> RatioStrategy:
        if search.strategy == "bisect":
            made = BisectRatios(ratios, search.precision, **rule)
        elif search.strategy == "optuna":
            made = OptunaRatios(ratios, search.trials_per_size, **rule, seed=seed)
        else:
            made = GridRatios(ratios, **rule)
        made.plateau = (plateaus or {}).get(size)
        return made

    return {size: strategy(size) for size in sizes}
