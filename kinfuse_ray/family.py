"""A model family's checkpoints as ladder rungs: what a Hugging Face model folder says about
itself, read from its files alone (config.json, the weights' file names, tokenizer.json), with
no framework loaded, so a sweep file is checked and planned in a second.

Loading the weights is `model.load_pretrained` (transformers' own); scoring what a checkpoint
knows before infusion is `pretrained.py`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
# The files transformers loads weights from, in the order it looks for them.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")  # fmt: skip
# A config's names for the shape fields of a rung (LLaMA's first; GPT-2's spellings after).
SHAPE_KEYS = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "n_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "n_heads": ("num_attention_heads", "n_head", "num_heads"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim"),
    "n_kv_heads": ("num_key_value_heads",),
}


def read_config(folder: Path) -> dict:
    """The folder's config.json; a one-line ValueError where it is no model folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except FileNotFoundError:
        raise ValueError(f"{folder}: not a model folder (no {CONFIG})") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder}/{CONFIG}: unreadable ({exc})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ValueError(f"{folder}/{CONFIG}: not a transformers model config (no model_type)")
    return config


def shape_of(folder: Path) -> dict[str, int]:
    """The rung shape fields (`config.ModelSize`) a checkpoint's config gives: width, depth,
    heads, feed-forward width and key/value heads where it names them."""
    config = read_config(folder)
    shape = {}
    for field, keys in SHAPE_KEYS.items():
        value = next((config[k] for k in keys if config.get(k) is not None), None)
        if value is not None:
            shape[field] = int(value)
    missing = [f for f in ("hidden_size", "n_layers", "n_heads") if f not in shape]
    if missing:
        raise ValueError(f"{folder}/{CONFIG}: names no {', '.join(missing)} (a decoder's shape)")
    return shape


def max_positions(folder: Path) -> int | None:
    config = read_config(folder)
    return config.get("max_position_embeddings") or config.get("n_positions")


def weight_file(folder: Path) -> Path:
    """The file transformers would load the weights from; a one-line ValueError if none."""
    for name in WEIGHT_FILES:
        if (Path(folder) / name).exists():
            return Path(folder) / name
    raise ValueError(f"{folder}: no weights ({' or '.join(WEIGHT_FILES[:2])})")


def tokenizer_digest(folder: Path) -> str:
    """sha256 of the folder's tokenizer.json: rungs whose tokenizers differ have another
    meaning for the same token ids."""
    path = Path(folder) / TOKENIZER
    if not path.exists():
        raise ValueError(f"{folder}: no {TOKENIZER} (save the tokenizer with the model)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def content_digest(folder: Path) -> str:
    """sha256 over the config and every weight file's bytes (the index's shards included): what
    keys a checkpoint's scores in the base store, whatever its folder is called."""
    folder = Path(folder)
    first = weight_file(folder)
    files = [folder / CONFIG, first]
    if first.name.endswith(".index.json"):
        shards = sorted(set(json.loads(first.read_text())["weight_map"].values()))
        files += [folder / name for name in shards]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            while block := f.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()
