"""Ray Train trials survive what GPU clusters do to them, for real on CPU (gloo): a worker killed
by PID mid-run (the worker group restarts from the trial's last checkpoint, sharded under FSDP2),
a driver killed mid-sweep and resumed (Train V2 finds each run's checkpoints by its stable name),
and nodes that join after the sweep started (more trials run side by side)."""

import contextlib
import json
import signal

import psutil
import pytest

from .helpers import (
    TWO_WORKERS,
    TWO_WORKERS_SETTINGS,
    base_runs,
    held,
    micro_sweep_yaml,
    run_cli,
    runs_of,
    start_sweep,
    wait_for,
)

pytestmark = pytest.mark.full

# Long enough a base run (about 8 evaluations, each a checkpoint) to be killed in the middle.
LONGER = micro_sweep_yaml(
    **{**TWO_WORKERS_SETTINGS, "train": {**TWO_WORKERS_SETTINGS["train"], "base_tokens": 120000}}
)


def registered_checkpoint(tmp_path, name: str, phase: str):
    """The first checkpoint folder Train has registered for the run (its manager's snapshot
    names it: only then does a restarted run find it), or None."""
    for snapshot in (tmp_path / "runs" / name / "train").glob(
        f"{name}-{phase}-*/checkpoint_manager_snapshot.json"
    ):
        try:
            results = json.loads(snapshot.read_text()).get("checkpoint_results")
        except json.JSONDecodeError:  # being written
            continue
        if results:
            return snapshot.parent / results[0]["checkpoint_dir_name"]
    return None


def train_workers(proc) -> list[psutil.Process]:
    workers = []
    for p in psutil.Process(proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):  # one that ended since listed
            if "RayTrainWorker" in " ".join(p.cmdline()):
                workers.append(p)
    return workers


def kill_family(proc) -> None:
    """SIGKILL the driver and every process it started (its local Ray instance included)."""
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):  # one that ended since listed
            child.kill()
    psutil.wait_procs(family, timeout=30)


def trial_metrics(tmp_path, name: str) -> dict:
    summary = json.loads((tmp_path / "runs" / name / "summary.json").read_text())
    return {
        (t["phase"], t["ratio"], key): t[key]
        for t in summary["trials"]
        for key in ("retention", "acquisition", "val_loss")
    }


def finished_children(tmp_path, name: str) -> dict:
    _, runs = runs_of(tmp_path, name)
    assert {r.info.status for r in runs} == {"FINISHED"}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    keys = [c.data.tags["kinfuse.trial"] for c in children]
    assert sorted(keys) == ["base-a-r0", "infuse-a-r0.5"], "one run per trial, none twice"
    return {c.data.tags["kinfuse.trial"]: c for c in children}


def test_a_killed_fsdp_worker_resumes_from_its_sharded_checkpoint(tmp_path):
    fsdp = LONGER.replace("name: ddp", "name: fsdp").replace(
        "n_layers: 1, n_heads: 2}", "n_layers: 2, n_heads: 2, parallelism: fsdp}"
    )
    proc, log = start_sweep(tmp_path, fsdp)
    # Train registers a checkpoint when it next polls its workers; kill once it has.
    registered = wait_for(lambda: registered_checkpoint(tmp_path, "fsdp", "base"), proc, 600)
    shards = sorted(p.name for p in registered.glob("*.distcp"))
    assert shards == ["__0_0.distcp", "__1_0.distcp"]  # each rank wrote its own shard
    workers = wait_for(lambda: train_workers(proc), proc)
    workers[-1].kill()
    assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    base = finished_children(tmp_path, "fsdp")["base-a-r0"]
    assert float(base.data.tags.get("kinfuse.resumed_at_tokens", 0)) > 0
    (base_run,) = base_runs(tmp_path / "runs")
    assert len(list(base_run.glob("*.distcp"))) == 2


def test_a_killed_driver_resumes_a_ray_train_sweep(tmp_path, two_worker_sweep):
    proc, _ = start_sweep(tmp_path, TWO_WORKERS)
    wait_for(lambda: registered_checkpoint(tmp_path, "ddp", "base"), proc, 600)
    kill_family(proc)
    _, runs = runs_of(tmp_path, "ddp")
    assert any(r.info.status == "RUNNING" for r in runs), "killed mid-sweep, runs still open"

    resumed = run_cli(tmp_path, TWO_WORKERS, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    base = finished_children(tmp_path, "ddp")["base-a-r0"]
    assert float(base.data.tags.get("kinfuse.resumed_at_tokens", 0)) > 0
    baseline, _ = two_worker_sweep
    assert trial_metrics(tmp_path, "ddp") == pytest.approx(trial_metrics(baseline, "ddp"), abs=1e-6)


def test_trials_run_side_by_side_once_a_node_joins(tmp_path):
    """The cluster fits one two-worker trial when the sweep starts; a node that joins later
    makes room for a second, and the sweep uses it without being restarted."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    try:
        text = micro_sweep_yaml(**{**TWO_WORKERS_SETTINGS, "name": "grow", "ratios": [0.3, 0.6]})
        proc, log = start_sweep(tmp_path, text, "--set", f"ray.address={cluster.address}")
        wait_for(lambda: "output in" in log.read_text(), proc)
        with held(proc, itself=True):  # joins while the sweep waits, however fast its trials
            cluster.add_node(num_cpus=2)
        assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    finally:
        cluster.shutdown()
    _, runs = runs_of(tmp_path, "grow")
    infused = [r for r in runs if r.data.params.get("phase") == "infuse"]
    assert len(infused) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    (a, b) = sorted((r.info.start_time, r.info.end_time) for r in infused)
    assert b[0] < a[1], "the two infusion trials did not overlap"
