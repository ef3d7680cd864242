"""The GPU check: the project's own trial code (not a toy loop) on one GPU, without Ray or MLflow.

For the two smallest rungs of a ladder file (default sweeps/gpu_ladder.yaml) at its sequence
length, in bf16 with torch.compile, inside a one-process NCCL group (so every collective the
trial makes really runs on NCCL): a base run with full evaluations, an infusion trial from the
base checkpoint, and the same trial resumed from a checkpoint it saved midway; then one FSDP2
run with activation checkpointing. Data: the bundled corpus and knowledge base (no network).
Prints tokens/s and MFU (steady state, after compilation), peak training memory against
`kinfuse plan`'s estimate, and evaluation and checkpoint time as shares of the trial, measured
and at the ladder's own evaluation cadence. `--memory-rung NAME` also trains one rung of the
ladder (a large one: the plan's estimate matters most near the card's limit) for a few steps at
the ladder's micro-batch and sequence length, FSDP2 in a group of one for an fsdp rung, and sets
its peak beside the plan's estimate for one GPU and for the ladder's worker count.

    bash benchmarks/gpu_check.sh                 # on the GPU machine (see that script)
    python benchmarks/gpu_check.py --device cpu --tiny   # the same code path on CPU, gloo
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout, installed or not

from kinfuse_ray.config import BUNDLED_DATA, Schedule, load_sweep  # noqa: E402
from kinfuse_ray.data import build_bundle  # noqa: E402
from kinfuse_ray.hardware import GPUS  # noqa: E402
from kinfuse_ray.parallel import Dist, resolve_device  # noqa: E402
from kinfuse_ray.plan import FITS_BELOW, GIB, TIGHT_ABOVE, training_memory  # noqa: E402
from kinfuse_ray.spec import Phase, TrialSpec  # noqa: E402
from kinfuse_ray.trial import run_trial  # noqa: E402

TINY = [  # --tiny: the code path on a CPU in a minute
    "ladder=[{name: t1, hidden_size: 64, n_layers: 2, n_heads: 2},"
    " {name: t2, hidden_size: 96, n_layers: 2, n_heads: 2}]",
    "data.seq_len=128",
    "data.vocab_size=1024",
    "train.micro_batch_size=4",
    "train.compile=false",
]


def check_settings(args: argparse.Namespace) -> list[str]:
    """The ladder file with the bundled data and a budget of a few minutes."""
    knowledge = BUNDLED_DATA / "knowledge"
    steps = args.steps
    batch = args.batch_size
    seq = 128 if args.tiny else load_sweep(args.sweep_file).data.seq_len
    tokens = steps * batch * seq
    return [
        f"data.corpus={BUNDLED_DATA / 'corpus' / 'shakespeare.txt.gz'}",
        f"data.general_facts={knowledge / 'general.jsonl'}",
        f"data.domain_facts={knowledge / 'domain.jsonl'}",
        f"data.templates={knowledge / 'templates.json'}",
        "data.tokenizer=null",
        "data.n_general_facts=2000",
        "data.n_domain_facts=6000",
        "data.domain_facts_exponent=0",
        f"train.batch_size={batch}",
        "train.workers=1",
        "train.cpus_per_trial=8",
        f"train.base_tokens={tokens}",
        f"train.tokens={tokens // 2}",
        f"eval.every_tokens={tokens // 4}",
        f"output_dir={args.out}",
        *(TINY if args.tiny else []),
        *args.set,
    ]


def compile_missing(device: torch.device) -> list[str]:
    """What torch.compile lacks here: on CUDA, Triton builds a launcher with a C compiler
    against the Python headers; a bare image may have neither."""
    if device.type != "cuda":
        return []
    missing = []
    if not any(shutil.which(cc) for cc in (os.environ.get("CC", "cc"), "gcc", "clang")):
        missing.append("a C compiler")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        missing.append("the Python headers (Python.h)")
    return missing


def init_group(device: torch.device) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.distributed.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=0,
        world_size=1,
        device_id=device if device.type == "cuda" else None,
    )


class Recorder:
    """A trial's reporter: keeps every evaluation's metrics and, like a Ray trial, saves a
    checkpoint at each (into a folder dropped at the next, except the `save_at`-th, kept)."""

    def __init__(self, folder: Path, save_at: int):
        self.reports: list[dict] = []
        self.folder, self.save_at, self.saved = folder, save_at, None

    def __call__(self, metrics: dict, save) -> None:
        self.reports.append(dict(metrics))
        if save is None:
            return
        keep = len(self.reports) == self.save_at
        folder = self.folder if keep else self.folder.with_name(f"{self.folder.name}-dropped")
        save(folder)
        if keep:
            self.saved = folder
        else:
            shutil.rmtree(folder, ignore_errors=True)

    def steady_tokens_per_s(self) -> float:
        """Between the second and the last evaluation: compilation and warm-up left out."""
        first, last = self.reports[1], self.reports[-1]
        seconds = [r["tokens"] / r["tokens_per_s"] for r in (first, last)]
        return (last["tokens"] - first["tokens"]) / (seconds[1] - seconds[0])

    def seconds_each(self) -> tuple[float, float]:
        """(an evaluation, a checkpoint) in seconds: the last report's shares of the trial."""
        last = self.reports[-1]
        train_s = last["tokens"] / last["tokens_per_s"]
        wall = train_s / (1 - last["eval_share"] - last["checkpoint_share"])
        saves = max(1, len(self.reports) - 1)  # the final evaluation offers none
        return last["eval_share"] * wall / len(self.reports), last[
            "checkpoint_share"
        ] * wall / saves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_file", nargs="?", default=str(REPO / "sweeps" / "gpu_ladder.yaml"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", type=int, default=2, help="the smallest this many rungs")
    parser.add_argument("--steps", type=int, default=40, help="base-run steps per rung")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    parser.add_argument("--tiny", action="store_true", help="tiny rungs: the path on a CPU")
    parser.add_argument(
        "--memory-rung", action="append", default=[], metavar="NAME",
        help="also measure this rung's peak training memory on one GPU against the plan",
    )  # fmt: skip
    parser.add_argument("--memory-steps", type=int, default=3, help="steps of --memory-rung")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="kinfuse-gpu-check-"))
    args = parser.parse_args()

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: CUDA is not available here (use --device cpu --tiny for a dry run)")
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    os.environ.setdefault("KINFUSE_CACHE", str(Path(args.out) / "cache"))
    ladder = load_sweep(args.sweep_file)
    cadence = ladder.eval.every_tokens  # the real ladder's, for the projected eval share
    sweep = load_sweep(args.sweep_file, check_settings(args))
    unknown = sorted(set(args.memory_rung) - {size.name for size in sweep.ladder})
    if unknown:
        sys.exit(f"gpu_check: --memory-rung {', '.join(unknown)}: not a rung of the checked ladder")
    missing = compile_missing(device) if sweep.train.compile else []
    if missing:
        print(f"gpu_check: torch.compile needs {' and '.join(missing)}: running with "
              "compile=false", flush=True)  # fmt: skip
        sweep = load_sweep(args.sweep_file, [*check_settings(args), "train.compile=false"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name}; torch {torch.__version__}; seq_len {sweep.data.seq_len}; "
        f"compile {sweep.train.compile}; global batch {sweep.train.batch_size} "
        f"(micro {sweep.train.micro_batch_size})\nMFU: (6 x matmul parameters, LM head included,"
        " + 12 x layers x hidden x seq_len attention) FLOPs per token over the card's dense bf16"
        " peak (hardware.py); tokens/s and MFU are steady state, after compilation",
        flush=True,
    )
    init_group(device)
    dist = Dist(0, 1, device)
    started = time.perf_counter()
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
    print(f"data ready in {time.perf_counter() - started:.0f} s; vocab {bundle.vocab_size}")
    sizes = sorted(sweep.ladder, key=lambda s: sweep.n_params[s.name])[: args.sizes]
    out = Path(args.out)
    failures = []
    # Memory rungs first: they need no base run, and a limit that ends the check early then
    # leaves the numbers that take longest to get.
    for name in args.memory_rung:
        failures += check_memory(sweep, bundle, name, dist, args.memory_steps, ladder.train)
    for size in sizes:
        failures += check_rung(sweep, bundle, size, dist, out, cadence)
    failures += check_fsdp(sweep, bundle, sizes[0], dist)
    torch.distributed.destroy_process_group()
    print(f"gpu_check: {'FAILED: ' + '; '.join(failures) if failures else 'all checks passed'}")
    sys.exit(1 if failures else 0)


def trial(spec: TrialSpec, sweep, **kwargs) -> dict:
    """One trial of `sweep`'s rung `spec.size`, as a sweep runs it."""
    return run_trial(spec, rung=sweep.rungs[spec.size], out=sweep.out, **kwargs)


def check_rung(sweep, bundle, size, dist: Dist, out: Path, cadence: int) -> list[str]:
    """Base run, infusion from its checkpoint, and that infusion resumed midway."""
    failures = []
    began = time.perf_counter()
    base = Recorder(out / f"{size.name}-base-mid", save_at=0)
    trial(TrialSpec(Phase.base, size.name, 0.0), sweep=sweep, bundle=bundle, report=base, dist=dist)
    base_s = time.perf_counter() - began
    cfg = sweep.rungs[size.name].train
    estimate = training_memory(
        size, bundle.vocab_size, bundle.seq_len, cfg.micro_batch_size or cfg.batch_size,
        parallelism=cfg.parallelism, gpu=dist.device.type == "cuda",
    ).total / GIB  # fmt: skip
    speed = base.steady_tokens_per_s()
    last = base.reports[-1]
    mfu = last.get("mfu", 0) * speed / last["tokens_per_s"] if "mfu" in last else None
    eval_each, checkpoint_each = base.seconds_each()
    print(
        f"{size.name:<8} {sweep.n_params[size.name]:>13,} non-embedding params | base run "
        f"{base_s:.0f} s, {len(base.reports)} evaluations of {eval_each:.2f} s | steady "
        f"{speed:,.0f} tokens/s, MFU {f'{mfu:.1%}' if mfu is not None else 'n/a'}",
        flush=True,
    )
    peak = last.get("gpu_memory_gib")
    memory = f"{peak:.1f} GiB" if peak is not None else "n/a (CPU)"
    between = cadence / speed  # seconds of training between two of the ladder's evaluations
    print(
        f"{'':<8} peak training memory {memory}; kinfuse plan estimates {estimate:.1f} GiB"
        + (f" (estimate / measured {estimate / peak:.2f})" if peak else ""),
        flush=True,
    )
    print(
        f"{'':<8} evaluation {last['eval_share']:.1%} of the run here, "
        f"{eval_each / (eval_each + between):.2%} at the ladder's every {cadence:,} tokens (on "
        f"any number of GPUs: each rank scores 1/world); checkpoints {checkpoint_each:.2f} s "
        f"each, {last['checkpoint_share']:.1%} here, "
        f"{checkpoint_each / (checkpoint_each + eval_each + between):.2%} at that cadence",
        flush=True,
    )
    infuse = TrialSpec(Phase.infuse, size.name, 0.1)
    whole = Recorder(out / f"{size.name}-infuse-mid", save_at=1)
    final = trial(infuse, sweep=sweep, bundle=bundle, report=whole, dist=dist)
    if whole.saved is None:
        return [f"{size.name}: no mid-run checkpoint to resume from"]
    resumed = trial(infuse, sweep=sweep, bundle=bundle, report=Recorder(out / "unused", 0),
                        dist=dist, resume=whole.saved)  # fmt: skip
    gap = abs(resumed["val_loss"] - final["val_loss"])
    ok = resumed.get("resumed_at_tokens", 0) > 0 and gap < 0.05
    print(
        f"{'':<8} infusion from the base checkpoint: retention {final['retention']:.2f}, "
        f"val loss {final['val_loss']:.3f}; resumed midway: val loss {resumed['val_loss']:.3f} "
        f"({'ok' if ok else 'MISMATCH'})",
        flush=True,
    )
    if not ok:
        failures.append(f"{size.name}: resumed run ended at val loss off by {gap:.3f}")
    return failures


def check_fsdp(sweep, bundle, size, dist: Dist) -> list[str]:
    """A short FSDP2 run (with activation checkpointing) of the smallest rung."""
    sharded = sweep.model_copy(
        update={
            "train": sweep.train.model_copy(
                update={
                    "parallelism": "fsdp",
                    "activation_checkpointing": True,
                    "schedule": Schedule.scratch,
                }
            ),
            "output_dir": sweep.out / "fsdp",
        }
    )
    sharded = sharded.model_copy(
        update={"train": sharded.train.model_copy(update={"tokens": sweep.train.tokens // 4})}
    )
    recorder = Recorder(sweep.out / "fsdp-checkpoint", save_at=0)
    final = trial(
        TrialSpec(Phase.infuse, size.name, 0.1), sweep=sharded, bundle=bundle, report=recorder,
        dist=dist,
    )  # fmt: skip
    peak = final.get("gpu_memory_gib")
    print(
        f"fsdp     {size.name}: {final['tokens']:,.0f} tokens, val loss {final['val_loss']:.3f}, "
        f"{final['tokens_per_s']:,.0f} tokens/s (compile included)"
        + (f", peak memory {peak:.1f} GiB" if peak is not None else ""),
        flush=True,
    )
    return [] if final["tokens"] > 0 and final["val_loss"] == final["val_loss"] else ["fsdp run"]


def check_memory(sweep, bundle, name: str, dist: Dist, steps: int, ladder_train) -> list[str]:
    """`steps` training steps of rung `name` at the ladder's micro-batch and sequence length on
    this one device (an fsdp rung: FSDP2 in a group of one, so whole states and bf16 layers
    gathered one at a time), its peak beside the plan's estimate for one GPU; the same
    difference carried to the ladder's worker count. Fails when the plan underestimates by more
    than its margin (plan.TIGHT_ABOVE) leaves room for."""
    size, cfg = sweep.size(name), sweep.rungs[name].train
    micro = cfg.micro_batch_size or cfg.batch_size
    # A rank's rows of the ladder's global batch, in the ladder's micro-batches: gradients
    # accumulate over them as in the ladder (what DDP's copies, if any, would show).
    rows = max(micro, ladder_train.batch_size // ladder_train.workers)
    tokens = steps * rows * bundle.seq_len
    probe = sweep.model_copy(
        update={
            "train": sweep.train.model_copy(
                update={
                    "batch_size": rows,
                    "micro_batch_size": micro,
                    "tokens": tokens,
                    "schedule": Schedule.scratch,
                }
            ),
            "eval": sweep.eval.model_copy(update={"every_tokens": tokens}),
            "output_dir": sweep.out / f"memory-{name}",
        }
    )
    began = time.perf_counter()
    final = trial(
        TrialSpec(Phase.infuse, name, 0.1), sweep=probe, bundle=bundle,
        report=Recorder(probe.out / "checkpoint", save_at=0), dist=dist,
    )  # fmt: skip
    mode = cfg.parallelism + ("+ac" if cfg.activation_checkpointing else "")

    def plan(workers: int) -> float:
        return training_memory(
            size, bundle.vocab_size, bundle.seq_len, micro, workers, cfg.parallelism,
            cfg.activation_checkpointing, gpu=dist.device.type == "cuda",
        ).total / GIB  # fmt: skip

    peak, one, many = final.get("gpu_memory_gib"), plan(1), plan(ladder_train.workers)
    line = (
        f"memory   {name} ({mode}, {rows} rows a step in micro-batches of {micro} x "
        f"{bundle.seq_len}, {steps} steps, "
        f"{time.perf_counter() - began:.0f} s): plan for one GPU {one:.1f} GiB"
    )
    if peak is None:
        print(f"{line}; measured n/a (CPU)", flush=True)
        return []
    gpu = GPUS.get(ladder_train.gpu) if ladder_train.gpu else None
    usable = f", usable on a {ladder_train.gpu} {FITS_BELOW * gpu.memory_gib:.1f}" if gpu else ""
    print(
        f"{line}, measured {peak:.1f} (estimate / measured {one / peak:.2f}); for the ladder's "
        f"{ladder_train.workers} GPUs per trial the plan says {many:.1f}, "
        f"{many + peak - one:.1f} with the difference measured here{usable}",
        flush=True,
    )
    if peak * TIGHT_ABOVE > one:
        return [f"{name}: the plan underestimates training memory by {1 - one / peak:.0%}"]
    return []


if __name__ == "__main__":
    main()
