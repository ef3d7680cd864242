"""The training loop: AdamW, linear warmup then cosine decay, evaluation on a fixed token cadence.

Orchestration-free: it takes a `report` callable (Ray Tune's, or a plain function) and decides by
itself when retention has collapsed, so a run always ends on its own (stopping a trial from the
outside leaks the placement groups of a Ray Train run).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from kinfuse_ray import checkpoint
from kinfuse_ray.config import EvalConfig, TrainConfig
from kinfuse_ray.data import DataBundle
from kinfuse_ray.hardware import peak_flops
from kinfuse_ray.metrics import chance_corrected, credit_sum, loss_sum
from kinfuse_ray.mixing import Stream
from kinfuse_ray.parallel import SINGLE, Dist, Metrics, unwrap

# report(metrics, save): `save(folder)` writes what `train(resume=...)` needs to carry on from
# this evaluation (None once the run has ended); the orchestration layer decides where. Under a
# process group it is collective: every rank gets one and must call it.
Save = Callable[[Path], None]
Report = Callable[[Metrics, Save | None], None]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay
    )


def evaluate(
    model: torch.nn.Module, bundle: DataBundle, evals: EvalConfig, dist: Dist = SINGLE
) -> Metrics:
    """Retention, acquisition and validation loss, `evals.batch_tokens` tokens a forward pass,
    each rank scoring its share and the ranks' sums added up. `model` is the plain (or
    FSDP-sharded) module, not a DDP or torch.compile wrapper."""
    model.eval()
    batch, share = evals.batch_tokens, (dist.rank, dist.world)
    n = bundle.seq_len
    val = np.asarray(bundle.val[: evals.val_sequences * n], dtype=np.int64)
    val = torch.from_numpy(val).view(-1, n)
    retained, acquired, loss = dist.sum(
        [
            credit_sum(model, bundle.retention, bundle.eos_id, batch, *share),
            credit_sum(model, bundle.acquisition, bundle.eos_id, batch, *share),
            loss_sum(model, val, batch, *share),
        ]
    )
    model.train()
    retention = retained / len(bundle.retention.prompts)
    acquisition = acquired / len(bundle.acquisition.prompts)
    return {
        "retention_acc": retention,
        "retention": chance_corrected(retention, evals.n_choices),
        "acquisition_acc": acquisition,
        "acquisition": chance_corrected(acquisition, evals.n_choices),
        "val_loss": loss / (val.shape[0] * (n - 1)),
    }


@dataclass
class CollapseWatch:
    """Stops a run once retention stays below `below` x its reference for `patience` evals."""

    reference: float | None
    below: float
    patience: int
    strikes: int = 0

    def collapsed(self, retention: float) -> bool:
        if not self.reference or self.reference <= 0 or self.below <= 0:
            return False
        self.strikes = self.strikes + 1 if retention < self.below * self.reference else 0
        return self.strikes >= self.patience


def device_peak_flops(device: torch.device, cfg: TrainConfig) -> float | None:
    """The GPU's dense bf16 peak for MFU; None on CPUs and on GPUs we do not know (said once)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    peak = peak_flops(name, cfg.peak_tflops)
    if peak is None:
        print(f"kinfuse: unknown GPU '{name}': no MFU (set train.peak_tflops)", flush=True)
    return peak


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    stream: Stream,
    bundle: DataBundle,
    cfg: TrainConfig,
    evals: EvalConfig,
    report: Report,
    watch: CollapseWatch | None = None,
    dist: Dist = SINGLE,
    resume: dict | None = None,
    flops_per_token: float | None = None,
) -> Metrics:
    """Train on `stream` in order, `cfg.batch_size` sequences a step across all ranks (each rank
    reads only its share of a step's rows); evaluate every `evals.every_tokens` tokens and at
    the end; return the last metrics. LR warms up again from zero (continued pretraining).
    `resume`, the progress of a checkpoint this same run saved (model and optimizer already
    loaded by the caller), continues from that evaluation exactly as if the run had never
    stopped. Each rank's share of a step runs in micro-batches of `cfg.micro_batch_size`
    sequences whose gradients accumulate, so the global batch is the same whatever the worker
    count; with `flops_per_token` the model FLOPs utilisation is reported on known GPUs."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = cfg.lr
    batch_size = cfg.batch_size // dist.world
    micro = cfg.micro_batch_size or batch_size
    n_steps = stream.n_sequences // cfg.batch_size
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=int(cfg.warmup_fraction * n_steps),
        num_training_steps=n_steps,
        min_lr_rate=cfg.min_lr_fraction,
    )
    start, tokens, train_seconds, eval_seconds, checkpoint_seconds = 0, 0, 0.0, 0.0, 0.0
    if resume is not None:
        scheduler.load_state_dict(resume["scheduler"])
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
            group["lr"] = lr
        start, tokens = resume["step"], resume["tokens"]
        train_seconds, eval_seconds = resume["train_seconds"], resume["eval_seconds"]
        checkpoint_seconds = resume.get("checkpoint_seconds", 0.0)  # older checkpoints lack it
        if watch:
            watch.strikes = resume["strikes"]
    device = dist.device
    # bf16 autocast on GPUs; CPUs train in fp32 (their bf16 matmuls are slower, not faster).
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    peak = device_peak_flops(device, cfg) if flops_per_token else None
    eval_every = max(1, evals.every_tokens // (cfg.batch_size * stream.seq_len))
    plain = unwrap(model)  # evaluation needs neither DDP's hooks nor recompilation
    saved = getattr(
        model, "_orig_mod", model
    )  # checkpoints name parameters without compile's prefix
    losses: list[torch.Tensor] = []  # per step, on the device: no host sync per step
    train_peak = 0  # bytes allocated at most during training steps (CUDA)
    metrics: Metrics = {}
    first_step_at = time.time()  # wall clock, so the driver can tell how long start-up took
    model.train()
    segment_began = time.perf_counter()
    for step in range(start + 1, n_steps + 1):
        first = (step - 1) * cfg.batch_size + dist.rank * batch_size
        rows = stream.rows(first, first + batch_size)
        chunks = [rows[i : i + micro] for i in range(0, len(rows), micro)]
        step_loss = torch.zeros((), device=device)
        for i, chunk in enumerate(chunks):
            batch = torch.from_numpy(chunk.astype(np.int64)).to(device, non_blocking=True)
            # DDP all-reduces gradients on the last micro-batch only.
            sync = i == len(chunks) - 1 or not hasattr(model, "no_sync")
            with autocast, contextlib.nullcontext() if sync else model.no_sync():
                loss = model(input_ids=batch, labels=batch).loss * (len(chunk) / len(rows))
            loss.backward()
            step_loss += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        tokens += rows.size * dist.world
        losses.append(step_loss)
        if step % eval_every and step != n_steps:
            continue
        _synchronize(device)
        train_seconds += time.perf_counter() - segment_began
        if device.type == "cuda":  # training's peak (what `kinfuse plan` estimates), not eval's
            train_peak = max(train_peak, torch.cuda.max_memory_allocated(device))
        eval_began = time.perf_counter()
        evaluated = evaluate(plain, bundle, evals, dist)
        eval_seconds += time.perf_counter() - eval_began
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        wall = train_seconds + eval_seconds + checkpoint_seconds
        metrics = dist.mean(
            {
                **evaluated,
                "train_loss": float(torch.stack(losses).double().mean()),
                "tokens": tokens,
                "tokens_per_s": tokens / train_seconds,
                "eval_share": eval_seconds / wall,
                # Handing checkpoints over so far (saving, and Ray's copy to storage).
                "checkpoint_share": checkpoint_seconds / wall,
                "lr": scheduler.get_last_lr()[0],
                "stopped_early": 0.0,
                "first_step_at": first_step_at,
            }
        )
        if isinstance(saved, torch.nn.parallel.DistributedDataParallel):
            metrics["replica_spread"] = dist.replica_spread(model)
        if device.type == "cuda":
            metrics["gpu_memory_gib"] = train_peak / 2**30
        if peak:
            metrics["mfu"] = metrics["tokens_per_s"] * flops_per_token / (peak * dist.world)
        if resume is not None:
            metrics["resumed_at_tokens"] = resume["tokens"]
        losses = []
        past_minimum = step >= evals.early_stop_after * n_steps
        stop = bool(watch and past_minimum and watch.collapsed(metrics["retention"]))
        metrics["stopped_early"] = float(stop)
        save = None
        if not stop and step != n_steps:  # a finished run needs no resume
            progress = {
                "scheduler": scheduler.state_dict(),
                "step": step,
                "tokens": tokens,
                "train_seconds": train_seconds,
                "eval_seconds": eval_seconds,
                "checkpoint_seconds": checkpoint_seconds,
                "strikes": watch.strikes if watch else 0,
            }
            save = functools.partial(
                checkpoint.save, model=saved, optimizer=optimizer, progress=progress
            )
        report_began = time.perf_counter()
        report(metrics, save)
        if save is not None:
            checkpoint_seconds += time.perf_counter() - report_began
        if stop:
            return metrics
        segment_began = time.perf_counter()
    return metrics
