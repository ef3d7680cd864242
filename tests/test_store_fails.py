"""A tracking server that goes away in the middle of a sweep (a real `mlflow server`, killed with
its workers): the sweep ends with one line naming the store, and once the server is back `--resume`
closes what was left open and finishes with one run per trial."""

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
from mlflow.tracking import MlflowClient

from kinfuse_ray.tracking import TRIAL_TAG

from .helpers import held, micro_sweep_yaml, mlflow_server


def sweep_yaml(url: str) -> str:
    return micro_sweep_yaml(name="blip", train={"base_tokens": 60000}, mlflow={"tracking_uri": url})


# A store that stays away: give up after one quick retry (the user's settings win over the
# sweep's patient defaults).
QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
         "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}  # fmt: skip


def sweep(tmp_path, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "kinfuse_ray.cli", "sweep", "blip.yaml", *args], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **QUICK},
    )  # fmt: skip


@pytest.mark.full
def test_a_tracking_server_lost_midway_is_one_line_and_resume_finishes(tmp_path):
    store = f"sqlite:///{tmp_path / 'server.db'}"
    # Killed, not stopped: a server draining gracefully answers for seconds, time enough for
    # this small sweep to finish (it did, once, in CI).
    with (
        contextlib.ExitStack() as release,
        mlflow_server(store, tmp_path, stop=signal.SIGKILL) as url,
    ):
        (tmp_path / "blip.yaml").write_text(sweep_yaml(url))
        proc = sweep(tmp_path)
        deadline = time.monotonic() + 300
        while not any((tmp_path / "runs" / ".kinfuse-base").glob("*")):  # base run saving
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        release.enter_context(held(proc))  # the sweep waits until the server is gone
    # The server is gone while the base run saves.
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 2 and "Traceback" not in err, out[-2000:] + err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"kinfuse: error: mlflow.tracking_uri '{url}': the tracking store ")
    assert "--resume" in last

    port = urlsplit(url).port
    with mlflow_server(store, tmp_path, port):
        resumed = sweep(tmp_path, "--resume")
        _, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err[-3000:]
    client = MlflowClient(tracking_uri=store)
    found = client.search_runs([client.get_experiment_by_name("blip").experiment_id])
    assert sorted(r.info.run_name for r in found) == ["base-a-r0", "blip", "infuse-a-r0.5"]
    statuses = {r.info.run_name: r.info.status for r in found}
    assert set(statuses.values()) == {"FINISHED"}, statuses
    assert not (tmp_path / "mlflow.db").exists()


class Mirror:
    """A sweep's MLflow mirror on a real sqlite store whose file can be taken away and put back
    (every write fails in the database layer while it is gone)."""

    def __init__(self, tmp_path):
        from kinfuse_ray.config import SweepConfig
        from kinfuse_ray.mlflow_mirror import MlflowTrials
        from kinfuse_ray.tracking import Tracker

        sweep = SweepConfig.model_validate(
            {"name": "race", "ladder": [{"name": "a", "hidden_size": 24, "n_layers": 1,
                                         "n_heads": 2}], "ratios": [0.5],
             "output_dir": str(tmp_path / "out")}
        )  # fmt: skip
        self.db, self.away = tmp_path / "store.db", tmp_path / "store.db.away"
        self.tracker = Tracker(f"sqlite:///{self.db}", "race")
        self.parent = self.tracker.start_run("race", {})
        self.rung = sweep.rungs["a"]
        self.mirror = MlflowTrials(self.tracker, self.parent, sweep.name, sweep.rungs)

    def fail(self):
        self.db.rename(self.away)
        self.db.mkdir()

    def come_back(self):
        self.db.rmdir()
        self.away.rename(self.db)

    def runs(self) -> dict:
        """Each child run's status and last retention, by name."""
        runs = self.tracker.child_runs(self.parent).values()
        return {r.info.run_name: (r.info.status, r.data.metrics.get("retention")) for r in runs}


def trial(phase, size: str, ratio: float, status: str = "RUNNING", **last_result):
    from types import SimpleNamespace

    from kinfuse_ray.spec import TrialSpec

    config = TrialSpec(phase, size, ratio).to_config()
    return SimpleNamespace(config=config, last_result=last_result, status=status)


@pytest.mark.unit
def test_a_store_failing_while_a_trial_run_closes_is_raised_at_the_next_step(tmp_path):
    """The race that once printed Tune's traceback: the store fails inside a trial's completion
    hook (which Tune wraps in a traceback-logging handler). The mirror keeps the failure and
    raises it at Tune's next step, where it reaches the sweep's one-line handler."""
    from kinfuse_ray.spec import Phase
    from kinfuse_ray.tracking import store_failure

    store = Mirror(tmp_path)
    infuse = trial(Phase.infuse, "a", 0.5)
    store.mirror.on_trial_start(0, [infuse], infuse)
    store.fail()
    store.mirror.on_trial_complete(1, [infuse], infuse)  # must not raise inside Tune's handler
    store.mirror.on_trial_result(1, [infuse], infuse, {"tokens": 1})  # nothing more is written
    with pytest.raises(Exception) as raised:
        store.mirror.on_step_begin(2, [infuse])
    assert store_failure(raised.value)
    with pytest.raises(Exception) as again:
        store.mirror.on_experiment_end([infuse])
    assert again.value is raised.value


@pytest.mark.unit
def test_a_trial_that_ended_while_the_store_was_down_is_finished_by_the_resumed_sweep(tmp_path):
    """Tune saves a trial as ended before the failing store stops the sweep (the failure is
    raised at its next step), so the resumed experiment never completes that trial again: the
    resumed mirror finishes its run from the trial's last result at the experiment's end (CI
    once found such a run left RUNNING)."""
    from kinfuse_ray.spec import Phase

    store = Mirror(tmp_path)
    base = trial(Phase.base, "a", 0.0, "TERMINATED", tokens=900, retention=0.75)
    store.mirror.on_trial_start(0, [base], base)
    store.fail()
    store.mirror.on_trial_result(1, [base], base, base.last_result)
    store.mirror.on_trial_complete(1, [base], base)
    store.come_back()
    assert store.runs() == {"base-a-r0": ("RUNNING", None)}

    resumed = pickle.loads(pickle.dumps(store.mirror))  # as Tune restores its callbacks
    infuse = trial(Phase.infuse, "a", 0.5, "TERMINATED", tokens=900, retention=0.5)
    for hook in (resumed.on_trial_start, resumed.on_trial_complete):
        hook(2, [base, infuse], infuse)  # the resumed experiment's own trial, mirrored as usual
    resumed.on_experiment_end([base, infuse])
    assert store.runs() == {"base-a-r0": ("FINISHED", 0.75), "infuse-a-r0.5": ("FINISHED", None)}


@pytest.mark.unit
def test_a_reused_base_run_an_interrupted_sweep_left_open_is_finished_once(tmp_path):
    """A base run from the shared store, recorded as the store failed: the resumed sweep finishes
    that run (with the base run's metrics) instead of passing over it or opening a second."""
    from kinfuse_ray.mlflow_mirror import record_reused_base
    from kinfuse_ray.spec import Phase, TrialResult

    store = Mirror(tmp_path)
    base = TrialResult(
        phase=Phase.base, size="a", n_params=store.rung.n_params, ratio=0.0, tokens=900,
        tokens_trained=900, retention=0.75, acquisition=0.1, val_loss=3.0,
        exposures_per_fact=0.0, tokens_per_s=100.0, stopped_early=False, seconds=5.0,
    )  # fmt: skip
    tracker = store.tracker
    open_run = tracker.start_run("base-a-r0", {}, {TRIAL_TAG: "base-a-r0"}, store.parent)
    assert store.runs() == {"base-a-r0": ("RUNNING", None)}
    assert record_reused_base(tracker, store.parent, store.rung, base, "key")
    assert store.runs() == {"base-a-r0": ("FINISHED", 0.75)}
    assert list(tracker.child_runs(store.parent).values())[0].info.run_id == open_run
    assert not record_reused_base(tracker, store.parent, store.rung, base, "key")
