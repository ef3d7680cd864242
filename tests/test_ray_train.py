"""A trial with two workers runs as a Ray Train DDP run (gloo on CPU) inside its Tune trial."""

import json

import pytest
from mlflow.tracking import MlflowClient

from .helpers import base_runs

pytestmark = pytest.mark.full


def test_two_worker_trials_stay_in_sync_and_reach_mlflow(two_worker_sweep):
    tmp_path, proc = two_worker_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "ddp" / "summary.json").read_text())
    assert [t["ratio"] for t in summary["trials"]] == [0.5]
    assert summary["trials"][0]["tokens_trained"] >= 30_000 - 2 * 64  # whole sequences per rank
    assert len(base_runs(tmp_path / "runs")) == 1
    # Finished trials keep their metrics, not their Ray Train checkpoints.
    train_runs = list((tmp_path / "runs" / "ddp" / "train").iterdir())
    assert len(train_runs) == 2 and not list(
        (tmp_path / "runs" / "ddp" / "train").glob("*/checkpoint_*/")
    )

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ddp")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for child in children:
        spread = client.get_metric_history(child.info.run_id, "replica_spread")
        assert len(spread) >= 2 and max(m.value for m in spread) < 1e-6  # replicas never drifted
        assert client.get_metric_history(child.info.run_id, "retention")
