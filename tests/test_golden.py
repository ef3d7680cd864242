"""Golden outcomes (tests/golden.py): the quickstart's data exactly, in seconds; its outcomes
through the real CLI on fresh caches, and the README's quickstart block and Python blocks
against that same fresh run (full tier)."""

import json
import re
import subprocess
import sys

import pytest

from tests import golden

from .helpers import REPO


@pytest.mark.unit
def test_the_quickstart_data_is_what_was_pinned():
    pinned = golden.read("data.json")
    found = golden.data_digests()
    if note := golden.mismatched_versions(pinned["versions"], found["versions"]):
        pytest.fail(note)
    differ = [
        key for key in found
        if found[key] != pinned[key]
    ]  # fmt: skip
    assert not differ, f"the quickstart's data changed: {', '.join(differ)}; {golden.REPIN}"


@pytest.mark.full
def test_the_quickstart_outcomes_are_what_was_pinned(quickstart):
    workdir, _ = quickstart
    summary = json.loads((workdir / "runs" / "quickstart" / "summary.json").read_text())
    pinned, found = golden.read("sweep.json"), golden.sweep_outcomes(summary)
    if note := golden.mismatched_versions(pinned["versions"], found["versions"]):
        pytest.fail(note)
    differ = golden.compare_outcomes(pinned, found)
    assert not differ, "\n".join([*differ[:20], golden.REPIN])


@pytest.mark.full
def test_the_readme_shows_what_the_quickstart_prints(quickstart):
    workdir, _ = quickstart
    check = subprocess.run(
        [sys.executable, REPO / "scripts" / "readme_quickstart.py", "--check",
         workdir / "runs" / "quickstart"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.full
def test_every_python_block_of_the_readme_runs(quickstart):
    """Each ```python block of the README, in order, in the folder where the quickstart ran
    (its MLflow store as the README's commands find it)."""
    workdir, _ = quickstart
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    assert blocks
    for i, code in enumerate(blocks):
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, f"README python block {i + 1}:\n{code}\n{proc.stderr[-3000:]}"
