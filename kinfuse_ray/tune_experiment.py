"""One Tune experiment of a sweep: started fresh with a searcher and callbacks built for it, or
carried on where an interrupted sweep left it, with the trials, searcher and callbacks as Tune
saved them (nothing is built then)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import ray
from ray import tune

from kinfuse_ray.cluster import trial_resources
from kinfuse_ray.config import SweepTrials, TrainConfig
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.ray_trial import MAX_FAILURES, tune_trial
from kinfuse_ray.search import LadderSearch
from kinfuse_ray.spec import TrialSpec

Fresh = Callable[[], tuple[LadderSearch, list[tune.Callback]]]


def run_experiment(
    trials: SweepTrials,
    train: TrainConfig,
    *,
    slots: int,
    bundle_ref: ray.ObjectRef,
    fresh: Fresh,
    resume: bool,
) -> list[tuple[TrialSpec, dict]]:
    """Run a sweep's `trials` as the searcher proposes them (`train`: how each trial runs,
    `slots`: how many at once); return (trial, final metrics) pairs. With `resume`, carry on the
    experiment an interrupted sweep left, if Tune can read it; else start one with the searcher
    and callbacks `fresh()` builds."""
    # The trial processes take the bundle from the object store (`bundle_ref`, put there once).
    trainable = tune.with_resources(
        functools.partial(tune_trial, trials=trials, bundle_ref=bundle_ref),
        trial_resources(train),
    )
    # Tune keeps one trial of a custom searcher pending at a time; a pending trial then takes
    # each actor a finished trial frees, and trials shorter than a worker's start-up (seconds,
    # on a busy machine) never let a second one start. One pending trial per slot.
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(slots))
    experiment = trials.out / "ray" / trials.name
    if resume and _restorable(experiment):
        # Tune's saved searcher (its brackets) and callbacks (the MLflow runs, the progress
        # table viewing that searcher) carry on: none is built.
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    else:
        search, callbacks = fresh()
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=search,
                num_samples=-1,  # the searcher says when the sweep is complete
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=trials.name,
                storage_path=str(experiment.parent),
                callbacks=callbacks,
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
    return [(TrialSpec.of(r), r.metrics) for r in results]


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
