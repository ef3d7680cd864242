"""CI cannot pass by skipping: under CI=true an unexpected skip fails the run (tests/conftest.py)."""

import os
import subprocess
import sys

import pytest

from .helpers import REPO

pytestmark = pytest.mark.unit


def run_planted(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_planted.py").write_text(
        "import pytest\n\n@pytest.mark.unit\ndef test_planted():\n    pytest.skip('planted')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_planted.py")],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_an_unexpected_skip_fails_ci_and_only_ci(tmp_path):
    under_ci = run_planted(tmp_path, ci=True)
    assert under_ci.returncode == 1, under_ci.stdout[-2000:]
    assert (
        "1 unexpected skip(s)" in under_ci.stdout
        and "test_planted: Skipped: planted" in under_ci.stdout
    )
    assert run_planted(tmp_path, ci=False).returncode == 0


def test_a_test_without_exactly_one_tier_stops_the_run(tmp_path):
    (tmp_path / "test_planted.py").write_text(
        "import pytest\n\n@pytest.mark.unit\n@pytest.mark.full\ndef test_two():\n    pass\n\n"
        "def test_none():\n    pass\n\n@pytest.mark.slow\ndef test_one():\n    pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_planted.py")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    said = proc.stdout + proc.stderr
    assert proc.returncode == 4, said[-2000:]  # pytest's usage error: nothing ran
    assert "2 test(s) without exactly one tier" in said
    assert "test_two" in said and "test_none" in said and "test_one" not in said
