"""Is non-embedding N the size variable the law may take alone? Two ladders on the same data,
settings and seed, one growing only in width and one only in depth: the width ladder's law
forecasts each depth rung's collapse point from its N, against what that rung measured; and
each ladder's own slope of logit r* in log N.

    kinfuse sweep sweeps/quickstart.yaml && kinfuse sweep sweeps/ladder_depth.yaml
    python benchmarks/shape.py runs/quickstart runs/ladder_depth

Reads each folder's summary.json, law.json and sweep.yaml; trains nothing."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from kinfuse_ray.law import InfusionLaw
from kinfuse_ray.provenance import describe


def shapes(folder: Path) -> dict[str, dict]:
    """Each rung's shape as its sweep ran it."""
    return {
        rung["name"]: rung for rung in yaml.safe_load((folder / "sweep.yaml").read_text())["ladder"]
    }


def slope(law: InfusionLaw) -> str:
    lo, hi = law.parameter_intervals()["b_n"]
    return f"{law.parameters['b_n']:+.2f} ({law.forecast.confidence:.0%} interval {lo:+.2f} to {hi:+.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "reference", type=Path, help="the ladder whose law forecasts (a sweep's output folder)"
    )
    parser.add_argument("other", type=Path, help="the ladder of other shapes it forecasts")
    args = parser.parse_args(argv)
    reference = InfusionLaw.load(args.reference / "law.json")
    other = InfusionLaw.load(args.other / "law.json")
    summary = json.loads((args.other / "summary.json").read_text())
    ref_shapes, other_shapes = shapes(args.reference), shapes(args.other)
    conf = f"{reference.forecast.confidence:.0%}"
    print(f"{args.other.name}'s rungs forecast by {args.reference.name}'s law ({reference.form}), "
          f"from N alone (read with {describe()})")  # fmt: skip
    for folder in (args.reference, args.other):
        ran = json.loads((folder / "summary.json").read_text()).get("provenance") or "unrecorded"
        print(f"  {folder.name} ran with {ran}")
    print(f"  {args.reference.name}: layers {sorted({s['n_layers'] for s in ref_shapes.values()})}, "
          f"widths {sorted({s['hidden_size'] for s in ref_shapes.values()})}")  # fmt: skip
    print(f"{'rung':<7}{'layers':>7}{'width':>7}{'N':>10}{'measured r*':>13}"
          f"{'forecast r*':>13}  {conf + ' interval':<15}inside")  # fmt: skip
    inside = 0
    for size in summary["sizes"]:
        shape = other_shapes[size["size"]]
        p = reference.at(size["n_params"], size["tokens"]).prediction()
        lo, hi = p.interval
        ok = size["collapse_ratio"] is not None and lo <= size["collapse_ratio"] <= hi
        inside += ok
        measured = "-" if size["collapse_ratio"] is None else f"{size['collapse_ratio']:.3f}"
        print(f"{size['size']:<7}{shape['n_layers']:>7}{shape['hidden_size']:>7}"
              f"{size['n_params']:>10,}{measured:>13}{p.collapse_ratio:>13.3f}  "
              f"{lo:.3f}-{hi:.3f}    {'yes' if ok else 'NO'}")  # fmt: skip
    print(f"{inside} of {len(summary['sizes'])} inside the {conf} intervals")
    print(f"slope of logit r* in log N: {args.reference.name} {slope(reference)}; "
          f"{args.other.name} {slope(other)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
