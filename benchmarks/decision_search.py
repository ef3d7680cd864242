"""The decision search against the grid, like with like: each grid sweep's own trials replayed.

    .venv/bin/python benchmarks/decision_search.py [runs/quickstart ...] [--budget B] [--width W]

For each grid sweep's output folder (summary.json and sweep.yaml, written by `kinfuse sweep`)
the decision search (kinfuse_ray/decision_search.py) runs as it would in that sweep, two trials
in flight, but every trial it asks for is answered by the grid's measured trial at that size and
ratio (trials are deterministic on one numeric path, so this is what a live run would measure).
The sweep's own analysis then answers from the trials it chose. Printed side by side: infusion
trials and trial-tokens, the recommended ratio, the keep ratio's interval and its width, and the
issue's targets: a recommendation inside the grid's interval, an interval at most 10% wider (in
logits) and at most a third of the grid's trial-tokens. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from kinfuse_ray.analysis import summarise
from kinfuse_ray.config import load_sweep
from kinfuse_ray.decision_search import decision_search
from kinfuse_ray.provenance import describe
from kinfuse_ray.spec import Phase, TrialResult

MAX_WIDER = 1.10  # the decision's keep interval at most this x the grid's, in logits
MAX_SHARE = 1 / 3  # of the grid's infusion trial-tokens


def trial_results(summary: dict) -> tuple[list[TrialResult], list[TrialResult]]:
    """(infusion trials, base runs) of a summary.json, as the analysis reads them."""
    names = {f.name for f in fields(TrialResult)}

    def result(raw: dict) -> TrialResult:
        return TrialResult(**{**{k: v for k, v in raw.items() if k in names},
                              "phase": Phase(raw["phase"])})  # fmt: skip

    return [result(t) for t in summary["trials"]], [result(b) for b in summary["base_runs"]]


def replay(search, measured: dict[tuple[str, float], TrialResult], base: dict[str, TrialResult],
           slots: int = 2) -> list[TrialResult]:  # fmt: skip
    """Play Tune for `search`: `slots` trials in flight, the oldest finishing first, each
    answered by the measured trial (base runs: the recorded ones); the trials it ran."""
    running, ran, step = [], [], 0
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


def compare(folder: Path, budget: float | None, width: float | None) -> bool:
    summary = json.loads((folder / "summary.json").read_text())
    overrides = [f"search.budget={budget}"] * (budget is not None)
    overrides += [f"search.width={width}"] * (width is not None)
    sweep = load_sweep(folder / "sweep.yaml", ["search.strategy=decision", *overrides])
    trials, base = trial_results(summary)
    measured = {(t.size, t.ratio): t for t in trials if t.phase is Phase.infuse}
    search = decision_search(sweep, [s.name for s in sweep.ladder], [b.size for b in base], {})
    chosen = replay(search, measured, {b.size: b for b in base})
    answer = summarise(chosen, name=sweep.name, evals=sweep.eval, predict=sweep.predict,
                       seed=sweep.seed, target=sweep.target_point, base=base)  # fmt: skip
    grid = summary["recommendation"]["decision"]
    if answer.recommendation is None:
        print(f"{folder}: the decision search's trials give no forecast ({answer.law_note})")
        return False
    mine = answer.recommendation.decision
    spent = sum(t.tokens_trained for t in chosen)
    grid_spent = sum(t.tokens_trained for t in measured.values())
    lo, hi = grid["keep_interval"]
    checks = [
        ("recommended inside the grid's keep interval", lo <= mine.ratio <= hi),
        (f"interval at most {MAX_WIDER:.2f}x the grid's in logits",
         mine.keep_width_logits <= MAX_WIDER * grid["keep_width_logits"]),
        (f"at most {MAX_SHARE:.2f} of the grid's trial-tokens", spent <= MAX_SHARE * grid_spent),
    ]  # fmt: skip
    rows = [("", "grid", "decision"),
            ("infusion trials", len(measured), len(chosen)),
            ("trial-tokens", f"{grid_spent:,}", f"{spent:,} ({spent / grid_spent:.2f})"),
            ("recommended", f"{grid['ratio']:.3f}", f"{mine.ratio:.3f}"),
            ("keep interval", f"{lo:.3f}-{hi:.3f}",
             "{:.3f}-{:.3f}".format(*mine.keep_interval)),
            ("width (logits)", f"{grid['keep_width_logits']:.2f}", f"{mine.keep_width_logits:.2f}")]  # fmt: skip
    print(f"{folder} ({sweep.name}, seed {sweep.seed}; ran with {summary['provenance']}):")
    for label, left, right in rows:
        print(f"  {label:<16} {left!s:>22} {right!s:>22}")
    per_size = {}
    for t in chosen:
        per_size.setdefault(t.size, []).append(f"{t.ratio:g}")
    print("  trials: " + "; ".join(f"{s} {', '.join(r)}" for s, r in per_size.items()))
    print(f"  stopped: {search.stopped or 'every trial it asked for ran'}")
    for label, passed in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {label}")
    return all(passed for _, passed in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path,
                        default=[Path("runs") / n for n in ("quickstart", "quickstart-seed1",
                                                            "quickstart-seed2")])  # fmt: skip
    parser.add_argument("--budget", type=float, help="search.budget (default: the sweep's)")
    parser.add_argument("--width", type=float, help="search.width (default: the sweep's)")
    args = parser.parse_args()
    print(f"decision search replayed with {describe()}")
    passed = [compare(folder, args.budget, args.width) for folder in args.runs]
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
