"""`kinfuse` command line. User mistakes print one line and exit 2; no tracebacks.

kinfuse sweep sweeps/quickstart.yaml           run a sweep end to end
kinfuse sweep sweeps/quickstart.yaml --resume  carry on after a crash or Ctrl-C
kinfuse sweep sweeps/ladder_cpu.yaml --set seed=1 --set name=ladder_cpu-seed1
kinfuse plan sweeps/gpu_ladder.yaml            memory per GPU, GPU-hours and storage, no GPU needed
kinfuse tokenize sweeps/gpu_ladder.yaml        tokenize the corpus on Ray into shards, once
kinfuse fit --experiment quickstart            refit the law from MLflow: runs/quickstart/refit/
kinfuse predict --experiment quickstart --n-params 8e5
kinfuse predict --law-file runs/quickstart/law.json --n-params 8e5 --tokens 5e5
kinfuse forecasts                              confirmed forecasts of every study, with errors
kinfuse store --keep sweeps/*.yaml --delete    delete base runs no current sweep file uses
kinfuse knowledge latest-truthy.nt.bz2 --properties P19=born_in,P27=citizen_of --out facts.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

from kinfuse_ray.base_store import STORE
from kinfuse_ray.config import (
    LAW_FORMS,
    LAW_METHODS,
    MLFLOW_DEFAULTS,
    STEEPNESS_CHOICES,
    RayConfig,
    SweepConfig,
)
from kinfuse_ray.errors import KinfuseError

TRACKING_HELP = (
    f"the MLflow tracking store (default: {MLFLOW_DEFAULTS.tracking_uri}, in this folder)"
)


class Interrupted(KinfuseError):
    """Ctrl-C or SIGTERM ended a sweep: exit 130, with the command that resumes it."""


def _mlflow_ui_hint(uri: str, experiment: str) -> str:
    """How to browse the sweep: its experiment's runs in the MLflow UI (`experiment_page`)."""
    from mlflow.tracking import MlflowClient

    from kinfuse_ray.tracking import experiment_page

    found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    page = experiment_page(found.experiment_id) if found else ""
    if not uri.startswith("sqlite:"):
        return f"browse the runs: {uri.rstrip('/')}{page}"
    mlflow = Path(sys.executable).parent / "mlflow"
    return (
        f"browse the runs: {mlflow} ui --backend-store-uri {uri} --host 127.0.0.1\n"
        f"  then open http://127.0.0.1:5000{page}"
    )


def _sweep(args: argparse.Namespace) -> None:
    from kinfuse_ray.config import load_sweep

    sweep = load_sweep(args.sweep_file, args.set)
    if args.output_dir:
        sweep = sweep.model_copy(update={"output_dir": Path(args.output_dir)})
    from kinfuse_ray.provenance import pin_cpu_kernels

    pin_cpu_kernels(sweep.train.cpu_kernels)  # before torch is imported; run_sweep tells
    from kinfuse_ray.sweep import run_sweep  # heavy imports only once the file is valid

    try:
        summary = run_sweep(
            sweep, sweep_file=Path(args.sweep_file), resume=args.resume,
            progress_every=args.progress_every,
        )  # fmt: skip
    except KeyboardInterrupt:
        command = " ".join(["kinfuse", *(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")])
        raise Interrupted(f"interrupted; carry on with: {command} --resume") from None
    from kinfuse_ray.presentation import describe_answer

    print()
    print(describe_answer(summary))
    print(f"\nsummary.json and plots: {sweep.out}")
    print(f"wall time: {summary.wall_seconds:.0f} s")
    print(_mlflow_ui_hint(sweep.mlflow.tracking_uri, sweep.experiment))


def _plan(args: argparse.Namespace) -> None:
    from kinfuse_ray.config import load_sweep
    from kinfuse_ray.plan import plan_budget_exponent, plan_sweep
    from kinfuse_ray.presentation import describe_budget_plan, describe_plan
    from kinfuse_ray.tokens import planned_vocab_size

    sweep = load_sweep(args.sweep_file, args.set)
    vocab, note = planned_vocab_size(sweep.data)
    budgets = sweep.budgets or [sweep.train.tokens]
    # Refuses a rung that does not fit.
    plan = plan_sweep(
        sweep.name, list(sweep.rungs.values()), vocab, ratios=sweep.ratios,
        precision=sweep.search.precision, budgets=budgets, mfu=args.mfu,
        budget=sweep.search.budget,
    )  # fmt: skip
    print((f"note: {note}\n" if note else "") + describe_plan(plan))
    if args.simulate_decision:
        print(_simulated_decision(sweep, plan, args))
    if not (sweep.train.use_gpu or sweep.train.gpu or sweep.ray.address or args.no_probe):
        print(_cpu_time(sweep, plan))
    if sweep.budgets:
        scatter = args.scatter
        if args.law_file:
            from kinfuse_ray.law import InfusionLaw

            scatter = InfusionLaw.load(args.law_file).size_scatter
        confidence = sweep.predict.confidence
        budget = plan_budget_exponent(
            len(sweep.ladder), budgets, args.d_precision, scatter, confidence
        )
        print(describe_budget_plan(budget, confidence))


def _simulated_decision(sweep: SweepConfig, plan, args: argparse.Namespace) -> str:
    """The decision search's cost on ladders drawn from the law of --law-file."""
    from kinfuse_ray.law import InfusionLaw
    from kinfuse_ray.presentation import describe_simulated_decision
    from kinfuse_ray.replay import simulate_decision

    if not args.law_file:
        raise KinfuseError("--simulate-decision draws ladders from a fitted law: name its "
                           "law.json with --law-file")  # fmt: skip
    if sweep.predict.target is None:
        raise KinfuseError("--simulate-decision: the decision search narrows the forecast at "
                           "predict.target, and the sweep names none")  # fmt: skip
    law = InfusionLaw.load(args.law_file)
    simulated = simulate_decision(sweep, law, args.simulate_decision, seed=sweep.seed)
    return describe_simulated_decision(plan, simulated, args.law_file)


def _cpu_time(sweep: SweepConfig, plan) -> str:
    """A local CPU sweep's training time here, from its rungs' loops timed on this machine."""
    import statistics

    from kinfuse_ray.plan import cpu_seconds
    from kinfuse_ray.presentation import describe_cpu_time
    from kinfuse_ray.provenance import cpu_model, pin_cpu_kernels

    pin_cpu_kernels(sweep.train.cpu_kernels)  # the numeric path the trials will train on
    from kinfuse_ray.data import build_bundle
    from kinfuse_ray.probe import probe

    rungs, budgets = list(sweep.rungs.values()), sweep.budgets or [sweep.train.tokens]
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed, sweep.largest_knowledge_load)
    middle = statistics.median([r for r in sweep.ratios if r > 0] or [0.5])
    trials = {"grid": plan.grid_trials, "decision": plan.decision_trials}.get(
        sweep.search.strategy, plan.bisect_trials
    )
    cpus = sweep.ray.num_cpus or os.cpu_count() or 1
    time = cpu_seconds(rungs, probe(rungs, bundle, middle), trials // (len(rungs) * len(budgets)),
                       budgets, cpus // sweep.train.cpus_per_trial)  # fmt: skip
    return describe_cpu_time(time, f"{cpu_model()}, {cpus} CPUs")


def _tokenize(args: argparse.Namespace) -> None:
    from kinfuse_ray.config import load_sweep

    sweep = load_sweep(args.sweep_file, args.set)
    from kinfuse_ray.cluster import ray_session
    from kinfuse_ray.tokenize_job import tokenize_corpus

    with ray_session(sweep.ray):
        folder, tokens, seconds = tokenize_corpus(sweep.data)
    speed = (
        f" in {seconds:.0f} s ({tokens / seconds:,.0f} tokens/s)" if seconds else " (already done)"
    )
    print(f"{tokens:,} tokens in {folder}{speed}; sweeps of this corpus now read these shards")


# The law settings the command line can change, by settings field (FitSettings or
# ForecastSettings) and flag.
LAW_FLAGS = {"form": "--law", "method": "--method", "steepness": "--steepness",
             "threshold": "--threshold",
             "confidence": "--confidence", "tolerance": "--tolerance",
             "acquisition_target": "--acquisition-target"}  # fmt: skip


def _overrides(args: argparse.Namespace) -> dict:
    """Law settings given on the command line (None: the sweep's own)."""
    return {name: getattr(args, name) for name in LAW_FLAGS}


def _say(args: argparse.Namespace, text: str) -> None:
    """Text for people: to stdout, or to stderr under --json (stdout is the JSON)."""
    print(text, file=sys.stderr if getattr(args, "json", False) else sys.stdout, flush=True)


def _fit_recorded(args: argparse.Namespace):
    from kinfuse_ray.presentation import describe_law
    from kinfuse_ray.records import fit_recorded

    if not args.experiment:
        raise KinfuseError(f"{args.command} needs --experiment NAME")
    _say(args, f"kinfuse: fitting the law to the trials of {', '.join(args.experiment)} "
               f"recorded at {args.tracking_uri} (with each form's leave-one-size-out: seconds "
               "to a minute)")  # fmt: skip
    law, sweep, notes = fit_recorded(args.experiment, args.tracking_uri, _overrides(args))
    for note in notes:
        _say(args, note)
    _say(args, describe_law(law))
    return law, sweep


def _fit(args: argparse.Namespace) -> None:
    from kinfuse_ray.analysis import forecast
    from kinfuse_ray.plots import plot_law

    law, sweep = _fit_recorded(args)
    prediction = target = None
    if sweep is not None and sweep.target_point is not None:
        target = sweep.target_point.name
        prediction = forecast(law, sweep.target_point)
        from kinfuse_ray.presentation import describe_recommendation

        _say(args, "\n" + describe_recommendation(prediction, target))
    # Under the folder it is run from, never the recorded output_dir (an absolute path of the
    # machine and checkout the sweep ran in, a colleague's on a shared tracking server):
    # runs/<study>/refit, beside the sweep's own outputs where it runs where the sweep ran.
    name = sweep.name if sweep is not None else f"refit-{'+'.join(args.experiment)}"
    out = Path(args.out or Path("runs") / name / "refit").resolve()
    out.mkdir(parents=True, exist_ok=True)
    law.save(out / "law.json")
    title = "+".join(args.experiment)
    plot = plot_law(law, out / "collapse_vs_size.png", title, prediction, target or "target")
    _say(args, f"\nlaw: {out / 'law.json'}\nplot: {plot}")
    if args.json:
        print(json.dumps({"law": str(out / "law.json"), "plot": str(plot), "parameters":
                          law.parameters, "prediction": prediction and prediction.to_dict()}))  # fmt: skip


def _predict(args: argparse.Namespace) -> None:
    from kinfuse_ray.law import InfusionLaw

    if args.law_file:
        from kinfuse_ray.presentation import describe_law, describe_source

        _refuse_with_law_file(args)
        law = InfusionLaw.load(args.law_file)
        _say(args, describe_source(law))
        changes = {"confidence": args.confidence, "tolerance": args.tolerance}
        for name, value in changes.items():  # settings of the forecast, not of the fit
            if value is not None:
                before = getattr(law.forecast, name)
                _say(args, f"note: --{name} {value:g} overrides the law file's {before:g}")
        law = law.with_forecast(**{k: v for k, v in changes.items() if v is not None})
        _say(args, describe_law(law))
    elif args.experiment:
        law, _ = _fit_recorded(args)
    else:
        raise KinfuseError("predict needs --experiment NAME or --law-file FILE")
    prediction = law.at(args.n_params, args.tokens).prediction()  # warnings: printed below
    if args.json:
        source = {**law.source, "measurements": law.measurements}
        print(json.dumps({**prediction.to_dict(), "law_source": source}))
    else:
        from kinfuse_ray.presentation import describe_recommendation

        print("\n" + describe_recommendation(prediction, None))  # named by its size alone


def _refuse_with_law_file(args: argparse.Namespace) -> None:
    """A law file is already fitted: options that only a fit reads cannot apply to it."""
    if args.experiment:
        raise KinfuseError("give --law-file or --experiment, not both")
    from kinfuse_ray.law.settings import FIT_ONLY

    given = [flag for name, flag in LAW_FLAGS.items()
             if name in FIT_ONLY and getattr(args, name) is not None]  # fmt: skip
    if given:
        raise KinfuseError(
            f"{', '.join(given)} cannot apply to --law-file (the law was fitted with its own); "
            "refit with `kinfuse fit --experiment NAME` and these options"
        )


def _store(args: argparse.Namespace) -> None:
    from kinfuse_ray.base_store import BaseStore
    from kinfuse_ray.config import load_sweep
    from kinfuse_ray.presentation import describe_store

    store = BaseStore(Path(args.root))
    if not store.root.is_dir():
        raise KinfuseError(f"{store.root}: no base-run store there")
    if args.delete and not args.keep:
        raise KinfuseError("--delete needs --keep SWEEP_FILE: the sweep files whose runs stay")
    needed = _needed_keys([load_sweep(f) for f in args.keep]) if args.keep else None
    entries = store.entries()
    print(describe_store(store.root, entries, needed))
    if args.delete:
        gone = store.prune(needed)
        print(f"deleted {len(gone)} base runs ({sum(e.bytes for e in gone) / 1e6:.1f} MB)")


def _needed_keys(sweeps: list[SweepConfig]) -> set[str]:
    """The keys of every base run these sweeps use (this builds their data: the tokenizer and
    the corpus tokens, from the caches where they are there), on the CPU kernels each pins:
    what its trials train on, whatever kernels this process's torch picked."""
    from kinfuse_ray.base_store import key_inputs, key_of, pinned_kernels, rung_bundle
    from kinfuse_ray.config import Schedule
    from kinfuse_ray.data import build_bundle
    from kinfuse_ray.provenance import kernels  # imports torch: only where keys are asked for

    here, keys = kernels(), set()
    for sweep in sweeps:
        if sweep.train.schedule is not Schedule.continued:  # scratch trials use no base run
            continue
        bundle = build_bundle(sweep.data, sweep.eval, sweep.seed, sweep.largest_knowledge_load)
        for rung in sweep.rungs.values():
            facts = rung_bundle(rung, bundle)
            keys.add(key_of(key_inputs(rung, facts, pinned_kernels(rung, here))))
    return keys


def _show(args: argparse.Namespace) -> None:
    from kinfuse_ray.records import recorded_answer

    out = Path(args.report).resolve() if args.report else None
    if out is not None and not out.parent.is_dir():
        raise KinfuseError(f"--report: {out.parent} is not a folder")
    answer = "summary.json" if args.json else "answer.txt"
    texts, where = recorded_answer(args.tracking_uri, args.study,
                                   (answer, "report.html") if out else (answer,))  # fmt: skip
    _say(args, where)
    if out is not None:
        from kinfuse_ray.files import write_text_atomic

        _say(args, f"report: {write_text_atomic(out, texts[1])}")
    print(texts[0].rstrip())


def _forecasts(args: argparse.Namespace) -> None:
    from kinfuse_ray.presentation import describe_forecasts
    from kinfuse_ray.records import confirmed_forecasts

    forecasts = confirmed_forecasts(args.tracking_uri)
    if args.json:
        print(json.dumps([f.to_dict() for f in forecasts]))
    else:
        print(describe_forecasts(forecasts, args.tracking_uri))


def _knowledge(args: argparse.Namespace) -> None:
    from kinfuse_ray.wikidata import extract, parse_properties, write_triples

    properties = parse_properties(args.properties)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise KinfuseError(f"--out: {out.parent} is not a folder")
    options = dict(
        skip_malformed=args.skip_malformed,
        progress=lambda message: print(f"  {message}", flush=True),
    )
    if args.ray:
        from kinfuse_ray.cluster import ray_session

        # "local": a new instance of our own; "auto": the one `ray start` made here; HOST:PORT
        address = "" if args.ray == "local" else args.ray
        with ray_session(RayConfig(address=address), setting="--ray"):
            found = extract(args.dump, properties, parallel=True, **options)
    else:
        found = extract(args.dump, properties, **options)
    if not found.triples:
        raise KinfuseError(
            f"{args.dump}: no triples of {', '.join(properties)} kept ({found.report()})"
        )
    write_triples(found.triples, out)
    print(f"{found.report()}\ntriples: {out}")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _share(text: str) -> float:
    value = _positive(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not below 1")
    return value


class _Parser(argparse.ArgumentParser):
    """A wrong command line is one line and exit 2, like any other user mistake (argparse's own
    prints the whole usage first); `--help` still prints it. Subcommands use the same class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_sweep_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_file", help="the sweep file (YAML), e.g. sweeps/quickstart.yaml")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field of the sweep file, e.g. --set seed=1 --set name=ladder-s1",
    )


def _add_law_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--experiment",
        action="append",
        help="MLflow experiment (a study); repeat to combine sweeps",
    )
    parser.add_argument("--tracking-uri", default=MLFLOW_DEFAULTS.tracking_uri, help=TRACKING_HELP)
    law = parser.add_argument_group(
        "law settings", "default: the sweep's own, as recorded on its parent run"
    )
    law.add_argument("--threshold", type=_share, help="collapse threshold (x plateau)")
    law.add_argument("--law", dest="form", choices=["auto", *LAW_FORMS])
    law.add_argument("--method", choices=LAW_METHODS)
    law.add_argument("--steepness", choices=STEEPNESS_CHOICES,
                     help="the joint curve's steepness (auto: chosen by leave-one-size-out)")  # fmt: skip
    law.add_argument("--confidence", type=_share)
    law.add_argument("--tolerance", type=_share, help="retention kept at the recommended ratio")
    law.add_argument(
        "--acquisition-target", type=_share, help="acquisition that counts as learning the domain"
    )


def build_parser() -> argparse.ArgumentParser:
    from kinfuse_ray import __version__

    parser = _Parser(
        prog="kinfuse",
        description="Find where infusing domain knowledge into pretraining collapses what a "
        "model knew,\non a ladder of small models, and forecast it for a larger one.\n\n"
        + __doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kinfuse-ray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    sweep = sub.add_parser("sweep", help="run a sweep file end to end")
    _add_sweep_file(sweep)
    sweep.add_argument(
        "--output-dir", help="where summary.json and plots go (default: runs/<name>)"
    )
    sweep.add_argument(
        "--resume",
        action="store_true",
        help="carry on an interrupted run of this sweep: finished trials are kept, the others "
        "restart from their last checkpoints",
    )
    sweep.add_argument(
        "--progress-every",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="how often to print per-size progress and the time left (default 30)",
    )
    sweep.set_defaults(func=_sweep)

    plan = sub.add_parser(
        "plan", help="what a sweep needs: memory per GPU, GPU-hours, storage (a dry run)"
    )
    _add_sweep_file(plan)
    plan.add_argument(
        "--mfu", type=_share, default=0.4, help="assumed model FLOPs utilisation (default 0.4)"
    )
    budget = plan.add_argument_group(
        "size x budget ladders", "how precisely the ladder pins the D exponent, before any compute"
    )
    budget.add_argument(
        "--d-precision", type=float, default=0.25, help="wanted half-width of its interval"
    )
    budget.add_argument(
        "--scatter", type=float, default=0.3,
        help="sd, in logits, of a (size, budget) collapse point around the law (default 0.3)",
    )  # fmt: skip
    budget.add_argument("--law-file", help="take the scatter from a fitted law (law.json); "
                        "--simulate-decision draws its ladders from it")  # fmt: skip
    plan.add_argument(
        "--simulate-decision", type=int, metavar="LADDERS", default=0,
        help="also cost search.strategy decision by replaying it on this many ladders drawn "
        "from --law-file's law (its slope, curve shape, size scatter and trial noise)",
    )  # fmt: skip
    plan.add_argument("--no-probe", action="store_true", help="a local CPU sweep: skip timing "
                      "each rung's training loop here (seconds) for the time estimate")  # fmt: skip
    plan.set_defaults(func=_plan)

    tokenize = sub.add_parser(
        "tokenize", help="tokenize a sweep's corpus on Ray (Ray Data) into shards, resumable"
    )
    _add_sweep_file(tokenize)
    tokenize.set_defaults(func=_tokenize)

    fit = sub.add_parser("fit", help="refit the law from recorded trials; write JSON and plot")
    _add_law_source(fit)
    fit.add_argument(
        "--out", help="folder for law.json and the plot (default: runs/<study>/refit, here)"
    )
    fit.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    fit.set_defaults(func=_fit)

    predict = sub.add_parser("predict", help="recommend an infusion ratio for an untried size")
    _add_law_source(predict)
    predict.add_argument("--law-file", help="a law saved by `kinfuse fit` or a sweep")
    predict.add_argument("--n-params", type=_positive, required=True, help="non-embedding params")
    predict.add_argument("--tokens", type=_positive, help="token budget (default: the fitted one)")
    predict.add_argument("--json", action="store_true", help="print the forecast as JSON on stdout")
    predict.set_defaults(func=_predict)

    knowledge = sub.add_parser(
        "knowledge", help="Wikidata dump (JSON or truthy N-Triples) -> the project's triples"
    )
    knowledge.add_argument("dump", help="latest-all.json[.gz|.bz2] or latest-truthy.nt[.gz|.bz2]")
    knowledge.add_argument(
        "--properties", required=True, help="PID=relation pairs, e.g. P19=born_in,P106=works_as"
    )
    knowledge.add_argument("--out", required=True, help="the triples file to write (JSON Lines)")
    knowledge.add_argument(
        "--skip-malformed", action="store_true", help="count malformed lines instead of stopping"
    )
    knowledge.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="parse the dump on Ray Data: 'local' (a local instance), 'auto' (the cluster "
        "`ray start` made here) or HOST:PORT",
    )
    knowledge.set_defaults(func=_knowledge)

    store = sub.add_parser(
        "store", help="the shared base runs: what each was trained with, its size; delete old ones"
    )
    store.add_argument("--root", default=f"runs/{STORE}", help="default: runs/.kinfuse-base")
    store.add_argument(
        "--keep", nargs="+", default=[], metavar="SWEEP_FILE",
        help="mark the base runs these sweep files use (the others can be deleted)",
    )  # fmt: skip
    store.add_argument("--delete", action="store_true", help="delete the runs --keep does not use")
    store.set_defaults(func=_store)

    show = sub.add_parser("show", help="a study's answer as its latest sweep recorded it")
    show.add_argument("study", help="the MLflow experiment: the sweep's name (or study)")
    show.add_argument("--tracking-uri", default=MLFLOW_DEFAULTS.tracking_uri, help=TRACKING_HELP)
    show.add_argument("--json", action="store_true", help="its summary.json on stdout")
    show.add_argument("--report", metavar="FILE",
                      help="also write the sweep's report.html (the answer and interactive "
                           "charts, one file that opens offline) to FILE")  # fmt: skip
    show.set_defaults(func=_show)

    forecasts = sub.add_parser(
        "forecasts", help="every confirmed forecast in a tracking store, with its error"
    )
    forecasts.add_argument(
        "--tracking-uri", default=MLFLOW_DEFAULTS.tracking_uri, help=TRACKING_HELP
    )
    forecasts.add_argument("--json", action="store_true", help="print them as JSON on stdout")
    forecasts.set_defaults(func=_forecasts)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Interrupted as exc:
        print(f"kinfuse: {exc}", file=sys.stderr)
        return 130
    except KinfuseError as exc:
        print(f"kinfuse: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kinfuse: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (`kinfuse predict ... | head`): nothing to add
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 141  # as a shell reports a writer a closed pipe stopped (128 + SIGPIPE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
