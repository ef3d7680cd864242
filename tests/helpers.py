"""What the tests share: the real command line, sweeps small enough for CI, an MLflow server,
and waiting on a sweep running in the background."""

import contextlib
import copy
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]

# A micro sweep: the three smallest rungs of sweeps/ladder_cpu.yaml at six of its ratios, about
# 1.5 minutes on 2 cores, with a visible collapse that moves with size (seed 1: r* 0.75, 0.91,
# 0.94, as in the ladder's own seed-1 run: trials are deterministic).
MICRO_RATIOS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
MICRO = f"""
name: micro
seed: 1
ladder:
  - {{name: a, hidden_size: 24, n_layers: 1, n_heads: 2}}
  - {{name: b, hidden_size: 32, n_layers: 1, n_heads: 2}}
  - {{name: c, hidden_size: 48, n_layers: 1, n_heads: 2}}
ratios: {list(MICRO_RATIOS)}
data: {{n_general_facts: 60, n_domain_facts: 240, domain_facts_exponent: 0.25, vocab_size: 512, seq_len: 64, general_fact_share: 0.9}}
train: {{base_tokens: 300000, tokens: 100000, batch_size: 8}}
eval: {{every_tokens: 25000, acquisition_probes: 100, val_sequences: 8}}
predict:
  target: {{size: {{name: big, hidden_size: 64, n_layers: 2, n_heads: 2}}}}
  bootstrap: 200
"""

# The smallest sweep that trains: one rung at one ratio, seconds a trial (`micro_sweep_yaml`).
ONE_TRIAL = {
    "name": "micro",
    "seed": 1,
    "ladder": [{"name": "a", "hidden_size": 24, "n_layers": 1, "n_heads": 2}],
    "ratios": [0.5],
    "data": {"n_general_facts": 20, "n_domain_facts": 40, "vocab_size": 512, "seq_len": 64},
    "train": {"base_tokens": 30000, "tokens": 15000, "batch_size": 8},
    "eval": {"every_tokens": 15000, "acquisition_probes": 20, "val_sequences": 2},
}


def micro_sweep(**overrides) -> dict:
    """`ONE_TRIAL` with `overrides` merged in section by section, e.g.
    `micro_sweep(name="pg", train={"workers": 2}, mlflow={"tracking_uri": uri})`."""
    raw = copy.deepcopy(ONE_TRIAL)
    for key, value in overrides.items():
        merge = isinstance(value, dict) and isinstance(raw.get(key), dict)
        raw[key] = {**raw[key], **value} if merge else value
    return raw


def micro_sweep_yaml(**overrides) -> str:
    """`micro_sweep(**overrides)` as a sweep file."""
    return yaml.safe_dump(micro_sweep(**overrides), sort_keys=False)


# A trial as a two-worker Ray Train DDP run (cpus_per_trial is per worker).
TWO_WORKERS_SETTINGS = dict(
    name="ddp",
    ladder=[{"name": "a", "hidden_size": 32, "n_layers": 1, "n_heads": 2}],
    data={"general_fact_share": 0.9},
    train={"base_tokens": 60000, "tokens": 30000, "workers": 2},
    eval={"acquisition_probes": 40, "val_sequences": 8},
)
TWO_WORKERS = micro_sweep_yaml(**TWO_WORKERS_SETTINGS)


def kinfuse(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The real `kinfuse` command line, run in `cwd` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "kinfuse_ray.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def run_cli(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "micro.yaml").write_text(text)
    return kinfuse(tmp_path, "sweep", "micro.yaml", *args)


def runs_of(tmp_path: Path, experiment: str = "micro"):
    """(client, every run of `experiment`) in the sqlite store of `tmp_path`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], max_results=1000)


def start_sweep(tmp_path: Path, text: str, *args: str) -> tuple[subprocess.Popen, Path]:
    """`kinfuse sweep` of `text` started in the background; (process, its log file)."""
    (tmp_path / "micro.yaml").write_text(text)  # the file `run_cli` resumes
    log = tmp_path / "first.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kinfuse_ray.cli", "sweep", "micro.yaml", *args],
        cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    return proc, log


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300, every: float = 0.2):
    """Poll `condition` every `every` seconds until it returns something truthy; fail if the
    sweep ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert proc.poll() is None, "the sweep ended before the fault could be injected"
        time.sleep(every)
    raise AssertionError("timed out waiting for the sweep")


@contextlib.contextmanager
def held(proc: subprocess.Popen, itself: bool = False):
    """Every process `proc` started (its local Ray instance: GCS, raylet, trial workers) stopped
    with SIGSTOP while open, and continued after: the sweep cannot move on, however fast the
    machine, so what the test does meanwhile never races its end. `proc` itself still runs
    and takes signals; with `itself`, only `proc` is stopped (a driver on a cluster of its own
    that starts no trial meanwhile)."""
    family = [psutil.Process(proc.pid)] if itself else psutil.Process(proc.pid).children(True)
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):  # ended since listed: nothing to hold
            child.suspend()
    try:
        yield
    finally:
        for child in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.resume()


# No job runner beside the tracking server (MLflow's GenAI jobs, which no test uses): with one,
# every server leaves a queue folder in /dev/shm that nothing removes.
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@contextlib.contextmanager
def mlflow_server(store_uri: str, cwd: Path, port: int | None = None, stop: int = signal.SIGTERM):
    """A real `mlflow server` on 127.0.0.1 and `port` (default: a free one); yields its URL,
    then sends `stop` to it and its workers. SIGTERM shuts it down gracefully: it goes on
    answering for seconds while it drains; SIGKILL takes it away at once, as a crash does."""
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    mlflow = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", store_uri, "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, **NO_JOB_RUNNER},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not answer in 300 s"
            time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, stop)  # the server and its workers, by process group
        server.wait(timeout=30)


def base_runs(root: Path) -> list[Path]:
    """The base runs in the shared store beside the sweeps' output folders under `root`."""
    return sorted(p.parent for p in (root / ".kinfuse-base").glob("*/progress.json"))


def finished_trials(log: Path) -> int:
    lines = log.read_text().splitlines()
    return sum(line.startswith(("  base ", "  infuse ")) for line in lines)


def kill_with_its_ray(proc) -> None:
    """SIGKILL the sweep's driver, held so that nothing it started moves meanwhile, and every
    process it started (its local Ray instance dies with it; make sure of it)."""
    driver = psutil.Process(proc.pid)
    driver.suspend()  # nothing it started may be reaped or end a run while it is being killed
    family = driver.children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the sweep ended before it could be killed"
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):  # one that ended since listed
            child.kill()
    psutil.wait_procs(family, timeout=30)
