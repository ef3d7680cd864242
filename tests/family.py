"""A tiny model family on disk, as a team's would be: LLaMA-shaped checkpoints of different
widths saved with `save_pretrained` (safetensors) beside a Hugging Face tokenizer, each
pre-trained on general text that states the bundled world facts (so it knows some of them),
with kinfuse-ray's own training loop. Nothing is mocked: a sweep loads them as a team's."""

from pathlib import Path

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


def save_tokenizer(folder: Path, data: DataConfig | None = None) -> None:
    """The BPE a shape ladder would train on `data` (default `DATA`), saved as a Hugging Face
    tokenizer."""
    data = data or DataConfig(**DATA)
    relations = load_templates(data.templates)
    facts = load_triples(data.general_facts, relations) + load_triples(data.domain_facts, relations)
    tokenizer, eos, _ = corpus_tokenizer(data, facts, relations)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=eos).save_pretrained(folder)


def make_member(
    folder: Path, width: int, tokens: int, *, tokenizer: Path, seed: int = 0, n_layers: int = 2
) -> Path:
    """One member, pre-trained on `tokens` of the general stream (0: untrained, knowing
    nothing), saved with its tokenizer (copied from the folder `tokenizer`)."""
    data = DataConfig(**DATA, tokenizer=tokenizer)
    bundle = build_bundle(data, EvalConfig(n_choices=4, acquisition_probes=20), seed)
    size = ModelSize(name="member", hidden_size=width, n_layers=n_layers, n_heads=2)
    model = build_model(size, bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    if tokens:
        cfg = TrainConfig(base_tokens=tokens, batch_size=8, lr=0.01)
        stream = Stream(
            bundle.corpus, bundle.general_facts, bundle.domain_facts, ratio=0.0,
            n_sequences=tokens // bundle.seq_len, seq_len=bundle.seq_len,
            fact_share=data.general_fact_share, seed=seed,
        )  # fmt: skip
        evals = EvalConfig(every_tokens=tokens, acquisition_probes=20, val_sequences=2)
        train(model, make_optimizer(model, cfg), stream=stream, bundle=bundle, cfg=cfg,
              evals=evals, report=lambda metrics, save: None)  # fmt: skip
    model.save_pretrained(folder)
    PreTrainedTokenizerFast.from_pretrained(tokenizer).save_pretrained(folder)
    return folder


def make_family(root: Path, tokens: int = 300_000, widths: dict[str, int] = WIDTHS) -> dict:
    """`widths`' members under `root`, each pre-trained on `tokens`: {name: folder}."""
    tokenizer = root / "tokenizer"
    save_tokenizer(tokenizer)
    return {
        name: make_member(root / name, width, tokens, tokenizer=tokenizer)
        for name, width in widths.items()
    }
