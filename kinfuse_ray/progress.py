"""Live progress of a sweep: per size, trials done, running and pending, the collapse bracket so
far, the elapsed time and an estimate of the time left (`console.describe_progress` writes
it out).

Bookkeeping of starts, ends and durations, fed by the sweep's console callback, over a
read-only view of the searcher: done, pending and the bracket are read from the searcher's own
strategies each time (never written here), so "pending" follows the search plan, a bisection's
remaining steps included. Tune pickles the searcher and this view together, and restores the
searcher's state in place, so a resumed experiment's view reads the restored searcher.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from kinfuse_ray.collapse import CollapsePoint
from kinfuse_ray.search import LadderSearch, RatioStrategy
from kinfuse_ray.spec import Phase, TrialSpec


@dataclass(frozen=True)
class SizeProgress:
    """One size of a running sweep (`progress.Progress.sizes`)."""

    size: str
    base: str | None  # its base run "pending" or "running"; None: done or not needed
    done: int
    running: int
    pending: int
    collapse: CollapsePoint | None  # the collapse rule on its results so far


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


class Progress:
    def __init__(
        self,
        search: LadderSearch,
        base_pending: list[str],
        slots: int,
        clock=time.monotonic,
        *,
        stored_base_seconds: dict[str, float] | None = None,
        trial_share: float | None = None,
    ):
        """`search` the sweep's searcher (read, never written); `base_pending` the sizes whose
        base run is still to do; `slots` trials run at once; `stored_base_seconds` what the
        base runs reused from the store took when they ran (by size), so that a size's trials
        are costed by its own size before one of them has finished; `trial_share` an infusion
        trial's tokens over a base run's, what a trial costs against its size's base run until
        trials and base runs of one size have both finished (None: no base runs)."""
        self.search, self.slots, self.clock = search, max(1, slots), clock
        self.trial_share = trial_share
        self.started_at = clock()
        self.base_pending = set(base_pending)
        self.running: dict[str, set[float]] = defaultdict(set)
        self.base_running: set[str] = set()
        self.seconds: dict[str, list[float]] = defaultdict(list)  # finished infusion trials
        # Finished base runs' times, by size (a store's older record may have none: 0).
        self.base_seconds = {s: t for s, t in (stored_base_seconds or {}).items() if t > 0}

    def start(self, trial: TrialSpec) -> None:
        if trial.phase is Phase.base:
            self.base_running.add(trial.size)
        else:
            self.running[trial.size].add(trial.ratio)

    @property
    def strategies(self) -> dict[str, RatioStrategy]:
        return self.search.strategies

    def finish(self, trial: TrialSpec, seconds: float) -> None:
        if trial.phase is Phase.base:
            self.base_running.discard(trial.size)
            self.base_pending.discard(trial.size)
            self.base_seconds[trial.size] = seconds
            return
        self.running[trial.size].discard(trial.ratio)
        self.seconds[trial.size].append(seconds)

    def counts(self, size: str) -> tuple[int, int, int]:
        """(done, running, pending) infusion trials of `size`."""
        done, running = len(self.strategies[size].results), len(self.running[size])
        return done, running, max(0, self.strategies[size].planned() - done - running)

    def remaining_seconds(self) -> float | None:
        """Pending work over the slots, each trial costed at its size's mean so far; a size with
        none finished yet at its base run's time scaled by what infusion trials cost against
        base runs in the sizes that have both (larger sizes cost more), before any has both by
        their tokens (`trial_share`), else at the sweep's mean. None until one trial has
        finished."""
        every = [s for times in self.seconds.values() for s in times]
        if not every and not self.base_seconds:
            return None
        fallback = _mean(every) if every else max(self.base_seconds.values())
        base = max(self.base_seconds.values()) if self.base_seconds else fallback
        work = base * (len(self.base_pending - self.base_running) + 0.5 * len(self.base_running))
        measured = [s for s, times in self.seconds.items() if times and s in self.base_seconds]
        per_base = sum(_mean(self.seconds[s]) for s in measured) / sum(
            self.base_seconds[s] for s in measured
        ) if measured else self.trial_share  # fmt: skip
        longest = 0.0  # a running trial cannot be shared out over the slots
        for size in self.strategies:
            _, running, pending = self.counts(size)
            if self.seconds[size]:
                mean = _mean(self.seconds[size])
            elif per_base is not None and size in self.base_seconds:
                mean = per_base * self.base_seconds[size]
            else:
                mean = fallback
            work += mean * (pending + 0.5 * running)
            longest = max(longest, 0.5 * mean if running else 0.0)
        return max(work / self.slots, longest)

    def sizes(self) -> list[SizeProgress]:
        """Each size's state now, in ladder order."""
        rows = []
        for size in self.strategies:
            base = None
            if size in self.base_pending:
                base = "running" if size in self.base_running else "pending"
            done, running, pending = self.counts(size)
            collapse = self.strategies[size].collapse()
            rows.append(SizeProgress(size, base, done, running, pending, collapse))
        return rows

    def elapsed(self) -> float:
        return self.clock() - self.started_at
