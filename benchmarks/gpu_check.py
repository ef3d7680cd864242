"""The GPU check: the project's own trial code (not a toy loop) on one GPU, without Ray or MLflow.

For the two smallest rungs of a ladder file (default sweeps/gpu_ladder.yaml) at its sequence
length, in bf16 with torch.compile, inside a one-process NCCL group (so every collective the
trial makes really runs on NCCL): a base run with full evaluations, an infusion trial from the
base checkpoint, and the same trial resumed from a checkpoint it saved midway; then one FSDP2
run with activation checkpointing. Data: the bundled corpus and knowledge base (no network).
Prints tokens/s and MFU (steady state, after compilation), peak GPU memory against
`kinfuse plan`'s estimate, and evaluation time as a share of the trial, measured and at the
ladder's own evaluation cadence.

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
from kinfuse_ray.parallel import Dist, resolve_device  # noqa: E402
from kinfuse_ray.plan import GIB, training_memory  # noqa: E402
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
    """A trial's reporter: keeps every evaluation's metrics and saves one checkpoint midway."""

    def __init__(self, folder: Path, save_at: int):
        self.reports: list[dict] = []
        self.folder, self.save_at, self.saved = folder, save_at, None

    def __call__(self, metrics: dict, save) -> None:
        self.reports.append(dict(metrics))
        if save is not None and len(self.reports) == self.save_at:
            save(self.folder)
            self.saved = self.folder

    def steady_tokens_per_s(self) -> float:
        """Between the second and the last evaluation: compilation and warm-up left out."""
        first, last = self.reports[1], self.reports[-1]
        seconds = [r["tokens"] / r["tokens_per_s"] for r in (first, last)]
        return (last["tokens"] - first["tokens"]) / (seconds[1] - seconds[0])

    def eval_seconds_each(self) -> float:
        last = self.reports[-1]
        train_s = last["tokens"] / last["tokens_per_s"]
        return last["eval_share"] * train_s / (1 - last["eval_share"]) / len(self.reports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_file", nargs="?", default=str(REPO / "sweeps" / "gpu_ladder.yaml"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", type=int, default=2, help="the smallest this many rungs")
    parser.add_argument("--steps", type=int, default=40, help="base-run steps per rung")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per step")
    parser.add_argument("--tiny", action="store_true", help="tiny rungs: the path on a CPU")
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
    missing = compile_missing(device) if sweep.train.compile else []
    if missing:
        print(f"gpu_check: torch.compile needs {' and '.join(missing)}: running with "
              "compile=false", flush=True)  # fmt: skip
        sweep = load_sweep(args.sweep_file, [*check_settings(args), "train.compile=false"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name}; torch {torch.__version__}; seq_len {sweep.data.seq_len}; "
        f"compile {sweep.train.compile}; global batch {sweep.train.batch_size} "
        f"(micro {sweep.train.micro_batch_size})",
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
    for size in sizes:
        failures += check_rung(sweep, bundle, size, dist, out, cadence)
    failures += check_fsdp(sweep, bundle, sizes[0], dist)
    torch.distributed.destroy_process_group()
    print(f"gpu_check: {'FAILED: ' + '; '.join(failures) if failures else 'all checks passed'}")
    sys.exit(1 if failures else 0)


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def check_rung(sweep, bundle, size, dist: Dist, out: Path, cadence: int) -> list[str]:
    """Base run, infusion from its checkpoint, and that infusion resumed midway."""
    failures = []
    _reset_memory(dist.device)
    began = time.perf_counter()
    base = Recorder(out / f"{size.name}-base-mid", save_at=0)
    run_trial(
        TrialSpec(Phase.base, size.name, 0.0), sweep=sweep, bundle=bundle, report=base, dist=dist
    )
    base_s = time.perf_counter() - began
    peak = _peak_gib(dist.device)
    cfg = sweep.train_for(size.name)
    estimate = training_memory(
        size, bundle.vocab_size, bundle.seq_len, cfg.micro_batch_size or cfg.batch_size,
        gpu=dist.device.type == "cuda",
    ).total / GIB  # fmt: skip
    speed = base.steady_tokens_per_s()
    last = base.reports[-1]
    mfu = last.get("mfu", 0) * speed / last["tokens_per_s"] if "mfu" in last else None
    each = base.eval_seconds_each()
    print(
        f"{size.name:<8} {sweep.n_params[size.name]:>13,} non-embedding params | base run "
        f"{base_s:.0f} s, {len(base.reports)} evaluations of {each:.2f} s | steady "
        f"{speed:,.0f} tokens/s, MFU {f'{mfu:.1%}' if mfu is not None else 'n/a'}",
        flush=True,
    )
    memory = f"{peak:.1f} GiB" if peak is not None else "n/a (CPU)"
    print(
        f"{'':<8} peak memory {memory}; kinfuse plan estimates {estimate:.1f} GiB"
        + (f" (estimate / measured {estimate / peak:.2f})" if peak else "")
        + f" | eval share {last['eval_share']:.1%} here, "
        f"{each / (each + cadence / speed):.2%} at the ladder's every {cadence:,} tokens",
        flush=True,
    )
    infuse = TrialSpec(Phase.infuse, size.name, 0.1)
    whole = Recorder(out / f"{size.name}-infuse-mid", save_at=1)
    final = run_trial(infuse, sweep=sweep, bundle=bundle, report=whole, dist=dist)
    if whole.saved is None:
        return [f"{size.name}: no mid-run checkpoint to resume from"]
    resumed = run_trial(infuse, sweep=sweep, bundle=bundle, report=Recorder(out / "unused", 0),
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
    _reset_memory(dist.device)
    recorder = Recorder(Path(), save_at=0)
    final = run_trial(
        TrialSpec(Phase.infuse, size.name, 0.1), sweep=sharded, bundle=bundle, report=recorder,
        dist=dist,
    )  # fmt: skip
    peak = _peak_gib(dist.device)
    print(
        f"fsdp     {size.name}: {final['tokens']:,.0f} tokens, val loss {final['val_loss']:.3f}, "
        f"{final['tokens_per_s']:,.0f} tokens/s (compile included)"
        + (f", peak memory {peak:.1f} GiB" if peak is not None else ""),
        flush=True,
    )
    return [] if final["tokens"] > 0 and final["val_loss"] == final["val_loss"] else ["fsdp run"]


if __name__ == "__main__":
    main()
