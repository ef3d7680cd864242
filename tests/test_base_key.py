"""A base run is reused only where it would come out the same: the key knows the kernels."""

import torch

from kinfuse_ray.config import SweepConfig
from kinfuse_ray.trial import base_key, rung_bundle


def sweep(tmp_path, **train) -> SweepConfig:
    return SweepConfig.model_validate({
        "name": "key", "ladder": [{"name": "a", "hidden_size": 24, "n_layers": 1, "n_heads": 2}],
        "ratios": [0.5], "output_dir": str(tmp_path),
        "data": {"n_general_facts": 50, "n_domain_facts": 100, "vocab_size": 512},
        "train": train,
    })  # fmt: skip


def test_another_torch_or_other_cpu_kernels_do_not_reuse_a_base_run(tmp_path, bundle, monkeypatch):
    s = sweep(tmp_path)
    rung = rung_bundle(s, bundle, "a")
    here = base_key(s, rung, "a")
    assert base_key(s, rung, "a") == here  # the same run, the same key
    capability = torch.backends.cpu.get_cpu_capability()
    other = "AVX2" if capability != "AVX2" else "AVX512"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: other)
    avx = base_key(s, rung, "a")
    monkeypatch.setattr(torch, "__version__", "9.9.9+cpu")
    newer = base_key(s, rung, "a")
    assert len({here, avx, newer}) == 3
    # On GPUs the key names the GPU the sweep declares, not the driver's CPU kernels.
    gpu = sweep(tmp_path, use_gpu=True, gpu="H100-SXM")
    key = base_key(gpu, rung_bundle(gpu, bundle, "a"), "a")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert base_key(gpu, rung_bundle(gpu, bundle, "a"), "a") == key
