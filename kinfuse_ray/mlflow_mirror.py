"""Every Tune trial as a child MLflow run of its sweep's parent run, written by the driver alone
(one writer, so a sqlite store never sees two)."""

from __future__ import annotations

import functools
import time
from pathlib import Path

from ray import tune

from kinfuse_ray.config import Rung
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.live_metrics import EndedTrials
from kinfuse_ray.presentation import describe_trial_run
from kinfuse_ray.spec import Phase, TrialResult, TrialSpec
from kinfuse_ray.tracking import OUTPUT_TAG, TRIAL_TAG, Tracker, store_failure

STEP_METRICS = (
    "retention", "retention_acc", "acquisition", "acquisition_acc", "val_loss", "train_loss",
    "tokens_per_s", "lr", "stopped_early", "tokens", "replica_spread", "n_nodes", "mfu",
)  # fmt: skip
REUSED_TAG = "kinfuse.reused_base_run"  # a base run this sweep took from the shared store


def open_sweep_run(
    tracker: Tracker,
    name: str,
    out: Path,
    params: dict,
    *,
    resume: bool,
    sweep_file: Path | None,
) -> str:
    """The parent MLflow run of sweep `name` (output folder `out`, run parameters `params`):
    the interrupted one when resuming, else a new one (runs an earlier, killed driver left
    RUNNING are closed as FAILED first)."""
    earlier = tracker.sweep_runs(out)
    if resume and earlier:
        if earlier[0].info.status == "FINISHED":
            raise KinfuseError(f"--resume: sweep '{name}' in {out} has finished; nothing to resume")
        parent = earlier[0].info.run_id
        tracker.reopen(parent)
        return parent
    for run in earlier:
        if run.info.status == "RUNNING":
            tracker.end_open_children(run.info.run_id, "FAILED")
            tracker.end_run(run.info.run_id, "FAILED")
    tags = {"kinfuse.sweep_file": str(sweep_file or ""), OUTPUT_TAG: str(out)}
    return tracker.start_run(name, params, tags)


def trial_params(rung: Rung, trial: TrialSpec) -> dict:
    """A trial run's parameters: what it trained, on what."""
    n_general, n_domain = rung.knowledge_load
    return {
        "phase": trial.phase.value,
        "size": trial.size,
        "n_params": rung.n_params,
        "n_general_facts": n_general or "all",
        "n_domain_facts": n_domain or "all",
        "ratio": trial.ratio,
        "tokens": rung.phase_tokens(trial.phase),
        **(
            {"pretrained_tokens": pretrained} if (pretrained := rung.size.pretrained_tokens) else {}
        ),
        "schedule": rung.train.schedule.value,
        "seed": rung.seed,
        "lr": rung.train.lr,
        "batch_size": rung.train.batch_size,
    }


def exposure_params(metrics: dict) -> dict[str, str]:
    """Renderings per domain fact and per general fact in a trial's stream, as run parameters."""
    keys = ("exposures_per_fact", "general_exposures_per_fact")
    return {k: f"{metrics[k]:.2f}" for k in keys if k in metrics}


def record_reused_base(
    tracker: Tracker, parent: str, rung: Rung, base: TrialResult, key: str,
    knowledge: dict[str, float] | None = None,
) -> bool:  # fmt: skip
    """A base run taken from the shared store, as a finished child run with its final metrics
    (and, for a checkpoint's scores, what it knew: `knowledge`), so MLflow holds every trial the
    sweep's analysis used. False: the sweep has that run
    finished already (its own, or recorded before it was interrupted); one an interrupted sweep
    left open is finished now."""
    trial = TrialSpec(Phase.base, base.size, 0.0)
    earlier = tracker.child_runs(parent).get(trial.key)
    if earlier is not None and earlier.info.status == "FINISHED":
        return False
    if earlier is None:
        params = {**trial_params(rung, trial), **exposure_params(base.__dict__)}
        tags = {"kinfuse.phase": trial.phase.value, TRIAL_TAG: trial.key, REUSED_TAG: key}
        run = tracker.start_run(trial.key, params, tags, parent)
    else:
        run = earlier.info.run_id
    metrics = {
        "retention": base.retention, "acquisition": base.acquisition, "val_loss": base.val_loss,
        "tokens_per_s": base.tokens_per_s, "tokens": base.tokens_trained, "stopped_early": 0,
        **(knowledge or {}),
    }  # fmt: skip
    tracker.log_metrics(run, metrics, step=base.tokens_trained)
    tracker.end_run(run, "FINISHED")
    return True


def _until_the_store_fails(hook):
    """Run a mirror hook unless the store has failed; a store failure is kept, not raised.
    Tune logs a traceback for an exception raised in some hooks (a trial's completion) before it
    goes on: the failure is raised instead at the start of Tune's next step or at the end of the
    experiment, where it reaches the sweep as is and becomes one line."""

    @functools.wraps(hook)
    def guarded(self, *args, **kwargs):
        if self.store_error is not None:
            return
        try:
            hook(self, *args, **kwargs)
        except Exception as exc:
            if not store_failure(exc):
                raise
            self.store_error = exc

    return guarded


class MlflowTrials(tune.Callback):
    """Mirrors every Tune trial as a child run of `parent`. Child runs are keyed by the trial's
    identity (`TrialSpec.key`), so a resumed sweep carries on the run of a trial it restarts
    instead of opening a second one. Tune saves this callback with the experiment; loaded back
    by a resumed sweep, it reconnects and re-reads the runs (`__setstate__`)."""

    def __init__(self, tracker: Tracker, parent: str, name: str, rungs: dict[str, Rung]):
        """Runs under `parent`, for the trials of sweep `name` on `rungs`."""
        self.tracker, self.parent, self.name, self.rungs = tracker, parent, name, rungs
        self._load()

    def _load(self) -> None:
        # trial key -> run id, a resumed sweep's earlier runs included; a finished one is left
        # as it is when its trial replays its result
        earlier = self.tracker.child_runs(self.parent)
        self.runs = {key: run.info.run_id for key, run in earlier.items()}
        self.finished = {key for key, run in earlier.items() if run.info.status == "FINISHED"}
        self.started: dict[str, float] = {}
        self.ended = EndedTrials(self.name)
        self.store_error: Exception | None = None

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("tracker", "parent", "name", "rungs")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._load()

    def _raise_store_error(self) -> None:
        if self.store_error is not None:
            raise self.store_error

    def on_step_begin(self, iteration, trials, **info):
        self._raise_store_error()

    def on_experiment_end(self, trials, **info):
        self._raise_store_error()
        for trial in trials:
            if trial.status == "TERMINATED" and TrialSpec.of(trial).key not in self.finished:
                # It ended while the store was down, and Tune saved it as ended before that
                # failure stopped the sweep: the resumed experiment never completes it again.
                self._start(trial)
                self._log_result(trial, trial.last_result or {})
                self._complete(trial)

    @_until_the_store_fails
    def on_trial_start(self, iteration, trials, trial, **info):
        self._start(trial)
        self.started[TrialSpec.of(trial).key] = time.time()

    def _start(self, trial) -> None:
        spec = TrialSpec.of(trial)
        if spec.key in self.finished:
            return
        if spec.key in self.runs:  # restarted by a resumed sweep: the same run goes on
            self.tracker.reopen(self.runs[spec.key])
        else:
            tags = {"kinfuse.phase": spec.phase.value, TRIAL_TAG: spec.key,
                    "mlflow.note.content": describe_trial_run(spec)}  # fmt: skip
            params = trial_params(self.rungs[spec.size], spec)
            self.runs[spec.key] = self.tracker.start_run(spec.key, params, tags, self.parent)

    @_until_the_store_fails
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if TrialSpec.of(trial).key not in self.finished:
            self._log_result(trial, result)

    def _log_result(self, trial, result: dict) -> None:
        if not result:
            return
        key = TrialSpec.of(trial).key
        run = self.runs[key]
        metrics = {k: result[k] for k in STEP_METRICS if k in result}
        if result.get("training_iteration") == 1:
            self.tracker.log_params(run, exposure_params(result))
            if key in self.started:
                # From Tune scheduling the trial to its first training step: process, Ray
                # Train worker group and data set-up.
                metrics["startup_s"] = result["first_step_at"] - self.started[key]
        if "resumed_at_tokens" in result:
            self.tracker.set_tags(run, {"kinfuse.resumed_at_tokens": result["resumed_at_tokens"]})
        self.tracker.log_metrics(run, metrics, step=int(result["tokens"]))

    @_until_the_store_fails
    def on_trial_recover(self, iteration, trials, trial, **info):
        run = self.runs.get(TrialSpec.of(trial).key)
        if run is not None:  # None: its process died before the trial started
            self.tracker.set_tags(run, {"kinfuse.restarts": trial.num_failures})

    @_until_the_store_fails
    def on_trial_complete(self, iteration, trials, trial, **info):
        self._complete(trial)

    def _complete(self, trial) -> None:
        spec = TrialSpec.of(trial)
        if spec.key in self.finished:
            return
        self.finished.add(spec.key)
        run = self.runs[spec.key]
        stopped = bool((trial.last_result or {}).get("stopped_early"))
        if stopped:
            self.tracker.set_tags(run, {"kinfuse.stopped": "retention collapsed (early stop)"})
        self.tracker.end_run(run, "FINISHED")
        self.ended.ended(spec, "stopped_early" if stopped else "completed")

    @_until_the_store_fails
    def on_trial_error(self, iteration, trials, trial, **info):
        spec = TrialSpec.of(trial)
        run = self.runs[spec.key]
        self.tracker.set_tags(run, {"kinfuse.error": "trial raised; see Ray logs"})
        self.tracker.end_run(run, "FAILED")
        self.ended.ended(spec, "failed")
