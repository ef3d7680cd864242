"""A sweep's output folder: checked before anything is written, held by one sweep at a time,
and cleared of an earlier run's leftovers on a fresh start."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path
from typing import TextIO

import yaml

from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.files import write_text_atomic

OUT_OF_SPACE = 1 << 20  # free bytes below which a failure is put down to a full disk
SWEEP_FILE = "sweep.yaml"  # the settings a sweep ran with, beside its results


def check_creatable(out: Path, need_bytes: float) -> None:
    """The output folder `out` exists or can be made, and its disk has room for the sweep's
    checkpoints and report (`need_bytes`; checked without making anything yet)."""
    existing = _existing(out)
    if not existing.is_dir():
        raise KinfuseError(f"output_dir: cannot create {out} ({existing} is not a directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise KinfuseError(f"output_dir: cannot write to {existing} (permission denied)")
    need, free = need_bytes, free_bytes(out)
    if free < need:
        raise KinfuseError(
            f"output_dir: {existing} has {free / 2**20:,.1f} MiB free, the sweep's checkpoints "
            f"and report need about {need / 2**20:,.1f} MiB"
        )


def check_resumable(out: Path, name: str, settings: dict) -> None:
    """Sweep `name` resumes only an interrupted run of itself in `out`, under the very
    `settings` it had (its sweep file's fields)."""
    saved = out / SWEEP_FILE
    if not saved.exists():
        raise KinfuseError(
            f"--resume: no interrupted sweep '{name}' in {out}; run without --resume to start it"
        )
    before, now = yaml.safe_load(saved.read_text()), settings
    changed = [k for k in now if before.get(k) != now[k]]
    if changed:
        raise KinfuseError(
            f"--resume: field '{changed[0]}' differs from the interrupted sweep's ({saved}); "
            "run without --resume to start over"
        )


def free_bytes(out: Path) -> int:
    return shutil.disk_usage(_existing(out)).free


def claim_output(out: Path) -> TextIO:
    """Hold `out` for this sweep: an exclusive lock on `out/.kinfuse.lock`, released by the
    kernel when this process ends however it ends (so a killed driver's claim never blocks a
    `--resume`). A second sweep of the same folder is refused with the holder's PID and start."""
    out.mkdir(parents=True, exist_ok=True)
    handle = (out / ".kinfuse.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise KinfuseError(
            f"output_dir {out} is in use by a running sweep ({holder}); wait for it to end, or "
            "give this one another name"
        ) from None
    handle.truncate(0)
    handle.write(f"PID {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
    handle.flush()
    return handle


def start_afresh(out: Path) -> None:
    """Remove what an earlier run of this sweep left (Tune state, Ray Train checkpoints, trial
    records): nothing of it may leak into a fresh start. Base runs live in the shared store,
    keyed by what determines them, and stay."""
    for stale in (out / "ray", out / "train", out / "trials"):
        shutil.rmtree(stale, ignore_errors=True)


def save_settings(out: Path, settings: dict) -> Path:
    """A sweep's settings beside its results (what `--resume` and `kinfuse fit` read)."""
    out.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(out / SWEEP_FILE, yaml.safe_dump(settings, sort_keys=False))


def _existing(out: Path) -> Path:
    return next(p for p in (out, *out.parents) if p.exists())
