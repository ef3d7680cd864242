import numpy as np
import pytest
import torch

from kinfuse_ray.config import EvalConfig, ModelSize
from kinfuse_ray.data import TokenizedProbes
from kinfuse_ray.metrics import accuracy, chance_corrected, option_scores, probe_credit, shard
from kinfuse_ray.model import build_model
from kinfuse_ray.parallel import Dist
from kinfuse_ray.train import evaluate

pytestmark = pytest.mark.unit

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


def test_shards_are_equal_cover_everything_once_and_pad_at_zero_weight():
    for n, world in ((7, 2), (8, 4), (2, 3), (1, 1)):
        shares = [shard(n, rank, world) for rank in range(world)]
        assert len({len(indices) for indices, _ in shares}) == 1
        counted = np.concatenate([indices[weights == 1] for indices, weights in shares])
        assert sorted(counted.tolist()) == list(range(n))
        assert all(indices.max() < n for indices, _ in shares)
    assert shard(0, 0, 2)[0].size == 0


def _evaluate_as_rank(rank, world, port, model, bundle, evals, results):
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    forwards = []
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    metrics = evaluate(model, bundle, evals, Dist(rank, world))
    results.put((rank, metrics, len(forwards)))
    torch.distributed.destroy_process_group()


def test_ranks_split_evaluation_and_agree_with_one_process(bundle):
    """Two gloo ranks score half the probes and validation batches each (odd counts, so one rank
    gets a padded share), make the same number of forward passes (FSDP's are collective), and
    sum to what one process measures."""
    import dataclasses
    import socket

    bundle = dataclasses.replace(
        bundle,
        retention=bundle.retention.take(np.arange(len(bundle.retention.prompts) - 1)),
        acquisition=bundle.acquisition.take(np.arange(len(bundle.acquisition.prompts) - 1)),
    )
    torch.manual_seed(0)
    model = build_model(TINY, bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    evals = EvalConfig(val_sequences=5, batch_tokens=bundle.seq_len)  # one sequence a batch
    whole_forwards = []
    hook = model.register_forward_pre_hook(lambda *_: whole_forwards.append(1))
    whole = evaluate(model, bundle, evals)
    hook.remove()
    assert len(bundle.retention.prompts) % 2 == len(bundle.acquisition.prompts) % 2 == 1

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = torch.multiprocessing.get_context("spawn")
    results = context.SimpleQueue()
    torch.multiprocessing.start_processes(
        _evaluate_as_rank, args=(2, port, model, bundle, evals, results), nprocs=2,
        start_method="spawn",
    )  # fmt: skip
    ranks = dict((rank, (metrics, n)) for rank, metrics, n in (results.get(), results.get()))
    (first, n_first), (second, n_second) = ranks[0], ranks[1]
    assert first == second  # every rank decides on the same numbers
    assert n_first == n_second < len(whole_forwards)
    assert n_first <= len(whole_forwards) // 2 + 3  # half, and a padded batch per measure
    for key, value in whole.items():
        assert first[key] == pytest.approx(value, abs=1e-6), key
