"""Regenerate the numbers and plots of docs/findings.md from the sweeps recorded in MLflow.

Run the sweeps first (the commands are in docs/findings.md), then:

    .venv/bin/python scripts/findings.py            # tables to stdout, plots to docs/findings/

Everything is rebuilt from the finished trial runs in MLflow, with the project's own collapse
rule and law (no cached summaries).
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kinfuse_ray.analysis import Summary, size_curves, size_results  # noqa: E402
from kinfuse_ray.config import EvalConfig  # noqa: E402
from kinfuse_ray.errors import KinfuseError  # noqa: E402
from kinfuse_ray.law import InfusionLaw, select_law  # noqa: E402
from kinfuse_ray.plots import plot_law, plot_retention  # noqa: E402
from kinfuse_ray.presentation import describe_law  # noqa: E402
from kinfuse_ray.records import load_trials  # noqa: E402
from kinfuse_ray.spec import TrialResult  # noqa: E402

LADDER = ["ladder_cpu", "ladder_cpu-seed1", "ladder_cpu-seed2"]
BUDGETS = ["ladder_cpu-d50k", "ladder_cpu-d200k"]  # one size at other token budgets
THRESHOLDS = (0.5, 0.65)
ACQUISITION_TARGET = 0.25  # the default predict.acquisition_target


def averaged(trials: list[TrialResult]) -> list[TrialResult]:
    """One trial per (size, tokens, ratio): repeats (seeds) averaged, as the collapse rule sees
    them."""
    groups: dict[tuple, list[TrialResult]] = {}
    for t in trials:
        groups.setdefault((t.size, t.tokens, t.ratio), []).append(t)
    return [
        replace(
            group[0],
            retention=float(np.mean([t.retention for t in group])),
            acquisition=float(np.mean([t.acquisition for t in group])),
        )
        for group in groups.values()
    ]


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def curves(uri: str, names: list[str], evals: EvalConfig):
    recorded = load_trials(uri, names)
    return size_curves(recorded.trials, evals, recorded.base)


def results(uri: str, names: list[str], evals: EvalConfig):
    return size_results(curves(uri, names, evals), evals, ACQUISITION_TARGET)


def collapse_table(uri: str, study: str, seeds: list[str], evals: EvalConfig) -> list:
    """Per size: r* of the seed-averaged curve with its bracket, r* per seed, spread."""
    per_seed = {name: results(uri, [name], evals) for name in seeds}
    pooled = results(uri, seeds, evals)
    print(f"\n### {study}: collapse point per size (threshold {evals.collapse_threshold})\n")
    heads = ["size", "N", "r* (mean curve)", "bracket"] + [f"r* {s}" for s in seeds]
    heads += ["mean +- sd", "best safe r", "acquisition there"]
    print("| " + " | ".join(heads) + " |\n|" + "---|" * len(heads))
    for s in pooled:
        seed_r = [
            next(x.collapse.ratio for x in per_seed[name] if x.size == s.size) for name in seeds
        ]
        found = [r for r in seed_r if r is not None]
        spread = (
            f"{statistics.mean(found):.3f} +- {statistics.stdev(found):.3f}"
            if len(found) > 1
            else "-"
        )
        lo, hi = s.collapse.bracket
        row = [s.size, f"{s.n_params:,}", fmt(s.collapse.ratio), f"{lo:g}-{hi:g}"]
        row += [fmt(r) for r in seed_r] + [spread, fmt(s.best_safe_ratio, 2)]
        row += [fmt(s.acquisition_at_safe, 2)]
        print("| " + " | ".join(row) + " |")
    return pooled


def law_report(fitted, title: str, threshold: float = 0.5) -> InfusionLaw:
    """The default law (power_n, joint fit over every trial), fixed before looking."""
    law, _ = select_law(fitted, "power_n", threshold=threshold, n_bootstrap=1000)
    print(f"\n{title}:\n{describe_law(law)}")
    return law


def budget_plot(sizes, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 4))
    d = np.array([s.tokens for s in sizes])
    share = np.array([1 - s.collapse.ratio for s in sizes])
    ax.loglog(d, share, "o-")
    for s in sizes:
        lo, hi = s.collapse.bracket
        ax.plot([s.tokens] * 2, [1 - hi, 1 - lo], color="C0", alpha=0.4, lw=3)
    ax.set(xlabel="infusion-phase tokens D", ylabel="general share at collapse, 1 - r*")
    ax.set_title(f"{sizes[0].size}: collapse point vs token budget")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def section(title: str, body) -> None:
    """Run one section; a sweep not run yet is reported, not fatal."""
    try:
        body()
    except KinfuseError as exc:
        print(f"\n{title}: skipped ({exc}); run its sweeps first (docs/findings.md)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--out", type=Path, default=Path("docs/findings"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    uri = args.tracking_uri

    def quickstart():
        collapse_table(uri, "quickstart", ["quickstart"], EvalConfig())
        law_report(curves(uri, ["quickstart"], EvalConfig()), "quickstart law")

    def ladder():
        laws = {}
        for threshold in THRESHOLDS:
            evals = EvalConfig(collapse_threshold=threshold)
            collapse_table(uri, "ladder_cpu", LADDER, evals)
            title = f"ladder_cpu law, threshold {threshold}"
            laws[threshold] = law_report(curves(uri, LADDER, evals), title, threshold)
        trials = averaged(load_trials(uri, LADDER).trials)
        sizes = results(uri, LADDER, EvalConfig())
        summary = Summary("ladder_cpu, mean of 3 seeds", sizes, trials)
        print(f"\nplot: {plot_retention(summary, args.out / 'ladder_retention_vs_ratio.png')}")
        title = "ladder_cpu, mean of 3 seeds"
        print(
            f"plot: {plot_law(laws[THRESHOLDS[0]], args.out / 'ladder_collapse_vs_size.png', title)}"
        )

    def budgets():
        budget_size = load_trials(uri, BUDGETS).trials[0].size
        by_budget = [
            s for s in results(uri, BUDGETS + LADDER[:1], EvalConfig()) if s.size == budget_size
        ]
        print(f"\n### token budget, {budget_size}\n\n| D | r* | bracket |\n|---|---|---|")
        for s in by_budget:
            lo, hi = s.collapse.bracket
            print(f"| {s.tokens:,} | {fmt(s.collapse.ratio)} | {lo:g}-{hi:g} |")
        found = [s for s in by_budget if s.collapse.found]
        d = np.log([s.tokens for s in found])
        share = np.log([1 - s.collapse.ratio for s in found])
        print(f"slope of log(1 - r*) on log D: {np.polyfit(d, share, 1)[0]:+.3f}")
        print(f"plot: {budget_plot(found, args.out / 'budget_collapse_vs_tokens.png')}")
        nd, _ = select_law(
            curves(uri, LADDER[:1] + BUDGETS, EvalConfig()), "power_nd", n_bootstrap=1000
        )
        print(f"\nlaw in N and D on seed 0 + budgets:\n{describe_law(nd)}")

    section("quickstart", quickstart)
    section("ladder_cpu", ladder)
    section("token budgets", budgets)


if __name__ == "__main__":
    main()
