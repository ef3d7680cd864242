"""A tracking server that goes away in the middle of a sweep (a real `mlflow server`, stopped by
PID): the sweep ends with one line naming the store, and once the server is back `--resume`
closes what was left open and finishes with one run per trial."""

import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
from mlflow.tracking import MlflowClient

from .helpers import mlflow_server

pytestmark = pytest.mark.slow

SWEEP = """
name: blip
seed: 1
ladder:
  - {{name: a, hidden_size: 24, n_layers: 1, n_heads: 2}}
ratios: [0.5]
data: {{n_general_facts: 20, n_domain_facts: 40, vocab_size: 512, seq_len: 64}}
train: {{base_tokens: 60000, tokens: 15000, batch_size: 8}}
eval: {{every_tokens: 15000, acquisition_probes: 20, val_sequences: 2}}
mlflow: {{tracking_uri: '{url}'}}
"""
# A store that stays away: give up after one quick retry (the user's settings win over the
# sweep's patient defaults).
QUICK = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
         "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}  # fmt: skip


def sweep(tmp_path, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "kinfuse_ray.cli", "sweep", "blip.yaml", *args], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **QUICK},
    )  # fmt: skip


def test_a_tracking_server_lost_midway_is_one_line_and_resume_finishes(tmp_path):
    store = f"sqlite:///{tmp_path / 'server.db'}"
    with mlflow_server(store, tmp_path) as url:
        (tmp_path / "blip.yaml").write_text(SWEEP.format(url=url))
        proc = sweep(tmp_path)
        deadline = time.monotonic() + 300
        while not any((tmp_path / "runs" / ".kinfuse-base").glob("*")):  # base run saving
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
    # The server is gone (stopped by its PID) while the base run trains.
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 2 and "Traceback" not in err, err[-3000:]
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
