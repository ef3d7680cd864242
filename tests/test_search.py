"""The searchers on synthetic retention curves with known cliffs: no training, no Ray cluster."""

import math

import numpy as np
import pytest

from kinfuse_ray.search import BisectRatios, GridRatios, LadderSearch
from kinfuse_ray.train import CollapseWatch

pytestmark = pytest.mark.unit

COARSE = [0.2, 0.4, 0.6, 0.8, 0.95]


def cliff(r_star, plateau=0.9):
    return lambda r: plateau / (1 + math.exp(40 * (math.log(r) - math.log(r_star))))


def drive(searcher, curves, slots=2):
    """Play Tune: keep `slots` trials running, finish the oldest first, feed back retention."""
    running, done, step = [], [], 0
    while True:
        while len(running) < slots:
            step += 1
            suggestion = searcher.suggest(f"t{step}")
            if suggestion is None or suggestion == "FINISHED":
                break
            running.append((f"t{step}", suggestion["trial"]))
        if not running:
            assert suggestion == "FINISHED"
            return done
        trial_id, trial = running.pop(0)
        retention = curves[trial["size"]](trial["ratio"]) if trial["phase"] == "infuse" else 0.9
        searcher.on_trial_complete(trial_id, {"retention": retention})
        done.append(trial)


@pytest.mark.parametrize("r_star", [0.3, 0.5, 0.7, 0.9])
def test_bisection_narrows_the_bracket_to_the_precision(r_star):
    strategy = BisectRatios(COARSE, precision=0.1)
    done = drive(LadderSearch({"s": strategy}, {"s": 10_000}, 1000, base=[]), {"s": cliff(r_star)})
    found = strategy.collapse()
    lo, hi = found.bracket
    assert lo < r_star <= hi and hi / lo - 1 <= 0.1
    assert found.ratio == pytest.approx(r_star, rel=0.1)
    # Coarse pass, then one step per halving of the bracket in log r.
    coarse_lo, coarse_hi = (
        max(r for r in COARSE if r < r_star),
        min(r for r in COARSE if r >= r_star),
    )
    steps = math.ceil(math.log2(math.log(coarse_hi / coarse_lo) / math.log(1.1)))
    assert len(done) == len(COARSE) + max(steps, 0)


def test_no_collapse_in_range_stops_after_the_coarse_pass():
    strategy = BisectRatios(COARSE, precision=0.05)
    done = drive(LadderSearch({"s": strategy}, {"s": 1}, 1, base=[]), {"s": lambda r: 0.9})
    assert len(done) == len(COARSE) and not strategy.collapse().found and strategy.finished


def test_grid_runs_every_ratio_once_after_the_base_run():
    done = drive(
        LadderSearch(
            {"a": GridRatios(COARSE), "b": GridRatios(COARSE)}, {"a": 1, "b": 2}, 1, ["a", "b"]
        ),
        {"a": cliff(0.5), "b": cliff(0.7)},
    )
    assert [t["phase"] for t in done[:2]] == ["base", "base"]
    assert sorted((t["size"], t["ratio"]) for t in done[2:]) == sorted(
        (s, r) for s in "ab" for r in COARSE
    )


def test_the_third_size_is_seeded_from_the_law_of_the_first_two():
    sizes = {"s1": 10_000, "s2": 100_000, "s3": 1_000_000}
    # 1 - r* = 10 N^-0.5: r* = 0.9, 0.968, 0.99 would need many steps from a coarse pass.
    r_star = {s: 1 - 10 * n**-0.5 for s, n in sizes.items()}
    curves = {s: cliff(r) for s, r in r_star.items()}
    coarse = [0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.995]
    strategies = {s: BisectRatios(coarse, precision=0.01) for s in sizes}
    done = drive(LadderSearch(strategies, sizes, 1000, base=[]), curves, slots=1)
    third = [t["ratio"] for t in done if t["size"] == "s3"]
    assert third[:2] == coarse[:2] and len(third) < len(coarse)  # plateau + two seeded ratios
    found = strategies["s3"].collapse()
    assert found.bracket[0] < r_star["s3"] <= found.bracket[1]


def test_a_restored_searcher_continues_where_it_stopped(tmp_path):
    curves = {"s": cliff(0.7)}
    uninterrupted = BisectRatios(COARSE, 0.05)
    whole = drive(LadderSearch({"s": uninterrupted}, {"s": 1}, 1, []), curves, slots=1)

    first = LadderSearch({"s": BisectRatios(COARSE, 0.05)}, {"s": 1}, 1, [])
    for i in range(6):  # run part of the search, then save as Tune would
        trial = first.suggest(f"t{i}")["trial"]
        first.on_trial_complete(f"t{i}", {"retention": curves["s"](trial["ratio"])})
    first.save(str(tmp_path / "searcher.pkl"))
    second = LadderSearch({"s": BisectRatios(COARSE, 0.05)}, {"s": 1}, 1, [])
    second.restore(str(tmp_path / "searcher.pkl"))
    rest = drive(second, curves, slots=1)
    assert len(rest) == len(whole) - 6
    assert rest == whole[6:]
    assert second.strategies["s"].collapse() == uninterrupted.collapse()


def test_early_stop_fires_on_a_collapse_and_not_on_a_noisy_plateau():
    collapsing = CollapseWatch(reference=0.9, below=0.25, patience=2)
    assert [collapsing.collapsed(r) for r in (0.8, 0.5, 0.2, 0.1)] == [False, False, False, True]
    noisy = CollapseWatch(reference=0.9, below=0.25, patience=2)
    rng = np.random.default_rng(0)
    assert not any(noisy.collapsed(r) for r in 0.85 + rng.normal(0, 0.05, 200))
    dip = CollapseWatch(reference=0.9, below=0.25, patience=2)  # one bad evaluation is not enough
    assert not any(dip.collapsed(r) for r in (0.9, 0.1, 0.9, 0.1, 0.9))


def test_optuna_samples_towards_the_cliff_and_survives_a_restore(tmp_path):
    import pickle

    from kinfuse_ray.search import OptunaRatios

    strategy = OptunaRatios(COARSE, n_trials=10, seed=0)
    done = drive(LadderSearch({"s": strategy}, {"s": 1}, 1, []), {"s": cliff(0.7)}, slots=1)
    assert len(done) == 2 + 10  # the plateau ratios, then its trials
    found = strategy.collapse()
    assert found.found and found.bracket[0] < 0.7 <= found.bracket[1]
    tried = sorted(t["ratio"] for t in done[2:])
    assert sum(0.55 < r < 0.9 for r in tried) >= 5  # most samples land near the cliff

    restored = pickle.loads(pickle.dumps(strategy))  # Tune saves the searcher this way
    assert restored.collapse() == found and restored.finished
    assert len(restored._optuna().trials) == 10  # the study is rebuilt from its history


def test_the_base_runs_retention_is_the_searchers_plateau():
    """A coarse pass whose lowest ratios already dip (here 0.6 and 0.8 of a base model at 0.9)
    brackets the collapse from the base model's retention, as the sweep's analysis does."""
    curve = cliff(0.85)
    dipped = {"s": lambda r: curve(r) * (0.7 if r >= 0.6 else 1.0)}
    strategy = BisectRatios([0.6, 0.8, 0.9, 0.95], 0.05)
    drive(LadderSearch({"s": strategy}, {"s": 1}, 1, ["s"]), dipped, slots=1)
    assert strategy.plateau == 0.9  # from the base run (drive reports 0.9 for base trials)
    found = strategy.collapse()
    assert found.plateau == 0.9 and found.bracket[1] / found.bracket[0] - 1 <= 0.05
    assert found.ratio < 0.85  # 0.7 x the curve falls below 0.45 before the cliff's centre
