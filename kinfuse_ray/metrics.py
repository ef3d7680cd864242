"""Knowledge probes and validation loss.

A probe is answered by scoring each option with the log-likelihood of its tokens following the
question (docs/architecture.md, step 3); ties share the credit, so a model that cannot
tell the options apart scores exactly chance in expectation.

Under data parallelism each rank scores an equal share (`shard`) and the caller sums the ranks'
`credit_sum` and `loss_sum`: evaluation costs 1/world of the whole on every rank. Shares are equal
in forward passes, since FSDP's forward is collective; with one rank they are the whole, batched
exactly as unsharded.
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


def shard(n: int, rank: int = 0, world: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rank's share of `n` items: indices into them and 0/1 weights. Every rank gets
    ceil(n / world) contiguous items, the last one repeated at weight 0 where they run out."""
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    each = -(-n // world)
    wanted = np.arange(rank * each, (rank + 1) * each)
    return np.minimum(wanted, n - 1), (wanted < n).astype(np.float64)


def rows_per_batch(probes: TokenizedProbes, batch_tokens: int = BATCH_TOKENS) -> int:
    """Rows of `option_scores` per forward pass: `batch_tokens` over the longest row."""
    pairs = zip(probes.prompts, probes.options, strict=True)
    longest = max(len(prompt) + len(option) for prompt, options in pairs for option in options)
    return max(1, batch_tokens // longest)


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
    batch_rows: int | None = None,
) -> np.ndarray:
    """Summed log-probability of each option's tokens given its prompt: (n_probes, n_choices).
    Rows (prompt + option) go through the model about `batch_tokens` tokens at a time, or
    `batch_rows` rows at a time when given."""
    rows, spans = [], []  # spans: (start, end) of option tokens within each row
    for prompt, options in zip(probes.prompts, probes.options, strict=True):
        for option in options:
            rows.append(np.concatenate([prompt, option]))
            spans.append((len(prompt), len(prompt) + len(option)))
    device = _device(model)
    batch = batch_rows or rows_per_batch(probes, batch_tokens)
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


def credit_sum(
    model: torch.nn.Module,
    probes: TokenizedProbes,
    pad_id: int = 0,
    batch_tokens: int = BATCH_TOKENS,
    rank: int = 0,
    world: int = 1,
) -> float:
    """Summed credit of rank's `shard` of the probes (each probe has the same number of
    options, so every rank makes the same number of forward passes)."""
    indices, weights = shard(len(probes.prompts), rank, world)
    if not len(indices):
        return 0.0
    part = probes.take(indices)
    scores = option_scores(model, part, pad_id, batch_rows=rows_per_batch(probes, batch_tokens))
    return float((probe_credit(scores, part.answers) * weights).sum())


def accuracy(
    model: torch.nn.Module,
    probes: TokenizedProbes,
    pad_id: int = 0,
    batch_tokens: int = BATCH_TOKENS,
) -> float:
    """Mean credit over all probes, on one process."""
    return credit_sum(model, probes, pad_id, batch_tokens) / len(probes.prompts)


@torch.no_grad()
def loss_sum(
    model: torch.nn.Module,
    sequences: torch.Tensor,
    batch_tokens: int = BATCH_TOKENS,
    rank: int = 0,
    world: int = 1,
) -> float:
    """Summed next-token cross-entropy of rank's `shard` of the batches of `sequences` (about
    `batch_tokens` tokens each)."""
    device = _device(model)
    batches = sequences.split(max(1, batch_tokens // sequences.shape[1]))
    indices, weights = shard(len(batches), rank, world)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for i, weight in zip(indices, weights, strict=True):
        chunk = batches[i]
        logits = _logits(model, chunk)[:, :-1]
        targets = chunk[:, 1:].to(device)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
        total += loss * float(weight)
    return float(total)


def validation_loss(
    model: torch.nn.Module, sequences: torch.Tensor, batch_tokens: int = BATCH_TOKENS
) -> float:
    """Mean next-token cross-entropy over `sequences`, on one process."""
    n_targets = sequences.shape[0] * (sequences.shape[1] - 1)
    return loss_sum(model, sequences, batch_tokens) / n_targets
