"""The sweep file schema: one typed, validated description of a whole study.

A sweep file is YAML. Every section has defaults, so the smallest useful file names a study, a
ladder and the ratios. Unknown or misspelt fields are errors, reported as one line that names the
field (see `load_sweep`).
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kinfuse_ray import family
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.hardware import GPUS
from kinfuse_ray.spec import Phase, TrialResult, TrialSpec

BUNDLED_DATA = Path(__file__).parent / "bundled"

Parallelism = Literal["ddp", "fsdp"]
# The law's forms and fitting methods (kinfuse_ray/law.py): the one vocabulary the sweep file,
# the law and the command line share.
LawForm = Literal["power_n", "power_nd", "power_n_sat", "power_nd_sat"]
LawMethod = Literal["joint", "points"]
# The joint fit's curve steepness: one for every size, a law in N (and D), or chosen.
Steepness = Literal["auto", "fixed", "moving"]
# How a decision picks one ratio (kinfuse_ray/decision.py).
Rule = Literal["retention_first", "balanced", "domain_first"]
LAW_FORMS: tuple[str, ...] = get_args(LawForm)
LAW_METHODS: tuple[str, ...] = get_args(LawMethod)
STEEPNESS_CHOICES: tuple[str, ...] = get_args(Steepness)
Ratio = Annotated[float, Field(ge=0.0, lt=1.0)]
Share = Annotated[float, Field(gt=0.0, lt=1.0)]


class Strict(BaseModel):
    # Infinite or NaN numbers are refused as such ("Input should be a finite number").
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _bundled(value: object) -> object:
    """`bundled:knowledge/world/general.jsonl` names a file shipped with kinfuse-ray."""
    if isinstance(value, str) and value.startswith("bundled:"):
        return BUNDLED_DATA / value.removeprefix("bundled:")
    return value


DataPath = Annotated[Path, BeforeValidator(_bundled)]


@dataclass(frozen=True)
class ParamCount:
    total: int
    non_embedding: int
    per_layer: int


class ModelSize(Strict):
    """One rung of the model ladder: a LLaMA-style decoder of this shape, trained from scratch,
    or an existing checkpoint (a Hugging Face model folder) whose config gives the shape."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    hidden_size: int = Field(gt=0)
    n_layers: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)
    n_kv_heads: int | None = Field(default=None, gt=0, description="default: n_heads")
    # A Hugging Face model folder (config.json, weights, tokenizer): the rung is this model,
    # infused by continued pretraining from its weights (kinfuse_ray/family.py).
    checkpoint: DataPath | None = None
    # Tokens the checkpoint was pre-trained on: with them the law's D is the family's training
    # history (a ladder of sizes x pre-training steps), not the infusion budget.
    pretrained_tokens: int | None = Field(default=None, gt=0)
    # This rung's peak learning rate (default: train.lr). Ladders lower it as models widen.
    lr: float | None = Field(default=None, gt=0)
    # This rung's data parallelism and activation checkpointing (default: train's): large rungs
    # shard weights, gradients and optimizer state (fsdp) where plain DDP would not fit.
    parallelism: Parallelism | None = None
    activation_checkpointing: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _shape_from_checkpoint(cls, raw: object) -> object:
        if not isinstance(raw, dict) or raw.get("checkpoint") is None:
            return raw
        # Absolute: trials run in working directories of their own.
        folder = Path(_bundled(raw["checkpoint"])).resolve()
        shape = family.shape_of(folder)
        for field in family.SHAPE_KEYS:  # a re-read dump repeats them: only a conflict is wrong
            if raw.get(field) is not None and raw[field] != shape.get(field):
                raise ValueError(
                    f"{field} {raw[field]}: the checkpoint's config.json says "
                    f"{shape.get(field)} (a checkpoint's shape comes from its config)"
                )
        return {**raw, **shape, "checkpoint": folder}

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelSize:
        if self.hidden_size % self.n_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by n_heads")
        if self.n_heads % (self.n_kv_heads or self.n_heads):
            raise ValueError(f"n_heads {self.n_heads} is not divisible by n_kv_heads")
        if self.pretrained_tokens and not self.checkpoint:
            raise ValueError("pretrained_tokens belongs to a checkpoint rung (checkpoint: DIR)")
        return self

    @property
    def ffn_size(self) -> int:
        # LLaMA's SwiGLU width, about 8/3 of the hidden size, rounded up to a multiple of 8.
        return self.intermediate_size or -(-8 * self.hidden_size // 3 // 8) * 8

    def param_count(self, vocab_size: int) -> ParamCount:
        """Parameters of the LLaMA decoder `model.build_model` makes (tied embeddings, no
        biases), counted from the shape: no framework needed. A checkpoint of another
        architecture is counted as that decoder of its width, depth and heads."""
        h, f = self.hidden_size, self.ffn_size
        kv = h // self.n_heads * (self.n_kv_heads or self.n_heads)  # key and value width
        per_layer = 2 * h * h + 2 * h * kv + 3 * h * f + 2 * h  # q, o, k, v; SwiGLU; 2 norms
        non_embedding = self.n_layers * per_layer + h  # + the final norm
        return ParamCount(non_embedding + vocab_size * h, non_embedding, per_layer)

    @property
    def non_embedding_params(self) -> int:
        """Parameters outside the token embedding and LM head: the N of the scaling law (the
        vocabulary does not enter it)."""
        return self.param_count(0).non_embedding


class DataConfig(Strict):
    """Where the general corpus and the knowledge base come from, and how they are rendered."""

    # Text (.txt, .gz), JSON Lines or Parquet with a `text` field, a Hugging Face dataset
    # folder (save_to_disk), hf:NAME[:CONFIG] to stream its first max_documents by name, or a
    # .npy array of token ids made with `tokenizer` (memory-mapped as is, never copied).
    corpus: DataPath = BUNDLED_DATA / "corpus" / "shakespeare.txt.gz"
    max_documents: int = Field(default=100_000, gt=0, description="hf: corpora only")
    general_facts: DataPath = BUNDLED_DATA / "knowledge" / "general.jsonl"
    domain_facts: DataPath = BUNDLED_DATA / "knowledge" / "domain.jsonl"
    templates: DataPath = BUNDLED_DATA / "knowledge" / "templates.json"
    # A local Hugging Face tokenizer (folder with tokenizer.json); default: a byte-level BPE of
    # `vocab_size` trained on the corpus and the facts.
    tokenizer: DataPath | None = None
    n_general_facts: int | None = Field(default=None, gt=0, description="default: the whole file")
    n_domain_facts: int | None = Field(default=None, gt=0, description="default: the whole file")
    # The domain load per rung: n_domain_facts at the smallest rung, times (N / N_smallest)^this.
    # 0 gives every rung the same facts; > 0 keeps a wide ladder's larger models capacity-bound
    # (the general facts, and so their rehearsal per fact, stay the same on every rung).
    domain_facts_exponent: Annotated[float, Field(ge=0, le=1)] = 0.0
    general_fact_share: Share = 0.8
    # How the general facts appear in the general stream: "sentences", each fact on its own in
    # short paragraphs between runs of corpus text; or "documents", the facts about each
    # subject together in one paragraph (an article about the entity), as knowledge sits in
    # real text. Either way they hold `general_fact_share` of its tokens.
    general_layout: Literal["sentences", "documents"] = "sentences"
    vocab_size: int = Field(default=2048, ge=256)
    seq_len: int = Field(default=128, ge=16)

    @model_validator(mode="after")
    def _scaled_load_has_a_base(self) -> DataConfig:
        if self.domain_facts_exponent and not self.n_domain_facts:
            raise ValueError("domain_facts_exponent needs n_domain_facts")
        if self.corpus.suffix == ".npy" and not self.tokenizer:
            raise ValueError(
                "a .npy corpus holds token ids: set tokenizer to the one that made them"
            )
        return self


class Schedule(StrEnum):
    scratch = "scratch"
    continued = "continued"


class TrainConfig(Strict):
    schedule: Schedule = Schedule.continued
    tokens: int = Field(default=500_000, gt=0, description="training tokens per infusion trial")
    base_tokens: int = Field(
        default=1_000_000, gt=0, description="tokens of the general-only base run"
    )
    batch_size: int = Field(default=32, gt=0, description="global: sequences per step")
    micro_batch_size: int | None = Field(
        default=None,
        gt=0,
        description="sequences per forward pass per worker; gradients accumulate",
    )
    compile: bool = False  # torch.compile the model
    lr: float = Field(default=1e-2, gt=0)
    warmup_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.05
    min_lr_fraction: Annotated[float, Field(ge=0, le=1)] = 0.1
    weight_decay: float = Field(default=0.0, ge=0)
    cpus_per_trial: int = Field(default=1, gt=0, description="per worker")
    workers: int = Field(default=1, gt=0, description=">1: a Ray Train DDP run per trial")
    use_gpu: bool = False  # one GPU per worker, through Ray Train
    # ddp: every worker holds the whole model; fsdp: PyTorch FSDP2 (fully_shard) shards
    # parameters, gradients and optimizer state over the workers. Rungs may override both.
    parallelism: Parallelism = "ddp"
    activation_checkpointing: bool = False  # recompute each layer's activations in backward
    # On GPUs the two are two numeric regimes: DDP keeps fp32 weights under bf16 autocast (fp32
    # residual sums), FSDP2 computes with bf16 weights. A ladder whose rungs mix them would read
    # a precision effect on retention as a size effect, so it is refused unless this says so.
    mixed_regimes: bool = False
    # The GPU each worker has, for `kinfuse plan` (memory, peak FLOP/s): a name from
    # kinfuse_ray.hardware.GPUS. MFU itself uses the device the trial runs on.
    gpu: str | None = None
    # Dense bf16 peak FLOP/s per GPU in TFLOP/s, for MFU on a GPU the built-in table lacks.
    peak_tflops: float | None = Field(default=None, gt=0)
    # The CPU math a sweep's numbers come from, pinned so that they are the same on other CPUs:
    # AVX-512 kernels sum in another order than AVX2, oneMKL picks its own path by CPU vendor,
    # and one flipped probe can move a collapse point. `portable`: one numeric path on the x86
    # CPUs of one vendor whatever their vector width (torch's AVX2 kernels, oneMKL's COMPATIBLE
    # branch, which still rounds differently on AMD and Intel; matrix products about 2x slower);
    # `default`/`avx2`/`avx512`: torch's own kernels only (ATEN_CPU_CAPABILITY), the same on CPUs
    # of one vendor and width. None: whatever the CPU picks. See provenance.CPU_KERNEL_ENV.
    cpu_kernels: Literal["portable", "default", "avx2", "avx512"] | None = None

    @model_validator(mode="after")
    def _batch_splits_over_workers(self) -> TrainConfig:
        if self.batch_size % self.workers:
            raise ValueError(
                f"batch_size {self.batch_size} is not divisible by workers {self.workers}"
            )
        if self.micro_batch_size and (self.batch_size // self.workers) % self.micro_batch_size:
            raise ValueError(
                f"micro_batch_size {self.micro_batch_size} does not divide the per-worker batch "
                f"{self.batch_size // self.workers}"
            )
        return self

    @property
    def uses_ray_train(self) -> bool:
        """More workers or GPUs: a Ray Train run per trial (else the Tune trial trains itself)."""
        return self.workers > 1 or self.use_gpu

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, gpu: str | None) -> str | None:
        if gpu is not None and gpu not in GPUS:
            raise ValueError(f"unknown gpu '{gpu}'; known: {', '.join(GPUS)}")
        return gpu


class EvalConfig(Strict):
    every_tokens: int = Field(default=100_000, gt=0)
    # Tokens per evaluation forward pass: evaluation's memory is bounded by this, not by the
    # number of probes or validation sequences.
    batch_tokens: int = Field(default=16_384, gt=0)
    n_choices: int = Field(default=4, ge=2)
    retention_probes: int | None = Field(
        default=None, gt=0, description="default: all general facts"
    )
    acquisition_probes: int | None = Field(default=250, gt=0)
    val_sequences: int = Field(default=32, gt=0)
    # Probe distractors: uniform over the relation's objects, or as frequent as each object is
    # an answer (real knowledge, where some objects are far more common than others).
    distractors: Literal["uniform", "frequency"] = "uniform"
    collapse_threshold: Share = 0.5
    plateau_points: int = Field(default=2, gt=0)
    plateau_tolerance: Share = 0.9
    early_stop_below: Annotated[float, Field(ge=0, lt=1)] = 0.25
    early_stop_patience: int = Field(default=2, gt=0)
    early_stop_after: Annotated[float, Field(ge=0, le=1)] = 0.5  # share of the trial's tokens
    # Checkpoint rungs: retention counts the general facts the checkpoint answered right before
    # infusion; a rung that knows fewer than this many beyond guessing (chance-corrected
    # accuracy x probes) is refused, as its retention would measure luck.
    min_known_facts: int = Field(default=20, ge=1)


def least_decision_budget(n_ratios: int) -> float:
    """The smallest `search.budget` that leaves the decision search 2 of each size's `n_ratios`
    ratios: what bracketing one collapse takes."""
    return 2 / n_ratios


class SearchConfig(Strict):
    """How each size's ratios are chosen: every ratio (grid); the ratios as a coarse pass
    refined by bisection in log r until the collapse bracket is narrower than `precision`
    (bisect); Optuna's TPE sampler between them (optuna); or, over the whole ladder, the
    grid's trials that narrow the target's keep ratio most, until its interval is within
    `width` logits or `budget` of the grid's trial-tokens is spent (decision,
    kinfuse_ray/decision_search.py)."""

    strategy: Literal["grid", "bisect", "optuna", "decision"] = "grid"
    precision: Annotated[float, Field(gt=0, lt=1)] = 0.1  # relative: stop once hi / lo - 1 <= this
    trials_per_size: int = Field(default=8, gt=0, description="optuna: trials above the plateau")
    budget: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1 / 3, description="decision: share of the grid's trial-tokens it may spend"
    )
    width: Annotated[float, Field(gt=0)] = Field(
        default=1.5,
        description="decision: stop once the target's keep interval is this narrow (logits)",
    )


class Target(Strict):
    """The larger, untried model to recommend a ratio for."""

    size: ModelSize
    tokens: int | None = Field(
        default=None, gt=0, description="default: the sweep's trial tokens (largest budget)"
    )


class PredictConfig(Strict):
    target: Target | None = None
    # auto: leave-one-size-out picks among the bounded forms once 4 sizes collapsed (power_n
    # below that); or name one: power_n, power_n_sat (saturates), power_nd, power_nd_sat
    law: Literal["auto"] | LawForm = "auto"
    method: LawMethod = "joint"  # fit every trial, or the per-size r* points
    # The joint curve's steepness: auto keeps one for all sizes unless a law in N (and D)
    # predicts held-out sizes' curves better (leave-one-size-out); or name fixed or moving.
    steepness: Steepness = "auto"
    # The confidence every forecast statement is made at: both sides of the infusion window,
    # and the recommended ratio (kinfuse_ray/decision.py).
    confidence: Annotated[float, Field(gt=0, lt=1)] = 0.9
    # How one ratio is picked: retention_first, the largest ratio that keeps retention at the
    # tolerance with `confidence`; balanced, where P(keeps) and P(learns) are jointly highest;
    # domain_first, the smallest ratio that learns the domain with `confidence`.
    rule: Rule = "retention_first"
    # Retention kept (share of plateau) for the table of ratios; eval.plateau_tolerance picks
    # the recommended one.
    tolerances: list[Share] = Field(default=[0.95, 0.9, 0.8], min_length=1)
    # "Learns the domain": chance-corrected acquisition of the infused facts at least this.
    acquisition_target: Share = 0.25
    bootstrap: int = Field(default=400, ge=10)
    # Once the law is fitted, train the target size at the recommended ratio and at the
    # predicted collapse point, and record predicted against measured (`kinfuse forecasts`).
    confirm: bool = False

    @model_validator(mode="after")
    def _confirm_needs_a_target(self) -> PredictConfig:
        if self.confirm and self.target is None:
            raise ValueError("confirm: true needs a target to confirm")
        return self


# The defaults every layer uses (science functions, searchers), taken from the schema itself.
EVAL_DEFAULTS, PREDICT_DEFAULTS = EvalConfig(), PredictConfig()


class RayConfig(Strict):
    address: str = Field(default="", description="empty: start a local Ray instance")
    num_cpus: int | None = Field(default=None, gt=0, description="local instance only")
    # Ray Train trials (workers > 1 or GPUs) to keep in flight. Default: as many as the
    # cluster's nodes fit now, re-checked as nodes join. On an autoscaling cluster set it to
    # what the cluster can grow to: the trials' waiting workers are what makes it grow.
    concurrent_trials: int | None = Field(default=None, gt=0)


class MlflowConfig(Strict):
    tracking_uri: str = Field(default="sqlite:///mlflow.db", min_length=1)
    experiment: str | None = Field(
        default=None, min_length=1, description="default: the study name"
    )


MLFLOW_DEFAULTS = MlflowConfig()


class Rung(Strict):
    """One ladder rung as its trials see it (`SweepConfig.rungs`): the model, its own training
    settings, evaluation, the seed and what of the data decides its stream. The training layer,
    the base-run store and a trial's records receive this, never the whole sweep."""

    size: ModelSize
    n_params: int  # non-embedding: the N of the law
    knowledge_load: tuple[int | None, int | None]  # (general, domain) facts; None: the whole file
    train: TrainConfig  # the sweep's, with the rung's own lr, parallelism and checkpointing
    eval: EvalConfig
    seed: int
    general_fact_share: float
    seq_len: int

    @property
    def name(self) -> str:
        return self.size.name

    def result(self, spec: TrialSpec, metrics: dict) -> TrialResult:
        """A trial's final metrics as its result: this rung's N and budget (its checkpoint's
        pre-training tokens as D, where given)."""
        return TrialResult.from_metrics(
            spec, metrics, n_params=self.n_params, tokens=self.phase_tokens(spec.phase),
            pretrained_tokens=self.size.pretrained_tokens,
        )  # fmt: skip

    def phase_tokens(self, phase: Phase) -> int:
        """The token budget of a trial of `phase` (a checkpoint's base run trains none: it is the
        checkpoint, scored)."""
        if phase is Phase.base:
            return 0 if self.size.checkpoint else self.train.base_tokens
        return self.train.tokens


class SweepTrials(Strict):
    """What a sweep's trials need inside Ray, and nothing more: the sweep's name (its Tune
    experiment, its live metrics), its output folder (trial records and Ray Train runs; the
    base-run store beside it) and its rungs by name."""

    name: str
    out: Path
    rungs: dict[str, Rung]


@dataclass(frozen=True)
class TargetPoint:
    """The untried model a sweep forecasts for: its name, N and token budget, and what a
    forecast for it should say about how it differs from the ladder."""

    name: str
    n_params: int
    tokens: int
    notes: tuple[str, ...] = ()


class SweepConfig(Strict):
    """One sweep file, validated: the model ladder, the infusion ratios to try, the search, the
    data, training, evaluation and forecast settings, and where it runs and records (Ray,
    MLflow). `load_sweep(path)` reads one; `run_sweep(sweep)` runs it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    ladder: list[ModelSize] = Field(min_length=1)
    ratios: list[Ratio] = Field(min_length=1)
    # A size x budget ladder: each budget (infusion tokens per trial, in place of train.tokens)
    # runs as a sweep of its own, then one law over (N, D) is fitted to every trial.
    budgets: list[Annotated[int, Field(gt=0)]] | None = Field(default=None, min_length=2)
    search: SearchConfig = SearchConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    predict: PredictConfig = PredictConfig()
    ray: RayConfig = RayConfig()
    mlflow: MlflowConfig = MlflowConfig()
    output_dir: Path | None = Field(default=None, description="default: runs/<name>")

    @model_validator(mode="before")
    @classmethod
    def _checkpoints_bring_their_tokenizer(cls, raw: object) -> object:
        """A ladder of checkpoints reads the corpus, facts and probes with the first rung's
        tokenizer (`check_checkpoints` checks the others share it)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("ladder"), list):
            return raw
        first = next((r["checkpoint"] for r in raw["ladder"]
                      if isinstance(r, dict) and r.get("checkpoint")), None)  # fmt: skip
        data = raw.get("data") or {}
        if first is None or not isinstance(data, dict) or data.get("tokenizer"):
            return raw
        return {**raw, "data": {**data, "tokenizer": first}}

    @model_validator(mode="after")
    def _one_family(self) -> SweepConfig:
        """Rungs are all checkpoints or all shapes; checkpoints take the sweep's sequences and
        are continued from, never trained from scratch. (Their weights and shared tokenizer are
        checked when a sweep starts, `check_checkpoints`: a plan needs the configs only.)"""
        folders = {size.name: size.checkpoint for size in self.ladder if size.checkpoint}
        if not folders:
            return self
        if len(folders) < len(self.ladder):
            shapes = [size.name for size in self.ladder if not size.checkpoint]
            raise ValueError(
                f"rungs {', '.join(shapes)} are shapes and the others checkpoints: a ladder is "
                "one or the other (shapes train a base run from scratch, checkpoints are theirs)"
            )
        if self.train.schedule is not Schedule.continued:
            raise ValueError("checkpoint rungs are infused by continued pretraining from their "
                             "weights: train.schedule must be continued")  # fmt: skip
        for name, folder in folders.items():
            positions = family.max_positions(folder)
            if positions and positions < self.data.seq_len:
                raise ValueError(f"rung {name}: takes {positions} positions, data.seq_len is "
                                 f"{self.data.seq_len}")  # fmt: skip
        self._one_budget_axis()
        return self

    def _one_budget_axis(self) -> None:
        """Pre-training tokens are the law's D on every rung or none, and then on no other axis."""
        given = [size.name for size in self.ladder if size.pretrained_tokens]
        if not given:
            return
        if len(given) < len(self.ladder):
            raise ValueError("pretrained_tokens: give every rung's, or none (it is the law's D)")
        if self.budgets:
            raise ValueError("budgets with pretrained_tokens: the law has one D axis; use one")
        if self.search.strategy == "decision":
            raise ValueError("search.strategy decision does not yet read pre-training tokens as "
                             "D: use grid or bisect")  # fmt: skip
        target = self.predict.target
        if target and not (target.size.pretrained_tokens or target.tokens):
            raise ValueError("predict.target: the ladder's D is pre-training tokens: give the "
                             "target's (size.pretrained_tokens)")  # fmt: skip

    def check_checkpoints(self) -> None:
        """Every checkpoint a run of this sweep loads (the target's too when it is confirmed)
        holds weights and the ladder's tokenizer; a one-line `KinfuseError` naming the rung
        otherwise. (A plan needs the configs only: this runs when a sweep starts.)"""
        sizes = [*self.ladder, *([self.predict.target.size] if self.predict.confirm else [])]
        want = None
        for size in (size for size in sizes if size.checkpoint):
            try:
                want = want or family.tokenizer_digest(self.data.tokenizer)
                family.weight_file(size.checkpoint)
                if family.tokenizer_digest(size.checkpoint) != want:
                    raise ValueError(
                        f"its tokenizer ({size.checkpoint}) differs from {self.data.tokenizer}'s: "
                        "the rungs of one ladder share one tokenizer"
                    )
            except ValueError as exc:
                raise KinfuseError(f"rung {size.name}: {exc}") from None

    @field_validator("ladder")
    @classmethod
    def _unique_names(cls, ladder: list[ModelSize]) -> list[ModelSize]:
        names = [size.name for size in ladder]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        return ladder

    @field_validator("ratios")
    @classmethod
    def _sorted_unique(cls, ratios: list[float]) -> list[float]:
        if len(set(ratios)) != len(ratios):
            raise ValueError(f"ratios must be unique, got {ratios}")
        return sorted(ratios)

    @field_validator("budgets")
    @classmethod
    def _sorted_unique_budgets(cls, budgets: list[int] | None) -> list[int] | None:
        if budgets is not None and len(set(budgets)) != len(budgets):
            raise ValueError(f"budgets must be unique, got {budgets}")
        return sorted(budgets) if budgets else budgets

    @model_validator(mode="after")
    def _one_numeric_regime(self) -> SweepConfig:
        if not self.train.use_gpu or self.train.mixed_regimes:
            return self
        by_regime: dict[str, list[str]] = {}
        for size in self.ladder:
            by_regime.setdefault(size.parallelism or self.train.parallelism, []).append(size.name)
        if len(by_regime) > 1:
            split = "; ".join(f"{mode}: {', '.join(names)}" for mode, names in by_regime.items())
            raise ValueError(
                f"the ladder trains its rungs in two numeric regimes on GPUs ({split}): DDP keeps "
                "fp32 weights under bf16 autocast, FSDP2 computes with bf16 weights, and the law "
                "would read the difference as a size effect; give every rung one parallelism "
                "(train.parallelism), or set train.mixed_regimes: true"
            )
        return self

    @model_validator(mode="after")
    def _reference_ratio_needs_a_grid(self) -> SweepConfig:
        if 0 in self.ratios and self.search.strategy != "grid":
            raise ValueError(
                "ratio 0 (a general-only reference run) needs search.strategy grid: the other "
                "searches work in log r"
            )
        return self

    @model_validator(mode="after")
    def _decision_search_needs_a_target(self) -> SweepConfig:
        if self.search.strategy != "decision":
            return self
        if self.predict.target is None:
            raise ValueError("search.strategy decision narrows the forecast at predict.target: "
                             "name a target")  # fmt: skip
        if self.predict.method != "joint":
            raise ValueError("search.strategy decision reads retention curves: it needs "
                             "predict.method joint")  # fmt: skip
        least = least_decision_budget(len(self.ratios))
        if self.search.budget < least:
            raise ValueError(
                f"search.budget {self.search.budget:.3g} gives each size "
                f"{self.search.budget * len(self.ratios):.1f} of its {len(self.ratios)} ratios, "
                f"and bracketing a collapse takes 2: raise it to {least:.2f} or more, or add "
                "ratios"
            )
        return self

    @model_validator(mode="after")
    def _confirmation_at_one_budget(self) -> SweepConfig:
        if self.budgets and self.predict.confirm:
            raise ValueError(
                "predict.confirm with budgets: confirm a budget ladder's forecast with a sweep of "
                "the target at its tokens (as sweeps/budget_continued_confirm.yaml does)"
            )
        return self

    def at_budget(self, tokens: int) -> SweepConfig:
        """One budget of a size x budget ladder: a sweep of its own (name, output folder and
        MLflow experiment suffixed -d<tokens>; the folder beside the ladder's, so base runs come
        from the same store as every other sweep's) that trains `tokens` per infusion trial and
        forecasts the target at that budget."""
        raw = self.model_dump(mode="json")
        out = self.out.with_name(f"{self.out.name}-d{tokens}")
        raw.update(name=f"{self.name}-d{tokens}", budgets=None, output_dir=str(out))
        raw["train"]["tokens"] = tokens
        raw["mlflow"]["experiment"] = f"{self.experiment}-d{tokens}"
        if raw["predict"]["target"] is not None:
            raw["predict"]["target"]["tokens"] = None
        return parse_sweep(raw, f"budget {tokens} of {self.name}")

    @property
    def out(self) -> Path:
        return (self.output_dir or Path("runs") / self.name).resolve()

    @property
    def experiment(self) -> str:
        return self.mlflow.experiment or self.name

    @property
    def n_params(self) -> dict[str, int]:
        """Non-embedding parameter count of every ladder rung, by name."""
        return {size.name: size.non_embedding_params for size in self.ladder}

    def knowledge_load(self, n_params: int) -> tuple[int | None, int | None]:
        """(general, domain) facts a model of `n_params` learns (None: every fact in the file);
        `data.domain_facts_exponent` scales the domain count from the smallest rung's."""
        data = self.data
        scale = (n_params / min(self.n_params.values())) ** data.domain_facts_exponent
        n_domain = data.n_domain_facts and max(1, round(data.n_domain_facts * scale))
        return data.n_general_facts, n_domain

    @property
    def target_n_params(self) -> int | None:
        target = self.predict.target
        return target and target.size.non_embedding_params

    @property
    def target_tokens(self) -> int:
        """The target's token budget D: its own (its pre-training tokens on a ladder read in
        them), else the largest budget trained."""
        target = self.predict.target
        own = target and (target.size.pretrained_tokens or target.tokens)
        return own or max(self.budgets or [self.train.tokens])

    @property
    def largest_knowledge_load(self) -> tuple[int | None, int | None]:
        """The most facts any trial of this sweep trains on (the confirmation run's included)."""
        sizes = [*self.n_params.values(), *([self.target_n_params] if self.predict.confirm else [])]
        return self.knowledge_load(max(sizes))

    @property
    def rungs(self) -> dict[str, Rung]:
        """Every ladder rung as its trials see it, by name, in ladder order (not cached: a
        `model_copy(update=...)` would keep a stale one)."""
        return {
            size.name: Rung(
                size=size, n_params=self.n_params[size.name],
                knowledge_load=self.knowledge_load(self.n_params[size.name]),
                train=self._train_for(size.name), eval=self.eval, seed=self.seed,
                general_fact_share=self.data.general_fact_share, seq_len=self.data.seq_len,
            )
            for size in self.ladder
        }  # fmt: skip

    @property
    def trials(self) -> SweepTrials:
        return SweepTrials(name=self.name, out=self.out, rungs=self.rungs)

    @property
    def target_point(self) -> TargetPoint | None:
        """The forecast's target (None: the sweep names none)."""
        target = self.predict.target
        if target is None:
            return None
        notes = []
        if self.data.domain_facts_exponent:
            n_domain = self.knowledge_load(self.target_n_params)[1]
            largest = self.knowledge_load(max(self.n_params.values()))[1]
            notes.append(
                f"the target would get {n_domain} domain facts by data.domain_facts_exponent, the "
                f"largest rung {largest}: exposures per domain fact are the largest rung's"
            )
        depths = sorted({size.n_layers for size in self.ladder})
        if not depths[0] <= target.size.n_layers <= depths[-1]:
            span = f"{depths[0]}" if len(depths) == 1 else f"{depths[0]}-{depths[-1]}"
            notes.append(
                f"the target has {target.size.n_layers} layers, the rungs {span}: the law reads "
                "size as non-embedding parameters alone, and on CPU rungs grown in depth raised "
                "r* about a third as fast per log N as rungs grown in width (benchmarks/shape.py; "
                "docs/findings.md), so a deeper target may collapse earlier than forecast: "
                "add a rung of its depth"
            )
        return TargetPoint(target.size.name, self.target_n_params, self.target_tokens, tuple(notes))

    def _train_for(self, size: str) -> TrainConfig:
        """The training settings of one rung: its own learning rate, parallelism and activation
        checkpointing, where it sets them."""
        rung = self.size(size)
        own = {
            key: getattr(rung, key)
            for key in ("lr", "parallelism", "activation_checkpointing")
            if getattr(rung, key) is not None
        }
        return self.train.model_copy(update=own) if own else self.train

    def confirmation(self, *ratios: float) -> SweepConfig:
        """The run that checks a forecast: the target size as one more rung (its knowledge load
        scaled from the smallest rung like every other), trained at the forecast's `ratios` (the
        recommended one, the learning edge, the predicted collapse point), in its own Tune
        experiment but the same study and output folder."""
        target = self.predict.target
        raw = self.model_dump(mode="json")
        raw.update(
            name=f"{self.name}-confirm",
            ladder=[*raw["ladder"], target.size.model_dump(mode="json")],
            ratios=sorted({round(r, 4) for r in ratios}),
            search={"strategy": "grid"},
        )
        raw["mlflow"]["experiment"] = self.experiment
        if not target.size.pretrained_tokens:  # else D is its pre-training, not these tokens
            raw["train"]["tokens"] = self.target_tokens
        return parse_sweep(raw, "the confirmation run")

    def size(self, name: str) -> ModelSize:
        return next(size for size in self.ladder if size.name == name)


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if not str(p).startswith(("function-", "constrained-"))]
    return ".".join(parts) or "<top level>"


def _did_you_mean(loc: tuple) -> str:
    """' (did you mean 'x'?)' for the closest field of the model the misspelt one sits in."""
    model: type[BaseModel] = SweepConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            continue
        inner = getattr(field.annotation, "__args__", (field.annotation,))[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_sweep(raw: object, source: str = "<sweep>") -> SweepConfig:
    """A `SweepConfig` from a parsed sweep file (a dict); a mistake is one `KinfuseError` line
    naming the field (and the closest known one to a misspelling) and `source`."""
    if not isinstance(raw, dict):
        raise KinfuseError(
            f"{source}: expected a mapping of sweep fields, got {type(raw).__name__}"
        )
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        # An unknown field first: a misspelling also shows up as the real field missing.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field" + _did_you_mean(err["loc"])
        raise KinfuseError(f"{source}: field '{_field_path(err['loc'])}': {msg}{more}") from None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`["seed=1", "train.tokens=2e5"]` set (nested) fields of a parsed sweep file; values are
    YAML, so the schema checks them like the file's own."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        path, sep, text = override.partition("=")
        if not sep or not path:
            raise KinfuseError(f"--set {override!r}: expected FIELD=VALUE, e.g. seed=1")
        *parents, leaf = path.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise KinfuseError(f"--set {override!r}: field '{part}' is not a section")
        node[leaf] = yaml.safe_load(text)
    return raw


def load_sweep(path: str | Path, overrides: list[str] = ()) -> SweepConfig:
    """Read and validate a sweep file, with `--set FIELD=VALUE` overrides applied; any problem is
    a one-line `KinfuseError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise KinfuseError(f"{path}: cannot read sweep file ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise KinfuseError(f"{path}:{where}: malformed YAML: {problem}") from None
    if overrides and isinstance(raw, dict):
        raw = apply_overrides(raw, list(overrides))
    return parse_sweep(raw, str(path))
