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
