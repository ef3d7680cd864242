"""Data-parallel scaling on CPU: the same infusion trial (one size, one ratio, from scratch) with
one Ray Train-free worker, and as a two-worker Ray Train DDP run (gloo), each worker one core.
Prints training tokens/s (fwd/bwd/step time only, from the trials' own metrics) and the speed-up.

    .venv/bin/python benchmarks/ddp_scaling.py [--hidden 128 --layers 2 --tokens 200000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from kinfuse_ray.config import parse_sweep
from kinfuse_ray.sweep import run_sweep


def tokens_per_s(workers: int, args: argparse.Namespace, scratch: Path) -> float:
    sweep = parse_sweep(
        {
            "name": f"ddp{workers}",
            "ladder": [
                {"name": "m", "hidden_size": args.hidden, "n_layers": args.layers, "n_heads": 4}
            ],
            "ratios": [0.5],
            "data": {
                "n_general_facts": 60,
                "n_domain_facts": 240,
                "vocab_size": 512,
                "seq_len": 64,
            },
            "train": {
                "schedule": "scratch",
                "tokens": args.tokens,
                "batch_size": 16,
                "workers": workers,
            },
            "eval": {"every_tokens": args.tokens, "acquisition_probes": 50, "val_sequences": 4},
            "mlflow": {"tracking_uri": f"sqlite:///{scratch}/mlflow.db"},
            "output_dir": str(scratch / f"out{workers}"),
        }
    )
    summary = run_sweep(sweep, progress_every=600)
    return summary.trials[0].tokens_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=200_000)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="kinfuse-ddp-"))
    one = tokens_per_s(1, args, scratch)
    two = tokens_per_s(2, args, scratch)
    print(f"\none worker:  {one:10,.0f} training tokens/s")
    print(f"two workers: {two:10,.0f} training tokens/s (DDP over gloo, global batch unchanged)")
    print(f"speed-up {two / one:.2f}x on 2 workers (efficiency {two / one / 2:.0%})")


if __name__ == "__main__":
    main()
