"""Quickstart benchmark: wall time of the whole sweep (Ray start-up included), where that time
went, and each trial's training throughput next to a bare PyTorch loop on the same model and data.

    .venv/bin/python benchmarks/quickstart.py [sweeps/quickstart.yaml]

Runs the sweep into a scratch folder and MLflow store, so it never touches ./runs or ./mlflow.db.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from kinfuse_ray.config import load_sweep
from kinfuse_ray.data import build_bundle
from kinfuse_ray.mixing import Stream
from kinfuse_ray.model import build_model
from kinfuse_ray.sweep import run_sweep
from kinfuse_ray.train import make_optimizer

BARE_STEPS = 300  # steps timed per size (seconds, not fractions of one: short runs are noise)


def bare_loop_tokens_per_s(sweep, bundle, size_name: str) -> float:
    """The same model, optimizer, batches and thread count as a trial; nothing else."""
    torch.set_num_threads(sweep.train.cpus_per_trial)
    torch.manual_seed(0)
    model = build_model(sweep.size(size_name), bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    optimizer = make_optimizer(model, sweep.train)
    n_rows = (BARE_STEPS + 5) * sweep.train.batch_size
    stream = Stream(
        bundle.corpus, bundle.general_facts, bundle.domain_facts, ratio=0.5, n_sequences=n_rows,
        seq_len=bundle.seq_len, fact_share=sweep.data.general_fact_share, seed=0,
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


def bare_rate(sweep, bundle, size_name: str, processes: int) -> float:
    """Mean tokens/s of the bare loop run in `processes` fresh processes at once."""
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        args = [sweep] * processes, [bundle] * processes, [size_name] * processes
        return statistics.mean(pool.map(bare_loop_tokens_per_s, *args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_file", nargs="?", default="sweeps/quickstart.yaml")
    path = Path(parser.parse_args().sweep_file)
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
    summary = run_sweep(sweep, sweep_file=path)
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
        f"\n{'size':<8}{'n_params':>9}{'trial tok/s':>13}{'bare, alone':>13}"
        f"{'bare, x' + str(slots):>11}{'trial/bare x' + str(slots):>16}"
    )
    for size in sweep.ladder:
        trial = statistics.median(t.tokens_per_s for t in runs if t.size == size.name)
        # Fresh processes, like the trials'; `slots` at a time, as the trials ran.
        alone, side = (bare_rate(sweep, bundle, size.name, n) for n in (1, slots))
        print(
            f"{size.name:<8}{sweep.n_params[size.name]:>9,}{trial:>13,.0f}{alone:>13,.0f}"
            f"{side:>11,.0f}{trial / side:>16.2f}"
        )
    print(
        f"\n(trials ran {slots} side by side on the cores; 'bare, x{slots}' runs the bare loop the"
        " same way, so trial/bare compares like with like; 'alone' shows what contention costs)"
    )


if __name__ == "__main__":
    main()
