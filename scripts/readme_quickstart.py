"""Write the quickstart's answer into README.md, between its markers, from a finished sweep.

The block is the sweep's own answer.txt (what `kinfuse sweep` printed), headed by what produced
it, as its summary.json records: the commit, the torch version and the CPU kernels the sweep
ran on. Nothing is typed by hand.

    .venv/bin/kinfuse sweep sweeps/quickstart.yaml
    .venv/bin/python scripts/readme_quickstart.py [runs/quickstart]          # write the block
    .venv/bin/python scripts/readme_quickstart.py --check [runs/quickstart]  # exit 1 if it differs

After a change to the analysis alone, `scripts/pin_golden.py --refit` writes the block from the
answer refitted to the AMD pinned trials (`write_block`), naming where the trials ran.

The quickstart pins its numeric path (`portable`), so the block is the same on every CPU of one
vendor: the README shows the answer pinned on AMD CPUs (tests/golden/sweep/AuthenticAMD.answer.txt;
tests/test_golden.py checks the two agree, and a fresh run against its own vendor's answer).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- quickstart answer: begin -->", "<!-- quickstart answer: end -->"


def block(answer: str, produced: str, writer: str = "scripts/readme_quickstart.py") -> str:
    return "\n".join([
        BEGIN,
        f"`kinfuse sweep sweeps/quickstart.yaml` at {produced} (written by `{writer}`):",
        "",
        "```text",
        answer.rstrip(),
        "```",
        END,
    ])  # fmt: skip


def write_block(answer: str, produced: str, writer: str = "scripts/readme_quickstart.py") -> None:
    """Replace README.md's quickstart block (its markers must be there)."""
    readme = (REPO / "README.md").read_text()
    head, rest = readme.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    (REPO / "README.md").write_text(head + block(answer, produced, writer) + tail)


def answer_in(readme: str) -> str:
    """The answer text of the README's quickstart block (without its provenance line)."""
    text = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    return text.split("```text\n", 1)[1].rsplit("```", 1)[0].rstrip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(REPO / "runs" / "quickstart"))
    parser.add_argument(
        "--check", action="store_true", help="compare the README's answer with the run's; exit 1"
    )
    args = parser.parse_args()
    out = Path(args.out)
    if not (out / "answer.txt").is_file():
        print(f"{out / 'answer.txt'}: missing; run `kinfuse sweep sweeps/quickstart.yaml` first")
        return 2
    readme = (REPO / "README.md").read_text()
    if BEGIN not in readme or END not in readme:
        print(f"README.md: the markers {BEGIN} ... {END} are missing")
        return 2
    if args.check:
        ran = (out / "answer.txt").read_text().rstrip()
        if answer_in(readme) == ran:
            print(f"README.md: the quickstart block is what {out} printed")
            return 0
        print(f"README.md: the quickstart block differs from {out / 'answer.txt'}; rewrite it "
              "with scripts/readme_quickstart.py")  # fmt: skip
        return 1
    produced = (
        json.loads((out / "summary.json").read_text()).get("provenance") or "an unrecorded commit"
    )
    write_block((out / "answer.txt").read_text(), produced)
    print(f"README.md: quickstart block written from {out / 'answer.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
