"""One trial: a model of one ladder size trained on the stream at one infusion ratio.

Phases:
- "base": general-only training from scratch; its checkpoint (weights, optimizer state and final
  metrics) is shared by every infusion trial of that size under the continued schedule.
- "infuse": training on the mix at ratio r, from the base checkpoint (continued schedule, LR
  re-warmed) or from scratch (scratch schedule).
"""

from __future__ import annotations

from pathlib import Path

import torch

from kinfuse_ray import checkpoint
from kinfuse_ray.config import Schedule, SweepConfig
from kinfuse_ray.data import DataBundle
from kinfuse_ray.mixing import Stream
from kinfuse_ray.model import build_model
from kinfuse_ray.parallel import SINGLE, Dist, parallelize
from kinfuse_ray.plan import flops_per_token
from kinfuse_ray.train import CollapseWatch, Metrics, Report, make_optimizer, train

BASE, INFUSE = "base", "infuse"


def phase_tokens(sweep: SweepConfig, phase: str) -> int:
    """The token budget of a trial of `phase`."""
    return sweep.train.base_tokens if phase == BASE else sweep.train.tokens


def base_checkpoint(sweep: SweepConfig, size: str) -> Path:
    """The folder of a size's base run: its final weights and optimizer state (sharded as the
    run was) and, in its progress file, its final metrics."""
    return sweep.out / "base" / size


def base_done(sweep: SweepConfig, size: str) -> bool:
    return checkpoint.is_complete(base_checkpoint(sweep, size))


def run_trial(
    config: dict,
    sweep: SweepConfig,
    bundle: DataBundle,
    report: Report,
    *,
    dist: Dist = SINGLE,
    resume: Path | None = None,
) -> Metrics:
    """Train one trial described by `config` ({"phase", "size", "ratio"}); return final metrics.
    Under Ray Train every worker runs this with its `dist` place (a process group set up).
    `resume` is a checkpoint folder this trial saved before it was interrupted."""
    size = sweep.size(config["size"])
    phase, ratio, cfg = config["phase"], float(config["ratio"]), sweep.train_for(size.name)
    torch.set_num_threads(cfg.cpus_per_trial)
    load = sweep.knowledge_load(sweep.n_params[size.name])
    bundle = bundle.for_load(*load, sweep.eval, sweep.seed)
    torch.manual_seed(sweep.seed)
    model = build_model(size, bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    model = parallelize(model, dist, cfg.parallelism, cfg.activation_checkpointing)
    optimizer = make_optimizer(model, cfg)
    continued = phase == INFUSE and sweep.train.schedule is Schedule.continued
    base = base_checkpoint(sweep, size.name)
    progress = None
    if resume is not None:
        progress = checkpoint.load(resume, model, optimizer)
    elif continued:
        checkpoint.load(base, model, optimizer)
    watch = None
    if continued:
        ev = sweep.eval
        base_retention = checkpoint.read_progress(base)["metrics"]["retention"]
        watch = CollapseWatch(base_retention, ev.early_stop_below, ev.early_stop_patience)
    trained = torch.compile(model) if cfg.compile else model

    batch_tokens = cfg.batch_size * bundle.seq_len
    n_steps = -(-phase_tokens(sweep, phase) // batch_tokens)  # whole global batches
    stream = Stream(
        bundle.corpus,
        bundle.general_facts,
        bundle.domain_facts,
        ratio,
        n_steps * cfg.batch_size,
        bundle.seq_len,
        sweep.data.general_fact_share,
        seed=sweep.seed + (0 if phase == BASE else 1),
    )
    context = {
        "domain_share": stream.domain_share,
        "exposures_per_fact": stream.domain_exposures,
        "general_exposures_per_fact": stream.general_exposures,
    }
    final = train(
        trained,
        optimizer,
        stream,
        bundle,
        cfg,
        sweep.eval,
        lambda metrics, save: report({**metrics, **context}, save),
        watch=watch,
        dist=dist,
        resume=progress,
        flops_per_token=flops_per_token(size, bundle.vocab_size, bundle.seq_len),
    )
    if phase == BASE:  # every rank writes its part; progress.json last marks it whole
        checkpoint.save(base, model, optimizer, {"metrics": final})
    return {**final, **context}
