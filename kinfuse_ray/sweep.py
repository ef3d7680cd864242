"""Run a sweep: Ray Tune trials over ladder size x infusion ratio, recorded in MLflow.

The driver prepares the data once, starts (or joins) Ray, runs the base runs (continued
schedule) and the infusion trials as one Tune experiment (`search.LadderSearch` orders them), then
analyses the results, fits the law and records everything on the sweep's parent MLflow run.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import ray
import yaml
from ray import tune

from kinfuse_ray.analysis import Summary, TrialResult, summarise
from kinfuse_ray.config import Schedule, SweepConfig
from kinfuse_ray.data import DataBundle, build_bundle
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.live_metrics import LiveMetrics
from kinfuse_ray.plots import plot_law, plot_retention
from kinfuse_ray.search import BisectRatios, GridRatios, LadderSearch, OptunaRatios
from kinfuse_ray.tracking import Tracker
from kinfuse_ray.train import Dist
from kinfuse_ray.trial import BASE, INFUSE, base_checkpoint, phase_tokens, run_trial

STEP_METRICS = (
    "retention", "retention_acc", "acquisition", "acquisition_acc", "val_loss", "train_loss",
    "tokens_per_s", "lr", "stopped_early", "tokens", "replica_spread",
)  # fmt: skip


def tune_trial(config: dict, sweep: SweepConfig, bundle: DataBundle) -> None:
    """Ray Tune function trainable for one trial (the searcher's description under "trial").
    One worker: the training loop runs right here, no start-up beyond the import. More workers
    or GPUs: a Ray Train TorchTrainer runs the same loop data-parallel and forwards its rank-0
    reports to Tune."""
    trial = config["trial"]
    if not _uses_ray_train(sweep):
        with LiveMetrics(sweep.name, trial["size"], trial["ratio"], trial["phase"]) as live:
            run_trial(trial, sweep, bundle, live.wrap(tune.report))
        return
    from ray.train import RunConfig as TrainRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    gpu = {"GPU": 1} if sweep.train.use_gpu else {}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"trial": trial, "sweep": sweep, "bundle": ray.put(bundle)},
        scaling_config=ScalingConfig(
            num_workers=sweep.train.workers,
            use_gpu=sweep.train.use_gpu,
            resources_per_worker={"CPU": sweep.train.cpus_per_trial, **gpu},
        ),
        run_config=TrainRunConfig(
            name=f"{sweep.name}-{trial['phase']}-{trial['size']}-r{trial['ratio']:g}",
            storage_path=str(sweep.out / "train"),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def train_worker(config: dict) -> None:
    """One Ray Train worker: the same trial code as a single process, on its data-parallel
    share, with the model wrapped in DDP (gloo on CPUs, NCCL on GPUs)."""
    import ray.train
    from ray.train.torch import prepare_model

    context = ray.train.get_context()
    dist = Dist(context.get_world_rank(), context.get_world_size())
    trial, sweep, bundle = config["trial"], config["sweep"], ray.get(config["bundle"])
    if dist.rank:
        run_trial(trial, sweep, bundle, ray.train.report, dist, prepare_model)
        return
    with LiveMetrics(sweep.name, trial["size"], trial["ratio"], trial["phase"]) as live:
        run_trial(trial, sweep, bundle, live.wrap(ray.train.report), dist, prepare_model)


def _uses_ray_train(sweep: SweepConfig) -> bool:
    return sweep.train.workers > 1 or sweep.train.use_gpu


def _concurrent_trainers(sweep: SweepConfig) -> int | None:
    """Ray Train trials hold no CPU themselves, so Tune alone would start them all and their
    worker groups would queue; start only as many as the cluster can run at once."""
    if not _uses_ray_train(sweep):
        return None  # each trial's own CPUs bound the concurrency
    cluster = ray.cluster_resources()
    fits = cluster.get("CPU", 1) // (sweep.train.workers * sweep.train.cpus_per_trial)
    if sweep.train.use_gpu:
        fits = min(fits, cluster.get("GPU", 0) // sweep.train.workers)
    return max(1, int(fits))


class MlflowTrials(tune.Callback):
    """Mirrors every Tune trial as a child MLflow run of the sweep (driver-side, one writer)."""

    def __init__(self, tracker: Tracker, parent: str, sweep: SweepConfig, total: int | None):
        self.tracker, self.parent, self.sweep, self.total = tracker, parent, sweep, total
        self.runs: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.done = 0

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
            "lr": train.lr,
            "batch_size": train.batch_size,
        }

    def on_trial_start(self, iteration, trials, trial, **info):
        c = trial.config["trial"]
        self.runs[trial.trial_id] = self.tracker.start_run(
            f"{c['phase']}-{c['size']}-r{c['ratio']:g}",
            self._params(c),
            {"kinfuse.phase": c["phase"]},
            self.parent,
        )
        self.started[trial.trial_id] = time.time()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run = self.runs[trial.trial_id]
        metrics = {k: result[k] for k in STEP_METRICS if k in result}
        if result.get("training_iteration") == 1:
            self.tracker.log_params(
                run, {"exposures_per_fact": f"{result['exposures_per_fact']:.2f}"}
            )
            # From Tune scheduling the trial to its first training step: process, Ray Train
            # worker group and data set-up.
            metrics["startup_s"] = result["first_step_at"] - self.started[trial.trial_id]
        self.tracker.log_metrics(run, metrics, step=int(result["tokens"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        run = self.runs[trial.trial_id]
        if result.get("stopped_early"):
            self.tracker.set_tags(run, {"kinfuse.stopped": "retention collapsed (early stop)"})
        self.tracker.end_run(run, "FINISHED")
        self.done += 1
        seconds = time.time() - self.started[trial.trial_id]
        c = trial.config["trial"]
        print(
            f"  [{self.done:>3}{'' if self.total is None else f'/{self.total}'}] {c['phase']:<6} {c['size']:<10} r={c['ratio']:<5g} "
            f"retention {result.get('retention', float('nan')):.2f}  "
            f"acquisition {result.get('acquisition', float('nan')):.2f}  "
            f"{'stopped early  ' if result.get('stopped_early') else ''}({seconds:.0f} s)",
            flush=True,
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        self.tracker.set_tags(
            self.runs[trial.trial_id], {"kinfuse.error": "trial raised; see Ray logs"}
        )
        self.tracker.end_run(self.runs[trial.trial_id], "FAILED")


def _searcher(sweep: SweepConfig, base: list[str]) -> LadderSearch:
    ev = sweep.eval

    def strategy():
        rule = (ev.collapse_threshold, ev.plateau_points)
        if sweep.search.strategy == "bisect":
            return BisectRatios(sweep.ratios, sweep.search.precision, *rule)
        if sweep.search.strategy == "optuna":
            return OptunaRatios(sweep.ratios, sweep.search.trials_per_size, *rule, sweep.seed)
        return GridRatios(sweep.ratios, *rule)

    strategies = {s.name: strategy() for s in sweep.ladder}
    return LadderSearch(strategies, sweep.n_params, sweep.train.tokens, base)


def _run_trials(
    sweep: SweepConfig, bundle_ref, base: list[str], callback: MlflowTrials
) -> list[tuple[dict, dict]]:
    """Run base and infusion trials as one Tune experiment; return (trial, final metrics) pairs."""
    # A Ray Train trial's own process only waits on its workers: it holds no CPU.
    driver = (
        {"cpu": 0, "memory": 1 << 20}
        if _uses_ray_train(sweep)
        else {"cpu": sweep.train.cpus_per_trial}
    )
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, sweep=sweep, bundle=bundle_ref), driver
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=_searcher(sweep, base),
            num_samples=-1,  # the searcher says when the sweep is complete
            max_concurrent_trials=_concurrent_trainers(sweep),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=sweep.name,
            storage_path=str(sweep.out / "ray"),
            callbacks=[callback],
            verbose=0,
        ),
    )
    results = tuner.fit()
    if results.errors:
        cause = str(results.errors[0]).strip().splitlines()[-1]
        raise KinfuseError(f"{len(results.errors)} trial(s) failed, first: {cause}")
    return [(r.config["trial"], r.metrics) for r in results]


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


def _start_ray(sweep: SweepConfig) -> bool:
    """Join the configured cluster or start a local instance; True if we started it."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own one-line-per-trial progress instead
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=sweep.ray.address or None,
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


def run_sweep(sweep: SweepConfig, sweep_file: Path | None = None) -> Summary:
    """Run every trial of `sweep`, analyse, record, and return the summary."""
    started = time.monotonic()
    # Trials run in their own working directories: pin the output folder to an absolute path.
    sweep = sweep.model_copy(update={"output_dir": sweep.out})
    # Bad data fails here, before any run exists.
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed, sweep.largest_knowledge_load)
    tracker = Tracker(sweep.mlflow.tracking_uri, sweep.experiment)
    out = sweep.out
    out.mkdir(parents=True, exist_ok=True)
    config_dump = out / "sweep.yaml"
    config_dump.write_text(yaml.safe_dump(sweep.model_dump(mode="json"), sort_keys=False))
    parent = tracker.start_run(
        sweep.name,
        {"seed": sweep.seed, "schedule": sweep.train.schedule.value, "sizes": len(sweep.ladder),
         "ratios": ",".join(f"{r:g}" for r in sweep.ratios), "tokens": sweep.train.tokens},
        {"kinfuse.sweep_file": str(sweep_file or ""), "kinfuse.output_dir": str(out)},
    )  # fmt: skip
    tracker.log_artifact(parent, config_dump)
    started_ray = False
    try:
        started_ray = _start_ray(sweep)
        bundle_ref = ray.put(bundle)
        base = [
            s.name
            for s in sweep.ladder
            if sweep.train.schedule is Schedule.continued
            and not base_checkpoint(sweep, s.name).exists()
        ]
        grid = sweep.search.strategy == "grid"
        callback = MlflowTrials(
            tracker,
            parent,
            sweep,
            len(base) + len(sweep.ladder) * len(sweep.ratios) if grid else None,
        )
        plan = (
            "ratios" if grid else f"coarse ratios, then bisection to {sweep.search.precision:.0%}"
        )
        print(
            f"kinfuse: {len(sweep.ladder)} sizes x {len(sweep.ratios)} {plan}; output in {out}",
            flush=True,
        )
        results = [
            _trial_result(c, m, sweep) for c, m in _run_trials(sweep, bundle_ref, base, callback)
        ]
        trials = [t for t in results if t.phase == INFUSE]
        summary = summarise(trials, sweep, wall_seconds=time.monotonic() - started)
        summary.base_runs = [t for t in results if t.phase == BASE]
        _record(summary, sweep, tracker, parent)
        tracker.end_run(parent, "FINISHED")
        return summary
    except BaseException:
        tracker.end_open_children(parent, "FAILED")
        tracker.end_run(parent, "FAILED")
        raise
    finally:
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
