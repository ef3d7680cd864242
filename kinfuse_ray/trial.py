"""One trial: a model of one ladder size trained on the stream at one infusion ratio.

Phases (`spec.Phase`):
- base: general-only training from scratch; its checkpoint (weights, optimizer state and final
  metrics) is shared by every infusion trial of that size under the continued schedule, and by
  every sweep that needs the very same base run (see `base_run_dir`).
- infuse: training on the mix at ratio r, from the base checkpoint (continued schedule, LR
  re-warmed) or from scratch (scratch schedule).
"""

from __future__ import annotations

import hashlib
import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

from kinfuse_ray import checkpoint
from kinfuse_ray.config import Schedule, SweepConfig
from kinfuse_ray.data import DataBundle
from kinfuse_ray.mixing import Stream
from kinfuse_ray.model import build_model
from kinfuse_ray.parallel import SINGLE, Dist, parallelize
from kinfuse_ray.plan import flops_per_token
from kinfuse_ray.provenance import kernels
from kinfuse_ray.spec import Phase, TrialResult, TrialSpec
from kinfuse_ray.train import CollapseWatch, Metrics, Report, make_optimizer, train

BASE_STORE = ".kinfuse-base"  # beside the sweeps' output folders: runs/.kinfuse-base/<key>
# Settings that only the analysis, early stopping of infusion trials or `kinfuse plan` read:
# they do not change a base run.
_NOT_IN_BASE = {
    "train": {"tokens", "gpu", "peak_tflops"},
    "eval": {"collapse_threshold", "plateau_points", "plateau_tolerance", "early_stop_below",
             "early_stop_patience", "early_stop_after"},
}  # fmt: skip


def rung_bundle(sweep: SweepConfig, bundle: DataBundle, size: str) -> DataBundle:
    """The facts and probes of one rung (its knowledge load)."""
    load = sweep.knowledge_load(sweep.n_params[size])
    return bundle.for_load(*load, sweep.eval, sweep.seed)


def base_key(sweep: SweepConfig, rung: DataBundle, size: str) -> str:
    """What determines a size's base run, hashed: the shape, its training settings (learning
    rate, batch, base tokens, parallelism), the seed, the evaluation cadence, and the data
    itself (tokenizer, corpus tokens, the rung's facts and probes: `rung_bundle`), with the
    code's version. Two sweeps that need the same base run find it under the same key."""
    digest = hashlib.sha256()
    probes = (rung.retention, rung.acquisition)
    _hash_arrays(
        digest, [ids for fact in (*rung.general_facts, *rung.domain_facts) for ids in fact]
    )
    options = [ids for p in probes for choices in p.options for ids in choices]
    _hash_arrays(digest, [ids for p in probes for ids in p.prompts] + options)
    _hash_arrays(digest, [p.answers for p in probes])
    settings = {
        "version": _code_version(),
        "kernels": _kernels(sweep),
        "shape": sweep.size(size).model_dump(mode="json", exclude={"name"}),
        "train": sweep.train_for(size).model_dump(mode="json", exclude=_NOT_IN_BASE["train"]),
        "eval": sweep.eval.model_dump(mode="json", exclude=_NOT_IN_BASE["eval"]),
        "seed": sweep.seed,
        "general_fact_share": sweep.data.general_fact_share,
        "tokens": [rung.tokenizer_digest, Path(rung.tokens_path).name, rung.n_val, rung.seq_len],
        "facts": digest.hexdigest(),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def _hash_arrays(digest, arrays: list[np.ndarray]) -> None:
    """Token id arrays into `digest`: their lengths, then their ids in one pass."""
    digest.update(np.array([len(a) for a in arrays], dtype=np.int64).tobytes())
    if arrays:
        digest.update(np.concatenate(arrays).astype(np.int64).tobytes())


def _kernels(sweep: SweepConfig) -> dict[str, str | None]:
    """What computes a run (`provenance.kernels`): neither another torch version nor other CPU
    kernels reuse a base run. On GPUs, the GPU the sweep names instead of the CPU's kernels (the
    driver may run on a CPU-only head)."""
    gpu, here = sweep.train.use_gpu, kernels()
    return {**here, "cpu": None if gpu else here["cpu"], "gpu": sweep.train.gpu if gpu else None}


def _code_version() -> str:
    try:
        return version("kinfuse-ray")
    except PackageNotFoundError:  # run from a source tree (the GPU check on a bare machine)
        return "source"


def base_run_dir(sweep: SweepConfig, rung: DataBundle, size: str) -> Path:
    """The folder of a size's base run in the shared store: its final weights and optimizer
    state (sharded as the run was) and, in its progress file, its final metrics. Its
    `progress.json` is the one record that the base run is done."""
    return sweep.out.parent / BASE_STORE / base_key(sweep, rung, size)


def stored_base(sweep: SweepConfig, folder: Path, size: str) -> TrialResult | None:
    """The finished base run of `size` in `folder` (`base_run_dir`); None: not there yet."""
    if not checkpoint.is_complete(folder):
        return None
    try:
        return TrialResult.from_metrics(
            TrialSpec(Phase.base, size, 0.0), checkpoint.read_progress(folder)["metrics"],
            n_params=sweep.n_params[size], tokens=sweep.train.base_tokens,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):  # unreadable: set aside, train it again
        folder.rename(folder.with_name(f"{folder.name}.unreadable-{int(time.time())}"))
        return None


def run_trial(
    spec: TrialSpec,
    *,
    sweep: SweepConfig,
    bundle: DataBundle,
    report: Report,
    dist: Dist = SINGLE,
    resume: Path | None = None,
) -> Metrics:
    """Train one trial; return its final metrics. Under Ray Train every worker runs this with
    its `dist` place (a process group set up). `resume` is a checkpoint folder this trial saved
    before it was interrupted."""
    started = time.monotonic()
    size, phase, ratio = sweep.size(spec.size), spec.phase, spec.ratio
    cfg = sweep.train_for(spec.size)
    torch.set_num_threads(cfg.cpus_per_trial)
    bundle = rung_bundle(sweep, bundle, size.name)
    base = base_run_dir(sweep, bundle, size.name)
    torch.manual_seed(sweep.seed)
    model = build_model(size, bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    model = parallelize(model, dist, cfg.parallelism, cfg.activation_checkpointing)
    optimizer = make_optimizer(model, cfg)
    continued = phase is Phase.infuse and sweep.train.schedule is Schedule.continued
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
    n_steps = -(-sweep.phase_tokens(phase) // batch_tokens)  # whole global batches
    stream = Stream(
        bundle.corpus,
        bundle.general_facts,
        bundle.domain_facts,
        ratio=ratio,
        n_sequences=n_steps * cfg.batch_size,
        seq_len=bundle.seq_len,
        fact_share=sweep.data.general_fact_share,
        seed=sweep.seed + (0 if phase is Phase.base else 1),
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
        evals=sweep.eval,
        report=lambda metrics, save: report({**metrics, **context}, save),
        watch=watch,
        dist=dist,
        resume=progress,
        flops_per_token=flops_per_token(size, bundle.vocab_size, bundle.seq_len),
    )
    final = {**final, **context}
    if phase is Phase.base:  # every rank writes its part; progress.json last marks it whole
        done = {**final, "seconds": time.monotonic() - started}
        checkpoint.save_whole(base, model, optimizer, {"metrics": done}, writer=sweep.out.name)
    return final
