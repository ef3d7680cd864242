"""How right is the sweep's "about N of training left"? Runs a sweep through the CLI in a
scratch folder (fresh base-run store) and compares every progress line's estimate with the time
that was really left to the end of the sweep (its fit and records, which the estimate leaves out
and the console says follow, included: the last lines under-read by about their length).

    .venv/bin/python benchmarks/time_left.py sweeps/quickstart.yaml
    .venv/bin/python benchmarks/time_left.py sweeps/ladder_cpu.yaml

Prints each estimate beside the truth, and the largest relative error after the first third
of the sweep (the target: within 25%).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kinfuse_ray.provenance import describe  # noqa: E402

LINE = re.compile(
    r"^progress: (?:(\d+)m)?(\d+)s elapsed, about (?:(\d+)h)?(?:(\d+)m)?(\d+)s of training left"
)


def seconds(*parts: str | None) -> int:
    """'1h', '2m', '5s' groups (missing ones None) as seconds."""
    units = [3600, 60, 1][-len(parts) :]
    return sum(int(p or 0) * u for p, u in zip(parts, units, strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )  # fmt: skip
    parser.add_argument("sweep_file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        name = Path(args.sweep_file).stem
        proc = subprocess.run(
            [sys.executable, "-m", "kinfuse_ray.cli", "sweep", str(Path(args.sweep_file).resolve()),
             "--output-dir", str(Path(tmp) / "runs" / name), "--progress-every", "15",
             "--set", f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db"],
            capture_output=True, text=True,
        )  # fmt: skip
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return 1
    wall = int(re.search(r"^wall time: (\d+) s", proc.stdout, re.MULTILINE).group(1))
    print(f"{args.sweep_file}: {describe()}; wall {wall} s")
    print(f"{'elapsed':>8} {'estimate':>9} {'truth':>6} {'error':>7}")
    worst = 0.0
    for line in proc.stdout.splitlines():
        if not (found := LINE.match(line)):
            continue
        elapsed = seconds(found[1], found[2])
        estimate = seconds(found[3], found[4], found[5])
        truth = wall - elapsed
        error = (estimate - truth) / truth if truth > 0 else float("nan")
        late = elapsed >= wall / 3
        worst = max(worst, abs(error)) if late else worst
        print(
            f"{elapsed:>7}s {estimate:>8}s {truth:>5}s {error:>+7.0%}{'' if late else '  (first third)'}"
        )
    print(f"largest |error| after the first third: {worst:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
