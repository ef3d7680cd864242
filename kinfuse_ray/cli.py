"""`kinfuse` command line. User mistakes print one line and exit 2; no tracebacks.

kinfuse sweep sweeps/quickstart.yaml           run a sweep end to end
kinfuse sweep sweeps/quickstart.yaml --resume  carry on after a crash or Ctrl-C
kinfuse sweep sweeps/ladder_cpu.yaml --set seed=1 --set name=ladder_cpu-seed1
kinfuse plan sweeps/gpu_ladder.yaml            memory per GPU, GPU-hours and storage, no GPU needed
kinfuse tokenize sweeps/gpu_ladder.yaml        tokenize the corpus on Ray into shards, once
kinfuse fit --experiment quickstart            refit the law from MLflow, write JSON + plot
kinfuse predict --experiment quickstart --n-params 8e5
kinfuse predict --law-file runs/quickstart/law.json --n-params 8e5 --tokens 5e5
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from kinfuse_ray.errors import KinfuseError


class Interrupted(KinfuseError):
    """Ctrl-C or SIGTERM ended a sweep: exit 130, with the command that resumes it."""


def _print_prediction(prediction, target: str) -> None:
    print(
        f"\nrecommendation for {target} ({prediction.n_params:,.0f} non-embedding params, {prediction.tokens:,.0f} tokens):"
    )
    print(f"  {prediction.describe()}")
    for warning in prediction.warnings:
        print(f"  warning: {warning}")


def _mlflow_ui_hint(uri: str) -> str:
    if not uri.startswith("sqlite:"):
        return f"browse the runs: {uri}"
    mlflow = Path(sys.executable).parent / "mlflow"
    return f"browse the runs: {mlflow} ui --backend-store-uri {uri} --host 127.0.0.1  (then open http://127.0.0.1:5000)"


def _sweep(args: argparse.Namespace) -> None:
    from kinfuse_ray.config import load_sweep

    sweep = load_sweep(args.sweep_file, args.set)
    if args.output_dir:
        sweep = sweep.model_copy(update={"output_dir": Path(args.output_dir)})
    from kinfuse_ray.sweep import run_sweep  # heavy imports only once the file is valid

    try:
        summary = run_sweep(sweep, Path(args.sweep_file), args.resume, args.progress_every)
    except KeyboardInterrupt:
        command = " ".join(["kinfuse", *(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")])
        raise Interrupted(f"interrupted; carry on with: {command} --resume") from None
    print()
    print(summary.table())
    print()
    print(summary.law.report() if summary.law else f"no law fitted: {summary.law_note}")
    if len(summary.law_comparison) > 1:
        ranked = ", ".join(
            f"{c['law']} (held-out |log error| {c['held_out_log_error']}, AICc {c['aicc']:.1f})"
            for c in summary.law_comparison
        )
        print(f"  laws compared, best first: {ranked}")
    if summary.recommendation:
        _print_prediction(summary.recommendation, summary.target)
    print(f"\nsummary.json and plots: {sweep.out}")
    print(f"wall time: {summary.wall_seconds:.0f} s")
    print(_mlflow_ui_hint(sweep.mlflow.tracking_uri))


def _plan(args: argparse.Namespace) -> None:
    from kinfuse_ray.config import load_sweep
    from kinfuse_ray.plan import plan_sweep, render

    sweep = load_sweep(args.sweep_file, args.set)
    vocab, note = sweep.data.vocab_size, ""
    tokenizer = sweep.data.tokenizer and sweep.data.tokenizer / "tokenizer.json"
    if tokenizer and tokenizer.is_file():
        from tokenizers import Tokenizer

        vocab = max(vocab, Tokenizer.from_file(str(tokenizer)).get_vocab_size())
    elif tokenizer:
        note = f"note: {tokenizer} is not readable here; assuming data.vocab_size {vocab:,}\n"
    plan = plan_sweep(sweep, vocab, args.mfu)  # refuses a rung that does not fit
    print(note + render(plan, sweep))


def _tokenize(args: argparse.Namespace) -> None:
    from kinfuse_ray.config import load_sweep

    sweep = load_sweep(args.sweep_file, args.set)
    from kinfuse_ray.sweep import connect_ray
    from kinfuse_ray.tokenize_job import tokenize_corpus

    started = connect_ray(sweep)
    try:
        folder, tokens, seconds = tokenize_corpus(sweep)
    finally:
        if started:
            import ray

            ray.shutdown()
    speed = (
        f" in {seconds:.0f} s ({tokens / seconds:,.0f} tokens/s)" if seconds else " (already done)"
    )
    print(f"{tokens:,} tokens in {folder}{speed}; sweeps of this corpus now read these shards")


def _law_options(args: argparse.Namespace) -> dict:
    return {
        "form": args.law,
        "target": args.target,
        "confidence": args.confidence,
        "safety_margin": args.safety_margin,
    }


def _fit(args: argparse.Namespace) -> None:
    from kinfuse_ray.law import InfusionLaw
    from kinfuse_ray.plots import plot_law

    if not args.experiment:
        raise KinfuseError("fit needs --experiment NAME")
    law = InfusionLaw.from_mlflow(
        args.experiment, args.tracking_uri, args.threshold, **_law_options(args)
    )
    print(law.report())
    law.save(args.out)
    print(f"\nlaw: {args.out}")
    title = "+".join(args.experiment)
    print(f"plot: {plot_law(law, Path(args.plot), title)}")


def _predict(args: argparse.Namespace) -> None:
    from kinfuse_ray.law import InfusionLaw

    if args.law_file:
        law = InfusionLaw.load(args.law_file)
    elif args.experiment:
        law = InfusionLaw.from_mlflow(
            args.experiment, args.tracking_uri, args.threshold, **_law_options(args)
        )
    else:
        raise KinfuseError("predict needs --experiment NAME or --law-file FILE")
    print(law.report())
    _print_prediction(law.predict(args.n_params, args.tokens), f"N = {args.n_params:,.0f}")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _share(text: str) -> float:
    value = _positive(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not below 1")
    return value


def _add_law_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--experiment",
        action="append",
        help="MLflow experiment (a study); repeat to combine sweeps",
    )
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="collapse threshold (x plateau)"
    )
    parser.add_argument("--law", default="auto", choices=["auto", "power_n", "power_nd"])
    parser.add_argument("--target", default="auto", choices=["auto", "general_share", "ratio"])
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--safety-margin", type=float, default=0.1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kinfuse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sweep = sub.add_parser("sweep", help="run a sweep file end to end")
    sweep.add_argument("sweep_file")
    sweep.add_argument(
        "--output-dir", help="where summary.json and plots go (default: runs/<name>)"
    )
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a field of the sweep file, e.g. --set seed=1 --set name=ladder-s1",
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
    plan.add_argument("sweep_file")
    plan.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    plan.add_argument(
        "--mfu", type=_share, default=0.4, help="assumed model FLOPs utilisation (default 0.4)"
    )
    plan.set_defaults(func=_plan)

    tokenize = sub.add_parser(
        "tokenize", help="tokenize a sweep's corpus on Ray (Ray Data) into shards, resumable"
    )
    tokenize.add_argument("sweep_file")
    tokenize.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    tokenize.set_defaults(func=_tokenize)

    fit = sub.add_parser("fit", help="refit the law from recorded trials; write JSON and plot")
    _add_law_source(fit)
    fit.add_argument("--out", default="law.json")
    fit.add_argument("--plot", default="collapse_vs_size.png")
    fit.set_defaults(func=_fit)

    predict = sub.add_parser("predict", help="recommend an infusion ratio for an untried size")
    _add_law_source(predict)
    predict.add_argument("--law-file", help="a law saved by `kinfuse fit` or a sweep")
    predict.add_argument("--n-params", type=_positive, required=True, help="non-embedding params")
    predict.add_argument("--tokens", type=_positive, help="token budget (default: the fitted one)")
    predict.set_defaults(func=_predict)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
