"""How far apart are replicate runs' decisions? The same sweep on several seeds (or numeric
paths), read from their outputs.

    .venv/bin/python benchmarks/stability.py runs/quickstart runs/quickstart-seed1 \\
        runs/quickstart-seed2

For the target's collapse point r*, its keep ratio (the default tolerance) and the recommended
ratio: each replicate's median and interval, the spread of the medians (max - min) against the
median width of the intervals, and how often one replicate's interval holds another's median
(over ordered pairs) against the rate the intervals claim. The commit, torch version and CPU
kernels head the output.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from kinfuse_ray.provenance import describe


def quantities(summary: dict) -> dict[str, tuple[float | None, tuple[float, float] | None]]:
    """(median, interval) of the target's r*, keep ratio and recommended ratio."""
    rec = summary["recommendation"]
    keep = next(r for r in rec["tolerances"] if r["tolerance"] == rec["tolerance"])
    return {
        "r*": (rec["collapse_ratio"], tuple(rec["interval"])),
        "keep ratio": (keep["ratio"], tuple(keep["interval"])),
        "recommended ratio": (rec["recommended_ratio"], None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="+", help="output folders of replicate runs (summary.json)")
    args = parser.parse_args()
    print(describe())
    summaries = {out: json.loads((Path(out) / "summary.json").read_text()) for out in args.out}
    confidence = next(iter(summaries.values()))["recommendation"]["confidence"]
    found = {out: quantities(s) for out, s in summaries.items()}
    print(f"\n{len(found)} replicates: " + "; ".join(
        f"{out} ({s['provenance']})" for out, s in summaries.items()))  # fmt: skip
    print("\n| quantity | " + " | ".join(Path(o).name for o in found) + " | spread | "
          "median width | intervals holding another's median |")  # fmt: skip
    print("|---|" + "---|" * len(found) + "---|---|---|")
    for name in next(iter(found.values())):
        rows = [found[out][name] for out in found]
        medians = [m for m, _ in rows if m is not None]
        cells = [
            "-" if m is None else f"{m:.3f}" + (f" ({i[0]:.3f}-{i[1]:.3f})" if i else "")
            for m, i in rows
        ]
        spread = f"{max(medians) - min(medians):.3f}" if medians else "-"
        intervals = [i for _, i in rows if i is not None]
        width = (
            f"{sorted(hi - lo for lo, hi in intervals)[len(intervals) // 2]:.3f}"
            if intervals else "-"
        )  # fmt: skip
        pairs = [(a, b) for a, b in itertools.permutations(rows, 2) if a[1] and b[0] is not None]
        held = (
            f"{sum(a[1][0] <= b[0] <= a[1][1] for a, b in pairs)}/{len(pairs)} "
            f"(claimed about {confidence:.0%} or more)"
            if pairs else "-"
        )  # fmt: skip
        print(f"| {name} | " + " | ".join(cells) + f" | {spread} | {width} | {held} |")


if __name__ == "__main__":
    main()
