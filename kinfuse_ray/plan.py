"""What a sweep will cost before a GPU is rented: per rung the parameters, the memory per GPU,
throughput at an assumed MFU, GPU-hours per trial and checkpoint size; for the sweep the GPU-hours
and storage of a grid and of the expected bisection. Arithmetic only (no torch).

Memory per GPU, for AdamW with fp32 master weights:
- states: weights 4 B/param, gradients 4, optimizer 8 (exp_avg, exp_avg_sq); FSDP shards all
  three over the workers and adds two unsharded layers in flight (bf16 weights, fp32 grads);
  DDP adds the bf16 weight copies autocast keeps during a forward on GPUs.
- activations of one micro-batch, counted from what a LLaMA decoder layer saves for backward
  under SDPA attention (no seq^2 term): per token and layer, about 4 fp32 hidden-size tensors
  in the two RMSNorms and 12 (GPU: bf16, + 2 input casts) hidden-size and 4 FFN-size tensors
  in attention and the SwiGLU MLP. Activation checkpointing keeps one fp32 hidden-size tensor
  per layer and recomputes one layer at a time. The LM head's logits add (act + 12) B per
  token and vocabulary entry (bf16 logits, their fp32 upcast, log-softmax and its gradient).
- 10% for the allocator's fragmentation.
Not modelled: the CUDA context, NCCL's buffers, torch.compile's and cuBLAS's workspaces, and an
evaluation's logits (bounded by eval.batch_tokens). Hence the margins: a rung above FITS_BELOW of
the card is refused, one above TIGHT_ABOVE of that is flagged for measuring first
(`benchmarks/gpu_check.py --memory-rung NAME` on one GPU).
`benchmarks/plan_memory.py` checks the estimate against measured peaks on CPU (fp32), and
`benchmarks/gpu_check.py` against `torch.cuda.max_memory_allocated` on a GPU.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from statistics import NormalDist

from kinfuse_ray.config import ModelSize, ParamCount, Rung, TrainConfig, least_decision_budget
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.hardware import GPUS
from kinfuse_ray.spec import Phase

GIB = 2**30
FRAGMENTATION = 1.10
FITS_BELOW = 0.92  # of the card's memory: room for the CUDA context and NCCL buffers
TIGHT_ABOVE = 0.85  # of the usable memory: too close to trust an unmeasured estimate
DEFAULT_MFU = 0.40
REPORT_BYTES = 6 * 2**20  # report.html: Plotly's script (about 4.8 MB) and the sweep's data


def flops_per_token(size: ModelSize, vocab_size: int, seq_len: int) -> float:
    """Training FLOPs per token (forward and backward): 6 x the matmul parameters (LM head
    included) plus the attention scores (Kaplan et al.; PaLM appendix B)."""
    matmul_params = size.param_count(vocab_size).non_embedding + vocab_size * size.hidden_size
    return 6.0 * matmul_params + 12.0 * size.n_layers * size.hidden_size * seq_len


@dataclass(frozen=True)
class Memory:
    """Bytes per GPU (or per CPU worker) of one rung's training step."""

    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return (self.weights + self.gradients + self.optimizer + self.activations) * FRAGMENTATION


def training_memory(
    size: ModelSize,
    vocab_size: int,
    seq_len: int,
    micro_batch: int,
    workers: int = 1,
    parallelism: str = "ddp",
    activation_checkpointing: bool = False,
    gpu: bool = True,
) -> Memory:
    """Peak memory of a training step per worker (see the module docstring for the model).
    FSDP2 wraps the model wherever there is a process group: more than one worker, or a GPU
    (Ray Train runs every GPU trial, even a one-worker one, in a group)."""
    params = size.param_count(vocab_size)
    sharded = parallelism == "fsdp" and (workers > 1 or gpu)
    shards = workers if sharded else 1
    # fp32 weights, gradients (under DDP, views into its buckets: one copy) and AdamW's two moments
    weights, gradients, optimizer = 4 * params.total, 4 * params.total, 8 * params.total
    weights, gradients, optimizer = weights / shards, gradients / shards, optimizer / shards
    if sharded:
        weights += 2 * params.per_layer * 2  # two layers gathered in bf16 (one prefetched)
        gradients += 2 * params.per_layer * 4
    elif gpu:
        weights += 2 * params.total  # autocast's bf16 weight copies
    act = 2 if gpu else 4  # bytes of a matmul output: bf16 under autocast, fp32 on CPUs
    h, f, tokens = size.hidden_size, size.ffn_size, micro_batch * seq_len
    layer = 4 * 4 * h + act * (12 * h + 4 * f) + (2 * act * h if gpu else 0)
    # Checkpointing keeps each layer's fp32 input and recomputes one layer at a time.
    layers = size.n_layers * 4 * h + layer if activation_checkpointing else size.n_layers * layer
    logits = (act + 12) * vocab_size
    return Memory(weights, gradients, optimizer, tokens * (layers + logits + 4 * h))


@dataclass(frozen=True)
class RungPlan:
    name: str
    params: ParamCount
    parallelism: str
    activation_checkpointing: bool
    memory: Memory
    tokens_per_s_per_gpu: float | None
    usable_share: float | None  # of the GPU's usable memory (FITS_BELOW of it)
    base_gpu_hours: float | None
    trial_gpu_hours: float | None
    checkpoint_bytes: float


@dataclass(frozen=True)
class SweepPlan:
    name: str
    workers: int  # per trial
    rungs: list[RungPlan]
    gpu: str | None
    mfu: float
    grid_spacing: float  # the widest bracket hi / lo - 1 of the sweep's ratios
    precision: float  # search.precision
    grid_trials: int
    bisect_trials: int
    grid_gpu_hours: float | None
    bisect_gpu_hours: float | None
    storage_bytes: float
    budget: float = 1.0  # search.budget: the decision search's share of the grid's trial-tokens
    min_budget: float = 0.0  # the least that brackets every size's collapse (2 of its ratios)

    @property
    def decision_trials(self) -> int:
        """The most infusion trials the decision search runs (its budget of the grid's)."""
        return math.floor(self.budget * self.grid_trials + 1e-9)

    @property
    def decision_gpu_hours(self) -> float | None:
        """Its GPU-hours with base runs, at most, if its trials spread over the sizes as the
        grid's do."""
        if self.grid_gpu_hours is None:
            return None
        base = sum(r.base_gpu_hours for r in self.rungs)
        return base + self.budget * (self.grid_gpu_hours - base)


def expected_bisection_steps(ratios: list[float], precision: float) -> int:
    """Bisection steps in log r to narrow the widest bracket of the coarse pass to
    hi / lo - 1 <= precision (a pessimistic expectation: the collapse may fall anywhere)."""
    brackets = [math.log(hi / lo) for lo, hi in zip(ratios, ratios[1:], strict=False) if lo > 0]
    if not brackets:
        return 0
    return max(0, math.ceil(math.log2(max(brackets) / math.log1p(precision))))


def micro_batch(train: TrainConfig) -> int:
    """Sequences per forward pass per worker."""
    return train.micro_batch_size or train.batch_size // train.workers


def rung_memory(rung: Rung, vocab_size: int, gpu: bool) -> Memory:
    """`training_memory` of a rung as its sweep trains it."""
    cfg = rung.train
    return training_memory(
        rung.size, vocab_size, rung.seq_len, micro_batch(cfg), cfg.workers, cfg.parallelism,
        cfg.activation_checkpointing, gpu=gpu,
    )  # fmt: skip


def check_fits_gpu(rung: Rung, memory: Memory) -> None:
    """Refuse, naming the rung and what to change, a rung above FITS_BELOW of its `train.gpu`."""
    cfg, gpu = rung.train, GPUS[rung.train.gpu]
    if memory.total > FITS_BELOW * gpu.memory_bytes:
        raise KinfuseError(
            f"ladder rung '{rung.name}' needs {memory.total / GIB:.1f} GiB per GPU, more than a "
            f"{cfg.gpu} offers ({FITS_BELOW * gpu.memory_gib:.1f} GiB usable): "
            + _advice(cfg.parallelism, cfg.activation_checkpointing, micro_batch(cfg))
        )


def plan_sweep(
    name: str,
    rungs: list[Rung],
    vocab_size: int,
    *,
    ratios: list[float],
    precision: float,
    budgets: list[int],
    mfu: float = DEFAULT_MFU,
    budget: float = 1.0,
) -> SweepPlan:
    """The plan of sweep `name` (its `rungs`, `ratios`, bisection `precision`, token `budgets`
    per infusion trial and the decision search's `budget`, a share of the grid's) on its
    `train.gpu` (memory only, no throughput, when none is named). Raises KinfuseError naming
    the first rung that does not fit, and what to change."""
    train = rungs[0].train  # the sweep's: rungs differ only in lr, parallelism, checkpointing
    trial_tokens = sum(budgets) / len(budgets)
    gpu = GPUS.get(train.gpu) if train.gpu else None
    on_gpu = train.use_gpu or gpu is not None
    plans = []
    for rung in rungs:
        cfg, size = rung.train, rung.size
        memory = rung_memory(rung, vocab_size, on_gpu)
        if gpu is not None:
            check_fits_gpu(rung, memory)
        usable = memory.total / (FITS_BELOW * gpu.memory_bytes) if gpu else None
        speed = (
            mfu * gpu.peak_bf16 / flops_per_token(size, vocab_size, rung.seq_len) if gpu else None
        )
        base_tokens = rung.phase_tokens(Phase.base) if train.schedule == "continued" else 0
        base_hours = base_tokens / speed / 3600 if speed else None
        trial_hours = trial_tokens / speed / 3600 if speed else None
        params = size.param_count(vocab_size)
        plans.append(
            RungPlan(
                size.name, params, cfg.parallelism, cfg.activation_checkpointing, memory, speed,
                usable, base_hours, trial_hours, 12.0 * params.total,
            )
        )  # fmt: skip
    per_budget = (len(ratios), len(ratios) + expected_bisection_steps(ratios, precision))
    grid, bisect = (n * len(budgets) for n in per_budget)

    def gpu_hours(trials_per_size: int) -> float | None:
        if any(r.trial_gpu_hours is None for r in plans):
            return None
        return sum(r.base_gpu_hours + trials_per_size * r.trial_gpu_hours for r in plans)

    # Storage: every base checkpoint, Ray Train's two kept checkpoints of each trial, and the
    # report (Plotly's script in it).
    # A base run each (a checkpoint rung has none: its scores are a few bytes), and two per trial.
    storage = sum(
        plan.checkpoint_bytes * (bool(rung.phase_tokens(Phase.base)) + 2 * bisect)
        for plan, rung in zip(plans, rungs, strict=True)
    ) + REPORT_BYTES  # fmt: skip
    positive = [r for r in ratios if r > 0]  # ratio 0 is a reference, not a bracket
    spacing = max((b / a - 1 for a, b in zip(positive, positive[1:], strict=False)), default=0.0)
    return SweepPlan(
        name, train.workers, plans, train.gpu, mfu, spacing, precision, len(rungs) * grid,
        len(rungs) * bisect, gpu_hours(grid), gpu_hours(bisect), storage, budget,
        least_decision_budget(len(positive)) if positive else 1.0,
    )  # fmt: skip


@dataclass(frozen=True)
class SimulatedSearch:
    """The decision search of a sweep on ladders drawn from a previous sweep's law: per drawn
    ladder, the infusion trials it ran per rung (name -> count), and how far (logits) the law's
    r* was moved to fall inside this sweep's grid (0: not moved)."""

    trials: tuple[dict[str, int], ...]
    tokens: tuple[int, ...]  # per drawn ladder, the infusion trial-tokens it spent
    grid_tokens: int  # what the grid's trials above ratio 0 spend
    moved: float
    stops: tuple[str, ...] = ()  # per drawn ladder, why its search stopped


def budget_exponent_halfwidth(
    n_sizes: int, budgets: list[int], seeds: int, scatter: float, confidence: float = 0.9
) -> float:
    """Half-width of the interval of g, the D exponent (logit r* = ... + b log N + g log D),
    fitted to the collapse points of `n_sizes` x `budgets` x `seeds` trials' curves, each off
    the law by `scatter` logits (sd). A full size x budget grid keeps log N and log D orthogonal,
    so SE(g) = scatter / sqrt(seeds x sizes x sum over budgets of (log D - mean log D)^2)."""
    logs = [math.log(b) for b in budgets]
    spread = sum((x - sum(logs) / len(logs)) ** 2 for x in logs)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return z * scatter / math.sqrt(seeds * n_sizes * spread) if spread else math.inf


@dataclass(frozen=True)
class BudgetPlan:
    """What pins the D exponent to `precision`: this ladder's half-width, the seeds it needs
    with its budgets, or the budgets (geometric, `factor` apart) it needs with one seed."""

    precision: float
    scatter: float
    halfwidth: float  # with the sweep's budgets and one seed
    seeds_needed: int
    budgets_needed: int
    factor: float


def plan_budget_exponent(
    n_sizes: int, budgets: list[int], precision: float, scatter: float, confidence: float = 0.9
) -> BudgetPlan:
    """`budget_exponent_halfwidth` for a ladder of `n_sizes` at `budgets`, and how to reach
    `precision`."""
    factor = (budgets[-1] / budgets[0]) ** (1 / (len(budgets) - 1)) if len(budgets) > 1 else 2.0

    def width(seeds: int = 1, ladder: list[float] = budgets) -> float:
        return budget_exponent_halfwidth(n_sizes, ladder, seeds, scatter, confidence)

    def geometric(k: int) -> list[float]:
        return [budgets[0] * factor**i for i in range(k)]

    seeds = next((s for s in range(1, 1001) if width(seeds=s) <= precision), 1001)
    wider = next((k for k in range(2, 101) if width(ladder=geometric(k)) <= precision), 101)
    return BudgetPlan(precision, scatter, width(), seeds, wider, factor)


def _advice(parallelism: str, checkpointing: bool, micro: int) -> str:
    if parallelism == "ddp":
        return "set parallelism: fsdp on the rung (shards weights, gradients and optimizer state)"
    if not checkpointing:
        return "set activation_checkpointing: true on the rung"
    if micro > 1:
        return "lower train.micro_batch_size"
    return "add workers per trial (train.workers) or name a GPU with more memory"


# A CPU trial may use this share of the machine's memory: the driver, Ray and the other trials
# need the rest.
CPU_FITS_BELOW = 0.5


def check_trainable(
    rungs: list[Rung], vocab_size: int, *, on_cluster: bool, ram_bytes: int | None = None
) -> None:
    """Refuse, in one line before anything runs, a rung that cannot train: on its `train.gpu`
    (as `kinfuse plan` does), or in this machine's memory (`ram_bytes`, default the physical
    memory) when it trains on CPUs of a local Ray instance (not `on_cluster`)."""
    train = rungs[0].train
    if train.gpu:
        for rung in rungs:
            check_fits_gpu(rung, rung_memory(rung, vocab_size, gpu=True))
        return
    if train.use_gpu or on_cluster:
        return  # GPUs of unknown size, or a cluster's nodes: nothing to check here
    ram = ram_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for rung in rungs:
        memory = rung_memory(rung, vocab_size, gpu=False).total * rung.train.workers
        if memory > CPU_FITS_BELOW * ram:
            raise KinfuseError(
                f"ladder rung '{rung.name}' needs about {memory / GIB:,.1f} GiB to train on CPUs "
                f"(weights, gradients, AdamW state, activations), this machine has "
                f"{ram / GIB:.0f} GiB: use a smaller shape or batch_size, or GPUs "
                "(train.use_gpu, train.gpu; `kinfuse plan` sizes them)"
            )


@dataclass(frozen=True)
class CpuTime:
    """A CPU sweep's training time on this machine: each rung's base run and infusion trials at
    the probed seconds per token, over the trials that run at once (`slots`)."""

    seconds_per_token: dict[str, float]
    trials: int  # infusion trials, every rung and budget
    base_runs: int
    slots: int
    seconds: float


def cpu_seconds(
    rungs: list[Rung], seconds_per_token: dict[str, float], trials_per_budget: int,
    budgets: list[int], slots: int,
) -> CpuTime:  # fmt: skip
    """Training wall time of `trials_per_budget` infusion trials of every rung at each of
    `budgets` and their base runs (continued schedule), `slots` at a time; early stopping only
    shortens it."""
    work, base_runs = 0.0, 0
    for rung in rungs:
        rate = seconds_per_token[rung.size.name]
        work += trials_per_budget * sum(budgets) * rate
        if rung.train.schedule == "continued" and rung.phase_tokens(Phase.base):
            work += rung.phase_tokens(Phase.base) * rate
            base_runs += 1
    slots, trials = max(1, slots), trials_per_budget * len(budgets) * len(rungs)
    return CpuTime(seconds_per_token, trials, base_runs, slots, work / slots)
