"""The shared store of base runs: one folder per key, beside the sweeps' output folders
(`runs/.kinfuse-base/<key>/`), reused by every sweep that needs the very same base run.

A key is a digest of an explicit allow-list of inputs (`key_inputs`), written beside the run as
`key.json`, so anyone can see what a stored run was trained with and why a sweep did or did not
reuse it. `TRAINING_VERSION` is bumped by hand whenever a change to the model, the stream or the
training loop changes what a base run comes out as; the torch version and the kernels (CPU
capability and oneMKL branch with the CPU vendor, or the GPU) are inputs because they change the
numbers too.

Listing and deleting entries reads only `key.json` files: no torch, no data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kinfuse_ray.family import content_digest, weight_file
from kinfuse_ray.files import PROGRESS, write_json_atomic
from kinfuse_ray.provenance import pinned_path
from kinfuse_ray.spec import Phase, TrialResult, TrialSpec

if TYPE_CHECKING:
    from kinfuse_ray.config import Rung
    from kinfuse_ray.data import DataBundle

# Bump when the outcome of a base run changes for the same inputs (model, stream, optimizer,
# training loop, evaluation); every stored run then trains again.
TRAINING_VERSION = "2"
STORE = ".kinfuse-base"
KEY_FILE = "key.json"
# What a checkpoint's scores record of what it knew before infusion (`pretrained.py`).
KNOWLEDGE = ("known_facts", "facts_known_beyond_chance", "general_facts_probed")

# What of a sweep file decides a base run, section by section. Every other setting is listed in
# NOT_IN_KEY with the reason; tests/test_base_store.py fails on a setting in neither.
SHAPE_FIELDS = ("hidden_size", "n_layers", "n_heads", "intermediate_size")
TRAIN_FIELDS = (
    "base_tokens", "batch_size", "micro_batch_size", "compile", "lr", "warmup_fraction",
    "min_lr_fraction", "weight_decay", "cpus_per_trial", "workers", "parallelism",
    "activation_checkpointing",
)  # fmt: skip
EVAL_FIELDS = (
    "every_tokens", "batch_tokens", "n_choices", "retention_probes", "acquisition_probes",
    "val_sequences", "distractors",
)  # fmt: skip
NOT_IN_KEY = {
    "shape": {"name": "a label", "lr": "in train.lr (the rung's own)",
              "n_kv_heads": "in the key where set (shapes before it keep their keys)",
              "checkpoint": "its content digest is the key, not its folder",
              "pretrained_tokens": "a label of the checkpoint, whose digest is in the key",
              "parallelism": "in train.parallelism", "activation_checkpointing": "in train"},
    "train": {"schedule": "a base run is the same for both", "tokens": "infusion trials only",
              "use_gpu": "in the kernels", "gpu": "in the kernels",
              "peak_tflops": "MFU reporting only",
              "cpu_kernels": "in the kernels (those torch does use)",
              "mixed_regimes": "a check of the ladder (parallelism itself is in the key)"},
    "eval": {"collapse_threshold": "analysis", "plateau_points": "analysis",
             "plateau_tolerance": "analysis", "early_stop_below": "infusion trials only",
             "early_stop_patience": "infusion trials only",
             "early_stop_after": "infusion trials only",
             "min_known_facts": "a check of a checkpoint's scores, not an input to them"},
}  # fmt: skip


def rung_bundle(rung: Rung, bundle: DataBundle) -> DataBundle:
    """The facts and probes of one rung (its knowledge load)."""
    return bundle.for_load(*rung.knowledge_load, rung.eval, rung.seed)


def base_inputs(rung: Rung, facts: DataBundle) -> dict[str, Any]:
    """What decides the base run of `rung`, with this process's torch and kernels."""
    from kinfuse_ray.provenance import kernels  # imports torch: only where a key is made

    return key_inputs(rung, facts, kernels())


def key_inputs(rung: Rung, facts: DataBundle, kernels: dict[str, str]) -> dict[str, Any]:
    """Everything that decides the base run of `rung` (`facts`: its facts and probes, from
    `rung_bundle`; `kernels`: `provenance.kernels()` where it trains)."""
    train = rung.train
    # A checkpoint's "base run" is the checkpoint, scored: its bytes decide it, not training.
    checkpoint = rung.size.checkpoint
    trained = (
        {"checkpoint": checkpoint_digest(checkpoint)}
        if checkpoint
        else {"train": train.model_dump(mode="json", include=set(TRAIN_FIELDS))}
    )
    grouped_heads = {"n_kv_heads": rung.size.n_kv_heads} if rung.size.n_kv_heads else {}
    return {
        "training_version": TRAINING_VERSION,
        "torch": kernels["torch"],
        # On GPUs the GPU the sweep declares, not the CPU kernels of a CPU-only driver.
        "kernels": f"gpu:{train.gpu}" if train.use_gpu else f"cpu:{kernels['cpu']}",
        # oneMKL rounds differently on AMD and Intel CPUs, whatever branch is pinned.
        "cpu_vendor": None if train.use_gpu else kernels["vendor"],
        "shape": rung.size.model_dump(mode="json", include=set(SHAPE_FIELDS)) | grouped_heads,
        **trained,
        "eval": rung.eval.model_dump(mode="json", include=set(EVAL_FIELDS)),
        "seed": rung.seed,
        "general_fact_share": rung.general_fact_share,
        "tokenizer": facts.tokenizer_digest,
        "corpus": facts.corpus_digest,
        "n_val": facts.n_val,
        "seq_len": facts.seq_len,
        "facts_and_probes": facts_digest(facts),
    }


@functools.cache
def _digest_once(folder: Path, stamp: tuple[int, int]) -> str:
    return content_digest(folder)


def checkpoint_digest(folder: Path) -> str:
    """The checkpoint's content digest, computed once per process while its weights stay as
    they were (reading gigabytes per trial would cost more than scoring it)."""
    weights = weight_file(folder).stat()
    return _digest_once(Path(folder).resolve(), (weights.st_size, weights.st_mtime_ns))


def pinned_kernels(rung: Rung, here: dict[str, str]) -> dict[str, str]:
    """The kernels `rung`'s trials train on: those its sweep pins, else `here`'s."""
    pinned = rung.train.cpu_kernels
    return {**here, "cpu": pinned_path(pinned)} if pinned else here


def key_of(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]


def facts_digest(rung: DataBundle) -> str:
    """A digest of the rung's fact token ids and its probes (prompts, options, answers)."""
    digest = hashlib.sha256()
    probes = (rung.retention, rung.acquisition)
    hash_arrays(digest, [ids for fact in (*rung.general_facts, *rung.domain_facts) for ids in fact])
    options = [ids for p in probes for choices in p.options for ids in choices]
    hash_arrays(digest, [ids for p in probes for ids in p.prompts] + options)
    hash_arrays(digest, [p.answers for p in probes])
    return digest.hexdigest()


def data_digest(bundle: DataBundle) -> str:
    """What a sweep's trials trained and were scored on, in 12 hex digits: the tokenizer, the
    general corpus's token ids, the facts and the probes (a law.json records it)."""
    parts = (bundle.tokenizer_digest, bundle.corpus_digest, facts_digest(bundle))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def hash_arrays(digest: Any, arrays: list[np.ndarray]) -> None:
    """Token id arrays into `digest`: their lengths, then their ids in one pass."""
    digest.update(np.array([len(a) for a in arrays], dtype=np.int64).tobytes())
    if arrays:
        digest.update(np.concatenate(arrays).astype(np.int64).tobytes())


@dataclass(frozen=True)
class Entry:
    """One stored base run."""

    folder: Path
    inputs: dict[str, Any] | None  # None: no key.json (made before the store wrote them)
    complete: bool
    bytes: int

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def staging(self) -> bool:
        """A run being written (or abandoned mid-write): never deleted by `kinfuse store`."""
        return ".writing-" in self.folder.name


class BaseStore:
    """The base runs kept under `root` (`runs/.kinfuse-base`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def beside(cls, out: Path) -> BaseStore:
        """The store next to a sweep's output folder."""
        return cls(Path(out).parent / STORE)

    def folder(self, inputs: dict[str, Any]) -> Path:
        return self.root / key_of(inputs)

    def entries(self) -> list[Entry]:
        if not self.root.is_dir():
            return []
        return [_entry(f) for f in sorted(self.root.iterdir()) if f.is_dir()]

    def why_not(self, inputs: dict[str, Any]) -> str:
        """Why no stored run fits `inputs`: what differs from the closest complete entry of the
        same shape, in one line."""
        same_shape = [
            e for e in self.entries()
            if e.complete and e.inputs and e.inputs.get("shape") == inputs["shape"]
        ]  # fmt: skip
        if not same_shape:
            return "no stored base run of this shape"
        diffs = [_differs(e.inputs, inputs) for e in same_shape]
        fewest = min(diffs, key=len)
        return (
            f"the closest stored run ({len(same_shape)} of this shape) differs in "
            + ", ".join(fewest[:4])
            + (f" and {len(fewest) - 4} more" if len(fewest) > 4 else "")
        )

    def stored(self, rung: Rung, inputs: dict[str, Any]) -> TrialResult | None:
        """The finished base run of `rung` for `inputs`; None: not there yet. An unreadable one
        is set aside (renamed) to be trained again."""
        folder = self.folder(inputs)
        if not (folder / PROGRESS).exists():
            return None
        try:
            metrics = json.loads((folder / PROGRESS).read_text())["metrics"]
            return rung.result(TrialSpec(Phase.base, rung.name, 0.0), metrics)
        except (OSError, ValueError, KeyError, TypeError):
            folder.rename(folder.with_name(f"{folder.name}.unreadable-{int(time.time())}"))
            return None

    def knowledge(self, inputs: dict[str, Any]) -> dict[str, float]:
        """What a stored checkpoint's scores say it knew (`KNOWLEDGE`); {} for a base run."""
        metrics = json.loads((self.folder(inputs) / PROGRESS).read_text())["metrics"]
        return {name: metrics[name] for name in KNOWLEDGE if name in metrics}

    def put_scores(self, inputs: dict[str, Any], progress: dict[str, Any]) -> Path:
        """Keep a checkpoint's scores (no weights: the checkpoint is its own base run) as a
        complete entry, written whole or not at all."""
        folder = self.folder(inputs)
        staging = folder.with_name(f"{folder.name}.writing-{os.getpid()}")
        staging.mkdir(parents=True, exist_ok=True)
        write_json_atomic(staging / KEY_FILE, inputs, indent=1)
        write_json_atomic(staging / PROGRESS, progress)
        try:
            staging.rename(folder)
        except OSError:  # another sweep scored it first: the same numbers
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    def prune(self, needed: set[str]) -> list[Entry]:
        """Delete every complete or abandoned run whose key is not `needed` (never one being
        written); returns those deleted."""
        unneeded = [e for e in self.entries() if e.key not in needed and not e.staging]
        for entry in unneeded:
            shutil.rmtree(entry.folder)
        return unneeded


def _entry(folder: Path) -> Entry:
    try:
        inputs = json.loads((folder / KEY_FILE).read_text())
    except (OSError, ValueError):
        inputs = None
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return Entry(folder, inputs, (folder / PROGRESS).exists(), size)


def _differs(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """The fields whose values differ, as `section.field: stored -> wanted`."""
    out = []
    for name in sorted(set(stored) | set(wanted)):
        a, b = stored.get(name), wanted.get(name)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differs(a, b, f"{prefix}{name}.")
        elif a != b:
            out.append(f"{prefix}{name} {_short(a)} -> {_short(b)}")
    return out


def _short(value: Any) -> Any:
    return f"{value[:8]}.." if isinstance(value, str) and len(value) > 16 else value
