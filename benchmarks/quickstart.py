"""Quickstart benchmark: wall time of the whole sweep (Ray start-up included), where that time
went, and each trial's training throughput next to a bare PyTorch loop on the same model and data.

    .venv/bin/python benchmarks/quickstart.py [sweeps/quickstart.yaml]

Runs the sweep into a scratch folder and MLflow store, so it never touches ./runs or ./mlflow.db.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kinfuse_ray.config import load_sweep
from kinfuse_ray.data import build_bundle
from kinfuse_ray.mixing import Stream
from kinfuse_ray.model import build_model
from kinfuse_ray.sweep import run_sweep
from kinfuse_ray.train import make_optimizer

BARE_STEPS = 40


def bare_loop_tokens_per_s(sweep, bundle, size_name: str) -> float:
    """The same model, optimizer, batches and thread count as a trial; nothing else."""
    torch.set_num_threads(sweep.train.cpus_per_trial)
    torch.manual_seed(0)
    model = build_model(sweep.size(size_name), bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    optimizer = make_optimizer(model, sweep.train)
    n_rows = (BARE_STEPS + 5) * sweep.train.batch_size
    stream = Stream(
        bundle.corpus, bundle.general_facts, bundle.domain_facts, 0.5, n_rows, bundle.seq_len,
        sweep.data.general_fact_share, seed=0,
    )  # fmt: skip
    rows = stream.rows(0, n_rows)
    batches = torch.from_numpy(rows.astype(np.int64)).split(sweep.train.batch_size)
    for i, batch in enumerate(batches):
        if i == 5:
            start = time.perf_counter()
        model(input_ids=batch, labels=batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return BARE_STEPS * sweep.train.batch_size * bundle.seq_len / (time.perf_counter() - start)


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "sweeps/quickstart.yaml")
    scratch = Path(tempfile.mkdtemp(prefix="kinfuse-bench-"))
    sweep = load_sweep(path)
    sweep = sweep.model_copy(
        update={
            "output_dir": scratch / "out",
            "mlflow": sweep.mlflow.model_copy(
                update={"tracking_uri": f"sqlite:///{scratch}/mlflow.db"}
            ),
        }
    )
    start = time.perf_counter()
    summary = run_sweep(sweep, path)
    wall = time.perf_counter() - start

    runs = summary.base_runs + summary.trials
    slots = 2 // sweep.train.cpus_per_trial  # trials that run at once on this 2-core machine
    train_s = sum(t.tokens_trained / t.tokens_per_s for t in runs)
    trial_s = sum(t.seconds for t in runs)
    print(f"\n== quickstart benchmark: {path} ({len(runs)} trials, {slots} at a time) ==")
    print(f"wall time, Ray start-up included:       {wall:7.1f} s")
    print(
        f"training (forward/backward/step):       {train_s / slots:7.1f} s of wall ({train_s / slots / wall:.0%})"
    )
    print(f"evaluation and in-trial set-up:         {(trial_s - train_s) / slots:7.1f} s of wall")
    print(f"waiting (Ray, scheduling, MLflow, data, idle slots): {wall - trial_s / slots:7.1f} s")

    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
    print(
        f"\n{'size':<10}{'n_params':>10}{'trial tok/s (median)':>22}{'bare loop tok/s':>17}{'ratio':>8}"
    )
    for size in sweep.ladder:
        trial_rates = [t.tokens_per_s for t in runs if t.size == size.name]
        bare = bare_loop_tokens_per_s(sweep, bundle, size.name)
        median = statistics.median(trial_rates)
        print(
            f"{size.name:<10}{sweep.n_params[size.name]:>10,}{median:>22,.0f}{bare:>17,.0f}{median / bare:>8.2f}"
        )
    print(
        "\n(trial tok/s ran two trials side by side on 2 cores; the bare loop ran alone, so a ratio"
        " below 1 includes contention for memory bandwidth as well as any framework overhead)"
    )


if __name__ == "__main__":
    main()
