"""A disk too small for a sweep, or one that fills up while it runs (a real size-limited tmpfs):
one line naming the output folder, exit status 2, MLflow runs FAILED, and `--resume` finishes
the sweep, without retraining what had finished, once there is room again."""

import contextlib
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import held, kinfuse, micro_sweep_yaml, runs_of, start_sweep

pytestmark = pytest.mark.full

SWEEP = micro_sweep_yaml(name="full", output_dir="disk/runs")


@contextlib.contextmanager
def small_disk(where: Path, size: str):
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True)  # fmt: skip
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_disk_too_small_is_refused_before_anything_starts(tmp_path):
    with small_disk(tmp_path / "disk", "300k"):
        (tmp_path / "micro.yaml").write_text(SWEEP)
        proc = kinfuse(tmp_path, "sweep", "micro.yaml")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        line = proc.stderr.strip().splitlines()[-1]
        assert line.startswith(f"kinfuse: error: output_dir: {tmp_path / 'disk'} has 0.3 MiB free")
        assert "checkpoints and report need about" in line
        assert not list((tmp_path / "disk").iterdir()) and not (tmp_path / "mlflow.db").exists()


def test_a_disk_filling_up_midway_ends_in_one_line_and_resumes(tmp_path):
    with small_disk(tmp_path / "disk", "8m") as disk:
        proc, log = start_sweep(tmp_path, SWEEP)
        store = disk / ".kinfuse-base"
        deadline = time.monotonic() + 300
        while not any(store.glob("*/*")):  # the base run is saving its checkpoint
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        filler = disk / "filler"
        with held(proc):  # the disk fills while the sweep waits, however fast its trials
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        assert proc.wait(timeout=600) == 2
        last = log.read_text().strip().splitlines()[-1]
        assert last == (
            f"kinfuse: error: output_dir: no space left on the device of {disk / 'runs'}; "
            "free some, then carry on with --resume"
        )
        _, runs = runs_of(tmp_path, "full")
        assert "RUNNING" not in {r.info.status for r in runs}
        assert next(r for r in runs if r.info.run_name == "full").info.status == "FAILED"

        filler.unlink()
        resumed = kinfuse(tmp_path, "sweep", "micro.yaml", "--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        _, runs = runs_of(tmp_path, "full")
        assert sorted(r.info.run_name for r in runs) == ["base-a-r0", "full", "infuse-a-r0.5"]
        assert {r.info.status for r in runs} == {"FINISHED"}
