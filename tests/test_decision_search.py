"""The decision search on a synthetic ladder whose collapse follows a known law: no training, no
Ray cluster (benchmarks/decision_search.py replays it on the quickstart's measured trials)."""

import math

import numpy as np
import pytest
from scipy.special import expit, logit

from kinfuse_ray.config import TargetPoint
from kinfuse_ray.decision_search import DecisionRatios, DecisionSearch, variance_reduction
from kinfuse_ray.law import FitSettings, ForecastSettings, size_curve

pytestmark = pytest.mark.unit

GRID = [0.12, 0.2, 0.3, 0.45, 0.6, 0.73, 0.83, 0.9, 0.97]  # the quickstart's ratios
SIZES = {"n25k": 25_000, "n56k": 56_000, "n101k": 101_000, "n222k": 222_000, "n396k": 396_000}
# Each size's own deviation from the law in logit r*, as real ladders scatter.
SCATTER = {"n25k": 0.15, "n56k": -0.2, "n101k": 0.1, "n222k": -0.05, "n396k": 0.12}
TOKENS = 100_000
TARGET = TargetPoint("n886k", 886_000, TOKENS)


def r_star(size: str) -> float:
    return float(expit(1.3 + 0.9 * math.log(SIZES[size] / 100_000) + SCATTER[size]))


def retention(size: str, ratio: float) -> float:
    """Plateau 0.9 falling through half of it at r*, as the joint fit's curve does."""
    return 0.9 * float(expit(1.5 * (logit(r_star(size)) - logit(ratio))))


def search(budget: float = 1 / 3, width: float = 1.5, slots: int = 2) -> DecisionSearch:
    strategies = {size: DecisionRatios(GRID) for size in SIZES}
    return DecisionSearch(
        strategies, SIZES, TOKENS, base=list(SIZES), target=TARGET,
        settings=FitSettings(form="power_n", n_bootstrap=100), forecast=ForecastSettings(),
        budget=budget, width=width, slots=slots,
    )  # fmt: skip


def drive(searcher: DecisionSearch, slots: int = 2, stop_after: int | None = None,
          newest_first: bool = False, failing: str | None = None) -> list[dict]:  # fmt: skip
    """Play Tune: `slots` trials in flight, the oldest finishing first (or the newest), base
    runs at 0.9; the trials done (stopping early after `stop_after` of them, as a killed sweep
    would). Trials the searcher holds as running (a restored one) run on first, as Tune resumes
    them. The base run of `failing` errors."""
    running = [(i, t.to_config()["trial"]) for i, t in searcher.running.items()]
    done, step = [], len(searcher.running) + 1000
    while stop_after is None or len(done) < stop_after:
        while len(running) < slots:
            step += 1
            suggestion = searcher.suggest(f"t{step}")
            if not isinstance(suggestion, dict):
                break
            running.append((f"t{step}", suggestion["trial"]))
        if not running:
            assert suggestion == "FINISHED"
            break
        trial_id, trial = running.pop(-1 if newest_first else 0)
        infuse = trial["phase"] == "infuse"
        kept = retention(trial["size"], trial["ratio"]) if infuse else 0.9
        result = {"retention": kept, "acquisition": 0.5, "tokens": TOKENS}
        error = not infuse and trial["size"] == failing
        searcher.on_trial_complete(trial_id, None if error else result, error=error)
        done.append(trial)
    return done


def test_every_size_is_bracketed_by_neighbouring_ratios_within_the_budget():
    searcher = search()
    done = drive(searcher)
    infusions = [t for t in done if t["phase"] == "infuse"]
    assert len(infusions) * TOKENS <= len(SIZES) * len(GRID) * TOKENS / 3
    for size, strategy in searcher.strategies.items():
        found = strategy.collapse()
        lo, hi = found.bracket
        assert found.found and GRID.index(hi) == GRID.index(lo) + 1, size
        assert lo < r_star(size) <= hi
    assert searcher.stopped  # it says why it stopped


def test_what_it_runs_does_not_depend_on_which_trial_finishes_first():
    """Rounds: a live sweep, whose trials finish in whatever order the machine makes, runs the
    trials a replay of the same results does."""
    in_order = drive(search(), slots=3)
    reversed_ = drive(search(), slots=3, newest_first=True)
    cells = lambda done: sorted((t["size"], t["ratio"]) for t in done)  # noqa: E731
    assert cells(in_order) == cells(reversed_)


def test_a_size_whose_base_run_failed_gets_no_trial():
    """Its infusion trials would have no checkpoint to continue from; the others go on."""
    searcher = search()
    done = drive(searcher, failing="n56k")
    assert not [t for t in done if t["size"] == "n56k" and t["phase"] == "infuse"]
    assert {t["size"] for t in done if t["phase"] == "infuse"} == set(SIZES) - {"n56k"}


def test_it_stops_once_the_keep_interval_is_narrow_enough():
    """A width every fit meets ends the search right after bracketing; a width none meets spends
    the budget, on ratios beside what each size measured."""
    at_once, spent = search(width=100.0), search(width=0.01, budget=0.6)
    first, second = drive(at_once), drive(spent)
    assert "logits" in at_once.stopped and "budget" in spent.stopped
    assert len(second) > len(first)
    assert spent.spent > 0.5 * len(SIZES) * len(GRID) * TOKENS


def test_a_restored_search_continues_where_it_stopped(tmp_path):
    whole = drive(search())
    first = search()
    before = drive(first, stop_after=12)
    first.save(str(tmp_path / "searcher.pkl"))  # as Tune checkpoints it with the experiment
    second = search()
    second.restore(str(tmp_path / "searcher.pkl"))
    rest = drive(second)  # the trials in flight at the save run on, then the search goes on
    assert before + rest == whole
    assert second.spent == first.spent + sum(TOKENS for t in rest if t["phase"] == "infuse")


def test_a_budget_after_another_starts_every_size_next_to_its_collapse():
    """On a size x budget ladder a budget's search is placed from the curves the budgets before
    it measured (here half the tokens, where every r* lies 0.35 lower in logit): every size's
    walk starts in the first round, next to its collapse, and brackets it in the least trials
    there are (2), where a search on its own starts from the ends of the ladder."""
    d_earlier = TOKENS // 2
    shift = 0.5 * math.log(d_earlier / TOKENS)
    known = [
        size_curve(f"{size}-d{d_earlier}", n, d_earlier,
                   [(r, 0.9 * float(expit(1.5 * (logit(r_star(size)) + shift - logit(r)))), 0.5)
                    for r in GRID], 0.9)
        for size, n in SIZES.items()
    ]  # fmt: skip
    searcher = DecisionSearch(
        {size: DecisionRatios(GRID) for size in SIZES}, SIZES, TOKENS, base=list(SIZES),
        target=TARGET, settings=FitSettings(n_bootstrap=100), forecast=ForecastSettings(),
        budget=1 / 3, width=100.0, known=known,
    )  # fmt: skip
    infusions = [t for t in drive(searcher) if t["phase"] == "infuse"]
    assert {t["size"] for t in infusions[: len(SIZES)]} == set(SIZES)  # one round, every size
    assert len(infusions) == 2 * len(SIZES)
    for size, strategy in searcher.strategies.items():
        lo, hi = strategy.collapse().bracket
        assert lo < r_star(size) <= hi and GRID.index(hi) == GRID.index(lo) + 1, size


def test_the_expected_reduction_is_the_linear_gaussian_update():
    rng = np.random.default_rng(0)
    keep = rng.normal(0, 1, 4000)
    assert variance_reduction(keep, keep, 0.0) == pytest.approx(keep.var(), rel=1e-9)
    assert variance_reduction(keep, keep, 1.0) == pytest.approx(keep.var() / 2, rel=0.05)
    assert variance_reduction(keep, rng.normal(0, 1, 4000), 0.0) < 0.01
