"""The cluster-launcher files pass Ray's own schema check, offline."""

import copy

import pytest
import yaml
from jsonschema.exceptions import ValidationError
from ray.autoscaler._private.util import prepare_config, validate_config

from .conftest import REPO

CLUSTER_FILES = [REPO / "cluster.yaml", *sorted((REPO / "clusters").glob("*.yaml"))]


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_file_is_valid(path):
    config = yaml.safe_load(path.read_text())
    validate_config(prepare_config(copy.deepcopy(config)))
    commands = " ".join(config["setup_commands"] + config["head_start_ray_commands"])
    assert "pip install" in commands and "kinfuse-ray" in commands
    assert "mlflow server --host 127.0.0.1" in commands  # loopback only: reached by port-forward


def test_the_schema_check_rejects_a_misspelt_field():
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config["available_node_types"]["gpu_worker"]["max_wrokers"] = 2
    with pytest.raises(ValidationError):
        validate_config(prepare_config(config))
