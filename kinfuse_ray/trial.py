"""One trial: a model of one ladder size trained on the stream at one infusion ratio.

Phases (`spec.Phase`):
- base: general-only training from scratch; its checkpoint (weights, optimizer state and final
  metrics) is shared by every infusion trial of that size under the continued schedule, and by
  every sweep that needs the very same base run (`base_store`).
- infuse: training on the mix at ratio r, from the base checkpoint (continued schedule, LR
  re-warmed) or from scratch (scratch schedule).
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import torch

from kinfuse_ray import checkpoint
from kinfuse_ray.base_store import KEY_FILE, BaseStore, base_inputs, rung_bundle
from kinfuse_ray.config import Rung, Schedule
from kinfuse_ray.data import DataBundle
from kinfuse_ray.mixing import Stream
from kinfuse_ray.model import rung_model
from kinfuse_ray.parallel import SINGLE, Dist, parallelize
from kinfuse_ray.plan import flops_per_token
from kinfuse_ray.pretrained import KNOWN, knowing
from kinfuse_ray.spec import Phase, TrialSpec
from kinfuse_ray.train import CollapseWatch, Metrics, Report, make_optimizer, train


def release_memory(device: torch.device) -> None:
    """Nothing an earlier trial in this process left stays in memory or in its peak: FSDP2
    modules live on through reference cycles until the cyclic collector runs (Tune reuses a
    trial's actor for the next; the GPU check runs trials one after another)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def run_trial(
    spec: TrialSpec,
    *,
    rung: Rung,
    out: Path,
    bundle: DataBundle,
    report: Report,
    dist: Dist = SINGLE,
    resume: Path | None = None,
) -> Metrics:
    """Train one trial of `rung` (`spec.size`) for the sweep whose output folder is `out` (its
    base runs in the store beside it); return its final metrics. Under Ray Train every worker
    runs this with its `dist` place (a process group set up). `resume` is a checkpoint folder
    this trial saved before it was interrupted."""
    started = time.monotonic()
    release_memory(dist.device)
    size, phase, ratio, cfg = rung.size, spec.phase, spec.ratio, rung.train
    torch.set_num_threads(cfg.cpus_per_trial)
    bundle = rung_bundle(rung, bundle)
    inputs = base_inputs(rung, bundle)
    base = BaseStore.beside(out).folder(inputs)
    torch.manual_seed(rung.seed)
    if size.checkpoint:  # its base record (`pretrained.ensure_scored`) says what it knew
        if phase is Phase.base:
            raise RuntimeError(f"{size.name}: a checkpoint rung's base run is its scores")
        bundle = knowing(bundle, checkpoint.read_progress(base)[KNOWN])
    model = rung_model(size, bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    model = parallelize(model, dist, cfg.parallelism, cfg.activation_checkpointing)
    optimizer = make_optimizer(model, cfg)  # a checkpoint rung's is fresh
    continued = phase is Phase.infuse and cfg.schedule is Schedule.continued
    progress = None
    if resume is not None:
        progress = checkpoint.load(resume, model, optimizer)
    elif continued and not size.checkpoint:
        checkpoint.load(base, model, optimizer)
    watch = None
    if continued:
        ev = rung.eval
        base_retention = checkpoint.read_progress(base)["metrics"]["retention"]
        watch = CollapseWatch(base_retention, ev.early_stop_below, ev.early_stop_patience)
    trained = torch.compile(model) if cfg.compile else model

    batch_tokens = cfg.batch_size * bundle.seq_len
    n_steps = -(-rung.phase_tokens(phase) // batch_tokens)  # whole global batches
    stream = Stream(
        bundle.corpus,
        bundle.general_facts,
        bundle.domain_facts,
        ratio=ratio,
        n_sequences=n_steps * cfg.batch_size,
        seq_len=bundle.seq_len,
        fact_share=rung.general_fact_share,
        seed=rung.seed + (0 if phase is Phase.base else 1),
    )
    context = {
        "domain_share": stream.domain_share,
        "exposures_per_fact": stream.domain_exposures,
        "general_exposures_per_fact": stream.general_exposures,
    }
    final = train(
        trained,
        optimizer,
        stream=stream,
        bundle=bundle,
        cfg=cfg,
        evals=rung.eval,
        report=lambda metrics, save: report({**metrics, **context}, save),
        watch=watch,
        dist=dist,
        resume=progress,
        flops_per_token=flops_per_token(size, bundle.vocab_size, bundle.seq_len),
    )
    final = {**final, **context}
    if phase is Phase.base:  # every rank writes its part; progress.json last marks it whole
        done = {**final, "seconds": time.monotonic() - started}
        checkpoint.save_whole(
            base,
            model,
            optimizer,
            {"metrics": done},
            writer=out.name,
            beside={KEY_FILE: inputs},
        )
    return final
