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
from torch.nn.parallel import DistributedDataParallel
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


@dataclass
class Seconds:
    """Where a run's time went, carried across a resume."""

    train: float = 0.0
    eval: float = 0.0
    checkpoint: float = 0.0  # handing checkpoints over: saving, and Ray's copy to storage

    @property
    def wall(self) -> float:
        return self.train + self.eval + self.checkpoint


class TrainStep:
    """One optimizer step: a rank's share of a global batch of `cfg.batch_size` sequences
    (each rank reads only its rows), in micro-batches of `cfg.micro_batch_size` whose gradients
    accumulate, so the global batch is the same whatever the worker count; bf16 autocast on
    GPUs (CPUs train in fp32: their bf16 matmuls are slower, not faster)."""

    def __init__(self, model, optimizer, scheduler, stream: Stream, cfg: TrainConfig, dist: Dist):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.stream, self.cfg, self.dist = stream, cfg, dist
        self.rows_per_rank = cfg.batch_size // dist.world
        self.micro = cfg.micro_batch_size or self.rows_per_rank
        device = dist.device
        self.autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
        # DDP, or DDP inside torch.compile's wrapper
        self.ddp = isinstance(getattr(model, "_orig_mod", model), DistributedDataParallel)

    def __call__(self, step: int) -> tuple[torch.Tensor, int]:
        """(the step's loss, on the device: no host sync per step; tokens trained, all ranks)."""
        model, dist = self.model, self.dist
        first = (step - 1) * self.cfg.batch_size + dist.rank * self.rows_per_rank
        rows = self.stream.rows(first, first + self.rows_per_rank)
        chunks = [rows[i : i + self.micro] for i in range(0, len(rows), self.micro)]
        step_loss = torch.zeros((), device=dist.device)
        for i, chunk in enumerate(chunks):
            batch = torch.from_numpy(chunk.astype(np.int64)).to(dist.device, non_blocking=True)
            # DDP all-reduces gradients on the last micro-batch only.
            sync = i == len(chunks) - 1 or not hasattr(model, "no_sync")
            with self.autocast, contextlib.nullcontext() if sync else model.no_sync():
                loss = model(input_ids=batch, labels=batch).loss * (len(chunk) / len(rows))
            loss.backward()
            step_loss += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        self.optimizer.step()
        # Under DDP the gradients are views into its all-reduce buckets (gradient_as_bucket_view):
        # setting them to None would make every micro-batch under no_sync() allocate a fresh
        # copy beside the buckets (8 bytes a parameter, not the 4 the plan counts). Zeroed in
        # place they stay views; elsewhere None frees them between steps.
        self.optimizer.zero_grad(set_to_none=not self.ddp)
        self.scheduler.step()
        return step_loss, rows.size * dist.world


class Evaluator:
    """An evaluation (`evaluate`) and the metrics reported with it: training loss since the
    last one, throughput, where the time went, learning rate, training's peak memory (what
    `kinfuse plan` estimates, not evaluation's) and, with `flops_per_token` on a known GPU,
    MFU. All ranks' metrics averaged."""

    def __init__(
        self, model, bundle: DataBundle, evals: EvalConfig, cfg: TrainConfig, dist: Dist,
        flops_per_token: float | None, resumed_at: int | None,
    ):  # fmt: skip
        self.model, self.bundle, self.evals, self.dist = model, bundle, evals, dist
        self.plain = unwrap(model)  # evaluation needs neither DDP's hooks nor recompilation
        self.ddp = isinstance(
            getattr(model, "_orig_mod", model), torch.nn.parallel.DistributedDataParallel
        )
        self.peak = device_peak_flops(dist.device, cfg) if flops_per_token else None
        self.flops_per_token, self.resumed_at = flops_per_token, resumed_at
        self.first_step_at = time.time()  # wall clock: the driver tells start-up time from it
        self.train_peak = 0  # bytes allocated at most during training steps (CUDA)

    def __call__(
        self, losses: list[torch.Tensor], tokens: int, seconds: Seconds, lr: float
    ) -> Metrics:
        device, dist = self.dist.device, self.dist
        cuda = device.type == "cuda"
        if cuda:
            self.train_peak = max(self.train_peak, torch.cuda.max_memory_allocated(device))
        began = time.perf_counter()
        evaluated = evaluate(self.plain, self.bundle, self.evals, dist)
        seconds.eval += time.perf_counter() - began
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        metrics = dist.mean(
            {
                **evaluated,
                "train_loss": float(torch.stack(losses).double().mean()),
                "tokens": tokens,
                "tokens_per_s": tokens / seconds.train,
                "eval_share": seconds.eval / seconds.wall,
                "checkpoint_share": seconds.checkpoint / seconds.wall,
                "lr": lr,
                "stopped_early": 0.0,
                "first_step_at": self.first_step_at,
            }
        )
        if self.ddp:
            metrics["replica_spread"] = dist.replica_spread(self.model)
        if cuda:
            metrics["gpu_memory_gib"] = self.train_peak / 2**30
        if self.peak:
            metrics["mfu"] = (
                metrics["tokens_per_s"] * self.flops_per_token / (self.peak * dist.world)
            )
        if self.resumed_at is not None:
            metrics["resumed_at_tokens"] = self.resumed_at
        return metrics


class Checkpointer:
    """What `train(resume=...)` needs to carry on from an evaluation: model and optimizer state
    (`checkpoint.save`) and the run's progress (scheduler, step, tokens, seconds, strikes)."""

    def __init__(self, model, optimizer, scheduler):
        # Checkpoints name parameters without torch.compile's prefix.
        self.model, self.optimizer = getattr(model, "_orig_mod", model), optimizer
        self.scheduler = scheduler

    def save(self, step: int, tokens: int, seconds: Seconds, strikes: int) -> Save:
        progress = {
            "scheduler": self.scheduler.state_dict(),
            "step": step,
            "tokens": tokens,
            "train_seconds": seconds.train,
            "eval_seconds": seconds.eval,
            "checkpoint_seconds": seconds.checkpoint,
            "strikes": strikes,
        }
        return functools.partial(
            checkpoint.save, model=self.model, optimizer=self.optimizer, progress=progress
        )

    def restore(self, progress: dict, watch: CollapseWatch | None) -> tuple[int, int, Seconds]:
        """Carry on from a saved `progress` (model and optimizer loaded by the caller): the
        schedule where it was; returns (step, tokens, seconds) at that evaluation."""
        self.scheduler.load_state_dict(progress["scheduler"])
        for group, lr in zip(
            self.optimizer.param_groups, self.scheduler.get_last_lr(), strict=True
        ):
            group["lr"] = lr
        if watch:
            watch.strikes = progress["strikes"]
        seconds = Seconds(
            progress["train_seconds"], progress["eval_seconds"],
            progress.get("checkpoint_seconds", 0.0),  # older checkpoints lack it
        )  # fmt: skip
        return progress["step"], progress["tokens"], seconds


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
    """Train on `stream` in order (`TrainStep`), evaluate every `evals.every_tokens` tokens and
    at the end (`Evaluator`), report each evaluation with what resumes from it (`Checkpointer`)
    and stop early once `watch` says retention collapsed; return the last metrics. LR warms up
    again from zero (continued pretraining). `resume`, the progress of a checkpoint this same
    run saved (model and optimizer already loaded by the caller), continues from that
    evaluation exactly as if the run had never stopped."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = cfg.lr
    n_steps = stream.n_sequences // cfg.batch_size
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=int(cfg.warmup_fraction * n_steps),
        num_training_steps=n_steps,
        min_lr_rate=cfg.min_lr_fraction,
    )
    train_step = TrainStep(model, optimizer, scheduler, stream, cfg, dist)
    checkpointer = Checkpointer(model, optimizer, scheduler)
    start, tokens, seconds = 0, 0, Seconds()
    if resume is not None:
        start, tokens, seconds = checkpointer.restore(resume, watch)
    evaluator = Evaluator(
        model,
        bundle,
        evals,
        cfg,
        dist,
        flops_per_token,
        None if resume is None else resume["tokens"],
    )
    eval_every = max(1, evals.every_tokens // (cfg.batch_size * stream.seq_len))
    losses: list[torch.Tensor] = []
    metrics: Metrics = {}
    model.train()
    segment_began = time.perf_counter()
    for step in range(start + 1, n_steps + 1):
        loss, step_tokens = train_step(step)
        losses.append(loss)
        tokens += step_tokens
        if step % eval_every and step != n_steps:
            continue
        _synchronize(dist.device)
        seconds.train += time.perf_counter() - segment_began
        metrics = evaluator(losses, tokens, seconds, scheduler.get_last_lr()[0])
        losses = []
        past_minimum = step >= evals.early_stop_after * n_steps
        stop = bool(watch and past_minimum and watch.collapsed(metrics["retention"]))
        metrics["stopped_early"] = float(stop)
        save = None
        if not stop and step != n_steps:  # a finished run needs no resume
            save = checkpointer.save(step, tokens, seconds, watch.strikes if watch else 0)
        report_began = time.perf_counter()
        report(metrics, save)
        if save is not None:
            seconds.checkpoint += time.perf_counter() - report_began
        if stop:
            return metrics
        segment_began = time.perf_counter()
    return metrics
