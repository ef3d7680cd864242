"""What the README and docs point people at works: every benchmark and script answers --help
(so it imports: no name it uses has moved), and the package's declared API resolves without
pulling in the heavy frameworks."""

import json
import subprocess
import sys

import pytest

from .helpers import REPO

pytestmark = pytest.mark.unit

SCRIPTS = sorted([*REPO.glob("benchmarks/*.py"), *REPO.glob("scripts/*.py")])

# Each script run as `python SCRIPT --help` would run it, all in one process (the frameworks they
# import load once): its own folder first on sys.path, its output and exit code collected.
HELP_ALL = """
import contextlib, io, json, runpy, sys
answers = {}
for path in sys.argv[1:]:
    out, code = io.StringIO(), 0
    sys.argv, saved = [path, "--help"], list(sys.path)
    sys.path.insert(0, path.rsplit("/", 1)[0])
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        code = exc.code or 0
    except BaseException as exc:  # an import that no longer resolves, say
        code, out = 1, io.StringIO(f"{type(exc).__name__}: {exc}")
    sys.path[:] = saved
    answers[path] = [code, out.getvalue()]
print(json.dumps(answers))
"""


def test_every_benchmark_and_script_answers_help():
    proc = subprocess.run(
        [sys.executable, "-c", HELP_ALL, *map(str, SCRIPTS)], cwd=REPO, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = json.loads(proc.stdout.strip().splitlines()[-1])
    failed = {
        path: said[-800:] for path, (code, said) in answers.items()
        if code != 0 or "usage:" not in said
    }  # fmt: skip
    assert not failed, failed
    assert len(answers) == len(SCRIPTS) >= 15


def test_the_public_api_resolves_lazily_and_is_documented():
    code = """
import sys
import kinfuse_ray
heavy = {"torch", "scipy", "ray", "mlflow"} & set(sys.modules)
assert not heavy, f"import kinfuse_ray pulled in {heavy}"
for name in kinfuse_ray.__all__:
    value = getattr(kinfuse_ray, name)
    doc = (value.__doc__ or "").strip()
    assert doc and not doc.startswith(f"{name}("), f"{name} has no docstring of its own"
print(len(kinfuse_ray.__all__))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) >= 12
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import kinfuse_ray

        kinfuse_ray.nothing  # noqa: B018


def test_kinfuse_help_pulls_in_no_framework():
    """`kinfuse --help` (and every subcommand's) answers without importing scipy, torch, Ray or
    MLflow: the parser names the law's forms from the schema, not from the law."""
    code = """
import sys
from kinfuse_ray.cli import build_parser
parser = build_parser()
for command in ("sweep", "plan", "fit", "predict", "show", "store", "forecasts", "knowledge"):
    try:
        parser.parse_args([command, "--help"])
    except SystemExit:
        pass
heavy = {"torch", "scipy", "ray", "mlflow"} & set(sys.modules)
assert not heavy, f"kinfuse --help pulled in {heavy}"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--law {auto,power_n,power_nd,power_n_sat,power_nd_sat}" in proc.stdout
