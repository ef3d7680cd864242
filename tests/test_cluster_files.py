"""The cluster-launcher files pass Ray's own schema check, offline."""

import copy

import pytest
import yaml
from jsonschema.exceptions import ValidationError
from ray.autoscaler._private.util import prepare_config, validate_config

from .helpers import REPO

CLUSTER_FILES = [REPO / "cluster.yaml", *sorted((REPO / "clusters").glob("*.yaml"))]


@pytest.mark.unit
@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_file_is_valid(path):
    config = yaml.safe_load(path.read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    commands = " ".join(config["setup_commands"] + config["head_start_ray_commands"])
    assert "pip install" in commands and "kinfuse-ray" in commands
    assert "clusters/mlflow_supervised.sh sqlite:///" in commands  # its database on local disk
    assert "--dashboard-host=127.0.0.1" in commands


@pytest.mark.unit
def test_the_schema_check_rejects_a_misspelt_field():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["available_node_types"]["gpu_worker"]["max_wrokers"] = 2
    with pytest.raises(ValidationError):
        validate_config(prepare_config(config))


@pytest.mark.unit
def test_the_aws_gpu_workers_fit_the_gpu_ladders_trials():
    """One GPU node holds one trial of sweeps/gpu_ladder.yaml on the GPU `kinfuse plan` sized
    it for, and the sweep keeps as many trials in flight as the cluster can have nodes."""
    from kinfuse_ray.config import load_sweep

    sweep = load_sweep(REPO / "sweeps" / "gpu_ladder.yaml")
    node = yaml.safe_load((REPO / "cluster.yaml").read_text())["available_node_types"]["gpu_worker"]
    assert node["resources"]["GPU"] == sweep.train.workers
    assert node["resources"]["CPU"] >= sweep.train.workers * sweep.train.cpus_per_trial
    assert (node["node_config"]["InstanceType"], sweep.train.gpu) == ("p5.48xlarge", "H100-SXM")
    assert sweep.ray.concurrent_trials == node["max_workers"]


@pytest.mark.full
def test_every_shell_script_passes_shellcheck():
    """Scripts users run on their own machines (macOS's bash 3.2 among them) and on cluster
    nodes: shellcheck finds no issue in any of them (make test-all installs it)."""
    import subprocess

    scripts = subprocess.run(["git", "ls-files", "*.sh"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
    assert "sweeps/submit.sh" in scripts
    checked = subprocess.run(["shellcheck", *scripts], cwd=REPO, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-3000:]


# A stand-in for the `ray` CLI on PATH, to drive sweeps/submit.sh through its failure paths: the
# head's token is NEW; `ray exec` fails when EXEC_FAILS is set; the dashboard refuses any other
# token; `ray job submit` prints the token it was given.
FAKE_RAY = """#!/bin/bash
case "$1 $2" in
  "exec "*) [ -n "${EXEC_FAILS:-}" ] && { echo "Head node of cluster (kinfuse-local) not found!" >&2; exit 1; }
            echo "Ray runtime started."; printf 'N%.0s' {1..40}; echo ;;
  "job list") [ "$(cat "$RAY_AUTH_TOKEN_PATH")" = "$(printf 'N%.0s' {1..40})" ] && exit 0
              echo "RuntimeError: Authentication failed: Invalid authentication token" >&2; exit 1 ;;
  "job submit") echo "submitted with token $(cut -c1-3 "$RAY_AUTH_TOKEN_PATH")" ;;
esac
"""


@pytest.mark.unit
@pytest.mark.parametrize("case", ["stale token", "head unreachable"])
def test_submit_fetches_a_new_heads_token_and_every_failure_is_one_line(tmp_path, case):
    import os
    import subprocess

    fake = tmp_path / "bin" / "ray"
    fake.parent.mkdir()
    fake.write_text(FAKE_RAY)
    fake.chmod(0o755)
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "kinfuse-local.token").write_text("O" * 40 + "\n")  # an earlier head's
    env = {**os.environ, "HOME": str(home), "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    if case == "head unreachable":
        (home / ".ray" / "kinfuse-local.token").unlink()
        env["EXEC_FAILS"] = "1"
    proc = subprocess.run(
        ["bash", "sweeps/submit.sh", "clusters/local.yaml", "micro.yaml"], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if case == "stale token":
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "submitted with token NNN"
        assert "the head refuses the cached token" in proc.stderr
        assert (home / ".ray" / "kinfuse-local.token").stat().st_mode & 0o077 == 0
    else:
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
        assert proc.stderr.startswith("submit.sh: 'ray exec clusters/local.yaml' could not reach")
        assert "Head node of cluster (kinfuse-local) not found!" in proc.stderr
