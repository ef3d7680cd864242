"""Does a sweep's answer show the law? The quickstart's design criteria, read from its outputs.

    .venv/bin/python benchmarks/quickstart_criteria.py [runs/quickstart ...]

For each output folder (summary.json, written by `kinfuse sweep`) prints every criterion with
the numbers it was decided on, PASS or FAIL, and the commit, torch version and CPU kernels
beside them. Exits 1 when any criterion fails.

a. every rung collapses inside the ratio grid: no bracket touches the top ratio;
b. retention at the top ratio is at most 0.25 x plateau for every rung;
c. r* rises over the rungs, and the top-3 slope's interval excludes 0;
d. the target's keep ratio (default tolerance) has an interval at most 1.5 logits wide;
e. at least 3 rungs reach the acquisition target, or the window is reported unknown with why;
f. the sweep took at most 4 minutes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from kinfuse_ray.provenance import describe

TOP_FLOOR = 0.25
MAX_WIDTH = 1.5
MIN_LEARNING_RUNGS = 3
MAX_SECONDS = 240.0


def criteria(summary: dict) -> list[tuple[str, bool, str]]:
    """(criterion, passed, the numbers it was decided on) for one sweep's summary.json."""
    sizes = summary["sizes"]
    trials = [t for t in summary["trials"] if t["phase"] == "infuse"]
    top = max(t["ratio"] for t in trials)
    out = []

    brackets = [(s["size"], s["outcome"], s["bracket"]) for s in sizes]
    inside = all(o == "collapsed" and b[1] < top for _, o, b in brackets)
    shown = ", ".join(f"{n} {b[0]:.2f}-{b[1]:.2f}" if o == "collapsed" else f"{n} {o}"
                      for n, o, b in brackets)  # fmt: skip
    out.append(("a. every rung collapses inside the grid", inside, f"top {top:g}; {shown}"))

    floors = {}
    for s in sizes:
        at_top = [t["retention"] for t in trials if t["size"] == s["size"] and t["ratio"] == top]
        floors[s["size"]] = (sum(at_top) / len(at_top)) / s["plateau"] if at_top else float("nan")
    ok = all(v <= TOP_FLOOR for v in floors.values())
    out.append((f"b. retention at r = {top:g} <= {TOP_FLOOR} x plateau", ok,
                ", ".join(f"{k} {v:.2f}" for k, v in floors.items())))  # fmt: skip

    rstar = [s["collapse_ratio"] for s in sizes]
    rising = all(r is not None for r in rstar) and all(a < b for a, b in itertools.pairwise(rstar))
    slope = (summary.get("law") or {}).get("top_slope")
    moving = bool(slope and slope["interval"][0] > 0)
    detail = " < ".join("-" if r is None else f"{r:.3f}" for r in rstar)
    if slope:
        detail += f"; top-3 slope {slope['slope']:+.2f} ({slope['interval'][0]:+.2f} to {slope['interval'][1]:+.2f})"
    out.append(("c. r* rises, top-3 slope excludes 0", rising and moving, detail))

    rec = summary.get("recommendation")
    width = rec["decision"]["keep_width_logits"] if rec else float("inf")
    interval = rec["decision"]["keep_interval"] if rec else (0, 1)
    out.append((f"d. target keep-ratio interval <= {MAX_WIDTH} logits", width <= MAX_WIDTH,
                f"{width:.2f} logits ({interval[0]:.3f}-{interval[1]:.3f})"))  # fmt: skip

    learning = [s["size"] for s in sizes if s["acquisition_threshold"] is not None]
    note = rec and rec.get("acquisition_note")
    ok = len(learning) >= MIN_LEARNING_RUNGS or bool(note)
    detail = f"{len(learning)} rungs ({', '.join(learning)})" + (
        f"; unknown: {note}" if note else ""
    )
    out.append(("e. >= 3 rungs learn the domain (or unknown, said why)", ok, detail))

    seconds = summary["wall_seconds"]
    out.append((f"f. sweep <= {MAX_SECONDS:.0f} s", seconds <= MAX_SECONDS, f"{seconds:.0f} s"))
    return out


def forecast(summary: dict) -> str:
    """The target's forecast in one line: r*, the keep ratio, the learn ratio, the decision."""
    rec = summary.get("recommendation")
    if not rec:
        return "no forecast"
    d, lo_hi = rec["decision"], rec["interval"]
    keep = d["keep_interval"]
    learn = rec["acquisition_threshold"]
    unchecked = set(rec.get("uncalibrated", ()))  # sides whose probabilities failed their check

    def p(side: str, value: float | None) -> str:
        shown = "not calibrated" if side in unchecked or value is None else f"{value:.2f}"
        return f"P({side}) {shown}"

    c_star = "not calibrated" if "learns" in unchecked else f"{d['c_star']:.2f}"
    return (
        f"{rec['target']}: r* {rec['ratio']:.3f} ({lo_hi[0]:.3f}-{lo_hi[1]:.3f}); keeps 90% up to "
        f"{keep[0]:.3f}-{keep[1]:.3f}; learns from {'-' if learn is None else f'{learn:.3f}'}; "
        f"c* {c_star}; recommended "
        + ("none (not informative)" if not d["informative"] else
           f"{rec['recommended_ratio']:.3f}: {p('keeps', d['p_keep'])}, {p('learns', d['p_learn'])}")
    )  # fmt: skip


def main(folders: list[str]) -> int:
    failed = 0
    print(f"criteria read with {describe()}")
    for folder in folders:
        path = Path(folder) / "summary.json"
        if not path.is_file():
            print(f"{path}: no summary (run the sweep first: kinfuse sweep sweeps/quickstart.yaml)")
            return 2
        summary = json.loads(path.read_text())
        ran = summary.get("provenance") or "an unrecorded commit"
        print(f"\n{summary['study']} ({folder}; ran at {ran}):")
        for name, ok, detail in criteria(summary):
            failed += not ok
            print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
        print(f"  forecast  {forecast(summary)}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", nargs="*", default=["runs/quickstart"], help="sweep outputs")
    sys.exit(main(parser.parse_args().folders))
