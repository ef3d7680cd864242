"""Run a sweep: Ray Tune trials over ladder size x infusion ratio, recorded in MLflow.

Top to bottom: check what can be checked before anything is written, prepare the data once,
join Ray, open the sweep's MLflow run, run the base runs and infusion trials as one Tune
experiment per phase (`search.LadderSearch` orders them; base runs found in the shared store
are reused, not retrained), analyse, and record the answer on the sweep's run.
"""

from __future__ import annotations

import functools
import json
import signal
import threading
import time
from pathlib import Path

import ray

from kinfuse_ray.analysis import Summary, confirmation_rows, summarise
from kinfuse_ray.base_store import BaseStore, base_inputs, key_of, rung_bundle
from kinfuse_ray.cluster import connect_ray, trainer_capacity, trial_slots
from kinfuse_ray.config import Schedule, SweepConfig
from kinfuse_ray.console import ConsoleProgress
from kinfuse_ray.data import DataBundle, build_bundle
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.files import write_text_atomic
from kinfuse_ray.law import spans_budgets
from kinfuse_ray.mlflow_mirror import MlflowTrials, open_sweep_run, record_reused_base
from kinfuse_ray.output import (
    OUT_OF_SPACE,
    SWEEP_FILE,
    check_creatable,
    check_resumable,
    claim_output,
    free_bytes,
    save_settings,
    start_afresh,
)  # fmt: skip
from kinfuse_ray.plan import check_trainable
from kinfuse_ray.plots import plot_budgets, plot_decision, plot_law, plot_retention
from kinfuse_ray.presentation import describe_answer, describe_headline, describe_summary
from kinfuse_ray.progress import Progress
from kinfuse_ray.provenance import describe as describe_provenance
from kinfuse_ray.provenance import pin_cpu_kernels
from kinfuse_ray.records import load_trials
from kinfuse_ray.search import LadderSearch, ratio_strategies
from kinfuse_ray.spec import Phase, TrialResult, TrialSpec
from kinfuse_ray.tracking import BUDGETS_TAG, FORECAST_TAG, Tracker, store_failure
from kinfuse_ray.tune_experiment import run_experiment

SUMMARY_FILE = "summary.json"  # written once every trial has finished


def run_sweep(
    sweep: SweepConfig,
    *,
    sweep_file: Path | None = None,
    resume: bool = False,
    progress_every: float = 30.0,
) -> Summary:
    """Run every trial of `sweep`, analyse, record, and return the summary. `resume` carries on
    an interrupted run of the same sweep: finished trials are kept, the others restart from
    their last checkpoints, and their MLflow runs go on. Progress is printed every
    `progress_every` seconds."""
    if sweep.budgets:
        return _run_budgets(
            sweep, sweep_file=sweep_file, resume=resume, progress_every=progress_every
        )
    started = time.monotonic()
    if note := pin_cpu_kernels(sweep.train.cpu_kernels):
        print(f"kinfuse: {note}", flush=True)
    # Trials run in their own working directories: pin the output folder to an absolute path.
    sweep = sweep.model_copy(update={"output_dir": sweep.out})
    if resume:
        check_resumable(sweep)
    # Bad data, an unreachable cluster or tracking store: fail before anything is written.
    check_trainable(sweep)
    check_creatable(sweep)
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed, sweep.largest_knowledge_load)
    started_ray = connect_ray(sweep)
    # SIGTERM (a scheduler, `kill`) ends the sweep as Ctrl-C does. Set after ray.init, which
    # installs a handler of its own; only the main thread may.
    main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    parent = claim = tracker = None
    try:
        tracker = Tracker(sweep.mlflow.tracking_uri, sweep.experiment)
        claim = claim_output(sweep.out)  # held while this sweep runs: one sweep per folder
        parent = open_sweep_run(tracker, sweep, resume=resume, sweep_file=sweep_file)
        if not resume:
            start_afresh(sweep)
        tracker.log_artifact(parent, save_settings(sweep))
        phase = functools.partial(
            _run_phase, bundle=bundle, bundle_ref=ray.put(bundle), tracker=tracker,
            parent=parent, resume=resume, progress_every=progress_every,
        )  # fmt: skip
        results = phase(sweep)
        trials = [t for t in results if t.phase is Phase.infuse]
        if not trials:
            raise KinfuseError(
                f"no infusion trial finished; the sweep's records are in {sweep.out}"
            )
        base_runs = [t for t in results if t.phase is Phase.base]
        summary = summarise(trials, sweep, time.monotonic() - started, base_runs)
        summary.provenance = describe_provenance()
        rec = summary.recommendation
        if sweep.predict.confirm and rec and rec.recommended_ratio is not None:
            confirm = sweep.confirmation(rec.recommended_ratio, rec.ratio)
            measured = phase(confirm, only=[sweep.predict.target.size.name])
            summary.confirmation = confirmation_rows(summary.law, summary.recommendation, measured)
        _record(summary, sweep, tracker, parent)
        tracker.end_run(parent, "FINISHED")
        return summary
    except BaseException as exc:
        told = _ended_by(exc, sweep, tracker, parent)
        if told is exc:
            raise
        raise told from None
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)
        if claim is not None:
            claim.close()  # releases the lock
        if started_ray:
            ray.shutdown()


def _run_budgets(
    sweep: SweepConfig, *, sweep_file: Path | None, resume: bool, progress_every: float
) -> Summary:
    """A size x budget ladder: each budget as a sweep of its own (`SweepConfig.at_budget`: its
    own folder, Tune experiments and MLflow experiment; a size's base run is shared by every
    budget), then the law over (N, D) fitted to every trial of every budget and recorded in
    the ladder's own folder and MLflow experiment."""
    started = time.monotonic()
    sweep = sweep.model_copy(update={"output_dir": sweep.out})
    check_creatable(sweep)
    parts = [sweep.at_budget(tokens) for tokens in sweep.budgets]
    for part in parts:
        if resume and (part.out / SUMMARY_FILE).exists():
            print(f"kinfuse: {part.name} finished before: its trials are kept", flush=True)
            continue
        print(f"kinfuse: {part.train.tokens:,} tokens per trial: sweep {part.name}", flush=True)
        again = resume and (part.out / SWEEP_FILE).exists()
        run_sweep(part, sweep_file=sweep_file, resume=again, progress_every=progress_every)
    # Every budget's trials as recorded: those run now and those a resumed ladder kept.
    recorded = load_trials(sweep.mlflow.tracking_uri, [part.experiment for part in parts])
    summary = summarise(recorded.trials, sweep, time.monotonic() - started, recorded.base)
    summary.provenance = describe_provenance()
    tracker = Tracker(sweep.mlflow.tracking_uri, sweep.experiment)
    parent = open_sweep_run(tracker, sweep, resume=False, sweep_file=sweep_file)
    try:
        tracker.set_tags(parent, {BUDGETS_TAG: ",".join(part.experiment for part in parts)})
        tracker.log_artifact(parent, save_settings(sweep))
        _record(summary, sweep, tracker, parent)
    except BaseException:
        tracker.end_run(parent, "FAILED")
        raise
    tracker.end_run(parent, "FINISHED")
    return summary


def _run_phase(
    sweep: SweepConfig,
    only: list[str] | None = None,
    *,
    bundle: DataBundle,
    bundle_ref: ray.ObjectRef,
    tracker: Tracker,
    parent: str,
    resume: bool,
    progress_every: float,
) -> list[TrialResult]:
    """Base runs and infusion trials of the ladder's sizes (`only` those, if given) as one Tune
    experiment mirrored to MLflow; base runs the shared store holds are reused."""
    sizes = only or [s.name for s in sweep.ladder]
    reused, base = {}, []
    if sweep.train.schedule is Schedule.continued:
        store = BaseStore.beside(sweep.out)
        for size in sizes:
            inputs = base_inputs(sweep, rung_bundle(sweep, bundle, size), size)
            key = key_of(inputs)
            found = store.stored(sweep, inputs, size)
            if found is None:
                base.append(size)
                if not resume:
                    print(
                        f"kinfuse: {size}: base run to train: {store.why_not(inputs)}", flush=True
                    )
                continue
            reused[size] = found
            if record_reused_base(tracker, parent, sweep, found, key):
                print(f"kinfuse: {size}: base run reused from the shared store ({key})", flush=True)
    # One set of ratio strategies: the searcher proposes from them, the progress table counts
    # from them (a resumed experiment's callbacks and searcher come back as Tune saved them).
    strategies = ratio_strategies(sweep, sizes, {s: found.retention for s, found in reused.items()})
    progress = Progress(strategies, base, trial_slots(sweep))
    callbacks = [MlflowTrials(tracker, parent, sweep), ConsoleProgress(progress, progress_every)]
    print(
        f"kinfuse: {'resuming, ' if resume else ''}{len(sizes)} sizes, "
        f"{sweep.search.strategy} search over {len(sweep.ratios)} ratios; output in {sweep.out}",
        flush=True,
    )
    search = LadderSearch(
        strategies, sweep.n_params, sweep.train.tokens, base, trainer_capacity(sweep)
    )
    finished = run_experiment(
        sweep, bundle_ref=bundle_ref, search=search, callbacks=callbacks, resume=resume
    )
    ran = [_trial_result(sweep, spec, metrics) for spec, metrics in finished]
    ran_base = {t.size for t in ran if t.phase is Phase.base}
    return [*ran, *(found for s, found in reused.items() if s not in ran_base)]


def _trial_result(sweep: SweepConfig, spec: TrialSpec, metrics: dict) -> TrialResult:
    return TrialResult.from_metrics(
        spec, metrics, n_params=sweep.n_params[spec.size], tokens=sweep.phase_tokens(spec.phase)
    )


def _ended_by(
    exc: BaseException, sweep: SweepConfig, tracker: Tracker | None, parent: str | None
) -> BaseException:
    """Close the sweep's runs after `exc` (KILLED for Ctrl-C and SIGTERM, else FAILED) and say
    what to tell the user: one line for a failing store or a full disk, else `exc` itself."""
    unclosed = None
    if parent is not None:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        try:
            tracker.end_open_children(parent, status)
            tracker.end_run(parent, status)
        except Exception as closing:  # noqa: BLE001 - the store itself is failing
            unclosed = closing
    if tracker is not None and (unclosed is not None or store_failure(exc)):
        return tracker.failed_midway(unclosed or exc)
    if not isinstance(exc, KeyboardInterrupt) and free_bytes(sweep.out) < OUT_OF_SPACE:
        # However it surfaced (a trial's write, Tune's own state): the disk is full.
        return KinfuseError(
            f"output_dir: no space left on the device of {sweep.out}; free some, then carry on "
            "with --resume"
        )
    return exc


def _record(summary: Summary, sweep: SweepConfig, tracker: Tracker, parent: str) -> None:
    out = sweep.out
    files = [
        summary.save(out / SUMMARY_FILE),
        write_text_atomic(out / "answer.txt", describe_answer(summary) + "\n"),
        write_text_atomic(out / "answer.md", describe_summary(summary) + "\n"),
        plot_retention(summary, out / "retention_vs_ratio.png"),
    ]
    if summary.law is not None:
        summary.law.save(out / "law.json")
        target = summary.target or "target"
        files += [
            out / "law.json",
            plot_law(
                summary.law, out / "collapse_vs_size.png", summary.study, summary.recommendation,
                target,
            ),
        ]  # fmt: skip
        if summary.recommendation is not None:
            files.append(
                plot_decision(summary.law, summary.recommendation, out / "decision.png", target)
            )
        if spans_budgets(summary.law.curves_):
            files.append(
                plot_budgets(
                    summary.law, out / "collapse_vs_budget.png", summary.study,
                    summary.recommendation,
                )
            )  # fmt: skip
    for path in files:
        tracker.log_artifact(parent, path)
    tracker.log_metrics(parent, summary.parent_metrics(), step=0)
    tracker.describe(parent, describe_headline(summary))
    if summary.confirmation:
        p = summary.recommendation
        forecast = {"target": summary.target, "n_params": p.n_params, "tokens": p.tokens,
                    "law": summary.law.form, "method": summary.law.method,
                    "predicted_collapse": p.ratio, "interval": p.interval,
                    "rows": [c.to_dict() for c in summary.confirmation]}  # fmt: skip
        tracker.set_tags(parent, {FORECAST_TAG: json.dumps(forecast)})
