"""How honest are the forecast's intervals? Leave-one-size-out on recorded sweeps.

For every recorded sweep (one seed's ladder each), every size in turn is left out, the remaining
sizes choose, fit and check their law as a sweep would (form "auto" chosen inside each fold, the
keep ratio's widening from the fold's own held-out sizes) and predict the left-out size.
Printed for three quantities: r*, the ratio keeping the tolerance (retention at
`eval.plateau_tolerance` x plateau; read by `keep_crossing`) and the ratio from which the domain
is learned. For each:
how often the nominal intervals cover what the held-out size measured, their median width in
logits, and the median |error| in logits against the baseline "the nearest measured size's value
as is". On a size x budget ladder (its study stands for its budgets') each curve is a (size,
budget): `--hold-out curve` leaves one out, `size` every budget of its size, `budget` every
size at its budget (repeat the option for several tables). Beside them, P(keeps) and
P(learns) at the held-out sizes' measured ratios: Brier score against the nearest size's own
outcome as is, expected calibration error and a reliability table. `--hold-out extrapolate`
fits on the smaller sizes only and forecasts the larger (what a team does); `--hold-out later`
fits on the earlier budgets only and forecasts a later one (a model family's checkpoints at
several pre-training steps: fit on the early ones, forecast the final one). `--refine
STUDY=FINER` reads STUDY's held-out values (r*, keep and learn ratios) off its curves with the
trials of FINER (the same ladder and seed at other ratios) added: a finer yardstick than the grid
the law was fitted on, whose trials never enter a fit. The commit, torch version and CPU kernels
head the output.

    .venv/bin/python benchmarks/calibration.py --experiment quickstart \\
        --experiment quickstart-seed1 --experiment quickstart-seed2
    .venv/bin/python benchmarks/calibration.py --form power_n --experiment ladder_cpu ...
    .venv/bin/python benchmarks/calibration.py --experiment budget_continued \
        --hold-out curve --hold-out size --hold-out budget
    .venv/bin/python benchmarks/calibration.py --experiment budget_continued \
        --refine budget_continued=budget_continued-fine
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from kinfuse_ray.analysis import size_curves  # noqa: E402
from kinfuse_ray.config import EvalConfig, PredictConfig  # noqa: E402
from kinfuse_ray.law import HeldOut, HeldValue, from_sweep, leave_one_size_out, spans_budgets  # noqa: E402
from kinfuse_ray.law.curves import clipped_logit  # noqa: E402
from kinfuse_ray.law.select import HOLD_OUT, keep_crossing  # noqa: E402
from kinfuse_ray.provenance import describe  # noqa: E402
from kinfuse_ray.records import load_trials  # noqa: E402

QUANTITIES = {"r*": "rstar", "keep ratio": "keep", "learn ratio": "learn"}
HELD = {  # (--hold-out, a size x budget ladder?) -> what the folds are called
    ("curve", False): "leave-one-size-out",
    ("curve", True): "leave-one-(size, budget)-out",
    ("size", False): "leave-one-size-out",
    ("size", True): "leave-one-size-out (every budget of the held size)",
    ("budget", False): "leave-one-budget-out (one budget: no fold has data left)",
    ("budget", True): "leave-one-budget-out (every size at the held budget)",
    ("extrapolate", False): "leave-the-larger-out (fit on the smaller sizes, forecast the next)",
    ("extrapolate", True): "leave-the-larger-out (every budget of the held and larger sizes)",
    ("later", False): "leave-the-later-out (one budget: nothing earlier to fit on)",
    ("later", True): "leave-the-later-out (fit on the earlier budgets, forecast a later one)",
}
BINS = np.linspace(0, 1, 6)  # the reliability table's probability bins


def row(name: str, values: list[HeldValue]) -> str:
    if not values:
        return f"| {name} | 0 | - | - | - | - |"
    coverage = np.mean([v.covered for v in values])
    width = np.median([v.width_logits for v in values])
    error = np.median([abs(v.logit_error) for v in values])
    baseline = np.median([abs(v.baseline_logit_error) for v in values])
    gain = f" ({1 - error / baseline:+.0%})" if baseline > 0 else ""
    return (
        f"| {name} | {len(values)} | {coverage:.0%} | {width:.2f} | {error:.3f} | "
        f"{baseline:.3f}{gain} |"
    )


def yardstick(coarse: list, finer: list, share: float) -> str:
    """How the coarse grid reads each curve's keep ratio against the finer grid (logits, coarse
    minus finer, each by the same rule): the keep ratio's rule, and the detector's r* rule
    (straight in retention against log r) applied at the keep ratio's share."""
    by_name = {c.name: c for c in finer}
    out = []
    for label, rule in (("keep ratio's rule", keep_crossing),
                        ("r*'s rule", lambda c, s: c.collapse(s).ratio)):  # fmt: skip
        pairs = [(rule(c, share), rule(by_name[c.name], share)) for c in coarse]
        d = np.array([clipped_logit(a) - clipped_logit(b) for a, b in pairs
                      if a is not None and b is not None])  # fmt: skip
        out.append(f"{label}: median {np.median(d):+.3f}, mean |.| {np.mean(np.abs(d)):.3f}")
    head = f"the coarse grid's keep ratios minus the finer grid's ({len(d)} curves): "
    return head + "; ".join(out)


def probability_rows(held: list[HeldOut]) -> list[str]:
    """Per side: Brier against the nearest size's own outcome as is, the expected calibration
    error, and a reliability table (stated probability bins against how often it happened)."""
    lines = [
        "| probability | points | Brier | nearest size as is | calibration error | "
        "reliability: stated (bin) -> happened (n) |",
        "|---|---|---|---|---|---|",
    ]
    for side in ("keeps", "learns"):
        points = [p for h in held for p in h.points if p.side == side]
        if not points:
            lines.append(f"| P({side}) | 0 | - | - | - | - |")
            continue
        stated = np.array([p.predicted for p in points])
        happened = np.array([p.observed for p in points])
        baseline = np.array([p.baseline for p in points])
        brier, base = np.mean((stated - happened) ** 2), np.mean((baseline - happened) ** 2)
        which = np.clip(np.digitize(stated, BINS[1:-1]), 0, len(BINS) - 2)
        cells, ece = [], 0.0
        for b in range(len(BINS) - 1):
            inside = which == b
            if inside.any():
                gap = abs(stated[inside].mean() - happened[inside].mean())
                ece += inside.mean() * gap
                cells.append(f"{BINS[b]:.1f}-{BINS[b + 1]:.1f}: {stated[inside].mean():.2f} -> "
                             f"{happened[inside].mean():.2f} ({inside.sum()})")  # fmt: skip
        ratio = f" ({brier / base:.2f}x)" if base > 0 else ""
        lines.append(f"| P({side}) | {len(points)} | {brier:.3f}{ratio} | {base:.3f} | {ece:.3f} | "
                     f"{'; '.join(cells)} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", action="append", required=True, help="one per seed")
    parser.add_argument("--form", default="auto", help="auto: chosen inside each fold")
    parser.add_argument("--method", default="joint", choices=["joint", "points"])
    parser.add_argument("--steepness", default="auto", choices=["auto", "fixed", "moving"],
                        help="the joint curve's steepness (auto: chosen inside each fold)")  # fmt: skip
    parser.add_argument("--bootstrap", type=int, default=400, help="draws per held-out fit")
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument(
        "--hold-out", action="append", choices=list(HOLD_OUT),
        help="what each fold leaves out beside the held curve (default: curve; repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--refine", action="append", default=[], metavar="STUDY=FINER",
        help="read STUDY's held-out values with FINER's trials (other ratios) added",
    )  # fmt: skip
    args = parser.parse_args()
    args.refine = dict(pair.split("=", 1) for pair in args.refine)
    if unknown := set(args.refine) - set(args.experiment):
        parser.error(f"--refine names {', '.join(sorted(unknown))}, not given as --experiment")
    for hold_out in args.hold_out or ["curve"]:
        calibrate(args, hold_out)


def calibrate(args: argparse.Namespace, hold_out: str) -> None:
    evals = EvalConfig()
    settings, forecast = from_sweep(evals, PredictConfig())
    settings = replace(settings, form=args.form, method=args.method, n_bootstrap=args.bootstrap,
                       steepness=args.steepness)  # fmt: skip
    forecast = replace(forecast, confidence=args.confidence)
    print(describe())
    started = time.monotonic()
    held: list[HeldOut] = []
    budgets = False
    for name in args.experiment:
        recorded = load_trials(args.tracking_uri, [name])
        curves = size_curves(recorded.trials, evals, recorded.base)
        finer = []
        if name in args.refine:
            more = load_trials(args.tracking_uri, [args.refine[name]]).trials
            finer = size_curves(recorded.trials + more, evals, recorded.base)
            print(f"{name}: held-out values read with {args.refine[name]}'s {len(more)} trials; "
                  + yardstick(curves, finer, forecast.tolerance))  # fmt: skip
        budgets = budgets or spans_budgets(curves)
        found = leave_one_size_out(curves, settings, forecast, hold_out, finer, validate=True)
        held += found
        print(f"{name}: " + "; ".join(
            f"{h.size} r* {h.measured:.3f} law {h.predicted:.3f} ({h.interval[0]:.3f}-"
            f"{h.interval[1]:.3f}{'' if h.covered else ' MISS'}, {h.form})" for h in found))  # fmt: skip
    print(
        f"\n{len(args.experiment)} sweeps, {HELD[hold_out, budgets]}, {args.method} fit, form "
        f"{args.form}, steepness {args.steepness}, {args.confidence:.0%} intervals "
        f"({time.monotonic() - started:.0f} s):\n"
    )
    print("| quantity | predictions | coverage | median width (logits) | median abs error "
          "(logits) | nearest size as is (law's gain) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for label, attr in QUANTITIES.items():
        values = [v for h in held if (v := getattr(h, attr)) is not None]
        print(row(label, values))
    print("\nThe probabilities at the held-out sizes' measured ratios (seeds averaged):\n")
    print("\n".join(probability_rows(held)))


if __name__ == "__main__":
    main()
