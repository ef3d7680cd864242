"""One trial: a model of one ladder size trained on the stream at one infusion ratio.

Phases:
- "base": general-only training from scratch; its checkpoint (weights, optimizer state and final
  metrics) is shared by every infusion trial of that size under the continued schedule.
- "infuse": training on the mix at ratio r, from the base checkpoint (continued schedule, LR
  re-warmed) or from scratch (scratch schedule).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from kinfuse_ray.config import Schedule, SweepConfig
from kinfuse_ray.data import DataBundle
from kinfuse_ray.mixing import Stream
from kinfuse_ray.model import build_model, flops_per_token
from kinfuse_ray.train import SINGLE, CollapseWatch, Dist, Metrics, Report, make_optimizer, train

BASE, INFUSE = "base", "infuse"


def phase_tokens(sweep: SweepConfig, phase: str) -> int:
    """The token budget of a trial of `phase`."""
    return sweep.train.base_tokens if phase == BASE else sweep.train.tokens


def base_checkpoint(sweep: SweepConfig, size: str) -> Path:
    return sweep.out / "base" / f"{size}.pt"


def run_trial(
    config: dict,
    sweep: SweepConfig,
    bundle: DataBundle,
    report: Report,
    dist: Dist = SINGLE,
    prepare: Callable[[torch.nn.Module], torch.nn.Module] = lambda model: model,
    resume: dict | None = None,
) -> Metrics:
    """Train one trial described by `config` ({"phase", "size", "ratio"}); return final metrics.
    Under Ray Train every worker runs this with its `dist` place and Ray's `prepare_model`.
    `resume` is a state this trial reported before it was interrupted."""
    torch.set_num_threads(sweep.train.cpus_per_trial)
    phase, size, ratio = config["phase"], sweep.size(config["size"]), float(config["ratio"])
    load = sweep.knowledge_load(sweep.n_params[size.name])
    bundle = bundle.for_load(*load, sweep.eval, sweep.seed)
    torch.manual_seed(sweep.seed)
    model = build_model(size, bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    base = None
    if phase == INFUSE and sweep.train.schedule is Schedule.continued:
        base = torch.load(base_checkpoint(sweep, size.name), weights_only=True)
    start = resume or base
    if start is not None:
        model.load_state_dict(start["model"])
    trained = prepare(model)  # the same parameters, wrapped for DDP and placed on a device
    if sweep.train.compile:
        trained = torch.compile(trained)
    optimizer = make_optimizer(model, sweep.train_for(size.name))
    if start is not None:
        optimizer.load_state_dict(start["optimizer"])  # moves its state to the parameters' device
    watch = None
    if base is not None:
        ev = sweep.eval
        watch = CollapseWatch(
            base["metrics"]["retention"], ev.early_stop_below, ev.early_stop_patience
        )

    batch_tokens = sweep.train.batch_size * bundle.seq_len
    n_steps = -(-phase_tokens(sweep, phase) // batch_tokens)  # whole global batches
    stream = Stream(
        bundle.corpus,
        bundle.general_facts,
        bundle.domain_facts,
        ratio,
        n_steps * sweep.train.batch_size,
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
        sweep.train_for(size.name),
        sweep.eval,
        lambda metrics, state: report({**metrics, **context}, state),
        watch,
        dist,
        resume,
        flops_per_token(size, bundle.vocab_size, bundle.seq_len),
    )
    if phase == BASE and dist.rank == 0:
        path = base_checkpoint(sweep, size.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "metrics": final}
        torch.save(state, tmp)
        tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint behind
    return {**final, **context}
