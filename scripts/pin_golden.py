"""Re-pin the quickstart's golden outcomes (tests/golden/data.json, and sweep/<vendor>.json with
the answer it printed, for this machine's CPU vendor).

Run it only when a change is meant to move outcomes (new data, draws, model or training code),
review the diff of tests/golden/, and say in the commit why they moved:

    .venv/bin/python scripts/pin_golden.py          # data digests and a fresh quickstart (~4 min)
    .venv/bin/python scripts/pin_golden.py --data   # the data digests only (seconds)
    .venv/bin/python scripts/pin_golden.py --refit  # the analysis only, every vendor (seconds)

The quickstart runs through the real CLI in a temporary folder, with fresh caches and a fresh
base-run store, under the CPU kernels its sweep file pins; its outputs are kept as
runs/golden-quickstart (with console.txt, what it printed) for `scripts/readme_quickstart.py`.
Its numbers differ by CPU vendor (tests/golden.py), so a change that moves them is re-pinned on
a CPU of each vendor pinned: one whose pins are not redone fails its golden tests there.

A change to the analysis alone (collapse detection, the law, the decision, how the answer is
written) leaves every trial as it was: `--refit` fits the law afresh to each vendor's pinned
trials, on this machine, and rewrites each vendor's r*, recommendation and answer (and README's
block from README_VENDOR's). The fit is scipy's, the same on either vendor's CPU: `make test`
checks every pinned answer is what it gives.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_quickstart import answer_in, write_block  # noqa: E402

from kinfuse_ray.provenance import commit, cpu_vendor  # noqa: E402
from tests import golden  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="store_true", help="the data digests only")
    parser.add_argument("--refit", action="store_true",
                        help="the analysis only: refit every vendor's pinned trials")  # fmt: skip
    args = parser.parse_args()
    if args.refit:
        return refit_every_vendor()
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


def refit_every_vendor() -> int:
    """Every vendor's pins refitted first, then written: a refit that fails writes nothing."""
    refits = {}
    for vendor in golden.pinned_vendors():
        pinned, answer = golden.pinned_sweep(vendor)
        refits[vendor] = (pinned, answer, *golden.refit(pinned))
    for vendor, (_, answer, outcomes, refitted) in refits.items():
        golden.pin_sweep(vendor, outcomes, refitted)
        print(f"{vendor}: {'unchanged' if refitted == answer else 'answer refitted'}")
    if golden.README_VENDOR in refits:
        pinned, _, _, refitted = refits[golden.README_VENDOR]
        if answer_in((golden.REPO / "README.md").read_text()) != refitted:
            produced = (f"commit {commit()}, refitted to the trials run on {pinned['cpus'][0]} "
                        f"(torch {pinned['versions']['torch']}, CPU kernels {pinned['kernels']})")  # fmt: skip
            write_block(refitted, produced, "scripts/pin_golden.py --refit")
            print("README.md: quickstart block written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
