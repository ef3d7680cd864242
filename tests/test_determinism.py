"""The same sweep file and seed give the same data stream and, on CPU, the same metrics; a trial
resumed from a mid-run state ends exactly where an uninterrupted one does."""

import os
import subprocess
import sys

import numpy as np
import pytest

from kinfuse_ray.checkpoint import read_progress
from kinfuse_ray.config import parse_sweep
from kinfuse_ray.data import build_bundle
from kinfuse_ray.mixing import Stream
from kinfuse_ray.provenance import PINNING_VARIABLES
from kinfuse_ray.spec import Phase, TrialSpec
from kinfuse_ray.trial import run_trial

from .helpers import micro_sweep

pytestmark = pytest.mark.unit

SWEEP = micro_sweep(
    name="det",
    seed=3,
    train={"schedule": "scratch", "tokens": 20_000},
    eval={"every_tokens": 5_000, "acquisition_probes": 40, "val_sequences": 4},
)
TRIAL = TrialSpec(Phase.infuse, "a", 0.5)


def run(sweep, bundle, resume=None):
    """Final metrics and [(metrics, checkpoint folder or None)] of every evaluation."""
    reports = []

    def report(metrics, save):
        folder = None
        if save is not None:  # written now, as the orchestration layer would
            folder = sweep.out / "checkpoints" / f"{id(reports)}-{len(reports)}"
            save(folder)
        reports.append((metrics, folder))

    final = run_trial(
        TRIAL, rung=sweep.rungs["a"], out=sweep.out, bundle=bundle, report=report, resume=resume
    )
    return final, reports


def metrics_only(metrics):
    timing = {"tokens_per_s", "first_step_at", "eval_share", "checkpoint_share"}
    return {k: v for k, v in metrics.items() if k not in timing}


def test_same_file_and_seed_give_the_same_stream_and_metrics(tmp_path):
    sweep = parse_sweep({**SWEEP, "output_dir": str(tmp_path)})
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
    again = build_bundle(sweep.data, sweep.eval, sweep.seed)
    streams = [
        Stream(
            b.corpus,
            b.general_facts,
            b.domain_facts,
            ratio=0.5,
            n_sequences=320,
            seq_len=64,
            fact_share=0.8,
            seed=3,
        ).rows(0, 320)  # fmt: skip
        for b in (bundle, again)
    ]
    assert np.array_equal(streams[0], streams[1])
    first, first_reports = run(sweep, bundle)
    second, _ = run(sweep, again)
    assert metrics_only(first) == metrics_only(second)
    assert len(first_reports) == 5  # every 9 steps (4,608 tokens) and at the end

    other = parse_sweep({**SWEEP, "seed": 4, "output_dir": str(tmp_path)})
    assert metrics_only(run(other, bundle)[0]) != metrics_only(first)


def test_a_trial_resumed_from_its_state_ends_where_the_uninterrupted_one_does(tmp_path):
    sweep = parse_sweep({**SWEEP, "output_dir": str(tmp_path)})
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
    final, reports = run(sweep, bundle)
    metrics, folder = reports[1]  # as if killed after the second evaluation
    assert folder is not None and read_progress(folder)["tokens"] == metrics["tokens"]
    assert reports[-1][1] is None  # a finished run leaves no state to resume from
    resumed, resumed_reports = run(sweep, bundle, resume=folder)
    assert len(resumed_reports) == len(reports) - 2
    assert resumed["resumed_at_tokens"] == metrics["tokens"]
    assert metrics_only({**resumed, "resumed_at_tokens": None}) == metrics_only(
        {**final, "resumed_at_tokens": None}
    )


def test_gradient_accumulation_keeps_the_global_batch(tmp_path):
    """Micro-batches of 2 accumulated to the batch of 8 train the same model as batches of 8."""
    sweep = parse_sweep({**SWEEP, "output_dir": str(tmp_path)})
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
    accumulated = sweep.model_copy(
        update={"train": sweep.train.model_copy(update={"micro_batch_size": 2})}
    )
    whole, _ = run(sweep, bundle)
    parts, _ = run(accumulated, bundle)
    for key in ("val_loss", "train_loss"):
        assert abs(whole[key] - parts[key]) < 1e-3, key


def test_flops_per_token_counts_the_matmuls():
    from kinfuse_ray.config import ModelSize
    from kinfuse_ray.model import count_non_embedding_params
    from kinfuse_ray.plan import flops_per_token

    size = ModelSize(name="m", hidden_size=768, n_layers=12, n_heads=12)
    n = count_non_embedding_params(size, 50_000, 2048)
    assert 80e6 < n < 90e6  # a GPT-2-small-like body with a SwiGLU MLP
    flops = flops_per_token(size, 50_000, 2048)
    assert flops == 6 * (n + 50_000 * 768) + 12 * 12 * 768 * 2048


# A matrix product's bits and the path the process names, in a fresh process pinned to `path`.
PRODUCT = """
import hashlib, sys
from kinfuse_ray.provenance import kernels, pin_cpu_kernels
note = pin_cpu_kernels(sys.argv[1] if sys.argv[1] != "none" else None)
import torch
torch.manual_seed(0)
product = torch.randn(256, 384) @ torch.randn(384, 512)
print(hashlib.sha256(product.numpy().tobytes()).hexdigest()[:16], kernels()["cpu"], note)
"""


def product_on(path: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in PINNING_VARIABLES}
    proc = subprocess.run([sys.executable, "-c", PRODUCT, path], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return proc.stdout.split()


def test_the_portable_path_reaches_onemkl_and_is_named():
    """`cpu_kernels: portable` is set before torch loads and reaches oneMKL: the matrix product
    takes its COMPATIBLE branch (other bits than the CPU's own path on any CPU with AVX2), and the
    path is named so in provenance and in the base runs' keys."""
    portable, own = product_on("portable"), product_on("none")
    assert portable[1:] == ["AVX2/mkl-compatible", "None"]
    assert portable[0] != own[0] and "/mkl-" not in own[1]
    assert product_on("portable")[0] == portable[0]  # and it is deterministic
