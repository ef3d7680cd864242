"""`clusters/local.yaml` brought up for real: an SSH server on 127.0.0.1 (started and stopped
by this test), `ray up`, a micro sweep sent with `sweeps/submit.sh` (the head's auth token and
all) and recorded by the head's supervised MLflow server, MLflow killed and back by itself,
the cluster down and up again with a new head token (submit.sh fetches it anew), then the
documented teardown, after which no Ray or MLflow process is left.

The paths of the file are moved into a temporary folder and the nodes' environment is this
test's own (installing one is what `make test` already did); everything else runs as written.
Both sides start from an empty HOME (the client's, and the head's over SSH), so a Ray token
an earlier `ray.init()` left in this machine's HOME cannot make token authentication pass."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from .helpers import REPO, micro_sweep_yaml

# Binds the cluster file's default ports and checks that no Ray or MLflow process is left on
# the host: `make test-all` runs it before the rest of the full tier, which runs two at a time.
pytestmark = [pytest.mark.full, pytest.mark.host]

SSHD = Path("/usr/sbin/sshd")
PORTS = (22, 6379, 8265, 5000)  # SSH, and what the cluster file's head listens on
LOCK = Path("/tmp/kinfuse-mlflow-supervisor.lock")  # clusters/mlflow_supervised.sh's default
MICRO = micro_sweep_yaml(
    name="onhead",
    ladder=[{"name": "a", "hidden_size": 16, "n_layers": 1, "n_heads": 2}],
    data={"vocab_size": 300, "seq_len": 32},
    train={"base_tokens": 8192, "tokens": 4096},
    eval={"every_tokens": 4096},
    ray={"address": "auto"},
    mlflow={"tracking_uri": "http://127.0.0.1:5000"},
)


def busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def ray_or_mlflow_processes() -> list[str]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if any(
            key in line for key in ("raylet", "gcs_server", "mlflow server", "mlflow_supervised")
        ):
            found.append(line[:120])
    return found


def healthy(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                return True
        except OSError:
            time.sleep(1)
    return False


@pytest.fixture
def ssh_server(tmp_path):
    """sshd on 127.0.0.1:22 accepting one fresh key for root, whose sessions get an empty HOME
    of their own (tmp_path/head-home); yields the private key's path."""
    if not SSHD.exists() or not shutil.which("rsync"):
        pytest.skip("openssh-server and rsync are not installed (make test installs them)")
    if os.geteuid() != 0:
        pytest.skip("the cluster file's SSH login is tested as root")
    deadline = time.monotonic() + 60  # an earlier test's Ray may still be shutting down
    while ray_or_mlflow_processes() and time.monotonic() < deadline:
        time.sleep(1)
    if any(busy(port) for port in PORTS) or ray_or_mlflow_processes():
        pytest.skip("another SSH server, Ray or MLflow instance runs on this host")
    keys = tmp_path / "ssh"
    keys.mkdir()
    for name in ("host_key", "id"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keys / name], check=True
        )
    shutil.copy(keys / "id.pub", keys / "authorized_keys")
    (tmp_path / "head-home").mkdir()
    (keys / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort 22\nHostKey {keys}/host_key\nPidFile {keys}/sshd.pid\n"
        f"AuthorizedKeysFile {keys}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n"
        f"SetEnv HOME={tmp_path / 'head-home'}\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    sshd = subprocess.Popen([SSHD, "-D", "-f", keys / "sshd_config", "-E", keys / "sshd.log"])
    try:
        deadline = time.monotonic() + 30
        while not busy(22):
            assert sshd.poll() is None and time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.2)
        yield keys / "id"
    finally:
        sshd.send_signal(signal.SIGTERM)  # by PID; its sessions end with it
        sshd.wait(timeout=30)


def cluster_file(tmp_path: Path, key: Path) -> Path:
    """clusters/local.yaml for one node, 127.0.0.1, with its paths under tmp_path."""
    nodes = tmp_path / "node"
    nodes.mkdir()
    (nodes / "kinfuse-env").symlink_to(sys.prefix)  # this test's environment, already set up
    text = (REPO / "clusters" / "local.yaml").read_text()
    for path in ("kinfuse-ray", "kinfuse-env", "kinfuse-mlflow"):
        text = text.replace(f"~/{path}", f"{nodes}/{path}").replace(
            f"$HOME/{path}", f"{nodes}/{path}"
        )
    text = text.replace("/mnt/shared", str(nodes / "shared"))
    config = yaml.safe_load(text)
    config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(key)}
    # The environment exists; installing the synced copy into it would repoint this test's own.
    config["setup_commands"] = [c for c in config["setup_commands"] if "pip install" not in c]
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_local_cluster_file_comes_up_runs_a_sweep_and_goes_down(tmp_path, ssh_server):
    config = cluster_file(tmp_path, ssh_server)
    nodes = tmp_path / "node"
    bin_dir = Path(sys.prefix) / "bin"
    home = tmp_path / "client-home"
    (home / ".ssh").mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")},
        "HOME": str(home),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KINFUSE_HEAD_ENV": str(nodes / "kinfuse-env"),
    }

    def run(*cmd: str, cwd: Path = REPO, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )

    def teardown() -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        """The documented teardown: stop the node's Ray and MLflow, then `ray down`."""
        stop = run(
            "ray", "exec", str(config),
            f"RAY={nodes}/kinfuse-env/bin/ray {nodes}/kinfuse-ray/clusters/stop_node.sh",
        )  # fmt: skip
        return stop, run("ray", "down", "-y", str(config))

    try:
        up = run("ray", "up", "-y", "--no-config-cache", str(config))
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        synced = nodes / "kinfuse-ray"
        assert (synced / "kinfuse_ray" / "sweep.py").exists()
        assert not (synced / ".venv").exists() and not (synced / ".git").exists()  # rsync filters
        assert healthy("http://127.0.0.1:5000", 120), "the head's MLflow server did not answer"
        head_token = tmp_path / "head-home" / ".ray" / "auth_token"
        assert head_token.stat().st_mode & 0o077 == 0  # made by the head, private
        # Token authentication is really on: without the token the head refuses a job.
        refused = run("ray", "job", "list", "--address", "http://127.0.0.1:8265")
        said = (refused.stdout + refused.stderr).lower()
        assert refused.returncode != 0 and "authentication" in said, said[-2000:]

        job = tmp_path / "job"
        job.mkdir()
        for part in ("kinfuse_ray", "sweeps", "pyproject.toml"):
            (job / part).symlink_to(REPO / part)
        (job / "micro.yaml").write_text(MICRO + f"output_dir: {nodes / 'shared' / 'runs'}\n")
        submit = run("bash", "sweeps/submit.sh", str(config), "micro.yaml", cwd=job)
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
        assert "succeeded" in submit.stdout + submit.stderr
        fetched = home / ".ray" / "kinfuse-local.token"  # where submit.sh keeps the head's
        assert fetched.read_text().strip() == head_token.read_text().strip()
        assert fetched.stat().st_mode & 0o077 == 0  # the token stays private

        client = MlflowClient("http://127.0.0.1:5000")
        experiment = client.get_experiment_by_name("onhead")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
        assert (nodes / "kinfuse-mlflow" / "mlflow.db").exists()  # the head's disk, not NFS

        # The tracking server dies; its supervisor brings it back with the same records.
        os.killpg(int(Path(f"{LOCK}.server").read_text()), signal.SIGKILL)
        time.sleep(1)
        assert healthy("http://127.0.0.1:5000", 120), "MLflow was not restarted"
        assert len(client.search_runs([experiment.experiment_id])) == 3

        # Down and up again, as the README's "ray down when done" leads to: a new head (here:
        # its token file gone, as on a fresh machine) with a new token; the client's cached
        # one is refused, so submit.sh fetches the new one and the sweep goes through.
        teardown()
        head_token.unlink()
        up = run("ray", "up", "-y", "--no-config-cache", str(config))
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert head_token.read_text().strip() != fetched.read_text().strip()
        assert healthy("http://127.0.0.1:5000", 120), "the new head's MLflow server did not answer"
        (job / "again.yaml").write_text(MICRO.replace("name: onhead", "name: again") +
                                        f"output_dir: {nodes / 'shared' / 'again'}\n")  # fmt: skip
        again = run("bash", "sweeps/submit.sh", str(config), "again.yaml", cwd=job)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "the head refuses the cached token" in again.stderr
        assert "succeeded" in again.stdout + again.stderr
        assert fetched.read_text().strip() == head_token.read_text().strip()
    finally:
        stop, down = teardown()
    assert stop.returncode == 0, stop.stdout[-2000:] + stop.stderr[-2000:]
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]
    deadline = time.monotonic() + 30
    while ray_or_mlflow_processes() and time.monotonic() < deadline:
        time.sleep(1)
    assert not ray_or_mlflow_processes(), "left running after the teardown"
