"""The Ray cluster a sweep runs on: joining it (or starting a local instance) and how many trials
it fits at once."""

from __future__ import annotations

import logging
import math
import os
import socket
import time

import ray

from kinfuse_ray.config import SweepConfig
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.ray_trial import uses_ray_train


def connect_ray(sweep: SweepConfig) -> bool:
    """Join the configured cluster or start a local instance; True if we started it."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines instead
    # Snapshots forced by CheckpointConfig(num_to_keep) are cheap here (a small experiment
    # state); Tune's warning about their frequency is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ctrl-C and SIGTERM reach the driver as KeyboardInterrupt (runs marked KILLED, the resume
    # command printed), not Tune's own graceful stop that returns unfinished results.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    if ray.is_initialized():
        return False
    if sweep.ray.address:
        _check_reachable(sweep.ray.address)
    else:  # our own instance: Ray's notice that it turned on token auth (a token exists) is noise
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
    try:
        ray.init(
            # "local": always a new instance of our own, never another cluster on this host.
            address=sweep.ray.address or "local",
            num_cpus=None if sweep.ray.address else sweep.ray.num_cpus,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
            # A cluster's workers do not inherit this process's environment: pass the kernels.
            runtime_env=_pinned_kernels(sweep),
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"'{sweep.ray.address}'" if sweep.ray.address else "a local instance"
        raise KinfuseError(
            f"ray.address: cannot connect to {where} ({str(exc).splitlines()[0]})"
        ) from None
    return True


def _pinned_kernels(sweep: SweepConfig) -> dict | None:
    wanted = sweep.train.cpu_kernels
    return {"env_vars": {"ATEN_CPU_CAPABILITY": wanted}} if wanted else None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes of ray.init retries, when a cluster address does not answer."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except ValueError:
        raise KinfuseError(f"ray.address: '{address}' is not host:port") from None
    except OSError as exc:
        raise KinfuseError(
            f"ray.address: cannot connect to '{address}' ({exc.strerror or 'timed out'})"
        ) from None


class TrainerCapacity:
    """How many Ray Train trials may be in flight. Their Tune trials hold no CPU themselves, so
    Tune alone would start them all and their worker groups would queue; this counts what the
    cluster fits now (re-read at most every `refresh_s`, so nodes that join are used) or takes
    the sweep's `ray.concurrent_trials`."""

    def __init__(self, sweep: SweepConfig, refresh_s: float = 5.0):
        self.fixed = sweep.ray.concurrent_trials
        self.workers, self.cpus = sweep.train.workers, sweep.train.cpus_per_trial
        self.gpu, self.refresh_s = sweep.train.use_gpu, refresh_s
        self.value, self.read_at = 1, -math.inf

    def __call__(self) -> int:
        if self.fixed:
            return self.fixed
        if time.monotonic() - self.read_at >= self.refresh_s:
            cluster = ray.cluster_resources()
            fits = cluster.get("CPU", 0) // (self.workers * self.cpus)
            if self.gpu:
                fits = min(fits, cluster.get("GPU", 0) // self.workers)
            self.value, self.read_at = max(1, int(fits)), time.monotonic()
        return self.value

    def __getstate__(self) -> dict:  # saved with the searcher: re-read the cluster on resume
        return {**self.__dict__, "read_at": -math.inf}


def trainer_capacity(sweep: SweepConfig) -> TrainerCapacity | None:
    """The bound on trials in flight, for Ray Train trials; None: each trial's own CPUs bound
    how many Tune runs at once."""
    return TrainerCapacity(sweep) if uses_ray_train(sweep) else None


def trial_slots(sweep: SweepConfig) -> int:
    """How many trials run at once (now: for the progress estimate)."""
    capacity = trainer_capacity(sweep)
    if capacity is not None:
        return capacity()
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // sweep.train.cpus_per_trial)


def trial_resources(sweep: SweepConfig) -> dict:
    """What a Tune trial's own process holds. A Ray Train trial's only waits on its workers."""
    if uses_ray_train(sweep):
        return {"cpu": 0, "memory": 1 << 20}
    return {"cpu": sweep.train.cpus_per_trial}
