"""A tiny model family on disk, as a team's would be: LLaMA-shaped checkpoints of different
widths saved with `save_pretrained` (safetensors) beside a Hugging Face tokenizer, each
pre-trained on general text that states the bundled world facts (so it knows some of them),
with kinfuse-ray's own training loop. Nothing is mocked: a sweep loads them as a team's."""

import math
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from kinfuse_ray.config import DataConfig, EvalConfig, ModelSize, TrainConfig
from kinfuse_ray.data import build_bundle, corpus_tokenizer
from kinfuse_ray.knowledge import load_templates, load_triples
from kinfuse_ray.mixing import Stream
from kinfuse_ray.model import build_model
from kinfuse_ray.train import make_optimizer, train

WORLD = "bundled:knowledge/world"
# The quickstart's data: countries are general facts (known), cities the domain (infused).
DATA = {
    "general_facts": f"{WORLD}/general.jsonl",
    "domain_facts": f"{WORLD}/domain.jsonl",
    "templates": f"{WORLD}/templates.json",
    "n_general_facts": 90,
    "n_domain_facts": 120,
    "general_fact_share": 0.9,
    "vocab_size": 512,
    "seq_len": 64,
}
WIDTHS = {"f25k": 32, "f56k": 48, "f101k": 64}
# Pre-training steps each member is saved at (at 100K tokens the smallest knows too few facts).
STEPS = (150_000, 225_000, 300_000)


def save_tokenizer(folder: Path, data: DataConfig | None = None) -> None:
    """The BPE a shape ladder would train on `data` (default `DATA`), saved as a Hugging Face
    tokenizer."""
    data = data or DataConfig(**DATA)
    relations = load_templates(data.templates)
    facts = load_triples(data.general_facts, relations) + load_triples(data.domain_facts, relations)
    tokenizer, eos, _ = corpus_tokenizer(data, facts, relations)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=eos).save_pretrained(folder)


def make_member(
    folders: dict[int, Path], width: int, *, tokenizer: Path, seed: int = 0, n_layers: int = 2
) -> dict[int, Path]:
    """One member pre-trained on the general stream, saved (with its tokenizer, copied from the
    folder `tokenizer`) into `folders[t]` after t tokens, as a family publishes intermediate
    checkpoints (t = 0: untrained, knowing nothing)."""
    data = DataConfig(**DATA, tokenizer=tokenizer)
    bundle = build_bundle(data, EvalConfig(n_choices=4, acquisition_probes=20), seed)
    size = ModelSize(name="member", hidden_size=width, n_layers=n_layers, n_heads=2)
    torch.manual_seed(seed)  # the same family every time
    model = build_model(size, bundle.vocab_size, bundle.seq_len, bundle.eos_id)

    every = math.gcd(*folders) or 1  # an evaluation at every t (t = 0: before training)

    def save(done: float) -> None:
        """Into the folder of the t `done` tokens stand for: evaluations fall on whole batches,
        a little under each t (and once more at the end)."""
        for t, folder in folders.items():
            if abs(t - done) < every / 2:
                model.save_pretrained(folder)
                PreTrainedTokenizerFast.from_pretrained(tokenizer).save_pretrained(folder)

    save(0)
    if total := max(folders):
        cfg = TrainConfig(base_tokens=total, batch_size=8, lr=0.01)
        stream = Stream(
            bundle.corpus, bundle.general_facts, bundle.domain_facts, ratio=0.0,
            n_sequences=total // bundle.seq_len, seq_len=bundle.seq_len,
            fact_share=data.general_fact_share, seed=seed,
        )  # fmt: skip
        evals = EvalConfig(every_tokens=every, acquisition_probes=20, val_sequences=2)
        train(model, make_optimizer(model, cfg), stream=stream, bundle=bundle, cfg=cfg,
              evals=evals, report=lambda metrics, _: save(metrics["tokens"]))  # fmt: skip
    return folders


def make_family(
    root: Path, steps: tuple[int, ...] = (300_000,), widths: dict[str, int] = WIDTHS
) -> dict[str, Path]:
    """`widths`' members under `root`, each saved after every one of `steps` tokens of
    pre-training: {name: folder} (named name-t where there are several steps)."""
    tokenizer = root / "tokenizer"
    save_tokenizer(tokenizer)
    family = {}
    for name, width in widths.items():
        named = {t: f"{name}-{t // 1000}k" if len(steps) > 1 else name for t in steps}
        make_member({t: root / n for t, n in named.items()}, width, tokenizer=tokenizer)
        family |= {n: root / n for n in named.values()}
    return family


def make_target(root: Path) -> Path:
    """The family's larger member (96 wide, as the quickstart's n222k) at the final step: a
    forecast reads its config alone, a confirmation trains it."""
    tokenizer = root / "tokenizer"
    return make_member({max(STEPS): root / "f222k"}, 96, tokenizer=tokenizer)[max(STEPS)]


def family_sweep(rungs: dict, **extra) -> dict:
    """A sweep file's fields for a ladder of checkpoint folders, on the tiny family's data."""
    return {
        "name": "fam",
        "ladder": [{"name": name, "checkpoint": str(folder)} for name, folder in rungs.items()],
        "ratios": [0.3, 0.9],
        "data": {k: v for k, v in DATA.items() if k != "vocab_size"},
        "train": {"tokens": 16_000, "batch_size": 8},
        "eval": {"every_tokens": 16_000, "acquisition_probes": 20, "val_sequences": 2},
        **extra,
    }


def history_sweep(members: dict[str, Path], target: Path, **extra) -> dict:
    """The family at its pre-training steps (members named name-<t/1000>k) as one ladder whose D
    is pre-training tokens, forecasting `target` at the final step; the quickstart's ratios,
    infusion budget and evaluation."""
    raw = family_sweep(
        members, ratios=[0.2, 0.45, 0.73, 0.9, 0.97],
        train={"tokens": 100_000, "batch_size": 8, "lr": 0.01},
        eval={"every_tokens": 25_000, "acquisition_probes": 100, "val_sequences": 8,
              "distractors": "frequency"},
        predict={"target": {"size": {"name": "f222k", "checkpoint": str(target),
                                     "pretrained_tokens": max(STEPS)}},
                 "bootstrap": 200},
    )  # fmt: skip
    for rung in raw["ladder"]:
        rung["pretrained_tokens"] = int(rung["name"].rsplit("-", 1)[1].removesuffix("k")) * 1000
    return {**raw, **extra}
