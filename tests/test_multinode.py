"""Two Ray nodes on this machine (`ray.cluster_utils.Cluster`: a head and a worker node, one CPU
each, started and stopped by the test) and an `mlflow server` over HTTP: a two-worker DDP trial
must span both nodes, keep its replicas in sync, and reach MLflow through the server."""

import json

import pytest
from mlflow.tracking import MlflowClient

from .helpers import TWO_WORKERS_SETTINGS, kinfuse, micro_sweep_yaml, mlflow_server

pytestmark = pytest.mark.full


@pytest.fixture
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        cluster.shutdown()  # its own processes, by PID: never `ray stop`


def test_ddp_across_two_nodes_reports_through_an_mlflow_server(tmp_path, two_nodes):
    (tmp_path / "twonode.yaml").write_text(
        micro_sweep_yaml(**{**TWO_WORKERS_SETTINGS, "name": "twonode"})
    )
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path) as url:
        proc = kinfuse(
            tmp_path, "sweep", "twonode.yaml",
            "--set", f"ray.address={two_nodes.address}", "--set", f"mlflow.tracking_uri={url}",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        client = MlflowClient(tracking_uri=url)
        experiment = client.get_experiment_by_name("twonode")
        runs = client.search_runs([experiment.experiment_id])
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert len(children) == 2 and {r.info.status for r in runs} == {"FINISHED"}
        for child in children:
            # One CPU per node and per worker: the two workers cannot share a node.
            assert child.data.metrics["n_nodes"] == 2
            spread = client.get_metric_history(child.info.run_id, "replica_spread")
            assert len(spread) >= 2 and max(m.value for m in spread) < 1e-6
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store
    summary = json.loads((tmp_path / "runs" / "twonode" / "summary.json").read_text())
    assert summary["trials"][0]["tokens_trained"] >= 30_000 - 2 * 64
