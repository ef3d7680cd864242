"""Write the quickstart's answer into README.md, between its markers, from a finished sweep.

The block is the sweep's own answer.txt (what `kinfuse sweep` printed), headed by what produced
it, as its summary.json records: the commit, the torch version and the CPU kernels the sweep
ran on. Nothing is typed by hand.

    .venv/bin/kinfuse sweep sweeps/quickstart.yaml
    .venv/bin/python scripts/readme_quickstart.py [runs/quickstart]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- quickstart answer: begin -->", "<!-- quickstart answer: end -->"


def block(out: Path) -> str:
    answer = (out / "answer.txt").read_text().rstrip()
    produced = (
        json.loads((out / "summary.json").read_text()).get("provenance") or "an unrecorded commit"
    )
    return "\n".join([
        BEGIN,
        f"`kinfuse sweep sweeps/quickstart.yaml` at {produced} (written by "
        "`scripts/readme_quickstart.py`):",
        "",
        "```text",
        answer,
        "```",
        END,
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(REPO / "runs" / "quickstart"))
    args = parser.parse_args()
    out = Path(args.out)
    if not (out / "answer.txt").is_file():
        print(f"{out / 'answer.txt'}: missing; run `kinfuse sweep sweeps/quickstart.yaml` first")
        return 2
    readme = (REPO / "README.md").read_text()
    if BEGIN not in readme or END not in readme:
        print(f"README.md: the markers {BEGIN} ... {END} are missing")
        return 2
    head, rest = readme.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    (REPO / "README.md").write_text(head + block(out) + tail)
    print(f"README.md: quickstart block written from {out / 'answer.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
