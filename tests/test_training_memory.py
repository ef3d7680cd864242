"""What a GPU run's memory holds, checked on CPU (gloo): DDP accumulates micro-batches into its
own buckets (one gradient copy, as the plan counts), and a trial starts with nothing of the one
before it left in memory."""

import socket

import pytest
import torch

from kinfuse_ray.config import ModelSize, TrainConfig
from kinfuse_ray.mixing import Stream
from kinfuse_ray.model import build_model, rung_model
from kinfuse_ray.parallel import Dist, parallelize
from kinfuse_ray.train import TrainStep

pytestmark = pytest.mark.unit

TINY = ModelSize(name="t", hidden_size=32, n_layers=2, n_heads=2)


@pytest.fixture
def one_rank_group():
    """A real one-rank gloo process group in this process (DDP needs one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1
    )
    yield Dist(0, 1)
    torch.distributed.destroy_process_group()


def gradient_storages(model: torch.nn.Module) -> int:
    """How many separate storages the gradients live in (0: none allocated)."""
    return len({p.grad.untyped_storage().data_ptr() for p in model.parameters()
                if p.grad is not None})  # fmt: skip


def test_ddp_accumulates_micro_batches_in_its_buckets(bundle, one_rank_group):
    """Four micro-batches a step under no_sync(), three steps: at every micro-batch's forward the
    gradients so far are views into DDP's buckets (a storage or two), never a fresh copy per
    parameter, which is what zero_grad(set_to_none=True) left them as after the first step."""
    torch.manual_seed(0)
    model = build_model(TINY, bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    ddp = parallelize(model, one_rank_group, "ddp")
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    cfg = TrainConfig(batch_size=8, micro_batch_size=2)
    stream = Stream(bundle.corpus, bundle.general_facts, bundle.domain_facts, ratio=0.3,
                    n_sequences=64, seq_len=bundle.seq_len, fact_share=0.5, seed=0)  # fmt: skip
    seen = []
    model.register_forward_pre_hook(lambda *_: seen.append(gradient_storages(model)))
    step = TrainStep(ddp, optimizer, scheduler, stream, cfg, one_rank_group)
    for i in range(1, 4):
        step(i)
    params = len(list(model.parameters()))
    assert len(seen) == 12 and params > 10
    assert max(seen[4:]) <= 2, f"gradient storages per micro-batch: {seen} ({params} parameters)"


def test_a_trial_starts_with_the_one_before_it_gone(tmp_path, one_rank_group, monkeypatch):
    """Two FSDP2 trials in one process, as a reused Tune actor or the GPU check runs them: when
    the second builds its model, the first's (kept alive by FSDP2's reference cycles until the
    cyclic collector runs; automatic collection is off here so that chance cannot do it) is
    gone, so it is not under the second's memory peak."""
    import gc
    import weakref

    from kinfuse_ray import trial
    from kinfuse_ray.config import parse_sweep
    from kinfuse_ray.data import build_bundle
    from kinfuse_ray.spec import Phase, TrialSpec

    sweep = parse_sweep({
        "name": "two", "ladder": [{"name": "a", "hidden_size": 16, "n_layers": 2, "n_heads": 2,
                                   "parallelism": "fsdp"}],
        "ratios": [0.5], "output_dir": str(tmp_path),
        "data": {"n_general_facts": 20, "n_domain_facts": 20, "vocab_size": 300, "seq_len": 32},
        "train": {"schedule": "scratch", "tokens": 1024, "batch_size": 8},
        "eval": {"acquisition_probes": 10, "val_sequences": 2},
    })  # fmt: skip
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
    built, alive_at_build = [], []

    def build(*args, **kwargs):
        alive_at_build.append(sum(ref() is not None for ref in built))
        model = rung_model(*args, **kwargs)
        built.append(weakref.ref(model))
        return model

    monkeypatch.setattr(trial, "rung_model", build)  # to watch it, not to replace it
    monkeypatch.setenv("KINFUSE_CACHE", str(tmp_path / "cache"))
    gc.disable()
    try:
        for ratio in (0.3, 0.6):
            final = trial.run_trial(
                TrialSpec(Phase.infuse, "a", ratio), rung=sweep.rungs["a"], out=sweep.out,
                bundle=bundle, report=lambda m, s: None, dist=one_rank_group,
            )  # fmt: skip
            assert final["tokens"] == 1024
    finally:
        gc.enable()
    assert alive_at_build == [0, 0]


def test_a_trial_that_fits_one_node_is_placed_on_one():
    """Ray Train's PACK only prefers one node: 8 GPU workers beside a 1-GPU job could split 7+1
    and talk over TCP. A trial one node can hold is strictly packed; one no node holds spans
    nodes (as the two-node DDP test's does)."""
    from kinfuse_ray.ray_trial import placement

    p5 = {"CPU": 192, "GPU": 8}
    head = {"CPU": 8}
    assert placement(8, {"CPU": 4, "GPU": 1}, [head, p5, p5]) == "STRICT_PACK"
    assert placement(16, {"CPU": 4, "GPU": 1}, [head, p5, p5]) == "PACK"
    assert placement(8, {"CPU": 4, "GPU": 1}, [head]) == "PACK"  # GPU nodes not started yet
    assert placement(2, {"CPU": 1}, [{"CPU": 1}, {"CPU": 1}]) == "PACK"
    assert placement(2, {"CPU": 1}, [{"CPU": 2}]) == "STRICT_PACK"


def test_a_training_checkpoint_is_staged_without_fsync_and_a_stored_one_with(tmp_path, monkeypatch):
    """Every evaluation's checkpoint goes to a staging folder that Ray copies to storage: fsyncing
    its shards (tens of GiB on the large rungs) would cost minutes on a node's root volume. The
    base store's copy, kept for other sweeps, is synced."""
    import os

    from kinfuse_ray import checkpoint

    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    model = build_model(TINY, 300, 32)
    optimizer = torch.optim.AdamW(model.parameters())
    checkpoint.save(tmp_path / "staged", model, optimizer, {"step": 1})
    staged = len(synced)
    checkpoint.save_whole(tmp_path / "stored", model, optimizer, {"step": 1}, writer="w")
    assert checkpoint.is_complete(tmp_path / "staged") and checkpoint.is_complete(
        tmp_path / "stored"
    )
    assert staged == 0 and len(synced) > 0
