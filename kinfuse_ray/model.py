"""LLaMA-style decoders from `transformers`, sized by a ladder rung."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from kinfuse_ray.config import ModelSize
from kinfuse_ray.errors import KinfuseError

EMBEDDING_PARAMS = ("embed_tokens", "lm_head")


def llama_config(size: ModelSize, vocab_size: int, seq_len: int, eos_id: int = 0) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.hidden_size,
        intermediate_size=size.ffn_size,
        num_hidden_layers=size.n_layers,
        num_attention_heads=size.n_heads,
        num_key_value_heads=size.n_kv_heads or size.n_heads,
        max_position_embeddings=seq_len,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        attn_implementation="sdpa",
        use_cache=False,  # trained and scored, never generated from
    )


def build_model(
    size: ModelSize, vocab_size: int, seq_len: int, eos_id: int = 0
) -> LlamaForCausalLM:
    return LlamaForCausalLM(llama_config(size, vocab_size, seq_len, eos_id))


def load_pretrained(folder: Path) -> PreTrainedModel:
    """A checkpoint rung's model, loaded by transformers from local files only, in fp32 (the
    precision every rung trains its master weights in)."""
    try:
        model = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as exc:
        raise KinfuseError(
            f"{folder}: cannot load the model ({str(exc).splitlines()[0]})"
        ) from None
    model.config.use_cache = False  # trained and scored, never generated from
    return model


def rung_model(size: ModelSize, vocab_size: int, seq_len: int, eos_id: int = 0) -> torch.nn.Module:
    """The model a trial of `size` starts from: its checkpoint's, or a fresh one of its shape."""
    if size.checkpoint:
        return load_pretrained(size.checkpoint)
    return build_model(size, vocab_size, seq_len, eos_id)


def count_non_embedding_params(size: ModelSize, vocab_size: int, seq_len: int) -> int:
    """The N of the scaling law, counted on a real (meta-device) model: every parameter but the
    token embedding and LM head. `ModelSize.param_count` computes it from the shape; tests hold the
    two equal."""
    with torch.device("meta"):
        model = build_model(size, vocab_size, seq_len)
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if not any(part in name for part in EMBEDDING_PARAMS)
    )
