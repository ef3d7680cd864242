"""Which trial runs next: a Ray Tune searcher that knows the ladder.

Under the continued schedule each size's infusion trials need that size's base checkpoint, so
`LadderSearch` hands out every base run first and a size's infusion trials once its own base
run has finished. Which ratios a size tries is up to its strategy:

- `GridRatios`: every ratio of the sweep file, all at once.
- `BisectRatios`: the sweep file's ratios as a coarse pass, then bisection in log r inside the
  bracket around the collapse until the bracket is narrower than the requested relative
  precision (hi / lo - 1 <= precision). A size whose coarse pass shows no collapse (or no
  plateau) is finished: nothing inside the range could change that. Once two sizes have found
  a collapse (final or still narrowing), the next size to start replaces the coarse pass's
  upper ratios by two ratios around the collapse point that the law fitted so far predicts
  (ladder-aware seeding).
"""

from __future__ import annotations

import math
import pickle
from typing import Protocol

import numpy as np
from ray.tune.search import Searcher

from kinfuse_ray.collapse import CollapsePoint, detect_collapse
from kinfuse_ray.law import CollapseRecord, InfusionLaw
from kinfuse_ray.trial import BASE, INFUSE


class RatioStrategy(Protocol):
    def propose(self) -> list[float]:
        """Ratios that may start now (each is proposed once)."""

    def observe(self, ratio: float, retention: float) -> None: ...

    @property
    def finished(self) -> bool: ...


class GridRatios:
    def __init__(self, ratios: list[float]):
        self.ratios, self.results, self.proposed = sorted(ratios), {}, False

    def propose(self) -> list[float]:
        if self.proposed:
            return []
        self.proposed = True
        return list(self.ratios)

    def observe(self, ratio: float, retention: float) -> None:
        self.results[ratio] = retention

    @property
    def finished(self) -> bool:
        return self.proposed and len(self.results) == len(self.ratios)


class BisectRatios:
    def __init__(
        self,
        coarse: list[float],
        precision: float,
        threshold: float = 0.5,
        plateau_points: int = 2,
    ):
        self.coarse = sorted(coarse)
        self.precision, self.threshold, self.plateau_points = precision, threshold, plateau_points
        self.results: dict[float, float] = {}
        self.proposed: set[float] = set()

    def seed(self, predicted: float) -> None:
        """Keep the plateau ratios; in place of the rest of the coarse pass, try two ratios
        around a predicted collapse point (unless this size has started already)."""
        if self.proposed:
            return
        low, top = self.coarse[: self.plateau_points], self.coarse[-1]
        around = {
            min(predicted / (1 + self.precision), top),
            min(predicted * (1 + self.precision), top),
        }
        self.coarse = sorted(set(low) | {r for r in around if r > low[-1]})

    def collapse(self) -> CollapsePoint | None:
        """The collapse rule on the results so far, the plateau fixed by the lowest ratios."""
        if len(self.results) < self.plateau_points:
            return None
        ratios = sorted(self.results)
        plateau = float(np.median([self.results[r] for r in ratios[: self.plateau_points]]))
        retention = [self.results[r] for r in ratios]
        return detect_collapse(ratios, retention, self.threshold, self.plateau_points, plateau)

    def _bisection_step(self) -> float | None:
        """The ratio the results call for next; None once the bracket is narrow enough or the
        range holds no collapse to narrow down."""
        found = self.collapse()
        if found is None or not found.found:
            return None
        lo, hi = found.bracket
        mid = math.sqrt(lo * hi)
        return None if hi / lo - 1 <= self.precision or mid in self.proposed else mid

    def propose(self) -> list[float]:
        fresh = [r for r in self.coarse if r not in self.proposed]
        if not fresh and len(self.results) == len(self.proposed):
            fresh = [r for r in [self._bisection_step()] if r is not None]
        self.proposed.update(fresh)
        return fresh

    def observe(self, ratio: float, retention: float) -> None:
        self.results[ratio] = retention

    @property
    def finished(self) -> bool:
        coarse_done = all(r in self.proposed for r in self.coarse)
        settled = len(self.results) == len(self.proposed)
        return coarse_done and settled and self._bisection_step() is None


class LadderSearch(Searcher):
    def __init__(
        self,
        strategies: dict[str, RatioStrategy],
        n_params: dict[str, int],
        tokens: int,
        base: list[str],
    ):
        """`strategies` by size name, in ladder order; `base` names the sizes whose base run is
        still to do (their infusion trials wait for it)."""
        super().__init__(metric="retention", mode="max")
        self.strategies = strategies
        self.n_params, self.tokens = n_params, tokens
        self.queue_base = list(base)
        self.ready = [s for s in strategies if s not in base]
        self.started: list[str] = []
        self.queue: list[dict] = []
        self.running: dict[str, dict] = {}

    # -- Tune's side -------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | str | None:
        trial = self._next()
        if trial is None:
            busy = (
                self.queue_base
                or self.running
                or any(not self.strategies[s].finished for s in self.ready)
            )
            return None if busy else Searcher.FINISHED
        self.running[trial_id] = trial
        return {"trial": trial}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        trial = self.running.pop(trial_id, None)
        if trial is None:
            return
        size = trial["size"]
        if trial["phase"] == BASE:
            if not error:
                self.ready.append(size)
            return
        retention = float("nan") if error or not result else float(result["retention"])
        self.strategies[size].observe(trial["ratio"], retention)

    # Tune checkpoints the searcher with the experiment, so a resumed sweep keeps its brackets.
    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    # -- choosing ----------------------------------------------------------------------------
    def _next(self) -> dict | None:
        if self.queue_base:
            return {"phase": BASE, "size": self.queue_base.pop(0), "ratio": 0.0}
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
                self._seed(size)
                self.started.append(size)
                self._enqueue(size)
                if self.queue:
                    return

    def _enqueue(self, size: str) -> None:
        self.queue += [
            {"phase": INFUSE, "size": size, "ratio": r} for r in self.strategies[size].propose()
        ]

    def _seed(self, size: str) -> None:
        """Seed a new size from the collapse points found so far (final or still narrowing:
        waiting for the last bisection step would leave a core idle)."""
        strategy = self.strategies[size]
        if not isinstance(strategy, BisectRatios):
            return
        found = {s: self.strategies[s].collapse() for s in self.started}
        records = [
            CollapseRecord(self.n_params[s], self.tokens, c.ratio, c.bracket, s)
            for s, c in found.items()
            if c is not None and c.found
        ]
        if len(records) >= 2:
            law = InfusionLaw(n_bootstrap=0).fit(records, validate=False)
            strategy.seed(law.predict_point(self.n_params[size], self.tokens))
