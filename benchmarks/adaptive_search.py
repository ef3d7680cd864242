"""Adaptive ratio search against a grid of the same precision, on the same ladder and data.

    .venv/bin/python benchmarks/adaptive_search.py [sweeps/quickstart.yaml] \
        [--precision 0.1] [--coarse 0.2,0.5,0.8,0.95] [--grid-from DIR]

The grid spaces ratios geometrically by (1 + precision) from the sweep's smallest to its
largest ratio, so it brackets every collapse point to the same relative precision the bisection
stops at. The bisection starts from `--coarse` (default: the sweep's ratios). Both share one set
of base runs (trained once, by the grid sweep), so the trial-tokens compared are the infusion
trials' alone. `--grid-from` reuses the grid sweep of an earlier run (its output folder, which
holds grid/summary.json and grid/base/). Scratch folders and MLflow stores only.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

from kinfuse_ray.config import SearchConfig, SweepConfig, load_sweep
from kinfuse_ray.sweep import run_sweep


def grid_ratios(low: float, high: float, precision: float) -> list[float]:
    n = math.ceil(math.log(high / low) / math.log(1 + precision))
    return sorted({round(low * (high / low) ** (i / n), 6) for i in range(n + 1)})


def scratch_copy(sweep: SweepConfig, root: Path, name: str, **update) -> SweepConfig:
    mlflow = sweep.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{root}/{name}.db"})
    return sweep.model_copy(update={"output_dir": root / name, "mlflow": mlflow, **update})


def run(config: SweepConfig) -> dict:
    start = time.perf_counter()
    summary = run_sweep(config).to_dict()
    return {**summary, "wall_seconds": time.perf_counter() - start}


def describe(size: dict) -> str:
    if size["collapse_ratio"] is None:
        return size["outcome"]
    lo, hi = size["bracket"]
    return f"{size['collapse_ratio']:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep_file", nargs="?", default="sweeps/quickstart.yaml")
    parser.add_argument("--precision", type=float, default=0.1)
    parser.add_argument("--coarse", help="comma-separated coarse ratios for the bisection")
    parser.add_argument("--grid-from", type=Path, help="output folder of an earlier run")
    args = parser.parse_args()
    sweep = load_sweep(args.sweep_file)
    coarse = [float(r) for r in args.coarse.split(",")] if args.coarse else sweep.ratios
    root = Path(tempfile.mkdtemp(prefix="kinfuse-adaptive-"))
    grid = grid_ratios(min(sweep.ratios), max(sweep.ratios), args.precision)
    if args.grid_from:
        shutil.copytree(args.grid_from / "grid", root / "grid")
        grid_summary = json.loads((root / "grid" / "summary.json").read_text())
    else:
        grid_sweep = scratch_copy(sweep, root, "grid", ratios=grid, search=SearchConfig())
        grid_summary = run(grid_sweep)
        (root / "grid" / "summary.json").write_text(json.dumps(grid_summary))
    bisect_sweep = scratch_copy(
        sweep,
        root,
        "bisect",
        ratios=sorted(coarse),
        search=SearchConfig(strategy="bisect", precision=args.precision),
    )
    shutil.copytree(root / "grid" / "base", bisect_sweep.out / "base")  # the same base runs
    summaries = {"grid": grid_summary, "bisect": run(bisect_sweep)}

    print(f"\n== adaptive search vs grid: {args.sweep_file}, precision {args.precision:.0%} ==")
    print(f"grid ratios ({len(grid)}): {', '.join(f'{r:g}' for r in grid)}")
    print(f"bisection coarse pass: {', '.join(f'{r:g}' for r in sorted(coarse))}  (output {root})")
    print(f"{'search':<8}{'trials':>8}{'trial-tokens':>15}{'wall s':>9}")
    tokens = {}
    for name, summary in summaries.items():
        tokens[name] = sum(t["tokens_trained"] for t in summary["trials"])
        trials, wall = len(summary["trials"]), summary["wall_seconds"]
        print(f"{name:<8}{trials:>8}{tokens[name]:>15,}{wall:>9.0f}")
    print(f"bisect / grid trial-tokens: {tokens['bisect'] / tokens['grid']:.2f}")
    print(f"\n{'size':<10}{'grid r* [bracket]':>26}{'bisect r* [bracket]':>26}{'rel diff':>10}")
    for g, b in zip(summaries["grid"]["sizes"], summaries["bisect"]["sizes"], strict=True):
        both = g["collapse_ratio"] is not None and b["collapse_ratio"] is not None
        diff = abs(b["collapse_ratio"] / g["collapse_ratio"] - 1) if both else None
        print(
            f"{g['size']:<10}{describe(g):>26}{describe(b):>26}"
            f"{'-' if diff is None else f'{diff:.3f}':>10}"
        )


if __name__ == "__main__":
    main()
