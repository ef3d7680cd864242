"""Knowledge probes and validation loss.

A probe is answered by scoring each option with the log-likelihood of its tokens following the
question (README, "What a sweep does", step 3); ties share the credit, so a model that cannot
tell the options apart scores exactly chance in expectation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kinfuse_ray.data import TokenizedProbes

# Tokens per forward pass unless the caller says otherwise (EvalConfig.batch_tokens): memory is
# bounded by this, not by how many probes or validation sequences there are.
BATCH_TOKENS = 16_384


def chance_corrected(accuracy: float, n_choices: int) -> float:
    """(acc - 1/k) / (1 - 1/k): 0 at chance, 1 when every answer is right."""
    chance = 1.0 / n_choices
    return (accuracy - chance) / (1.0 - chance)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """fp32 logits of one batch (bf16 autocast on GPUs, as in training; no key/value cache)."""
    device = _device(model)
    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        return model(input_ids=ids.to(device), use_cache=False).logits.float()


@torch.no_grad()
def option_scores(
    model: torch.nn.Module,
    probes: TokenizedProbes,
    pad_id: int = 0,
    batch_tokens: int = BATCH_TOKENS,
) -> np.ndarray:
    """Summed log-probability of each option's tokens given its prompt: (n_probes, n_choices).
    Rows go through the model about `batch_tokens` tokens at a time."""
    rows, spans = [], []  # spans: (start, end) of option tokens within each row
    for prompt, options in zip(probes.prompts, probes.options, strict=True):
        for option in options:
            rows.append(np.concatenate([prompt, option]))
            spans.append((len(prompt), len(prompt) + len(option)))
    device = _device(model)
    batch = max(1, batch_tokens // max(len(r) for r in rows))
    scores = np.empty(len(rows))
    for lo in range(0, len(rows), batch):
        batch_rows, batch_spans = rows[lo : lo + batch], spans[lo : lo + batch]
        width = max(len(r) for r in batch_rows)
        ids = torch.full((len(batch_rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros(len(batch_rows), width - 1, dtype=torch.bool)
        for i, (row, (start, end)) in enumerate(zip(batch_rows, batch_spans, strict=True)):
            ids[i, : len(row)] = torch.from_numpy(row)
            mask[i, start - 1 : end - 1] = True  # logits at t predict token t + 1
        # Right padding needs no attention mask: causal attention never looks ahead.
        logits = _logits(model, ids)[:, :-1]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None].to(device))[..., 0]
        scores[lo : lo + len(batch_rows)] = (logp * mask.to(device)).sum(-1).cpu().numpy()
    return scores.reshape(len(probes.prompts), -1)


def probe_credit(scores: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Per-probe credit: 1/t if the answer is among t options tied for the best score, else 0."""
    best = scores.max(axis=1, keepdims=True)
    at_best = np.isclose(scores, best, rtol=0, atol=1e-6)
    return at_best[np.arange(len(answers)), answers] / at_best.sum(axis=1)


def accuracy(
    model: torch.nn.Module,
    probes: TokenizedProbes,
    pad_id: int = 0,
    batch_tokens: int = BATCH_TOKENS,
) -> float:
    scores = option_scores(model, probes, pad_id, batch_tokens)
    return float(probe_credit(scores, probes.answers).mean())


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, sequences: torch.Tensor, batch_tokens: int = BATCH_TOKENS
) -> float:
    """Mean next-token cross-entropy over `sequences`, about `batch_tokens` tokens a pass."""
    device = _device(model)
    batch = max(1, batch_tokens // sequences.shape[1])
    total = torch.zeros((), dtype=torch.float64, device=device)
    for chunk in sequences.split(batch):
        logits = _logits(model, chunk)[:, :-1]
        targets = chunk[:, 1:].to(device)
        total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
    return float(total) / (sequences.shape[0] * (sequences.shape[1] - 1))
