"""Re-pin the quickstart's golden outcomes (tests/golden/data.json, and sweep/<vendor>.json with
the answer it printed, for this machine's CPU vendor).

Run it only when a change is meant to move outcomes (new data, draws, model or training code),
review the diff of tests/golden/, and say in the commit why they moved:

    .venv/bin/python scripts/pin_golden.py          # data digests and a fresh quickstart (~4 min)
    .venv/bin/python scripts/pin_golden.py --data   # the data digests only (seconds)

The quickstart runs through the real CLI in a temporary folder, with fresh caches and a fresh
base-run store, under the CPU kernels its sweep file pins; its outputs are kept as
runs/golden-quickstart (with console.txt, what it printed) for `scripts/readme_quickstart.py`.
Its numbers differ by CPU vendor (tests/golden.py), so a change that moves them is re-pinned on
a CPU of each vendor pinned: one whose pins are not redone fails its golden tests there.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kinfuse_ray.provenance import cpu_vendor  # noqa: E402
from tests import golden  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="store_true", help="the data digests only")
    args = parser.parse_args()
    golden.write("data.json", golden.data_digests())
    print("tests/golden/data.json written")
    if args.data:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        proc = golden.run_quickstart(Path(tmp))
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        out = Path(tmp) / "runs" / "quickstart"
        summary = json.loads((out / "summary.json").read_text())
        answer = (out / "answer.txt").read_text()
        pinned = golden.pin_sweep(cpu_vendor(), golden.sweep_outcomes(summary), answer)
        kept = golden.REPO / "runs" / "golden-quickstart"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(out, kept, ignore=shutil.ignore_patterns("*.pt", "checkpoint*"))
        (kept / "console.txt").write_text(proc.stdout)
    print(f"{pinned.relative_to(golden.REPO)} and its answer written; the run's outputs kept in "
          f"{kept}")  # fmt: skip
    if cpu_vendor() == golden.README_VENDOR:
        print(f"README.md shows this vendor's answer: scripts/readme_quickstart.py {kept}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
