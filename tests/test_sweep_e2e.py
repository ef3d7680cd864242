"""End to end: the real CLI runs a micro sweep on a real local Ray instance (started and stopped
by the sweep itself) with a real sqlite MLflow store."""

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

MICRO = """
name: micro
seed: 1
ladder:
  - {name: a, hidden_size: 16, n_layers: 1, n_heads: 2}
  - {name: b, hidden_size: 24, n_layers: 1, n_heads: 2}
  - {name: c, hidden_size: 32, n_layers: 1, n_heads: 2}
ratios: [0.3, 0.6, 0.9]
data: {n_general_facts: 40, n_domain_facts: 80, vocab_size: 512, seq_len: 64}
train: {base_tokens: 40000, tokens: 20000, batch_size: 16}
eval: {every_tokens: 10000, acquisition_probes: 40, val_sequences: 8}
predict:
  target: {size: {name: big, hidden_size: 64, n_layers: 2, n_heads: 2}}
  bootstrap: 50
"""


def run_cli(tmp_path, text):
    (tmp_path / "micro.yaml").write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "kinfuse_ray.cli", "sweep", "micro.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def runs_of(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("micro")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def test_micro_sweep_records_every_trial_and_writes_the_summary(tmp_path):
    proc = run_cli(tmp_path, MICRO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "collapse r*" in proc.stdout
        and "mlflow ui --backend-store-uri sqlite:///mlflow.db" in proc.stdout
    )

    out = tmp_path / "runs" / "micro"
    summary = json.loads((out / "summary.json").read_text())
    assert [s["size"] for s in summary["sizes"]] == ["a", "b", "c"]
    assert len(summary["trials"]) == 9
    for trial in summary["trials"]:
        assert -1 / 3 - 1e-9 <= trial["retention"] <= 1 and trial["tokens_per_s"] > 0
        assert trial["exposures_per_fact"] > 0
    assert (out / "retention_vs_ratio.png").stat().st_size > 10_000
    assert len(list((out / "base").glob("*.pt"))) == 3

    client, runs = runs_of(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3 + 9
    assert {r.info.status for r in runs} == {"FINISHED"}
    parent = parents[0]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    infused = [c for c in children if c.data.params["phase"] == "infuse"]
    assert {float(c.data.params["ratio"]) for c in infused} == {0.3, 0.6, 0.9}
    for child in infused:
        assert {"size", "n_params", "ratio", "tokens", "exposures_per_fact", "seed"} <= set(
            child.data.params
        )
        history = client.get_metric_history(child.info.run_id, "retention")
        assert [m.step for m in history] == [10240, 20480]  # every 10k tokens, in whole batches
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.json", "retention_vs_ratio.png", "sweep.yaml"} <= artifacts


def test_a_failing_sweep_leaves_no_run_open(tmp_path):
    """A corrupt base checkpoint makes every infusion trial of that size fail: the sweep exits
    non-zero with one line, and every MLflow run it opened ends FAILED or FINISHED."""
    base = tmp_path / "runs" / "micro" / "base"
    base.mkdir(parents=True)
    for size in "abc":
        (base / f"{size}.pt").write_bytes(b"not a checkpoint")
    proc = run_cli(tmp_path, MICRO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("kinfuse: error: ")
    _, runs = runs_of(tmp_path)
    assert runs and {r.info.status for r in runs} <= {"FAILED", "FINISHED"}
    assert any(r.info.status == "FAILED" for r in runs)
    assert not (tmp_path / "runs" / "micro" / "summary.json").exists()
