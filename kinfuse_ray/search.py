"""Which trial runs next: a Ray Tune searcher that knows the ladder's dependencies.

Under the continued schedule each size's infusion trials need that size's base checkpoint. The
searcher hands out every base run first and then a size's infusion trials as soon as its own base
run has finished, so no core idles while a slower size's base run is still training.
"""

from __future__ import annotations

from ray.tune.search import Searcher

from kinfuse_ray.trial import BASE


class LadderGrid(Searcher):
    def __init__(self, base: list[dict], infuse: list[dict], ready: set[str]):
        """`base` and `infuse` are trial descriptions ({"phase", "size", "ratio"}); `ready` names
        the sizes whose infusion trials may start at once (base checkpoint already there)."""
        super().__init__(metric="retention", mode="max")
        self.queue_base = list(base)
        self.queue_infuse = list(infuse)
        self.ready = set(ready)
        self.running: dict[str, dict] = {}

    def suggest(self, trial_id: str) -> dict | str | None:
        trial = self._next()
        if trial is None:
            return (
                None
                if (self.queue_base or self.queue_infuse or self.running)
                else Searcher.FINISHED
            )
        self.running[trial_id] = trial
        return {"trial": trial}

    def _next(self) -> dict | None:
        if self.queue_base:
            return self.queue_base.pop(0)
        for i, trial in enumerate(self.queue_infuse):
            if trial["size"] in self.ready:
                return self.queue_infuse.pop(i)
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        trial = self.running.pop(trial_id, None)
        if trial is None or trial["phase"] != BASE:
            return
        if error:  # without a base checkpoint this size's infusion trials cannot run
            self.queue_infuse = [t for t in self.queue_infuse if t["size"] != trial["size"]]
        else:
            self.ready.add(trial["size"])
