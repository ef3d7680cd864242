"""A model family's training history as the law's budget axis, end to end on CPU: the full
tier's tiny family (three LLaMA-shaped members, each saved after 150K, 225K and 300K tokens of
pre-training on the bundled world facts, `tests/family.py`) swept as one ladder whose D is
pre-training tokens, then the held-out-budget check a team needs: fit on the earlier
checkpoints, forecast the final one (`leave_one_size_out(..., hold_out="later")`), against
the nearest measured checkpoint as is.

    .venv/bin/python benchmarks/family.py                 # about 4 minutes on 2 cores
    .venv/bin/python benchmarks/calibration.py --experiment tiny_family --hold-out later

The family is kept in runs/tiny-family-models (built once); the sweep is the study tiny_family
in the local MLflow store (./mlflow.db), its folder runs/tiny_family."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kinfuse_ray.analysis import size_curves  # noqa: E402
from kinfuse_ray.config import EvalConfig, parse_sweep  # noqa: E402
from kinfuse_ray.law import FitSettings, leave_one_size_out  # noqa: E402
from kinfuse_ray.presentation import describe_answer  # noqa: E402
from kinfuse_ray.provenance import describe  # noqa: E402
from kinfuse_ray.records import load_trials  # noqa: E402
from kinfuse_ray.sweep import run_sweep  # noqa: E402
from tests.family import STEPS, WIDTHS, history_sweep, make_family, make_target  # noqa: E402


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("runs/tiny-family-models"))
    parser.add_argument("--seed", type=int, default=0, help="the sweep's seed")
    args = parser.parse_args(argv)
    print(describe())
    if not (args.models / f"{list(WIDTHS)[-1]}-{STEPS[-1] // 1000}k").exists():
        with contextlib.redirect_stderr(io.StringIO()):  # transformers' progress bars
            make_family(args.models, steps=STEPS)
    members = {
        f"{name}-{t // 1000}k": args.models / f"{name}-{t // 1000}k"
        for name in WIDTHS
        for t in STEPS
    }
    name = "tiny_family" + (f"-seed{args.seed}" if args.seed else "")
    raw = history_sweep(members, make_target(args.models), name=name, seed=args.seed)
    summary = run_sweep(parse_sweep(raw, "the tiny family"))
    print("\n" + describe_answer(summary))

    recorded = load_trials("sqlite:///mlflow.db", [name])
    curves = size_curves(recorded.trials, EvalConfig(), recorded.base)
    held = leave_one_size_out(curves, FitSettings(n_bootstrap=400), hold_out="later")
    finals = [h for h in held if h.size.endswith(f"-d{STEPS[-1]}")]
    print(f"\nfit on the earlier checkpoints, forecast the final one ({STEPS[-1]:,} tokens):")
    print(f"{'checkpoint':<20} {'form':<8} {'r*':>6} {'forecast':>9} {'90% interval':>14}  "
          f"{'covered':<8} {'|error| logits':>14} {'nearest as is':>13}")  # fmt: skip
    for h in finals:
        lo, hi = h.interval
        print(f"{h.size:<20} {h.form:<8} {h.measured:>6.3f} {h.predicted:>9.3f} "
              f"{lo:>6.3f}-{hi:<7.3f}  {'yes' if lo <= h.measured <= hi else 'NO':<8} "
              f"{abs(logit(h.predicted) - logit(h.measured)):>14.2f} "
              f"{abs(logit(h.baseline) - logit(h.measured)):>13.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
