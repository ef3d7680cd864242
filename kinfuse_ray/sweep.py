"""Run a sweep: Ray Tune trials over ladder size x infusion ratio, recorded in MLflow.

Top to bottom: check what can be checked before anything is written, prepare the data once,
join Ray, open the sweep's MLflow run, run the base runs and infusion trials as one Tune
experiment per phase (`search.LadderSearch` orders them; base runs found in the shared store
are reused, not retrained), analyse, and record the answer on the sweep's run.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import ray

from kinfuse_ray.analysis import Summary, confirmation_rows, learning_edge, size_curves, summarise
from kinfuse_ray.base_store import (
    BaseStore,
    base_inputs,
    data_digest,
    key_of,
    rung_bundle,
)  # fmt: skip
from kinfuse_ray.cluster import (
    check_reachable,
    connect_ray,
    ray_session,
    trainer_capacity,
    trial_slots,
)
from kinfuse_ray.config import Rung, Schedule, SweepConfig
from kinfuse_ray.console import (
    INTERRUPTED,
    ConsoleProgress,
    describe_base_reused,
    describe_base_to_train,
    describe_budget_part,
    describe_start,
    interrupt,
    say,
)
from kinfuse_ray.data import DataBundle, build_bundle
from kinfuse_ray.decision_search import decision_search
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.files import write_text_atomic
from kinfuse_ray.law import InfusionLaw, SizeCurve, spans_budgets
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
from kinfuse_ray.plan import SweepPlan, check_trainable, plan_sweep
from kinfuse_ray.plots import plot_budgets, plot_decision, plot_law, plot_retention
from kinfuse_ray.presentation import describe_answer, describe_headline, describe_summary
from kinfuse_ray.pretrained import ensure_scored
from kinfuse_ray.progress import Progress
from kinfuse_ray.provenance import commit, pin_cpu_kernels
from kinfuse_ray.provenance import describe as describe_provenance
from kinfuse_ray.records import load_trials
from kinfuse_ray.report import write_report
from kinfuse_ray.search import LadderSearch, ratio_strategies
from kinfuse_ray.spec import Phase, TrialResult
from kinfuse_ray.tokens import planned_vocab_size
from kinfuse_ray.tracking import BUDGETS_TAG, FORECAST_TAG, Tracker, store_failure
from kinfuse_ray.tune_experiment import run_experiment

SUMMARY_FILE = "summary.json"  # written once every trial has finished


def run_sweep(
    sweep: SweepConfig,
    *,
    sweep_file: Path | None = None,
    resume: bool = False,
    progress_every: float = 30.0,
    known: Sequence[SizeCurve] = (),
) -> Summary:
    """Run every trial of `sweep`, analyse, record, and return the summary. `resume` carries on
    an interrupted run of the same sweep: finished trials are kept, the others restart from
    their last checkpoints, and their MLflow runs go on. Progress is printed every
    `progress_every` seconds. `known`: on one budget of a size x budget ladder, the curves of
    the budgets before it, which the decision search places this budget's trials from."""
    if sweep.budgets:
        return _run_budgets(
            sweep, sweep_file=sweep_file, resume=resume, progress_every=progress_every
        )
    started = time.monotonic()
    if note := pin_cpu_kernels(sweep.train.cpu_kernels):
        say(note)
    # Trials run in their own working directories: pin the output folder to an absolute path.
    sweep = sweep.model_copy(update={"output_dir": sweep.out})
    if resume:
        check_resumable(sweep.out, sweep.name, _settings(sweep))
    # Bad data, an unreachable cluster or tracking store: fail before anything is written.
    sweep.check_checkpoints()
    rungs = list(sweep.rungs.values())
    # The vocabulary of the tokenizer the trials will use (as `kinfuse plan` sizes it).
    vocab, _ = planned_vocab_size(sweep.data)
    check_trainable(rungs, vocab, on_cluster=bool(sweep.ray.address))
    check_creatable(sweep.out, _plan(sweep).storage_bytes)
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed, sweep.largest_knowledge_load)
    # Checkpoint rungs: what each knew, scored once; one that knows too little is refused here.
    for line in ensure_scored(rungs, BaseStore.beside(sweep.out), bundle):
        say(line)
    # The cluster's address, then the store, then Ray: a wrong address or tracking URI fails in
    # a second, not after a local Ray instance has started (about 10 s), and a wrong address
    # before the store is written to.
    if sweep.ray.address:
        check_reachable(sweep.ray.address, "ray.address")
    tracker = Tracker(sweep.mlflow.tracking_uri, sweep.experiment)
    started_ray = connect_ray(sweep.ray, sweep.train.cpu_kernels)
    # Ctrl-C and SIGTERM (a scheduler, `kill`) end the sweep alike, and are not lost in a Ray
    # call (console.interrupt). Set after ray.init, which installs a handler of its own; only the
    # main thread may.
    main = threading.current_thread() is threading.main_thread()
    INTERRUPTED.clear()
    before = (
        {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    )
    try:
        with _parent_run(sweep, tracker, resume=resume, sweep_file=sweep_file) as parent:
            run = TrialRunner(tracker, parent, bundle, ray.put(bundle), resume, progress_every,
                              tuple(known))  # fmt: skip
            results = run.trials(sweep)
            trials = [t for t in results if t.phase is Phase.infuse]
            if not trials:
                raise KinfuseError(
                    f"no infusion trial finished; the sweep's records are in {sweep.out}"
                )
            base_runs = [t for t in results if t.phase is Phase.base]
            summary = _summarise(sweep, trials, base_runs, time.monotonic() - started,
                                 data_digest(bundle))  # fmt: skip
            rec = summary.recommendation
            # The rule's ratio is trained even where the forecast is not informative: the
            # measurement says how far off it was.
            if sweep.predict.confirm and rec and rec.decision.ratio is not None:
                edge = learning_edge(rec)  # trained too: the window's lower edge
                confirm = sweep.confirmation(
                    rec.decision.ratio, rec.collapse_ratio, *([edge] if edge is not None else [])
                )
                measured = run.trials(confirm, only=[sweep.predict.target.size.name])
                summary.confirmation = confirmation_rows(summary.law, rec, measured)
            _record(summary, sweep, tracker, parent)
            return summary
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
        if started_ray:
            ray.shutdown()


@contextlib.contextmanager
def _parent_run(
    sweep: SweepConfig, tracker: Tracker, *, resume: bool, sweep_file: Path | None
) -> Iterator[str]:
    """The sweep's MLflow parent run and its output folder, held while the body runs (one sweep
    per folder), its settings saved first: ended FINISHED after the body, else KILLED (Ctrl-C,
    SIGTERM) or FAILED, with the one line `_ended_by` chooses for a failing store or disk."""
    parent = claim = None
    try:
        claim = claim_output(sweep.out)
        parent = _open_run(tracker, sweep, resume=resume, sweep_file=sweep_file)
        if not resume:
            start_afresh(sweep.out)
        tracker.log_artifact(parent, save_settings(sweep.out, _settings(sweep)))
        yield parent
        tracker.end_run(parent, "FINISHED")
    except BaseException as exc:
        told = _ended_by(exc, sweep.out, tracker, parent)
        if told is exc:
            raise
        raise told from None
    finally:
        if claim is not None:
            claim.close()  # releases the lock


def _run_budgets(
    sweep: SweepConfig, *, sweep_file: Path | None, resume: bool, progress_every: float
) -> Summary:
    """A size x budget ladder: each budget as a sweep of its own (`SweepConfig.at_budget`: its
    own folder, Tune experiments and MLflow experiment; a size's base run is shared by every
    budget), then the law over (N, D) fitted to every trial of every budget and recorded in
    the ladder's own folder and MLflow experiment."""
    started = time.monotonic()
    sweep = sweep.model_copy(update={"output_dir": sweep.out})
    check_creatable(sweep.out, _plan(sweep).storage_bytes)
    parts = [sweep.at_budget(tokens) for tokens in sweep.budgets]
    to_run = [part for part in parts if not (resume and (part.out / SUMMARY_FILE).exists())]
    data = None  # the budgets' data digest, as their laws record it
    for part in parts:
        if part not in to_run:
            say(describe_budget_part(part.name, part.train.tokens, finished=True))
            with contextlib.suppress(KinfuseError):
                data = InfusionLaw.load(part.out / "law.json").source.get("data", data)
    if to_run:
        # The budgets' sweeps share one Ray session: a local instance starts once, not per budget.
        if note := pin_cpu_kernels(sweep.train.cpu_kernels):
            say(note)
        with ray_session(sweep.ray, sweep.train.cpu_kernels):
            for part in to_run:
                say(describe_budget_part(part.name, part.train.tokens, finished=False))
                again = resume and (part.out / SWEEP_FILE).exists()
                done = run_sweep(part, sweep_file=sweep_file, resume=again,
                                 progress_every=progress_every,
                                 known=_measured_before(sweep, parts, part))  # fmt: skip
                data = done.law.source.get("data", data) if done.law else data
    # Every budget's trials as recorded: those run now and those a resumed ladder kept.
    recorded = load_trials(sweep.mlflow.tracking_uri, [part.experiment for part in parts])
    summary = _summarise(sweep, recorded.trials, recorded.base, time.monotonic() - started, data)
    tracker = Tracker(sweep.mlflow.tracking_uri, sweep.experiment)
    with _parent_run(sweep, tracker, resume=False, sweep_file=sweep_file) as parent:
        tracker.set_tags(parent, {BUDGETS_TAG: ",".join(part.experiment for part in parts)})
        _record(summary, sweep, tracker, parent)
    return summary


def _measured_before(
    sweep: SweepConfig, parts: list[SweepConfig], part: SweepConfig
) -> list[SizeCurve]:
    """The curves the budgets before `part` measured, as recorded, where the decision search
    places `part`'s trials from them (none for the other searches)."""
    before = parts[: parts.index(part)]
    if sweep.search.strategy != "decision" or not before:
        return []
    recorded = load_trials(sweep.mlflow.tracking_uri, [p.experiment for p in before])
    return size_curves(recorded.trials, sweep.eval, recorded.base)


@dataclass(frozen=True)
class TrialRunner:
    """What every Tune experiment of one sweep run shares: the tracker and parent run its trials
    are recorded under, the data (and its copy in Ray's object store), and how it runs."""

    tracker: Tracker
    parent: str
    bundle: DataBundle
    bundle_ref: ray.ObjectRef
    resume: bool
    progress_every: float
    known: tuple[SizeCurve, ...] = ()  # other budgets' curves, for the decision search

    def trials(self, sweep: SweepConfig, only: list[str] | None = None) -> list[TrialResult]:
        """Base runs and infusion trials of the ladder's sizes (`only` those, if given) as one
        Tune experiment mirrored to MLflow; base runs the shared store holds are reused."""
        bundle, tracker, parent = self.bundle, self.tracker, self.parent
        resume, progress_every = self.resume, self.progress_every
        every = sweep.rungs
        rungs = {name: rung for name, rung in every.items() if not only or name in only}
        reused = {}
        if sweep.train.schedule is Schedule.continued:
            store = BaseStore.beside(sweep.out)
            for line in ensure_scored(list(rungs.values()), store, bundle):  # a confirmed target
                say(line)
            reused = _reuse_base_runs(rungs, store, bundle, tracker, parent, quiet=resume)
        base = [name for name in rungs if sweep.train.schedule is Schedule.continued
                and name not in reused]  # fmt: skip
        slots = trial_slots(sweep.train, sweep.ray.concurrent_trials)

        def fresh() -> tuple[LadderSearch, list]:
            """The searcher, and the callbacks that mirror its trials to MLflow and show its
            progress (a read-only view of it), for an experiment that starts now."""
            plateaus = {size: found.retention for size, found in reused.items()}
            capacity = trainer_capacity(sweep.train, sweep.ray.concurrent_trials)
            n_params = {name: rung.n_params for name, rung in rungs.items()}
            if sweep.search.strategy == "decision":
                search = decision_search(
                    sweep.search, sweep.ratios, sweep.eval, sweep.predict, seed=sweep.seed,
                    target=sweep.target_point, n_params=n_params, tokens=sweep.train.tokens,
                    base=base, plateaus=plateaus, capacity=capacity, slots=slots,
                    known=self.known,
                )  # fmt: skip
            else:
                strategies = ratio_strategies(
                    sweep.search, sweep.ratios, sweep.eval, sweep.seed, list(rungs), plateaus
                )
                search = LadderSearch(strategies, n_params, sweep.train.tokens, base, capacity)
            took = {size: found.seconds for size, found in reused.items()}
            continued = sweep.train.schedule is Schedule.continued and sweep.train.base_tokens
            share = sweep.train.tokens / sweep.train.base_tokens if continued else None
            progress = Progress(search, base, slots, stored_base_seconds=took, trial_share=share)
            return search, [MlflowTrials(tracker, parent, sweep.name, every),
                            ConsoleProgress(progress, progress_every)]  # fmt: skip

        say(describe_start(resume, len(rungs), sweep.search.strategy, len(sweep.ratios), sweep.out))
        finished = run_experiment(
            sweep.trials, sweep.train, slots=slots, bundle_ref=self.bundle_ref, fresh=fresh,
            resume=resume,
        )  # fmt: skip
        ran = [every[spec.size].result(spec, metrics) for spec, metrics in finished]
        ran_base = {t.size for t in ran if t.phase is Phase.base}
        return [*ran, *(found for s, found in reused.items() if s not in ran_base)]


def _reuse_base_runs(
    rungs: dict[str, Rung],
    store: BaseStore,
    bundle: DataBundle,
    tracker: Tracker,
    parent: str,
    *,
    quiet: bool,
) -> dict[str, TrialResult]:
    """The base runs of `rungs` the shared store holds, each recorded as a child run of the
    sweep's (once); for the others, why none fits (unless `quiet`: a resumed sweep said so)."""
    reused = {}
    for name, rung in rungs.items():
        inputs = base_inputs(rung, rung_bundle(rung, bundle))
        found = store.stored(rung, inputs)
        if found is None:
            if not quiet:
                say(describe_base_to_train(name, store.why_not(inputs)))
            continue
        reused[name] = found
        key = key_of(inputs)
        knowledge = store.knowledge(inputs) if rung.size.checkpoint else None
        if record_reused_base(tracker, parent, rung, found, key, knowledge):
            say(describe_base_reused(name, key, knowledge))
    return reused


def _summarise(
    sweep: SweepConfig,
    trials: list[TrialResult],
    base: list[TrialResult],
    seconds: float,
    data: str | None,
) -> Summary:
    """The sweep's answer, its law marked with where it came from (`data`: the data digest)."""
    summary = summarise(
        trials, name=sweep.name, evals=sweep.eval, predict=sweep.predict, seed=sweep.seed,
        target=sweep.target_point, wall_seconds=seconds, base=base,
    )  # fmt: skip
    summary.provenance = describe_provenance()
    if summary.law is not None:
        source = {"study": sweep.experiment, "sweep": sweep.name, "commit": commit()}
        summary.law = summary.law.sourced(**source, **({"data": data} if data else {}))
    return summary


def _plan(sweep: SweepConfig) -> SweepPlan:
    """What the sweep will cost (every budget's trials on a size x budget ladder)."""
    return plan_sweep(
        sweep.name, list(sweep.rungs.values()), sweep.data.vocab_size, ratios=sweep.ratios,
        precision=sweep.search.precision, budgets=sweep.budgets or [sweep.train.tokens],
    )  # fmt: skip


def _settings(sweep: SweepConfig) -> dict:
    """The sweep file's fields, as saved beside its results."""
    return sweep.model_dump(mode="json")


def _open_run(
    tracker: Tracker, sweep: SweepConfig, *, resume: bool, sweep_file: Path | None
) -> str:
    params = {
        "seed": sweep.seed, "schedule": sweep.train.schedule.value, "sizes": len(sweep.ladder),
        "ratios": ",".join(f"{r:g}" for r in sweep.ratios), "tokens": sweep.train.tokens,
    }  # fmt: skip
    return open_sweep_run(
        tracker, sweep.name, sweep.out, params, resume=resume, sweep_file=sweep_file
    )


def _ended_by(
    exc: BaseException, out: Path, tracker: Tracker | None, parent: str | None
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
    if not isinstance(exc, KeyboardInterrupt) and free_bytes(out) < OUT_OF_SPACE:
        # However it surfaced (a trial's write, Tune's own state): the disk is full.
        return KinfuseError(
            f"output_dir: no space left on the device of {out}; free some, then carry on "
            "with --resume"
        )
    return exc


def _record(summary: Summary, sweep: SweepConfig, tracker: Tracker, parent: str) -> None:
    out = sweep.out
    files = [
        summary.save(out / SUMMARY_FILE),
        write_text_atomic(out / "answer.txt", describe_answer(summary) + "\n"),
        write_text_atomic(out / "answer.md", describe_summary(summary) + "\n"),
        plot_retention(
            summary, out / "retention_vs_ratio.png", sweep.eval, sweep.predict.acquisition_target
        ),  # fmt: skip
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
        if spans_budgets(summary.law.curves):
            files.append(
                plot_budgets(
                    summary.law, out / "collapse_vs_budget.png", summary.study,
                    summary.recommendation,
                )
            )  # fmt: skip
    files.append(
        write_report(summary, out / "report.html", sweep.eval, sweep.predict.acquisition_target)
    )
    for path in files:
        tracker.log_artifact(parent, path)
    tracker.log_metrics(parent, summary.parent_metrics(), step=0)
    tracker.describe(parent, describe_headline(summary))
    if summary.forecast is not None:
        tracker.set_tags(parent, {FORECAST_TAG: json.dumps(summary.forecast.record())})
