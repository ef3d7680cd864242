"""The decision search against the grid, like with like: each grid sweep's own trials replayed.

    .venv/bin/python benchmarks/decision_search.py [runs/quickstart ...] [--budget B] [--width W]
        [--live sweeps/quickstart.yaml]

For each grid sweep's output folder (summary.json and sweep.yaml, written by `kinfuse sweep`;
a size x budget ladder's own folder replays every budget in turn, each placed from the budgets
before it) the decision search (kinfuse_ray/decision_search.py) runs as it would in that sweep,
two trials in flight, but every trial it asks for is answered by the grid's measured trial at that size and
ratio (trials are deterministic on one numeric path, so this is what a live run would measure;
the search chooses in rounds, so the order trials finish in does not change what it runs). The
sweep's own analysis then answers from the trials it chose. Printed side by side: infusion
trials and trial-tokens, the recommended ratio, the keep ratio's interval and its width, and the
issue's targets: a recommendation inside the grid's interval, an interval at most 10% wider (in
logits) and at most a third of the grid's trial-tokens (half on a size x budget ladder). A width moves with the bootstrap's seed
alone, so both answers' trials are refitted from 3 seeds with the sweep's draws and with 2000,
and the width target is read on the latter's median too.
With --live, both strategies also run the sweep file for real, each fresh, for their wall time.
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from kinfuse_ray.analysis import size_curves, summarise
from kinfuse_ray.config import load_sweep
from kinfuse_ray.law import InfusionLaw, from_sweep
from kinfuse_ray.law.bootstrap import central_interval
from kinfuse_ray.law.curves import curve_name
from kinfuse_ray.provenance import cpu_model, describe
from kinfuse_ray.replay import replay_ladder
from kinfuse_ray.spec import Phase, TrialResult

MAX_WIDER = 1.10  # the decision's keep interval at most this x the grid's, in logits
MAX_SHARE = 1 / 3  # of the grid's infusion trial-tokens
MAX_SHARE_BUDGETS = 1 / 2  # on a size x budget ladder
DRAW_SEEDS, STEADY_DRAWS = 3, 2000


def trial_results(summary: dict) -> tuple[list[TrialResult], list[TrialResult]]:
    """(infusion trials, base runs) of a summary.json, as the analysis reads them."""
    return ([TrialResult.from_dict(t) for t in summary["trials"]],
            [TrialResult.from_dict(b) for b in summary["base_runs"]])  # fmt: skip


def draw_spread(trials: list[TrialResult], sweep, base: list[TrialResult], form: str,
                draws: int = 0) -> list[float]:  # fmt: skip
    """The keep ratio's interval width (logits) at the target, fitted with `draws` bootstrap
    draws (the sweep's own by default) from each of `DRAW_SEEDS` seeds: how much of a width is
    the draws' own noise."""
    curves = size_curves(trials, sweep.eval, base)
    fit, forecast = from_sweep(sweep.eval, sweep.predict)
    target = sweep.target_point
    widths = []
    for seed in range(DRAW_SEEDS):
        settings = replace(fit, form=form, seed=seed, n_bootstrap=draws or fit.n_bootstrap)
        law = InfusionLaw.fit(curves, settings, forecast)
        lo, hi = central_interval(law.at(target.n_params, target.tokens).keep, forecast.confidence)
        widths.append(hi - lo)
    return widths


def decide(sweep, measured, base: list[TrialResult]):
    """The decision search replayed on the grid's `measured` trials (by size, budget and ratio):
    (the trials it ran, the answer from them, why it stopped)."""
    chosen, stopped = replay_ladder(sweep, measured, base)
    answer = summarise(chosen, name=sweep.name, evals=sweep.eval, predict=sweep.predict,
                       seed=sweep.seed, target=sweep.target_point, base=base)  # fmt: skip
    return chosen, answer, stopped


def compare(folder: Path, budget: float | None, width: float | None) -> bool:
    summary = json.loads((folder / "summary.json").read_text())
    overrides = [f"search.budget={budget}"] * (budget is not None)
    overrides += [f"search.width={width}"] * (width is not None)
    # Ratio 0 (a general-only reference trial) is the grid's alone: the other searches work in
    # log r, so it is left out of what the decision search may ask for and of its cost.
    grid_sweep = load_sweep(folder / "sweep.yaml")
    overrides.append(f"ratios={json.dumps([r for r in grid_sweep.ratios if r > 0])}")
    sweep = load_sweep(folder / "sweep.yaml", ["search.strategy=decision", *overrides])
    trials, base = trial_results(summary)
    measured = {(t.size, t.tokens, t.ratio): t for t in trials if t.phase is Phase.infuse}
    references = [t for t in trials if t.ratio == 0]
    grid = summary["recommendation"]["decision"]
    grid_spent = sum(t.tokens_trained for t in trials if t.ratio > 0)
    lo, hi = grid["keep_interval"]
    form = summary["law"]["form"]
    grid_widths = draw_spread(trials, sweep, base, form, STEADY_DRAWS)
    columns = [("grid", len(trials) - len(references), grid_spent, grid["ratio"], (lo, hi),
                grid["keep_width_logits"], draw_spread(trials, sweep, base, form),
                grid_widths)]  # fmt: skip
    notes, passed = [], True
    chosen, answer, stopped = decide(sweep, measured, base)
    if answer.recommendation is None:
        print(f"{folder}: the decision search's trials give no forecast ({answer.law_note})")
        return False
    mine = answer.recommendation.decision
    spent = sum(t.tokens_trained for t in chosen)
    widths = draw_spread(chosen, sweep, base, answer.law.form, STEADY_DRAWS)
    columns.append(("decision", len(chosen), spent, mine.ratio, mine.keep_interval,
                    mine.keep_width_logits, draw_spread(chosen, sweep, base, answer.law.form),
                    widths))  # fmt: skip
    share = MAX_SHARE_BUDGETS if sweep.budgets else MAX_SHARE
    per_size: dict[str, list[str]] = {}
    for t in chosen:
        per_size.setdefault(curve_name(t.size, t.tokens, bool(sweep.budgets)), []).append(
            f"{t.ratio:g}"
        )
    notes.append("decision's trials: " + "; ".join(f"{s} {', '.join(r)}"
                                                    for s, r in per_size.items()))  # fmt: skip
    notes.append(f"stopped: {stopped}")
    if references:
        notes.append(f"the grid's {len(references)} reference trials (ratio 0) are counted in "
                     "neither's trial-tokens")  # fmt: skip
    for check, ok in (
        ("recommended inside the grid's keep interval", lo <= mine.ratio <= hi),
        (f"width at most {MAX_WIDER:.2f}x the grid's",
         mine.keep_width_logits <= MAX_WIDER * grid["keep_width_logits"]),
        (f"width ({STEADY_DRAWS} draws, median) at most {MAX_WIDER:.2f}x the grid's",
         np.median(widths) <= MAX_WIDER * np.median(grid_widths)),
        (f"at most {share:.2f} of the grid's trial-tokens", spent <= share * grid_spent),
    ):  # fmt: skip
        notes.append(f"{'PASS' if ok else 'FAIL'}  {check}")
        passed &= ok
    print(f"{folder} ({sweep.name}, seed {sweep.seed}; ran with {summary['provenance']}):")
    rows = {
        "": lambda c: c[0],
        "infusion trials": lambda c: c[1],
        "trial-tokens": lambda c: f"{c[2]:,} ({c[2] / grid_spent:.2f})",
        "recommended": lambda c: f"{c[3]:.3f}",
        "keep interval": lambda c: f"{c[4][0]:.3f}-{c[4][1]:.3f}",
        "width (logits)": lambda c: f"{c[5]:.2f}",
        f"{sweep.predict.bootstrap} draws x{DRAW_SEEDS}": lambda c: "/".join(
            f"{w:.2f}" for w in c[6]
        ),
        f"{STEADY_DRAWS} draws x{DRAW_SEEDS}": lambda c: "/".join(f"{w:.2f}" for w in c[7]),
    }
    for label, cell in rows.items():
        print(f"  {label:<16}" + "".join(f"{cell(c)!s:>23}" for c in columns))
    for note in notes:
        print(f"  {note}")
    return passed


def live(sweep_file: Path, workdir: Path) -> None:
    """Both strategies run for real, each fresh in a folder of its own (base runs trained in
    each), one after the other: their wall time, trials and answers side by side."""
    print(f"live, {sweep_file}, each in a fresh folder under {workdir} ({cpu_model()}, "
          f"{os.cpu_count()} CPUs):")  # fmt: skip
    print(f"  {'':<16}{'wall (s)':>10}{'trials':>8}{'trial-tokens':>14}{'recommended':>13}"
          f"{'keep interval':>15}{'width':>7}")  # fmt: skip
    for strategy in ("grid", "decision"):
        folder = workdir / strategy
        folder.mkdir(parents=True)
        subprocess.run([sys.executable, "-m", "kinfuse_ray.cli", "sweep",
                        str(sweep_file.resolve()), "--set", f"search.strategy={strategy}",
                        "--set", f"output_dir={folder / 'out'}"],
                       cwd=folder, check=True, capture_output=True)  # fmt: skip
        summary = json.loads((folder / "out" / "summary.json").read_text())
        trials = [t for t in summary["trials"] if t["phase"] == "infuse"]
        d = summary["recommendation"]["decision"]
        print(f"  {strategy:<16}{summary['wall_seconds']:>10.0f}{len(trials):>8}"
              f"{sum(t['tokens_trained'] for t in trials):>14,}{d['ratio']:>13.3f}"
              f"{d['keep_interval'][0]:>9.3f}-{d['keep_interval'][1]:.3f}"
              f"{d['keep_width_logits']:>7.2f}")  # fmt: skip
        if strategy == "decision":
            per_size: dict[str, list[str]] = {}
            for t in trials:
                per_size.setdefault(t["size"], []).append(f"{t['ratio']:g}")
            print("  its trials: " + "; ".join(f"{s} {', '.join(r)}" for s, r in per_size.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path,
                        default=[Path("runs") / n for n in ("quickstart", "quickstart-seed1",
                                                            "quickstart-seed2")])  # fmt: skip
    parser.add_argument("--budget", type=float, help="search.budget (default: the sweep's)")
    parser.add_argument("--width", type=float, help="search.width (default: the sweep's)")
    parser.add_argument("--live", type=Path, metavar="SWEEP_FILE",
                        help="also run this sweep file fresh with each strategy, one after the "
                        "other, for their wall time (the quickstart: about 7 minutes on 2 cores)")  # fmt: skip
    args = parser.parse_args()
    print(f"decision search replayed with {describe()}")
    passed = [compare(folder, args.budget, args.width) for folder in args.runs]
    if args.live:
        with tempfile.TemporaryDirectory() as workdir:
            live(args.live, Path(workdir))
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
