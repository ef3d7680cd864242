"""How long a CPU sweep takes on this machine, before it runs: each rung's own training loop (its
model and optimizer, the stream at a middle ratio, one evaluation at the sweep's cadence) timed
for one evaluation interval in this process, without Ray or MLflow. `kinfuse plan` prints the
estimate (`plan.cpu_seconds` does the arithmetic)."""

from __future__ import annotations

import time

import torch

from kinfuse_ray.base_store import rung_bundle
from kinfuse_ray.config import Rung
from kinfuse_ray.data import DataBundle
from kinfuse_ray.mixing import Stream
from kinfuse_ray.model import build_model
from kinfuse_ray.plan import flops_per_token
from kinfuse_ray.train import make_optimizer, train


def seconds_per_token(rung: Rung, bundle: DataBundle, ratio: float) -> float:
    """Wall seconds per training token of `rung` on this CPU, its evaluations included: the loop
    run for one evaluation interval (at least one global batch), on the threads a trial gets."""
    torch.set_num_threads(rung.train.cpus_per_trial)
    facts, cfg = rung_bundle(rung, bundle), rung.train
    steps = max(1, rung.eval.every_tokens // (cfg.batch_size * facts.seq_len))
    torch.manual_seed(rung.seed)
    model = build_model(rung.size, facts.vocab_size, facts.seq_len, facts.eos_id)
    stream = Stream(facts.corpus, facts.general_facts, facts.domain_facts, ratio=ratio,
                    n_sequences=steps * cfg.batch_size, seq_len=facts.seq_len,
                    fact_share=rung.general_fact_share, seed=rung.seed)  # fmt: skip
    began = time.perf_counter()
    train(model, make_optimizer(model, cfg), stream=stream, bundle=facts, cfg=cfg,
          evals=rung.eval, report=lambda metrics, save: None,
          flops_per_token=flops_per_token(rung.size, facts.vocab_size, facts.seq_len))  # fmt: skip
    return (time.perf_counter() - began) / (steps * cfg.batch_size * facts.seq_len)


def probe(rungs: list[Rung], bundle: DataBundle, ratio: float) -> dict[str, float]:
    """Seconds per training token of each rung on this CPU at `ratio`, by name (call after the
    sweep's CPU kernels are pinned, before torch is imported, as the sweep itself does)."""
    return {rung.size.name: seconds_per_token(rung, bundle, ratio) for rung in rungs}
