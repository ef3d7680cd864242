"""Safe defaults, checked in the code itself: checkpoints load through PyTorch Distributed
Checkpoint only (tensors into the parameters' own devices, objects with weights_only=True), nothing
user-supplied is unpickled, and the servers the project starts listen on 127.0.0.1."""

import ast

import pytest
import yaml

from .helpers import REPO

pytestmark = pytest.mark.unit

SOURCES = sorted((REPO / "kinfuse_ray").glob("*.py"))


def calls(name: str):
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path.name, node


def test_checkpoints_load_only_through_dcp():
    # torch.load without map_location put every rank's copy on cuda:0; DCP loads in place.
    assert not list(calls("torch.load"))
    assert [where for where, _ in calls("dcp.load")] == ["checkpoint.py"]


def test_pickle_only_reads_the_searchers_own_state():
    # Tune checkpoints the searcher into the sweep's own output folder; nothing else unpickles.
    assert [where for where, _ in calls("pickle.load")] == ["search.py"]
    assert not list(calls("pickle.loads"))


def test_servers_listen_on_loopback():
    for name in ("cluster.yaml", "clusters/local.yaml"):
        config = yaml.safe_load((REPO / name).read_text())
        head = " ".join(config["head_start_ray_commands"])
        assert "--dashboard-host=127.0.0.1" in head and "clusters/mlflow_supervised.sh" in head
    supervisor = (REPO / "clusters" / "mlflow_supervised.sh").read_text()
    assert '"$mlflow" server --host 127.0.0.1' in supervisor
    import tempfile

    from kinfuse_ray.cli import _mlflow_ui_hint

    with tempfile.TemporaryDirectory() as tmp:
        assert "--host 127.0.0.1" in _mlflow_ui_hint(f"sqlite:///{tmp}/mlflow.db", "study")
