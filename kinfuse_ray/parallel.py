"""Data parallelism for a trial's workers, without Ray: DDP or FSDP2, and the collectives the
training loop needs.

Whoever starts the workers (Ray Train, or `benchmarks/gpu_check.py` on a bare GPU box) sets up
the process group; this module only uses it. Every collective takes tensors on the training
device: NCCL, the backend on GPUs, has no CPU tensors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as torch_dist

from kinfuse_ray.config import Parallelism
from kinfuse_ray.errors import KinfuseError

Metrics = dict[str, float]


def resolve_device(name: str | torch.device) -> torch.device:
    """`name` with a device index: CUDA calls (set_device, a process group's device_id) refuse a
    bare "cuda". The index is this process's local rank (LOCAL_RANK), else CUDA's current one."""
    device = torch.device(name)
    if device.type != "cuda" or device.index is not None:
        return device
    local = os.environ.get("LOCAL_RANK")
    return torch.device("cuda", int(local) if local else torch.cuda.current_device())


def in_process_group() -> bool:
    """Whether a process group joins this worker to others (or to itself: a group of one still
    runs every collective, which is how the GPU check tests them)."""
    return torch_dist.is_available() and torch_dist.is_initialized()


@dataclass(frozen=True)
class Dist:
    """This process's place among a trial's data-parallel workers (rank 0 of 1 when alone) and
    the device it trains on."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def grouped(self) -> bool:
        return in_process_group()

    def mean(self, metrics: Metrics) -> Metrics:
        """Average metrics over ranks, so every rank reports and decides on the same numbers."""
        if not self.grouped:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor(
            [float(metrics[k]) for k in keys], dtype=torch.float64, device=self.device
        )
        torch_dist.all_reduce(values)
        return dict(zip(keys, (values / self.world).tolist(), strict=True))

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over ranks (float64)."""
        if not self.grouped:
            return list(values)
        summed = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(summed)
        return summed.tolist()

    def replica_spread(self, model: torch.nn.Module) -> float:
        """max - min over ranks of a parameter checksum: 0 while DDP keeps replicas in sync."""
        with torch.no_grad():
            checksum = sum(p.double().sum() for p in model.parameters())
            checksum = checksum.reshape(1).to(self.device)
        high, low = checksum.clone(), -checksum
        torch_dist.all_reduce(high, op=torch_dist.ReduceOp.MAX)
        torch_dist.all_reduce(low, op=torch_dist.ReduceOp.MAX)
        return float(high + low)


SINGLE = Dist()  # a trial with one worker


def parallelize(
    model: torch.nn.Module,
    dist: Dist,
    parallelism: Parallelism = "ddp",
    activation_checkpointing: bool = False,
) -> torch.nn.Module:
    """Place `model` on the worker's device and wrap it for data parallelism: DDP (every rank
    holds the whole model), or FSDP2 `fully_shard` per decoder layer and at the root (each rank
    holds 1/world of parameters, gradients and optimizer state; bf16 compute and fp32
    gradient reduction on GPUs). Returns the module to train; under FSDP2 that is `model`
    itself, sharded in place."""
    if activation_checkpointing:
        # transformers >= 5.2x names it activation_checkpointing_enable; older 5.x, gradient_.
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable({"use_reentrant": False})
    if not dist.grouped:
        return model.to(dist.device)
    if parallelism == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = torch.distributed.device_mesh.init_device_mesh(dist.device.type, (dist.world,))
        policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16 if dist.device.type == "cuda" else None,
            reduce_dtype=torch.float32,
        )
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        return model
    model = model.to(dist.device)
    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    # Gradients as views into DDP's all-reduce buckets: without it the buckets are a second copy
    # of every gradient (+4 bytes a parameter; `plan.training_memory` counts one copy).
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, gradient_as_bucket_view=True
    )


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder blocks FSDP shards one by one, under the names transformers' decoders give
    them (LLaMA, Qwen, Mistral, GPT-NeoX: `layers`; GPT-2: `h`)."""
    base = getattr(model, "base_model", model)
    for name in ("layers", "h", "blocks"):
        if isinstance(found := getattr(base, name, None), torch.nn.ModuleList):
            return found
    raise KinfuseError(
        f"{type(model).__name__}: no decoder layers to shard (train.parallelism fsdp)"
    )


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside DDP and torch.compile wrappers (its state dict has no prefixes)."""
    while hasattr(model, "_orig_mod") or hasattr(model, "module"):
        model = getattr(model, "_orig_mod", None) or model.module
    return model
