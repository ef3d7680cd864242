"""The training loop: AdamW, linear warmup then cosine decay, evaluation on a fixed token cadence.

Orchestration-free: it takes a `report` callable (Ray Tune's, or a plain function) and decides by
itself when retention has collapsed, so a run always ends on its own (stopping a trial from the
outside leaks Ray Train placement groups; see the platform notes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from transformers import get_cosine_with_min_lr_schedule_with_warmup

from kinfuse_ray.config import EvalConfig, TrainConfig
from kinfuse_ray.data import DataBundle
from kinfuse_ray.metrics import accuracy, chance_corrected, validation_loss

Metrics = dict[str, float]


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


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sequences: np.ndarray,
    bundle: DataBundle,
    cfg: TrainConfig,
    evals: EvalConfig,
    report: Callable[[Metrics], None],
    watch: CollapseWatch | None = None,
) -> Metrics:
    """Train on `sequences` (n, seq_len) in order; evaluate every `evals.every_tokens` tokens and
    at the end; return the last metrics. LR warms up again from zero (continued pretraining)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = cfg.lr
    n_steps = -(-len(sequences) // cfg.batch_size)
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=int(cfg.warmup_fraction * n_steps),
        num_training_steps=n_steps,
        min_lr_rate=cfg.min_lr_fraction,
    )
    seq_len = sequences.shape[1]
    eval_every = max(1, evals.every_tokens // (cfg.batch_size * seq_len))
    tokens, train_seconds, losses = 0, 0.0, []
    metrics: Metrics = {}
    model.train()
    for step in range(1, n_steps + 1):
        start = time.perf_counter()
        batch = torch.from_numpy(
            sequences[(step - 1) * cfg.batch_size : step * cfg.batch_size].astype(np.int64)
        )
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        train_seconds += time.perf_counter() - start
        tokens += batch.numel()
        losses.append(loss.item())
        if step % eval_every and step != n_steps:
            continue
        metrics = {
            **evaluate(model, bundle, evals),
            "train_loss": float(np.mean(losses)),
            "tokens": tokens,
            "tokens_per_s": tokens / train_seconds,
            "lr": scheduler.get_last_lr()[0],
            "stopped_early": 0.0,
        }
        losses = []
        past_minimum = step >= evals.early_stop_after * n_steps
        if watch and past_minimum and watch.collapsed(metrics["retention"]):
            metrics["stopped_early"] = 1.0
            report(metrics)
            return metrics
        report(metrics)
    return metrics
