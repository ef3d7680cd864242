"""Faults, for real: the micro sweep's driver killed by PID and resumed, its trial workers killed
by PID mid-training. Each ends with the same results as the uninterrupted micro sweep and with
exactly one finished MLflow run per trial."""

import json
import os
import random
import signal
import time
from pathlib import Path

import psutil
import pytest

from .helpers import (
    MICRO,
    MICRO_RATIOS,
    held,
    micro_sweep_yaml,
    run_cli,
    runs_of,
    start_sweep,
    wait_for,
)

KEYS = {f"base-{s}-r0" for s in "abc"} | {f"infuse-{s}-r{r:g}" for s in "abc" for r in MICRO_RATIOS}


def finished_trials(log: Path) -> int:
    lines = log.read_text().splitlines()
    return sum(line.startswith(("  base ", "  infuse ")) for line in lines)


def trial_results(tmp_path: Path) -> dict:
    summary = json.loads((tmp_path / "runs" / "micro" / "summary.json").read_text())
    return {
        (t["size"], t["ratio"], metric): t[metric]
        for t in summary["trials"]
        for metric in ("retention", "acquisition", "val_loss")
    }


def assert_one_finished_run_per_trial(tmp_path: Path, keys: set[str] = KEYS) -> dict:
    _, runs = runs_of(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    found = [c.data.tags["kinfuse.trial"] for c in children]
    assert sorted(found) == sorted(keys), "one child run per trial, none twice"
    assert {c.info.status for c in children} == {"FINISHED"}
    return {c.data.tags["kinfuse.trial"]: c for c in children}


@pytest.mark.full
def test_driver_killed_at_a_random_point_then_resumed(tmp_path, micro_sweep):
    seed = int(os.environ.get("KINFUSE_KILL_SEED") or random.randrange(2**32))
    # pytest shows it when the test fails: KINFUSE_KILL_SEED=<seed> replays the same kill point
    print(f"kill point seed: {seed}")
    rng = random.Random(seed)
    kill_after = rng.randint(1, len(KEYS) - 3)  # finished trials; then a random delay
    proc, log = start_sweep(tmp_path, MICRO)
    wait_for(lambda: finished_trials(log) >= kill_after, proc)
    time.sleep(rng.uniform(0, 2))
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for child in family:  # the local Ray instance dies with its driver; make sure of it
        if child.is_running():
            child.kill()
    psutil.wait_procs(family, timeout=30)

    _, runs = runs_of(tmp_path)
    before = {
        r.data.tags["kinfuse.trial"]: r.info.end_time
        for r in runs
        if r.info.status == "FINISHED" and "kinfuse.trial" in r.data.tags
    }
    assert any(r.info.status == "RUNNING" for r in runs), "killed mid-sweep, runs still open"

    resumed = run_cli(tmp_path, MICRO, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    after = assert_one_finished_run_per_trial(tmp_path)
    # Trials finished before the kill were not rerun: their runs were not touched again.
    assert {key: after[key].info.end_time for key in before} == before
    # The resumed sweep found what the uninterrupted one found, trial by trial.
    baseline_dir, _ = micro_sweep
    assert trial_results(tmp_path) == pytest.approx(trial_results(baseline_dir), abs=1e-6)

    again = run_cli(tmp_path, MICRO, "--resume")
    assert again.returncode == 2 and "nothing to resume" in again.stderr


@pytest.mark.full
def test_killed_trial_workers_recover_from_their_last_checkpoint(tmp_path, micro_sweep):
    proc, log = start_sweep(tmp_path, MICRO)
    experiment = tmp_path / "runs" / "micro" / "ray" / "micro"

    # A base run checkpoints 7 times; once the second is on disk the driver has registered the
    # first, and most of the run is still to do: kill then.
    wait_for(lambda: list(experiment.glob("*phase=base*/checkpoint_000001")), proc)
    workers = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        if "ImplicitFunc" in " ".join(p.cmdline())  # Tune's trial actors
    ]
    assert workers
    for worker in workers:
        worker.kill()
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]

    runs = assert_one_finished_run_per_trial(tmp_path)
    restarted = [r for r in runs.values() if "kinfuse.restarts" in r.data.tags]
    assert restarted and any(
        float(r.data.tags.get("kinfuse.resumed_at_tokens", 0)) > 0 for r in restarted
    )
    assert "restarting from its last checkpoint" in log.read_text()
    baseline_dir, _ = micro_sweep
    assert trial_results(tmp_path) == pytest.approx(trial_results(baseline_dir), abs=1e-6)


# One rung, a base run and three infusion trials of seconds each: enough to interrupt midway.
SHORT = micro_sweep_yaml(ratios=[0.3, 0.6, 0.9])
SHORT_KEYS = {"base-a-r0"} | {f"infuse-a-r{r:g}" for r in (0.3, 0.6, 0.9)}


@pytest.mark.slow
def test_interrupted_sweeps_say_how_to_resume_and_hold_their_folder(tmp_path):
    """While a sweep runs, a second one of the same folder is refused, naming the first; Ctrl-C
    ends the first with its runs KILLED (none RUNNING) and the exact command that resumes it,
    and that command finishes with one run per trial. The sweep is held (its Ray processes
    stopped) from its first finished trial until the Ctrl-C, so it cannot end first."""
    proc, log = start_sweep(tmp_path, SHORT)
    wait_for(lambda: finished_trials(log) >= 1, proc)
    with held(proc):
        second = run_cli(tmp_path, SHORT)
        assert second.returncode == 2
        refusal = second.stderr.strip().splitlines()[-1]
        assert "is in use by a running sweep" in refusal and f"PID {proc.pid}," in refusal
        proc.send_signal(signal.SIGINT)
        time.sleep(1)  # the driver takes the interrupt before its trials can move on
    assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    last = log.read_text().strip().splitlines()[-1]
    assert last == "kinfuse: interrupted; carry on with: kinfuse sweep micro.yaml --resume"
    _, runs = runs_of(tmp_path)
    statuses = {r.info.status for r in runs}
    assert "RUNNING" not in statuses and "KILLED" in statuses

    resumed = run_cli(tmp_path, SHORT, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_one_finished_run_per_trial(tmp_path, SHORT_KEYS)
