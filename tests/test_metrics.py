import numpy as np
import pytest
import torch

from kinfuse_ray.config import ModelSize
from kinfuse_ray.data import TokenizedProbes
from kinfuse_ray.metrics import accuracy, chance_corrected, option_scores, probe_credit
from kinfuse_ray.model import build_model

TINY = ModelSize(name="t", hidden_size=32, n_layers=1, n_heads=2)


def probes_from(bundle, n=8):
    p = bundle.retention
    return TokenizedProbes(p.prompts[:n], p.options[:n], p.answers[:n])


def test_a_model_that_knows_the_answers_scores_one(bundle):
    """Train a real tiny model on exactly the probed facts until it has them by heart."""
    probes = probes_from(bundle)
    torch.manual_seed(0)
    model = build_model(TINY, bundle.vocab_size, 64, bundle.eos_id)
    rows = [
        np.concatenate([p, o[a]])
        for p, o, a in zip(probes.prompts, probes.options, probes.answers, strict=True)
    ]
    width = max(map(len, rows))
    batch = torch.full((len(rows), width), bundle.eos_id, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.from_numpy(row)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        model(input_ids=batch, labels=batch).loss.backward()
        opt.step()
        opt.zero_grad()
    assert accuracy(model, probes, bundle.eos_id) == 1.0


def test_a_model_that_knows_nothing_scores_chance(bundle):
    """Zeroed (tied) embeddings give uniform next-token distributions; options of equal length
    (here: each option's first token) then tie, and tied options share the credit."""
    p = bundle.retention
    probes = TokenizedProbes(
        p.prompts[:40], [[o[:1] for o in opts] for opts in p.options[:40]], p.answers[:40]
    )
    model = build_model(TINY, bundle.vocab_size, 64, bundle.eos_id)
    with torch.no_grad():
        model.get_input_embeddings().weight.zero_()
    scores = option_scores(model, probes, bundle.eos_id)
    assert np.allclose(scores, scores[:, :1])
    assert accuracy(model, probes, bundle.eos_id) == pytest.approx(0.25)


def test_probe_credit_and_chance_correction():
    scores = np.array([[0.0, -1.0, -2.0], [-1.0, -1.0, -5.0], [-3.0, -1.0, -2.0]])
    credit = probe_credit(scores, np.array([0, 1, 0]))
    assert credit.tolist() == [1.0, 0.5, 0.0]
    assert chance_corrected(0.25, 4) == 0.0 and chance_corrected(1.0, 4) == 1.0
    assert chance_corrected(0.0, 4) == pytest.approx(-1 / 3)
