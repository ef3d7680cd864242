"""The Ray cluster a sweep runs on: joining it (or starting a local instance) and how many trials
it fits at once."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Iterator

import ray

from kinfuse_ray.config import RayConfig, TrainConfig
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.provenance import kernel_env


def connect_ray(
    cluster: RayConfig, cpu_kernels: str | None = None, setting: str = "ray.address"
) -> bool:
    """Join the configured cluster (`cluster.address`) or start a local instance; True if we
    started it. `cpu_kernels`: the kernels every worker's torch is to use; `setting`: where the
    address came from, as errors name it."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines instead
    # Snapshots forced by CheckpointConfig(num_to_keep) are cheap here (a small experiment
    # state); Tune's warning about their frequency is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ctrl-C and SIGTERM reach the driver as KeyboardInterrupt (runs marked KILLED, the resume
    # command printed), not Tune's own graceful stop that returns unfinished results.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    if ray.is_initialized():
        return False
    if cluster.address:
        check_reachable(cluster.address, setting)
    else:  # our own instance: Ray's notice that it turned on token auth (a token exists) is noise
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
    try:
        ray.init(
            # "local": always a new instance of our own, never another cluster on this host.
            address=cluster.address or "local",
            num_cpus=None if cluster.address else cluster.num_cpus,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
            # A cluster's workers do not inherit this process's environment: pass the kernels.
            runtime_env={"env_vars": kernel_env(cpu_kernels)} if cpu_kernels else None,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"'{cluster.address}'" if cluster.address else "a local instance"
        raise KinfuseError(
            f"{setting}: cannot connect to {where} ({str(exc).splitlines()[0]})"
        ) from None
    return True


@contextlib.contextmanager
def ray_session(
    cluster: RayConfig, cpu_kernels: str | None = None, setting: str = "ray.address"
) -> Iterator[None]:
    """Ray connected (`connect_ray`) while open; an instance started here is shut down after."""
    started = connect_ray(cluster, cpu_kernels, setting)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def check_reachable(address: str, setting: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes of ray.init retries, when a cluster address does not answer."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except ValueError:
        raise KinfuseError(f"{setting}: '{address}' is not host:port") from None
    except OSError as exc:
        raise KinfuseError(
            f"{setting}: cannot connect to '{address}' ({exc.strerror or 'timed out'})"
        ) from None


class TrainerCapacity:
    """How many Ray Train trials may be in flight. Their Tune trials hold no CPU themselves, so
    Tune alone would start them all and their worker groups would queue; this counts what the
    cluster fits now (re-read at most every `refresh_s`, so nodes that join are used) or takes
    the sweep's `ray.concurrent_trials` (`fixed`)."""

    def __init__(self, train: TrainConfig, fixed: int | None = None, refresh_s: float = 5.0):
        self.fixed = fixed
        self.workers, self.cpus = train.workers, train.cpus_per_trial
        self.gpu, self.refresh_s = train.use_gpu, refresh_s
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


def trainer_capacity(train: TrainConfig, fixed: int | None = None) -> TrainerCapacity | None:
    """The bound on trials in flight, for Ray Train trials (`fixed`: `ray.concurrent_trials`);
    None: each trial's own CPUs bound how many Tune runs at once."""
    return TrainerCapacity(train, fixed) if train.uses_ray_train else None


def trial_slots(train: TrainConfig, fixed: int | None = None) -> int:
    """How many trials run at once (now: for the progress estimate)."""
    capacity = trainer_capacity(train, fixed)
    if capacity is not None:
        return capacity()
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // train.cpus_per_trial)


def trial_resources(train: TrainConfig) -> dict:
    """What a Tune trial's own process holds. A Ray Train trial's only waits on its workers."""
    if train.uses_ray_train:
        return {"cpu": 0, "memory": 1 << 20}
    return {"cpu": train.cpus_per_trial}
