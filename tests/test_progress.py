"""Live progress on a scripted sweep: counts per size, the bracket, elapsed time and time left,
read from the searcher (which the progress never writes to)."""

import pickle

import pytest

from kinfuse_ray.console import describe_progress
from kinfuse_ray.progress import Progress
from kinfuse_ray.search import BisectRatios, GridRatios, LadderSearch
from kinfuse_ray.spec import Phase, TrialSpec

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def finished(search, progress, trial, retention, seconds):
    """A trial ends: Tune tells the searcher (its results), then the console callback."""
    search.running[trial.key] = trial
    search.on_trial_complete(trial.key, {"retention": retention})
    progress.finish(trial, seconds=seconds)


def test_counts_brackets_and_time_left_follow_the_trials():
    clock = Clock()
    ratios = [0.2, 0.5, 0.8, 0.95]
    strategies = {"a": GridRatios(ratios), "b": BisectRatios(ratios, precision=0.05)}
    search = LadderSearch(strategies, {"a": 1, "b": 2}, 100, base=["a", "b"])
    progress = Progress(search, base_pending=["a", "b"], slots=2, clock=clock)
    assert "a  base run pending" in describe_progress(progress)
    assert "estimating time left" in describe_progress(progress)

    progress.start(TrialSpec(Phase.base, "a", 0.0))
    clock.now = 10
    finished(search, progress, TrialSpec(Phase.base, "a", 0.0), 1.0, seconds=10)
    for r, retention in zip(ratios, [1.0, 0.95, 0.3, 0.1], strict=True):
        progress.start(TrialSpec(Phase.infuse, "a", r))
        finished(search, progress, TrialSpec(Phase.infuse, "a", r), retention, seconds=4)
    progress.start(
        TrialSpec(Phase.infuse, "a", 0.99)
    )  # grid sizes never run more than their ratios
    assert progress.counts("a")[0] == 4

    clock.now = 70
    text = describe_progress(progress)
    assert text.startswith("progress: 1m10s elapsed, about ")
    assert "a  4 done, 1 running, 0 pending; r* " in text and "in [0.5, 0.8]" in text
    assert "b  base run pending" in text
    # b: a 10 s base run and 4 coarse ratios plus bisection of the widest gap to 5%, at 4 s
    # each, over 2 slots.
    done, running, pending = progress.counts("b")
    assert (done, running) == (0, 0) and pending > 4
    assert progress.remaining_seconds() == (10 + 4 * (pending + 0.5)) / 2

    # b's base run took twice a's: its trials are costed at twice a's (4 s x 20 / 10).
    finished(search, progress, TrialSpec(Phase.base, "b", 0.0), 1.0, seconds=20)
    assert progress.remaining_seconds() == (4 * 0.5 + 8 * pending) / 2
    for r, retention in zip(ratios, [1.0, 1.0, 0.9, 0.2], strict=True):
        finished(search, progress, TrialSpec(Phase.infuse, "b", r), retention, seconds=4)
    # The coarse pass brackets r* in [0.8, 0.95]: log2(log(0.95/0.8)/log(1.05)) -> 2 more steps.
    assert progress.counts("b") == (4, 0, 2)


def test_reused_base_runs_cost_their_sizes_trials_from_the_start():
    """A sweep whose base runs all come from the store (a budget ladder's later budgets): their
    stored times scale each size's trials, as a base run trained here would."""
    ratios = [0.2, 0.5, 0.8, 0.95]
    strategies = {size: GridRatios(ratios) for size in ("a", "b")}
    search = LadderSearch(strategies, {"a": 1, "b": 2}, 100, base=[])
    stored = {"a": 10.0, "b": 40.0}
    progress = Progress(search, base_pending=[], slots=1, stored_base_seconds=stored)
    assert progress.remaining_seconds() == 40 * 8  # nothing measured, no share: the largest base
    for r in ratios:
        finished(search, progress, TrialSpec(Phase.infuse, "a", r), 1.0, seconds=5)
    # b's base run took 4x a's: its 4 trials are costed at 4 x 5 s, not at a's 5 s.
    assert progress.remaining_seconds() == 4 * 20
    # With the trials' tokens a third of a base run's, each size's trials are costed from its
    # own base run from the start (a new user saw 13, 17, 17, then 6 minutes without it), and
    # the estimate holds when the first trials finish as their tokens said.
    search = LadderSearch({size: GridRatios(ratios) for size in ("a", "b")}, {"a": 1, "b": 2},
                          100, base=[])  # fmt: skip
    shared = Progress(
        search, base_pending=[], slots=1, stored_base_seconds=stored, trial_share=1 / 3
    )
    first = shared.remaining_seconds()
    assert first == pytest.approx(4 * 10 / 3 + 4 * 40 / 3)
    finished(search, shared, TrialSpec(Phase.infuse, "a", ratios[0]), 1.0, seconds=10 / 3)
    assert shared.remaining_seconds() == pytest.approx(first - 10 / 3)
    without = Progress(search, base_pending=[], slots=1, stored_base_seconds={"a": 0.0})
    assert without.remaining_seconds() is None  # a stored time of 0 (unknown) is no estimate


def test_a_restored_searcher_is_what_the_restored_progress_reads(tmp_path):
    """Tune pickles the searcher and the callbacks together and restores the searcher's state in
    place: the progress unpickled with it reads the restored brackets, not the pickled ones."""
    ratios = [0.2, 0.5, 0.8]
    search = LadderSearch({"a": GridRatios(ratios)}, {"a": 1}, 100, base=[])
    progress = Progress(search, base_pending=[], slots=1)
    search_again, progress_again = pickle.loads(pickle.dumps((search, progress)))
    for r, retention in zip(ratios, [1.0, 0.9, 0.2], strict=True):
        finished(search, progress, TrialSpec(Phase.infuse, "a", r), retention, seconds=1)
    search.save(str(tmp_path / "searcher.pkl"))
    assert progress_again.counts("a") == (0, 0, 3)
    search_again.restore(str(tmp_path / "searcher.pkl"))
    assert progress_again.counts("a") == (3, 0, 0)
    assert "r* " in describe_progress(progress_again) and "in [0.5, 0.8]" in describe_progress(
        progress_again
    )
