"""`kinfuse` command line. User mistakes print one line and exit 2; no tracebacks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kinfuse_ray.errors import KinfuseError


def _sweep(args: argparse.Namespace) -> None:
    from kinfuse_ray.config import load_sweep

    sweep = load_sweep(args.sweep_file)
    if args.output_dir:
        sweep = sweep.model_copy(update={"output_dir": Path(args.output_dir)})
    from kinfuse_ray.sweep import run_sweep  # heavy imports only once the file is valid

    summary = run_sweep(sweep, Path(args.sweep_file))
    print()
    print(summary.table())
    if summary.law is not None:
        exps = ", ".join(f"{k} = {v:.3f}" for k, v in summary.law.exponents.items())
        print(f"\nlaw ({summary.law.form}, {summary.law.target}): {exps}")
        v = summary.law.validation_
        if v is not None:
            print(
                f"held out {v.held_out}: measured r* {v.measured:.3f}, law {v.predicted:.3f} "
                f"(log error {v.log_error:+.3f}), baseline {v.baseline:.3f} (log error {v.baseline_log_error:+.3f})"
            )
    else:
        print(f"\nno law fitted: {summary.law_note}")
    if summary.recommendation:
        print(
            f"\nrecommendation for {summary.target} ({summary.recommendation.n_params:,.0f} params):"
        )
        print(f"  {summary.recommendation.describe()}")
        for warning in summary.recommendation.warnings:
            print(f"  warning: {warning}")
    print(f"\nsummary and plots: {sweep.out}")
    print(f"wall time: {summary.wall_seconds:.0f} s")
    uri = sweep.mlflow.tracking_uri
    if uri.startswith("sqlite:"):
        print(
            f"browse the runs: mlflow ui --backend-store-uri {uri} --host 127.0.0.1  (then open http://127.0.0.1:5000)"
        )
    else:
        print(f"browse the runs: {uri}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kinfuse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="run a sweep file end to end")
    sweep.add_argument("sweep_file")
    sweep.add_argument(
        "--output-dir", help="where summary.json and plots go (default: runs/<name>)"
    )
    sweep.set_defaults(func=_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KinfuseError as exc:
        print(f"kinfuse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kinfuse: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
