"""The training loop: AdamW, linear warmup then cosine decay, evaluation on a fixed token cadence.

Orchestration-free: it takes a `report` callable (Ray Tune's, or a plain function) and decides by
itself when retention has collapsed, so a run always ends on its own (stopping a trial from the
outside leaks Ray Train placement groups; see the platform notes).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from kinfuse_ray.config import EvalConfig, TrainConfig
from kinfuse_ray.data import DataBundle
from kinfuse_ray.metrics import accuracy, chance_corrected, validation_loss
from kinfuse_ray.mixing import Stream

Metrics = dict[str, float]
# report(metrics, state): `state` is what `train(resume=...)` needs to carry on from this
# evaluation (rank 0 only, else None); the orchestration layer decides where it is kept. It
# holds live tensors: persist it before returning.
Report = Callable[[Metrics, dict | None], None]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay
    )


def evaluate(model: torch.nn.Module, bundle: DataBundle, evals: EvalConfig) -> Metrics:
    model.eval()
    retention = accuracy(model, bundle.retention, bundle.eos_id)
    acquisition = accuracy(model, bundle.acquisition, bundle.eos_id)
    n = bundle.seq_len
    val = torch.from_numpy(bundle.val[: evals.val_sequences * n].astype(np.int64)).view(-1, n)
    loss = validation_loss(model, val)
    model.train()
    return {
        "retention_acc": retention,
        "retention": chance_corrected(retention, evals.n_choices),
        "acquisition_acc": acquisition,
        "acquisition": chance_corrected(acquisition, evals.n_choices),
        "val_loss": loss,
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


@dataclass(frozen=True)
class Dist:
    """This process's place among a trial's data-parallel workers (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1

    def mean(self, metrics: Metrics) -> Metrics:
        """Average metrics over ranks, so every rank reports and decides on the same numbers."""
        if self.world == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
        torch.distributed.all_reduce(values)
        return dict(zip(keys, (values / self.world).tolist(), strict=True))

    def replica_spread(self, model: torch.nn.Module) -> float:
        """max - min over ranks of a parameter checksum: 0 while DDP keeps replicas in sync."""
        with torch.no_grad():
            checksum = sum(p.double().sum() for p in model.parameters()).reshape(1).cpu()
        high, low = checksum.clone(), -checksum
        torch.distributed.all_reduce(high, op=torch.distributed.ReduceOp.MAX)
        torch.distributed.all_reduce(low, op=torch.distributed.ReduceOp.MAX)
        return float(high + low)


SINGLE = Dist()  # a trial with one worker

# Dense bf16 peak FLOP/s per GPU, by device name, for model FLOPs utilisation.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside DDP and torch.compile wrappers (its state dict has no prefixes)."""
    while hasattr(model, "_orig_mod") or hasattr(model, "module"):
        model = getattr(model, "_orig_mod", None) or model.module
    return model


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
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
    the end; return the last metrics. LR warms up again from zero (continued pretraining). `resume`, a state reported earlier by
    this same run (model and optimizer already loaded by the caller), continues from that
    evaluation exactly as if the run had never stopped. Each rank's share of a step runs in
    micro-batches of `cfg.micro_batch_size` sequences whose gradients accumulate, so the global
    batch is the same whatever the worker count; with `flops_per_token` the model FLOPs
    utilisation is reported on GPUs."""
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
    start, tokens, train_seconds = 0, 0, 0.0
    if resume is not None:
        scheduler.load_state_dict(resume["scheduler"])
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
            group["lr"] = lr
        start, tokens, train_seconds = resume["step"], resume["tokens"], resume["train_seconds"]
        if watch:
            watch.strikes = resume["strikes"]
    device = next(model.parameters()).device
    # bf16 autocast on GPUs; CPUs train in fp32 (their bf16 matmuls are slower, not faster).
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    peak = peak_flops(device) if flops_per_token else None
    eval_every = max(1, evals.every_tokens // (cfg.batch_size * stream.seq_len))
    losses: list[float] = []
    metrics: Metrics = {}
    first_step_at = time.time()  # wall clock, so the driver can tell how long start-up took
    model.train()
    for step in range(start + 1, n_steps + 1):
        began = time.perf_counter()
        first = (step - 1) * cfg.batch_size + dist.rank * batch_size
        rows = stream.rows(first, first + batch_size)
        chunks = [rows[i : i + micro] for i in range(0, len(rows), micro)]
        loss_sum = 0.0
        for i, chunk in enumerate(chunks):
            batch = torch.from_numpy(chunk.astype(np.int64)).to(device)
            # DDP all-reduces gradients on the last micro-batch only.
            sync = i == len(chunks) - 1 or not hasattr(model, "no_sync")
            with autocast, contextlib.nullcontext() if sync else model.no_sync():
                loss = model(input_ids=batch, labels=batch).loss * (len(chunk) / len(rows))
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        train_seconds += time.perf_counter() - began
        tokens += rows.size * dist.world
        losses.append(loss_sum)
        if step % eval_every and step != n_steps:
            continue
        metrics = dist.mean(
            {
                **evaluate(model, bundle, evals),
                "train_loss": float(np.mean(losses)),
                "tokens": tokens,
                "tokens_per_s": tokens / train_seconds,
                "lr": scheduler.get_last_lr()[0],
                "stopped_early": 0.0,
                "first_step_at": first_step_at,
            }
        )
        if dist.world > 1:
            metrics["replica_spread"] = dist.replica_spread(model)
        if peak:
            metrics["mfu"] = metrics["tokens_per_s"] * flops_per_token / (peak * dist.world)
        if resume is not None:
            metrics["resumed_at_tokens"] = resume["tokens"]
        losses = []
        past_minimum = step >= evals.early_stop_after * n_steps
        stop = bool(watch and past_minimum and watch.collapsed(metrics["retention"]))
        metrics["stopped_early"] = float(stop)
        state = None
        if dist.rank == 0 and not stop and step != n_steps:  # a finished run needs no resume
            state = {
                "model": unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "tokens": tokens,
                "train_seconds": train_seconds,
                "strikes": watch.strikes if watch else 0,
            }
        report(metrics, state)
        if stop:
            return metrics
    return metrics
