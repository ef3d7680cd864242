"""A tracking server that goes away in the middle of a sweep (a real `mlflow server`, killed with
its workers): the sweep ends with one line naming the store, and once the server is back `--resume`
closes what was left open and finishes with one run per trial."""

import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
from mlflow.tracking import MlflowClient

from .helpers import micro_sweep_yaml, mlflow_server


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


@pytest.mark.slow
@pytest.mark.full
def test_a_tracking_server_lost_midway_is_one_line_and_resume_finishes(tmp_path):
    store = f"sqlite:///{tmp_path / 'server.db'}"
    # Killed, not stopped: a server draining gracefully answers for seconds, time enough for
    # this small sweep to finish (it did, once, in CI).
    with mlflow_server(store, tmp_path, stop=signal.SIGKILL) as url:
        (tmp_path / "blip.yaml").write_text(sweep_yaml(url))
        proc = sweep(tmp_path)
        deadline = time.monotonic() + 300
        while not any((tmp_path / "runs" / ".kinfuse-base").glob("*")):  # base run saving
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
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
    assert {r.info.status for r in found} == {"FINISHED"}
    assert not (tmp_path / "mlflow.db").exists()


def test_a_store_failing_while_a_trial_run_closes_is_raised_at_the_next_step(tmp_path):
    """The race that once printed Tune's traceback: the store fails inside a trial's completion
    hook (which Tune wraps in a traceback-logging handler). The mirror keeps the failure and
    raises it at Tune's next step, where it reaches the sweep's one-line handler."""
    from types import SimpleNamespace

    from kinfuse_ray.config import SweepConfig
    from kinfuse_ray.mlflow_mirror import MlflowTrials
    from kinfuse_ray.spec import Phase, TrialSpec
    from kinfuse_ray.tracking import Tracker, store_failure

    sweep = SweepConfig.model_validate(
        {"name": "race", "ladder": [{"name": "a", "hidden_size": 24, "n_layers": 1,
                                     "n_heads": 2}], "ratios": [0.5],
         "output_dir": str(tmp_path / "out")}
    )  # fmt: skip
    db = tmp_path / "store.db"
    tracker = Tracker(f"sqlite:///{db}", "race")
    parent = tracker.start_run("race", {})
    mirror = MlflowTrials(tracker, parent, sweep.name, sweep.rungs)
    trial = SimpleNamespace(config=TrialSpec(Phase.infuse, "a", 0.5).to_config(), last_result={})
    mirror.on_trial_start(0, [trial], trial)
    db.unlink()
    db.mkdir()  # the store's file is gone: every write now fails in the database layer
    mirror.on_trial_complete(1, [trial], trial)  # must not raise inside Tune's handler
    mirror.on_trial_result(1, [trial], trial, {"tokens": 1})  # nothing more is written
    with pytest.raises(Exception) as raised:
        mirror.on_step_begin(2, [trial])
    assert store_failure(raised.value)
    with pytest.raises(Exception) as again:
        mirror.on_experiment_end([trial])
    assert again.value is raised.value
