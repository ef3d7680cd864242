"""How right is the sweep's "about N of training left"? Runs a sweep through the CLI in a
scratch folder (fresh base-run store) and compares every progress line's estimate with the time
that was really left, read from when each line came out: to the end of the sweep, or on a size
x budget ladder to the end of the budget the line is about (each budget is a sweep of its own,
and its later budgets reuse the base runs the first trained). The fit and records after the
trials are included, which the estimate leaves out and the console says follow: the last lines
under-read by about their length.

    .venv/bin/python benchmarks/time_left.py sweeps/quickstart.yaml
    .venv/bin/python benchmarks/time_left.py sweeps/budget_continued.yaml --set budgets=[50000,100000]

Prints each estimate beside the truth, and per sweep (budget) the largest relative error after
its first third (the target: within 25%).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kinfuse_ray.provenance import describe  # noqa: E402

ESTIMATE = re.compile(
    r"^progress: (?:(\d+)m)?(\d+)s elapsed, about (?:(\d+)h)?(?:(\d+)m)?(\d+)s of training left"
)
# A budget of a ladder starts (console.describe_budget_part, as `say` writes it).
BUDGET = re.compile(r"^kinfuse: [\d,]+ tokens per trial: sweep (\S+)$")


def seconds(*parts: str | None) -> int:
    """'1h', '2m', '5s' groups (missing ones None) as seconds."""
    units = [3600, 60, 1][-len(parts) :]
    return sum(int(p or 0) * u for p, u in zip(parts, units, strict=True))


def timed_lines(command: list[str]) -> tuple[int, list[tuple[float, str]]]:
    """Run `command`; its exit status and each line of its output with when it came out."""
    started, lines = time.monotonic(), []
    unbuffered = {**os.environ, "PYTHONUNBUFFERED": "1"}  # each line as it is written
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=unbuffered) as proc:
        for line in proc.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
    lines.append((time.monotonic() - started, ""))  # the end
    return proc.returncode, lines


@dataclass
class Part:
    """One sweep of the output (the whole sweep, or one budget of a ladder)."""

    name: str
    start: float  # when its first line came out, from the command's start
    end: float = 0.0
    estimates: list[tuple[float, int]] = field(default_factory=list)  # (when, estimate)


def parts(lines: list[tuple[float, str]]) -> list[Part]:
    """Each sweep the output shows that printed an estimate: the whole sweep, or each budget
    of a ladder (ended by the next budget's start or the end)."""
    found = [Part("sweep", 0.0)]
    for when, line in lines:
        if started := BUDGET.match(line):
            found.append(Part(started[1], when))
        elif estimate := ESTIMATE.match(line):
            found[-1].estimates.append((when, seconds(estimate[3], estimate[4], estimate[5])))
        found[-1].end = when
    return [part for part in found if part.estimates]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )  # fmt: skip
    parser.add_argument("sweep_file")
    parser.add_argument("--set", action="append", default=[], help="as kinfuse sweep --set")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        name = Path(args.sweep_file).stem
        status, lines = timed_lines(
            [sys.executable, "-m", "kinfuse_ray.cli", "sweep", str(Path(args.sweep_file).resolve()),
             "--output-dir", str(Path(tmp) / "runs" / name), "--progress-every", "15",
             "--set", f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db",
             *(f"--set={setting}" for setting in args.set)]
        )  # fmt: skip
    if status != 0:
        print("\n".join(line for _, line in lines[-20:]), file=sys.stderr)
        return 1
    print(f"{args.sweep_file} {' '.join(args.set)}: {describe()}; wall {lines[-1][0]:.0f} s")
    for part in parts(lines):
        wall = part.end - part.start
        print(f"{part.name}: {wall:.0f} s")
        print(f"{'elapsed':>8} {'estimate':>9} {'truth':>6} {'error':>7}")
        worst = 0.0
        for when, estimate in part.estimates:
            elapsed, truth = when - part.start, part.end - when
            error = (estimate - truth) / truth if truth > 0 else float("nan")
            late = elapsed >= wall / 3
            worst = max(worst, abs(error)) if late else worst
            note = "" if late else "  (first third)"
            print(f"{elapsed:>7.0f}s {estimate:>8}s {truth:>5.0f}s {error:>+7.0%}{note}")
        print(f"largest |error| after the first third: {worst:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
