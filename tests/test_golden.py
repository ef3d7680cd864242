"""Golden outcomes (tests/golden.py): the quickstart's data exactly, every vendor's pinned answer
against the analysis refitted to its pinned trials, and the README's quickstart block against the
answer pinned for the vendor it names, in seconds; a fresh run through the
real CLI on fresh caches against the outcomes and answer pinned for this CPU's vendor, and the
README's Python blocks run on it (full tier)."""

import difflib
import json
import re
import subprocess
import sys
import warnings

import pytest

from kinfuse_ray.provenance import cpu_model, cpu_vendor
from tests import golden

from .helpers import REPO

sys.path.insert(0, str(REPO / "scripts"))


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


@pytest.mark.unit
def test_the_readme_shows_the_answer_pinned_for_its_vendor():
    """The README's quickstart block is README_VENDOR's pinned answer, line for line (the full
    tier checks that answer against a fresh run on a CPU of that vendor)."""
    from readme_quickstart import answer_in

    pinned = golden.pinned_sweep(golden.README_VENDOR)
    assert pinned is not None, (
        f"nothing pinned for {golden.README_VENDOR}, whose answer README shows"
    )
    assert answer_in((REPO / "README.md").read_text()) == pinned[1], (
        "README.md's quickstart block is not the pinned answer: "
        "`scripts/readme_quickstart.py runs/golden-quickstart` on a CPU of that vendor"
    )
    assert pinned[0]["cpus"][0].startswith(golden.README_VENDOR)


@pytest.mark.unit
@pytest.mark.parametrize("vendor", golden.pinned_vendors())
def test_each_pinned_answer_is_the_analysis_of_its_pinned_trials(vendor):
    """The collapse points, the law's forecast and the printed answer pinned for a vendor are
    what the analysis gives today on its pinned trials, refitted on this CPU (whatever its
    vendor): a change to the analysis alone fails here in seconds, on any machine."""
    pinned, answer = golden.pinned_sweep(vendor)
    outcomes, refitted = golden.refit(pinned)
    differ = [
        f"{k}: {outcomes[k]} (pinned {pinned[k]})" for k in outcomes if outcomes[k] != pinned[k]
    ]
    assert not differ and refitted == answer, (
        "\n".join([*differ, *difflib.unified_diff(answer.splitlines(), refitted.splitlines(),
                                                   "pinned", "refitted", lineterm="")])
        + "\nre-pin with `.venv/bin/python scripts/pin_golden.py --refit` if the change is meant"
    )  # fmt: skip


@pytest.mark.full
def test_the_quickstart_outcomes_are_what_was_pinned(quickstart):
    workdir, _ = quickstart
    summary = json.loads((workdir / "runs" / "quickstart" / "summary.json").read_text())
    vendor = cpu_vendor()
    if (pinned := golden.pinned_sweep(vendor)) is None:
        warnings.warn(golden.unpinned(vendor), stacklevel=1)
        return
    found = golden.sweep_outcomes(summary)
    if note := golden.mismatched_versions(pinned[0]["versions"], found["versions"]):
        pytest.fail(note)
    differ = golden.compare_outcomes(pinned[0], found)
    assert not differ, "\n".join([*differ[:20], golden.REPIN])


@pytest.mark.full
def test_the_quickstart_prints_the_answer_pinned_for_this_vendor(quickstart):
    """What a fresh quickstart prints, line for line, is the answer pinned on CPUs of this vendor
    (on README_VENDOR's, README.md's block)."""
    workdir, _ = quickstart
    vendor = cpu_vendor()
    if (pinned := golden.pinned_sweep(vendor)) is None:
        warnings.warn(golden.unpinned(vendor), stacklevel=1)
        return
    printed = (workdir / "runs" / "quickstart" / "answer.txt").read_text().rstrip()
    assert printed == pinned[1], (
        f"on {cpu_model()} the quickstart printed another answer than the one pinned on "
        f"{'; '.join(pinned[0]['cpus'])}:\n{printed}\n{golden.REPIN}"
    )


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
