"""How honest are the law's intervals? Leave-one-size-out on recorded ladder sweeps.

For every seed's ladder, every size in turn is left out, the law is fitted to the other sizes
and the left-out size's collapse point is predicted. Printed per method and form: how often the
nominal intervals cover the measured r*, their median width, and the median |log error| in the
general share 1 - r*, next to the baseline "the nearest measured size's r* as is".

Run the ladder first (the commands are in docs/findings.md), then:

    .venv/bin/python benchmarks/calibration.py
    .venv/bin/python benchmarks/calibration.py --tracking-uri sqlite:////tmp/calib/mlflow.db \
        --experiment ladder_cpu-seed0 --experiment ladder_cpu-seed1 --experiment ladder_cpu-seed2
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from kinfuse_ray.analysis import size_curves  # noqa: E402
from kinfuse_ray.config import EvalConfig  # noqa: E402
from kinfuse_ray.errors import KinfuseError  # noqa: E402
from kinfuse_ray.law import HeldOut, InfusionLaw  # noqa: E402
from kinfuse_ray.tracking import load_trials  # noqa: E402

LADDER = ["ladder_cpu", "ladder_cpu-seed1", "ladder_cpu-seed2"]
CANDIDATES = [("joint", "power_n"), ("joint", "power_n_sat"), ("points", "power_n"),
              ("points", "power_n_sat")]  # fmt: skip


def held_out(curves, method: str, form: str, bootstrap: int, confidence: float) -> list[HeldOut]:
    law = InfusionLaw(form=form, method=method, n_bootstrap=bootstrap, confidence=confidence)
    try:
        return law.fit(curves).held_out_
    except KinfuseError as exc:
        print(f"  {method}/{form}: {exc}")
        return []


def row(name: str, results: list[HeldOut]) -> str:
    if not results:
        return f"| {name} | 0 | - | - | - | - |"
    coverage = np.mean([h.covered for h in results])
    width = np.median([h.interval[1] - h.interval[0] for h in results])
    error = np.median([abs(h.log_error) for h in results])
    baseline = np.median([abs(h.baseline_log_error) for h in results])
    return (
        f"| {name} | {len(results)} | {coverage:.0%} | {width:.3f} | {error:.3f} | "
        f"{baseline:.3f} ({1 - error / baseline:+.0%}) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", action="append", help=f"default: {', '.join(LADDER)}")
    parser.add_argument("--bootstrap", type=int, default=400, help="draws per held-out fit")
    parser.add_argument("--confidence", type=float, default=0.9)
    args = parser.parse_args()
    experiments = args.experiment or LADDER
    evals = EvalConfig()
    per_seed = {}
    for name in experiments:
        recorded = load_trials(args.tracking_uri, [name])
        per_seed[name] = size_curves(recorded.trials, evals, recorded.base)
        measured = {c.name: c.collapse(evals.collapse_threshold).ratio for c in per_seed[name]}
        print(
            f"{name}: r* "
            + ", ".join(f"{s} {'-' if r is None else f'{r:.3f}'}" for s, r in measured.items())
        )
    started = time.monotonic()
    results: dict[str, list[HeldOut]] = {}
    for method, form in CANDIDATES:
        name = f"{method}/{form}"
        results[name] = [
            h
            for curves in per_seed.values()
            for h in held_out(curves, method, form, args.bootstrap, args.confidence)
        ]
    print(f"\n{len(per_seed)} ladders, leave-one-size-out, {args.confidence:.0%} intervals "
          f"({time.monotonic() - started:.0f} s):\n")  # fmt: skip
    print("| method/law | predictions | coverage | median width | median abs log error "
          "in 1 - r* | baseline (law's gain) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, found in results.items():
        print(row(name, found))
    print("\nper held-out size (joint/power_n):")
    for h in results["joint/power_n"]:
        print(f"  {h.size:<7} measured {h.measured:.3f}  law {h.predicted:.3f} "
              f"({h.interval[0]:.3f}-{h.interval[1]:.3f}{'' if h.covered else ', MISSES'})  "
              f"baseline {h.baseline:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
