"""Adaptive ratio search against a grid of the same precision, on the same ladder and data.

    .venv/bin/python benchmarks/adaptive_search.py [sweeps/quickstart.yaml] [--precision 0.1]

The grid spaces ratios geometrically by (1 + precision) from the sweep's smallest to its
largest ratio, so it brackets every collapse point to the same relative precision the bisection
stops at. Both share one set of base runs (trained once, by the grid sweep), so the trial-tokens
compared are the infusion trials' alone. Scratch folders and MLflow stores only.
"""

from __future__ import annotations

import argparse
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
    mlflow = sweep.mlflow.model_copy(update={"tracking_uri": f"sqlite:///{root}/mlflow.db"})
    return sweep.model_copy(update={"output_dir": root / name, "mlflow": mlflow, **update})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep_file", nargs="?", default="sweeps/quickstart.yaml")
    parser.add_argument("--precision", type=float, default=0.1)
    args = parser.parse_args()
    sweep = load_sweep(args.sweep_file)
    root = Path(tempfile.mkdtemp(prefix="kinfuse-adaptive-"))
    grid = grid_ratios(min(sweep.ratios), max(sweep.ratios), args.precision)
    runs = {
        "grid": scratch_copy(
            sweep, root, "grid", ratios=grid, search=SearchConfig(strategy="grid")
        ),
        "bisect": scratch_copy(
            sweep, root, "bisect", search=SearchConfig(strategy="bisect", precision=args.precision)
        ),
    }
    summaries, walls = {}, {}
    for name, config in runs.items():
        if name == "bisect":  # the same base runs: trained once, by the grid sweep
            shutil.copytree(runs["grid"].out / "base", config.out / "base")
        start = time.perf_counter()
        summaries[name] = run_sweep(config)
        walls[name] = time.perf_counter() - start

    print(f"\n== adaptive search vs grid: {args.sweep_file}, precision {args.precision:.0%} ==")
    print(f"grid ratios ({len(grid)}): {', '.join(f'{r:g}' for r in grid)}")
    print(f"{'search':<8}{'trials':>8}{'trial-tokens':>15}{'wall s':>9}")
    tokens = {}
    for name, summary in summaries.items():
        tokens[name] = sum(t.tokens_trained for t in summary.trials)
        print(f"{name:<8}{len(summary.trials):>8}{tokens[name]:>15,}{walls[name]:>9.0f}")
    print(f"bisect / grid trial-tokens: {tokens['bisect'] / tokens['grid']:.2f}")
    print(f"\n{'size':<10}{'grid r* [bracket]':>26}{'bisect r* [bracket]':>26}{'rel diff':>10}")
    for g, b in zip(summaries["grid"].sizes, summaries["bisect"].sizes, strict=True):

        def fmt(s):
            c = s.collapse
            return (
                f"{c.ratio:.3f} [{c.bracket[0]:.3f}, {c.bracket[1]:.3f}]"
                if c.found
                else c.outcome.value
            )

        diff = (
            f"{abs(b.collapse.ratio - g.collapse.ratio) / g.collapse.ratio:.3f}"
            if g.collapse.found and b.collapse.found
            else "-"
        )
        print(f"{g.size:<10}{fmt(g):>26}{fmt(b):>26}{diff:>10}")


if __name__ == "__main__":
    main()
