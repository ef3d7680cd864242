"""Run a sweep: Ray Tune trials over ladder size x infusion ratio, recorded in MLflow.

The driver prepares the data once, starts (or joins) Ray, runs the base runs (continued
schedule) and the infusion trials as one Tune experiment (`search.LadderSearch` orders them), then
analyses the results, fits the law and records everything on the sweep's parent MLflow run.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import math
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import ray
import yaml
from ray import tune

from kinfuse_ray.analysis import Summary, TrialResult, confirmation_rows, summarise
from kinfuse_ray.checkpoint import write_json_atomic
from kinfuse_ray.config import Schedule, SweepConfig, parse_sweep
from kinfuse_ray.data import DataBundle, build_bundle
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.law import Prediction
from kinfuse_ray.live_metrics import EndedTrials, LiveMetrics
from kinfuse_ray.parallel import Dist
from kinfuse_ray.plan import check_trainable, plan_sweep
from kinfuse_ray.plots import plot_law, plot_retention
from kinfuse_ray.progress import Progress
from kinfuse_ray.search import BisectRatios, GridRatios, LadderSearch, OptunaRatios, RatioStrategy
from kinfuse_ray.tracking import FORECAST_TAG, OUTPUT_TAG, TRIAL_TAG, Tracker, store_failure
from kinfuse_ray.train import Report, Save
from kinfuse_ray.trial import BASE, INFUSE, base_done, phase_tokens, run_trial

STEP_METRICS = (
    "retention", "retention_acc", "acquisition", "acquisition_acc", "val_loss", "train_loss",
    "tokens_per_s", "lr", "stopped_early", "tokens", "replica_spread", "n_nodes", "mfu",
)  # fmt: skip


MAX_FAILURES = 3  # restarts of a trial (or of a Ray Train worker group) from its last checkpoint


def checkpointing(report: Callable[..., None]) -> Report:
    """`train`'s reporter for a Ray `report`: every training state goes out as a checkpoint
    (each rank writes its part into a folder of its own; Ray merges them in storage), so a
    trial restarted after a crash resumes from its last evaluation (`resume_folder`)."""

    def report_with_checkpoint(metrics: dict, save: Save | None) -> None:
        if save is None:
            report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            save(Path(tmp))
            report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    return report_with_checkpoint


@contextlib.contextmanager
def resume_folder(saved: tune.Checkpoint | None) -> Iterator[Path | None]:
    """The folder of a trial's last checkpoint (None: start from the beginning), while open."""
    if saved is None:
        yield None
        return
    with saved.as_directory() as path:
        yield Path(path)


def trial_key(trial: dict) -> str:
    """A trial's identity within a sweep: the searcher never proposes the same one twice."""
    return f"{trial['phase']}-{trial['size']}-r{trial['ratio']:g}"


def finished_file(sweep: SweepConfig, trial: dict) -> Path:
    """Where a trial leaves its final metrics: a resumed sweep replays them, never retrains."""
    return sweep.out / "trials" / f"{trial_key(trial)}.json"


def tune_trial(config: dict, sweep: SweepConfig, bundle: DataBundle) -> None:
    """Ray Tune function trainable for one trial (the searcher's description under "trial").
    One worker: the training loop runs right here, no start-up beyond the import. More workers
    or GPUs: a Ray Train TorchTrainer runs the same loop data-parallel and forwards its rank-0
    reports to Tune. Either way a restarted trial resumes from its last checkpoint, and one
    that had finished before its sweep was interrupted reports its final metrics again."""
    trial = config["trial"]
    done = finished_file(sweep, trial)
    if done.exists():
        tune.report(json.loads(done.read_text()))
        return
    if _uses_ray_train(sweep):
        final = _fit_with_ray_train(trial, sweep, bundle)
    else:
        with (
            resume_folder(tune.get_checkpoint()) as resume,
            LiveMetrics(sweep.name, trial["size"], trial["ratio"], trial["phase"]) as live,
        ):
            report = checkpointing(live.wrap(tune.report))
            final = run_trial(trial, sweep, bundle, report, resume=resume)
    done.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(done, {k: v for k, v in final.items() if isinstance(v, int | float)})
    # Its metrics are kept: the trial's checkpoints (GBs each for large rungs) are not needed.
    for folder in train_run_dir(sweep, trial).glob("checkpoint_*/"):
        shutil.rmtree(folder, ignore_errors=True)


def train_run_dir(sweep: SweepConfig, trial: dict) -> Path:
    """Where a trial's Ray Train run keeps its checkpoints, under a name that stays the same
    however often the trial restarts."""
    return sweep.out / "train" / f"{sweep.name}-{trial_key(trial)}"


def _fit_with_ray_train(trial: dict, sweep: SweepConfig, bundle: DataBundle) -> dict:
    from ray.train import CheckpointConfig as TrainCheckpointConfig
    from ray.train import FailureConfig, ScalingConfig
    from ray.train import RunConfig as TrainRunConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    gpu = {"GPU": 1} if sweep.train.use_gpu else {}
    # A stable run name in a stable place: a run restarted by Tune or by a resumed sweep finds
    # its own last checkpoint there (Train V2 restores it by itself; passing one is refused).
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"trial": trial, "sweep": sweep, "bundle": bundle},
        scaling_config=ScalingConfig(
            num_workers=sweep.train.workers,
            use_gpu=sweep.train.use_gpu,
            resources_per_worker={"CPU": sweep.train.cpus_per_trial, **gpu},
        ),
        run_config=TrainRunConfig(
            name=train_run_dir(sweep, trial).name,
            storage_path=str(train_run_dir(sweep, trial).parent),
            callbacks=[TuneReportCallback()],
            failure_config=FailureConfig(max_failures=MAX_FAILURES),
            checkpoint_config=TrainCheckpointConfig(num_to_keep=2),
        ),
    )
    return trainer.fit().metrics


def train_worker(config: dict) -> None:
    """One Ray Train worker: the same trial code as a single process, on its data-parallel
    share of the trial (DDP or FSDP2 over the process group Ray Train set up: gloo on CPUs,
    NCCL on GPUs)."""
    import ray.train
    import torch
    from ray.train.torch import get_device

    context = ray.train.get_context()
    dist = Dist(context.get_world_rank(), context.get_world_size(), get_device())
    trial, sweep, bundle = config["trial"], config["sweep"], config["bundle"]
    # Distinct Ray nodes among the workers (by node ID: nodes on one host share an IP).
    nodes = [None] * dist.world
    torch.distributed.all_gather_object(nodes, ray.get_runtime_context().get_node_id())
    placement = {"n_nodes": len(set(nodes))}

    def with_placement(report: Report) -> Report:
        return lambda metrics, save: report({**metrics, **placement}, save)

    with contextlib.ExitStack() as stack:
        resume = stack.enter_context(resume_folder(ray.train.get_checkpoint()))
        reporter = ray.train.report
        if dist.rank == 0:  # one worker publishes the trial's live metrics
            live = stack.enter_context(
                LiveMetrics(sweep.name, trial["size"], trial["ratio"], trial["phase"])
            )
            reporter = live.wrap(reporter)
        report = with_placement(checkpointing(reporter))
        run_trial(trial, sweep, bundle, report, dist=dist, resume=resume)


def _uses_ray_train(sweep: SweepConfig) -> bool:
    return sweep.train.workers > 1 or sweep.train.use_gpu


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


class MlflowTrials(tune.Callback):
    """Mirrors every Tune trial as a child MLflow run of the sweep (driver-side, one writer) and
    prints progress. Child runs are keyed by the trial's identity (`trial_key`), so a resumed
    sweep carries on the run of a trial it restarts instead of opening a second one."""

    def __init__(
        self,
        tracker: Tracker,
        parent: str,
        sweep: SweepConfig,
        progress: Progress,
        progress_every: float = 30.0,
    ):
        self.tracker, self.parent, self.sweep, self.progress = tracker, parent, sweep, progress
        self.progress_every = progress_every
        # trial key -> run id, a resumed sweep's earlier runs included; a finished one is left
        # as it is when its trial replays its result (see `tune_trial`)
        earlier = tracker.child_runs(parent)
        self.runs = {key: run.info.run_id for key, run in earlier.items()}
        self.finished = {key for key, run in earlier.items() if run.info.status == "FINISHED"}
        self.started: dict[str, float] = {}
        self.printed_at = time.monotonic()
        self.ended = EndedTrials(sweep.name)

    def _params(self, config: dict) -> dict:
        train, n_params = self.sweep.train, self.sweep.n_params[config["size"]]
        n_general, n_domain = self.sweep.knowledge_load(n_params)
        return {
            "phase": config["phase"],
            "size": config["size"],
            "n_params": n_params,
            "n_general_facts": n_general or "all",
            "n_domain_facts": n_domain or "all",
            "ratio": config["ratio"],
            "tokens": phase_tokens(self.sweep, config["phase"]),
            "schedule": train.schedule.value,
            "seed": self.sweep.seed,
            "lr": self.sweep.train_for(config["size"]).lr,
            "batch_size": train.batch_size,
        }

    def on_trial_start(self, iteration, trials, trial, **info):
        c = trial.config["trial"]
        key = trial_key(c)
        if key in self.finished:
            return
        if key in self.runs:  # restarted by a resumed sweep: the same run goes on
            self.tracker.reopen(self.runs[key])
        else:
            self.runs[key] = self.tracker.start_run(
                key, self._params(c), {"kinfuse.phase": c["phase"], TRIAL_TAG: key}, self.parent
            )
        self.started[key] = time.time()
        self.progress.start(c["phase"], c["size"], c["ratio"])

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = trial_key(trial.config["trial"])
        if key in self.finished:
            return
        run = self.runs[key]
        metrics = {k: result[k] for k in STEP_METRICS if k in result}
        if result.get("training_iteration") == 1:
            self.tracker.log_params(
                run, {"exposures_per_fact": f"{result['exposures_per_fact']:.2f}"}
            )
            # From Tune scheduling the trial to its first training step: process, Ray Train
            # worker group and data set-up.
            metrics["startup_s"] = result["first_step_at"] - self.started[key]
        if "resumed_at_tokens" in result:
            self.tracker.set_tags(run, {"kinfuse.resumed_at_tokens": result["resumed_at_tokens"]})
        self.tracker.log_metrics(run, metrics, step=int(result["tokens"]))

    def on_trial_recover(self, iteration, trials, trial, **info):
        run = self.runs.get(trial_key(trial.config["trial"]))
        if run is not None:  # None: its process died before the trial started
            self.tracker.set_tags(run, {"kinfuse.restarts": trial.num_failures})
        print(
            f"  trial {trial_key(trial.config['trial'])} failed; restarting from its last checkpoint",
            flush=True,
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        result, c = trial.last_result or {}, trial.config["trial"]
        key = trial_key(c)
        if key in self.finished:
            return
        self.finished.add(key)
        run = self.runs[key]
        stopped = bool(result.get("stopped_early"))
        if stopped:
            self.tracker.set_tags(run, {"kinfuse.stopped": "retention collapsed (early stop)"})
        self.tracker.end_run(run, "FINISHED")
        outcome = "stopped_early" if stopped else "completed"
        self.ended.ended(c["size"], c["ratio"], c["phase"], outcome)
        seconds = time.time() - self.started[key]
        self.progress.finish(c["phase"], c["size"], c["ratio"], result["retention"], seconds)
        print(
            f"  {c['phase']:<6} {c['size']:<10} r={c['ratio']:<5g} "
            f"retention {result.get('retention', float('nan')):.2f}  "
            f"acquisition {result.get('acquisition', float('nan')):.2f}  "
            f"{'stopped early  ' if result.get('stopped_early') else ''}({seconds:.0f} s)",
            flush=True,
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        c = trial.config["trial"]
        run = self.runs[trial_key(c)]
        self.tracker.set_tags(run, {"kinfuse.error": "trial raised; see Ray logs"})
        self.tracker.end_run(run, "FAILED")
        self.ended.ended(c["size"], c["ratio"], c["phase"], "failed")

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self.printed_at >= self.progress_every:
            self.printed_at = time.monotonic()
            print(self.progress.render(), flush=True)


def _strategies(sweep: SweepConfig, sizes: list[str]) -> dict[str, RatioStrategy]:
    """A fresh ratio strategy for each of `sizes`, in ladder order."""
    ev = sweep.eval
    rule = (ev.collapse_threshold, ev.plateau_points)

    def strategy() -> RatioStrategy:
        if sweep.search.strategy == "bisect":
            return BisectRatios(sweep.ratios, sweep.search.precision, *rule)
        if sweep.search.strategy == "optuna":
            return OptunaRatios(sweep.ratios, sweep.search.trials_per_size, *rule, sweep.seed)
        return GridRatios(sweep.ratios, *rule)

    return {s.name: strategy() for s in sweep.ladder if s.name in sizes}


def _run_trials(
    sweep: SweepConfig,
    bundle_ref,
    sizes: list[str],
    base: list[str],
    callback: MlflowTrials,
    resume: bool,
) -> list[tuple[dict, dict]]:
    """Run base and infusion trials as one Tune experiment (or carry on the one an interrupted
    sweep left); return (trial, final metrics) pairs."""
    # A Ray Train trial's own process only waits on its workers: it holds no CPU.
    driver = (
        {"cpu": 0, "memory": 1 << 20}
        if _uses_ray_train(sweep)
        else {"cpu": sweep.train.cpus_per_trial}
    )
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, sweep=sweep, bundle=bundle_ref), driver
    )
    experiment = sweep.out / "ray" / sweep.name
    if resume and _restorable(experiment):
        # Finished trials stay finished, the rest restart from their last checkpoints, and the
        # searcher comes back from its saved state. The callback holds this process's MLflow
        # client and progress, so it replaces the one pickled with the experiment.
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
        tuner._local_tuner.get_run_config().callbacks = [callback]
    else:
        search = LadderSearch(
            _strategies(sweep, sizes), sweep.n_params, sweep.train.tokens, base, _capacity(sweep)
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=search,
                num_samples=-1,  # the searcher says when the sweep is complete
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=sweep.name,
                storage_path=str(sweep.out / "ray"),
                callbacks=[callback],
                failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
                # Keeping two checkpoints per trial makes Tune snapshot the experiment before
                # it deletes one a snapshot may name: a resumed sweep always finds its own.
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=0,
            ),
        )
    results = tuner.fit()
    if results.errors:
        cause = str(results.errors[0]).strip().splitlines()[-1]
        raise KinfuseError(f"{len(results.errors)} trial(s) failed, first: {cause}")
    for checkpoint in experiment.glob("*/checkpoint_*"):  # all trials done: nothing to resume
        shutil.rmtree(checkpoint, ignore_errors=True)
    return [(r.config["trial"], r.metrics) for r in results]


def _restorable(experiment: Path) -> bool:
    """Whether Tune can carry on `experiment`. A state file cut short (a full disk, a crash
    mid-write) makes Tune restore nothing and report the sweep done: such an experiment is set
    aside and a fresh one replays the finished trials from their records instead."""
    if not tune.Tuner.can_restore(experiment):
        return False
    try:
        for state in experiment.glob("*.json"):
            json.loads(state.read_text())
    except (OSError, ValueError):
        aside = experiment.with_name(f"{experiment.name}.unreadable-{int(time.time())}")
        experiment.rename(aside)
        print(f"kinfuse: Tune's state in {experiment} is unreadable (kept as {aside.name}); "
              "replaying the finished trials from their records", flush=True)  # fmt: skip
        return False
    return True


def _trial_result(config: dict, metrics: dict, sweep: SweepConfig) -> TrialResult:
    return TrialResult(
        phase=config["phase"],
        size=config["size"],
        n_params=sweep.n_params[config["size"]],
        ratio=config["ratio"],
        tokens=phase_tokens(sweep, config["phase"]),
        tokens_trained=int(metrics["tokens"]),
        retention=metrics["retention"],
        acquisition=metrics["acquisition"],
        val_loss=metrics["val_loss"],
        exposures_per_fact=metrics["exposures_per_fact"],
        tokens_per_s=metrics["tokens_per_s"],
        stopped_early=bool(metrics["stopped_early"]),
        seconds=metrics["time_total_s"],
    )


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
    try:
        ray.init(
            # "local": always a new instance of our own, never another cluster on this host.
            address=sweep.ray.address or "local",
            num_cpus=None if sweep.ray.address else sweep.ray.num_cpus,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"'{sweep.ray.address}'" if sweep.ray.address else "a local instance"
        raise KinfuseError(
            f"ray.address: cannot connect to {where} ({str(exc).splitlines()[0]})"
        ) from None
    return True


def _capacity(sweep: SweepConfig) -> TrainerCapacity | None:
    """The bound on trials in flight, for Ray Train trials; None: each trial's own CPUs bound
    how many Tune runs at once."""
    return TrainerCapacity(sweep) if _uses_ray_train(sweep) else None


def _slots(sweep: SweepConfig) -> int:
    """How many trials run at once (now: for the progress estimate)."""
    capacity = _capacity(sweep)
    if capacity is not None:
        return capacity()
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // sweep.train.cpus_per_trial)


def _existing(out: Path) -> Path:
    return next(p for p in (out, *out.parents) if p.exists())


def _check_creatable(sweep: SweepConfig) -> None:
    """The output folder exists or can be made, and its disk has room for the sweep's
    checkpoints (checked without making anything yet)."""
    out = sweep.out
    existing = _existing(out)
    if not existing.is_dir():
        raise KinfuseError(f"output_dir: cannot create {out} ({existing} is not a directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise KinfuseError(f"output_dir: cannot write to {existing} (permission denied)")
    need, free = plan_sweep(sweep, sweep.data.vocab_size).storage_bytes, _free_bytes(out)
    if free < need:
        raise KinfuseError(
            f"output_dir: {existing} has {free / 2**20:,.1f} MiB free, the sweep's checkpoints "
            f"need about {need / 2**20:,.1f} MiB"
        )


def _free_bytes(out: Path) -> int:
    return shutil.disk_usage(_existing(out)).free


OUT_OF_SPACE = 1 << 20  # free bytes below which a failure is put down to a full disk


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


def _check_resumable(sweep: SweepConfig) -> None:
    """A sweep resumes only an interrupted run of itself, under the very settings it had."""
    saved = sweep.out / "sweep.yaml"
    if not saved.exists():
        raise KinfuseError(
            f"--resume: no interrupted sweep '{sweep.name}' in {sweep.out}; "
            "run without --resume to start it"
        )
    before, now = yaml.safe_load(saved.read_text()), sweep.model_dump(mode="json")
    changed = [k for k in now if before.get(k) != now[k]]
    if changed:
        raise KinfuseError(
            f"--resume: field '{changed[0]}' differs from the interrupted sweep's ({saved}); "
            "run without --resume to start over"
        )


def _sweep_run(sweep: SweepConfig, tracker: Tracker, resume: bool, sweep_file: Path | None) -> str:
    """The sweep's parent MLflow run: the interrupted one when resuming, else a new one (runs an
    earlier, killed driver left RUNNING are closed as FAILED first)."""
    earlier = tracker.sweep_runs(sweep.out)
    if resume and earlier:
        if earlier[0].info.status == "FINISHED":
            raise KinfuseError(
                f"--resume: sweep '{sweep.name}' in {sweep.out} has finished; nothing to resume"
            )
        parent = earlier[0].info.run_id
        tracker.reopen(parent)
        return parent
    for run in earlier:
        if run.info.status == "RUNNING":
            tracker.end_open_children(run.info.run_id, "FAILED")
            tracker.end_run(run.info.run_id, "FAILED")
    return tracker.start_run(
        sweep.name,
        {"seed": sweep.seed, "schedule": sweep.train.schedule.value, "sizes": len(sweep.ladder),
         "ratios": ",".join(f"{r:g}" for r in sweep.ratios), "tokens": sweep.train.tokens},
        {"kinfuse.sweep_file": str(sweep_file or ""), OUTPUT_TAG: str(sweep.out)},
    )  # fmt: skip


def _progress(sweep: SweepConfig, sizes: list[str], base: list[str], finished: list) -> Progress:
    """Live progress, knowing the trials a resumed sweep had finished (their MLflow runs)."""
    progress = Progress(_strategies(sweep, sizes), base, _slots(sweep))
    for run in finished:
        p, retention = run.data.params, run.data.metrics.get("retention", float("nan"))
        if p["size"] not in sizes:
            continue
        seconds = (run.info.end_time - run.info.start_time) / 1000
        progress.finish(p["phase"], p["size"], float(p["ratio"]), retention, seconds)
    return progress


def _run_phase(
    sweep: SweepConfig,
    sizes: list[str],
    *,
    bundle_ref,
    tracker: Tracker,
    parent: str,
    resume: bool,
    progress_every: float,
) -> list[TrialResult]:
    """Base runs and infusion trials of `sizes` as one Tune experiment, mirrored to MLflow."""
    base = [
        s for s in sizes if sweep.train.schedule is Schedule.continued and not base_done(sweep, s)
    ]
    finished = [r for r in tracker.child_runs(parent).values() if r.info.status == "FINISHED"]
    progress = _progress(sweep, sizes, base, finished)
    callback = MlflowTrials(tracker, parent, sweep, progress, progress_every)
    print(
        f"kinfuse: {'resuming, ' if resume else ''}{len(sizes)} sizes, "
        f"{sweep.search.strategy} search over {len(sweep.ratios)} ratios; output in {sweep.out}",
        flush=True,
    )
    return [
        _trial_result(c, m, sweep)
        for c, m in _run_trials(sweep, bundle_ref, sizes, base, callback, resume)
    ]


def confirmation_sweep(sweep: SweepConfig, prediction: Prediction) -> SweepConfig:
    """The target size as one more rung (its knowledge load scaled from the ladder's smallest
    rung like every other), trained at the recommended ratio and at the predicted collapse
    point, in its own Tune experiment but the same study and output folder."""
    target = sweep.predict.target
    raw = sweep.model_dump(mode="json")
    raw.update(
        name=f"{sweep.name}-confirm",
        ladder=[*raw["ladder"], target.size.model_dump(mode="json")],
        ratios=sorted({round(prediction.recommended_ratio, 4), round(prediction.ratio, 4)}),
        search={"strategy": "grid"},
    )
    raw["mlflow"]["experiment"] = sweep.experiment
    raw["train"]["tokens"] = target.tokens or sweep.train.tokens
    return parse_sweep(raw, "the confirmation run")


def run_sweep(
    sweep: SweepConfig,
    sweep_file: Path | None = None,
    resume: bool = False,
    progress_every: float = 30.0,
) -> Summary:
    """Run every trial of `sweep`, analyse, record, and return the summary. `resume` carries on
    an interrupted run of the same sweep: finished trials are kept, the others restart from
    their last checkpoints, and their MLflow runs go on. Progress is printed every
    `progress_every` seconds."""
    started = time.monotonic()
    # Trials run in their own working directories: pin the output folder to an absolute path.
    sweep = sweep.model_copy(update={"output_dir": sweep.out})
    out = sweep.out
    if resume:
        _check_resumable(sweep)
    # Bad data, an unreachable cluster or tracking store: fail before anything is written.
    check_trainable(sweep)
    _check_creatable(sweep)
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed, sweep.largest_knowledge_load)
    started_ray = connect_ray(sweep)
    # SIGTERM (a scheduler, `kill`) ends the sweep as Ctrl-C does. Set after ray.init, which
    # installs a handler of its own; only the main thread may.
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    parent = claim = None
    try:
        tracker = Tracker(sweep.mlflow.tracking_uri, sweep.experiment)
        claim = claim_output(out)  # held while this sweep runs: one sweep per folder
        parent = _sweep_run(sweep, tracker, resume, sweep_file)
        if not resume:  # a fresh start: nothing an earlier run left may leak in
            stale_runs = (out / "ray" / sweep.name, out / "ray" / f"{sweep.name}-confirm")
            for stale in (*stale_runs, out / "base", out / "train", out / "trials"):
                shutil.rmtree(stale, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        config_dump = out / "sweep.yaml"
        config_dump.write_text(yaml.safe_dump(sweep.model_dump(mode="json"), sort_keys=False))
        tracker.log_artifact(parent, config_dump)
        ladder = [s.name for s in sweep.ladder]
        phase = functools.partial(
            _run_phase, bundle_ref=ray.put(bundle), tracker=tracker, parent=parent,
            resume=resume, progress_every=progress_every,
        )  # fmt: skip
        results = phase(sweep, ladder)
        trials = [t for t in results if t.phase == INFUSE]
        base_runs = [t for t in results if t.phase == BASE]
        if not trials:
            raise KinfuseError(f"no infusion trial finished; the sweep's records are in {out}")
        summary = summarise(trials, sweep, time.monotonic() - started, base_runs)
        if sweep.predict.confirm and summary.recommendation:
            confirm = confirmation_sweep(sweep, summary.recommendation)
            target = sweep.predict.target.size.name
            summary.confirmation = confirmation_rows(
                summary.law, summary.recommendation, phase(confirm, [target])
            )
        _record(summary, sweep, tracker, parent)
        tracker.end_run(parent, "FINISHED")
        return summary
    except BaseException as exc:
        unclosed = None
        if parent is not None:  # interrupted (Ctrl-C, SIGTERM): KILLED; anything else: FAILED
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            try:
                tracker.end_open_children(parent, status)
                tracker.end_run(parent, status)
            except Exception as closing:  # noqa: BLE001 - the store itself is failing
                unclosed = closing
        if unclosed is not None or store_failure(exc):
            raise tracker.failed_midway(unclosed or exc) from None
        if not isinstance(exc, KeyboardInterrupt) and _free_bytes(out) < OUT_OF_SPACE:
            # However it surfaced (a trial's write, Tune's own state): the disk is full.
            raise KinfuseError(
                f"output_dir: no space left on the device of {out}; free some, then carry on "
                "with --resume"
            ) from None
        raise
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)
        if claim is not None:
            claim.close()  # releases the lock
        if started_ray:
            ray.shutdown()


def _record(summary: Summary, sweep: SweepConfig, tracker: Tracker, parent: str) -> None:
    out = sweep.out
    files = [
        summary.save(out / "summary.json"),
        plot_retention(summary, out / "retention_vs_ratio.png"),
    ]
    if summary.law is not None:
        summary.law.save(out / "law.json")
        files += [
            out / "law.json",
            plot_law(
                summary.law,
                out / "collapse_vs_size.png",
                summary.study,
                summary.recommendation,
                summary.target or "target",
            ),
        ]
    for path in files:
        tracker.log_artifact(parent, path)
    tracker.log_metrics(parent, summary.parent_metrics(), step=0)
    tracker.describe(parent, summary.describe())
    if summary.confirmation:
        p = summary.recommendation
        forecast = {"target": summary.target, "n_params": p.n_params, "tokens": p.tokens,
                    "law": summary.law.form, "method": summary.law.method,
                    "predicted_collapse": p.ratio, "interval": p.interval,
                    "rows": [c.to_dict() for c in summary.confirmation]}  # fmt: skip
        tracker.set_tags(parent, {FORECAST_TAG: json.dumps(forecast)})
