"""PostgreSQL as the tracking store, for real: a server from Debian's `postgresql` package (which
`make test` installs) started by these tests on 127.0.0.1 and a free port, a sweep recorded in
it through the `postgres` extra's driver, and the ways a shared store goes wrong for a user:
wrong credentials, nobody listening, the driver not installed."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .helpers import kinfuse, micro_sweep_yaml

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
pytestmark = [
    pytest.mark.full,
    pytest.mark.skipif(
        not PG_BIN, reason="Debian's postgresql is not installed (make test-all does)"
    ),
]

PASSWORD = "kinfuse-test"
# One size at one ratio: the store is what is under test, not the science.


def sweep_yaml(tracking_uri: str) -> str:
    return micro_sweep_yaml(name="pg", mlflow={"tracking_uri": tracking_uri})


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres():
    """A fresh cluster on 127.0.0.1 with a `kinfuse` role (password) and database; stopped by
    its PID file's owner, `pg_ctl stop`, at the end."""
    bin_dir = PG_BIN[-1].parent
    data = Path(tempfile.mkdtemp(prefix="kinfuse-pg-"))  # outside pytest's root-only folder
    pwfile = data / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    cluster = data / "cluster"
    subprocess.run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(cluster), "-U", "kinfuse",
                      "--auth=scram-sha-256", f"--pwfile={pwfile}"]),
        check=True, capture_output=True,
    )  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run(
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(cluster), "-o", options,
                      "-l", str(data / "log"), "-w", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "kinfuse",
             "kinfuse"],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        yield port
    finally:
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


def uri(port: int, password: str = PASSWORD) -> str:
    return f"postgresql://kinfuse:{password}@127.0.0.1:{port}/kinfuse"


def test_a_sweep_records_every_run_in_postgres(tmp_path, postgres):
    (tmp_path / "pg.yaml").write_text(sweep_yaml(uri(postgres)))
    proc = kinfuse(tmp_path, "sweep", "pg.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri(postgres))
    experiment = client.get_experiment_by_name("pg")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3  # the sweep, the base run, the infusion trial
    assert {r.info.status for r in runs} == {"FINISHED"}
    trial = next(r for r in runs if r.data.params.get("phase") == "infuse")
    assert "retention" in trial.data.metrics
    assert len(client.get_metric_history(trial.info.run_id, "retention")) >= 1


def test_wrong_credentials_are_one_line(tmp_path, postgres):
    (tmp_path / "pg.yaml").write_text(sweep_yaml(uri(postgres, "wrong")))
    proc = kinfuse(tmp_path, "sweep", "pg.yaml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("kinfuse: error: mlflow.tracking_uri 'postgresql://kinfuse:***@")
    assert "password authentication failed" in line and "wrong" not in line
    assert not (tmp_path / "runs").exists()


def test_nobody_listening_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free: nothing listens there
    (tmp_path / "pg.yaml").write_text(sweep_yaml(uri(port)))
    proc = kinfuse(tmp_path, "sweep", "pg.yaml")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "cannot reach the tracking store (connection refused)" in line, line


def test_a_missing_driver_names_the_extra(tmp_path):
    """The driver hidden from this one process (it is installed here, for the tests above)."""
    (tmp_path / "pg.yaml").write_text(sweep_yaml(uri(9)))
    script = (
        "import sys; sys.modules['psycopg'] = sys.modules['psycopg2'] = None; "
        "from kinfuse_ray.cli import main; sys.exit(main())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "sweep", "pg.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "its client library 'psycopg' is not installed (pip install 'kinfuse-ray[postgres]')"
        )
    )
