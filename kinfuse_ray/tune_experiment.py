"""One Tune experiment of a sweep: started fresh, or carried on where an interrupted sweep left
it (trials, searcher and callbacks as Tune saved them)."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from pathlib import Path

import ray
from ray import tune

from kinfuse_ray.cluster import trial_resources, trial_slots
from kinfuse_ray.config import SweepConfig
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.ray_trial import MAX_FAILURES, tune_trial
from kinfuse_ray.search import LadderSearch
from kinfuse_ray.spec import TrialSpec


def run_experiment(
    sweep: SweepConfig,
    *,
    bundle_ref: ray.ObjectRef,
    search: LadderSearch,
    callbacks: list[tune.Callback],
    resume: bool,
) -> list[tuple[TrialSpec, dict]]:
    """Run `sweep`'s trials as the searcher proposes them; return (trial, final metrics) pairs.
    With `resume`, carry on the experiment an interrupted sweep left, if Tune can read it."""
    # The trial processes take the bundle from the object store (`bundle_ref`, put there once).
    trainable = tune.with_resources(
        functools.partial(tune_trial, sweep=sweep, bundle_ref=bundle_ref), trial_resources(sweep)
    )
    # Tune keeps one trial of a custom searcher pending at a time; a pending trial then takes
    # each actor a finished trial frees, and trials shorter than a worker's start-up (seconds,
    # on a busy machine) never let a second one start. One pending trial per slot.
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(trial_slots(sweep)))
    experiment = sweep.out / "ray" / sweep.name
    if resume and _restorable(experiment):
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=search,
                num_samples=-1,  # the searcher says when the sweep is complete
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=sweep.name,
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
    return [(TrialSpec.from_config(r.config["trial"]), r.metrics) for r in results]


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
