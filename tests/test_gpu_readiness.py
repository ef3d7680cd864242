"""What a GPU trial relies on, checked on CPU: evaluation memory bounded by its batch, the GPU
table matched by exact device name, the training layer importable without Ray or MLflow, and
the capacity for Ray Train trials re-read as the cluster grows."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kinfuse_ray.config import EvalConfig, ModelSize
from kinfuse_ray.hardware import GPUS, peak_flops
from kinfuse_ray.model import build_model
from kinfuse_ray.train import evaluate

from .helpers import REPO

TINY = ModelSize(name="t", hidden_size=32, n_layers=1, n_heads=2)


def forward_sizes(model: torch.nn.Module) -> list[int]:
    """Records the tokens of every forward pass the model makes."""
    seen: list[int] = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].numel()), with_kwargs=True
    )
    return seen


@pytest.mark.unit
@pytest.mark.parametrize("batch_tokens", [256, 4096])
def test_evaluation_passes_never_exceed_the_batch_budget(bundle, batch_tokens):
    """Whatever the number of probes and validation sequences, no forward pass holds more than
    `eval.batch_tokens` tokens (or one row, if a row is longer), and the metrics do not depend
    on the batching."""
    model = build_model(TINY, bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    evals = EvalConfig(val_sequences=64, batch_tokens=batch_tokens)
    seen = forward_sizes(model)
    metrics = evaluate(model, bundle, evals)
    assert max(seen) <= max(batch_tokens, bundle.seq_len)
    assert len(seen) > 2  # probes and validation did not go through in one pass each

    whole = build_model(TINY, bundle.vocab_size, bundle.seq_len, bundle.eos_id)
    whole.load_state_dict(model.state_dict())
    at_once = evaluate(whole, bundle, EvalConfig(val_sequences=64, batch_tokens=10**9))
    assert metrics == pytest.approx(at_once, rel=1e-5)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("device_name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),  # not the SXM part's peak
        ("NVIDIA L40S", 362e12),  # not an L4
        ("NVIDIA L4", 121e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA GeForce RTX 4090", None),  # unknown: no MFU rather than a guess
        ("NVIDIA H100", None),
    ],
)
def test_peak_flops_match_exact_device_names(device_name, peak):
    assert peak_flops(device_name) == peak


@pytest.mark.unit
def test_a_configured_peak_wins_and_every_gpu_has_a_name():
    assert peak_flops("NVIDIA GeForce RTX 4090", override_tflops=165.0) == 165e12
    names = [name for gpu in GPUS.values() for name in gpu.device_names]
    assert len(names) == len(set(names))


@pytest.mark.unit
def test_training_runs_without_ray_or_mlflow(tmp_path):
    """A bare GPU box has torch and transformers but no Ray or MLflow: the trial code must
    import and train a step without them (the GPU check relies on it)."""
    script = f"""
import sys
from pathlib import Path
for name in ("ray", "mlflow", "optuna", "datasets"):
    sys.modules[name] = None  # any import of them fails
from kinfuse_ray.config import parse_sweep
from kinfuse_ray.data import build_bundle
from kinfuse_ray.spec import Phase, TrialSpec
from kinfuse_ray.trial import run_trial
sweep = parse_sweep({{
    "name": "bare", "ladder": [{{"name": "a", "hidden_size": 16, "n_layers": 1, "n_heads": 2}}],
    "ratios": [0.5], "output_dir": {str(tmp_path)!r},
    "data": {{"n_general_facts": 20, "n_domain_facts": 20, "vocab_size": 300, "seq_len": 32}},
    "train": {{"schedule": "scratch", "tokens": 2048, "batch_size": 8}},
    "eval": {{"acquisition_probes": 10, "val_sequences": 2}},
}})
bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
spec = TrialSpec(Phase.infuse, "a", 0.5)
final = run_trial(spec, rung=sweep.rungs["a"], out=sweep.out, bundle=bundle,
                  report=lambda m, s: None)
print("tokens", int(final["tokens"]))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        env={"KINFUSE_CACHE": str(tmp_path / "cache"), "PATH": ""},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tokens 2048" in proc.stdout


@pytest.mark.unit
def test_a_checkpoint_folder_reloads_weights_and_optimizer_state_exactly(tmp_path):
    """A checkpoint folder written by one model loads into a fresh one exactly (weights and
    optimizer state), whatever device the fresh model lives on."""
    from kinfuse_ray import checkpoint
    from kinfuse_ray.config import TrainConfig
    from kinfuse_ray.train import make_optimizer

    torch.manual_seed(0)
    model = build_model(TINY, 300, 32)
    optimizer = make_optimizer(model, TrainConfig())
    batch = torch.from_numpy(np.random.default_rng(0).integers(0, 300, (4, 32)))
    model(input_ids=batch, labels=batch).loss.backward()
    optimizer.step()
    checkpoint.save(tmp_path / "ck", model, optimizer, {"step": 1})

    torch.manual_seed(1)
    fresh = build_model(TINY, 300, 32)
    fresh_opt = make_optimizer(fresh, TrainConfig())
    assert checkpoint.load(tmp_path / "ck", fresh, fresh_opt) == {"step": 1}
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    state = next(iter(optimizer.state.values()))
    fresh_state = next(iter(fresh_opt.state.values()))
    assert torch.equal(state["exp_avg_sq"], fresh_state["exp_avg_sq"])


@pytest.mark.unit
@pytest.mark.parametrize(
    "shape",
    [
        {"hidden_size": 24, "n_layers": 1, "n_heads": 2},
        {"hidden_size": 768, "n_layers": 12, "n_heads": 12},
        {"hidden_size": 2560, "n_layers": 32, "n_heads": 20, "intermediate_size": 6912},
    ],
)
def test_parameters_counted_from_the_shape_match_the_real_model(shape):
    from kinfuse_ray.model import count_non_embedding_params

    size = ModelSize(name="m", **shape)
    count = size.param_count(32_000)
    assert count.non_embedding == count_non_embedding_params(size, 32_000, 2048)
    with torch.device("meta"):
        model = build_model(size, 32_000, 2048)
    assert count.total == sum(p.numel() for p in model.parameters())


@pytest.mark.unit
def test_a_bare_cuda_device_gets_an_index(monkeypatch):
    """`--device cuda` (the GPU check's default) names no index; set_device and a process
    group's device_id refuse that, so it resolves to the local rank, else CUDA's current one."""
    from kinfuse_ray.parallel import resolve_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("cuda") == torch.device("cuda", 3)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:5") == torch.device("cuda", 5)
    assert resolve_device("cpu") == torch.device("cpu")


def _closure(names: list[str]) -> set[str]:
    """The installed distributions `names` need, theirs included (markers for this platform)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # an optional dependency that is not installed
        if dist.metadata["Name"].lower() in seen:
            continue
        seen.add(dist.metadata["Name"].lower())
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


@pytest.mark.full
def test_the_gpu_check_runs_in_a_bare_virtualenv(tmp_path):
    """As on the GPU box: a fresh virtualenv that holds torch and transformers (and what they
    need) but no scipy, Ray, MLflow or pydantic; pydantic arrives as the wheels
    scripts/gpu_wheels.sh downloads, installed as benchmarks/gpu_check.sh installs them. The
    check's real entry point then runs its whole path on CPU (gloo), the memory probe too, with
    scipy, Ray, MLflow, Optuna and datasets absent."""
    from importlib.metadata import distribution

    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", bare], check=True, timeout=300)
    python = bare / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    for name in _closure(["torch", "transformers"]):  # linked from this environment
        for top in {f.parts[0] for f in distribution(name).files or [] if f.parts[0] != ".."}:
            source = Path(distribution(name).locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run(["bash", REPO / "scripts" / "gpu_wheels.sh", wheels, version], cwd=REPO,
                   env={**os.environ, "PY": sys.executable}, check=True, timeout=600)  # fmt: skip
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                    "--target", target, *wheels.glob("*.whl")], check=True, timeout=300)  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "HOME": str(tmp_path),
           "KINFUSE_CACHE": str(tmp_path / "cache")}  # fmt: skip
    absent = subprocess.run(
        [python, "-c", "import importlib.util as u; print([m for m in ('scipy', 'ray', 'mlflow',"
         " 'optuna', 'datasets') if u.find_spec(m)])"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert absent.stdout.strip() == "[]"
    proc = subprocess.run(
        [python, REPO / "benchmarks" / "gpu_check.py", "--device", "cpu", "--tiny", "--steps", "8",
         "--batch-size", "8", "--memory-rung", "t2", "--out", tmp_path / "out"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "gpu_check: all checks passed" in proc.stdout, proc.stdout[-2000:]
    # A line per rung (DDP and FSDP), the memory probe's rung, the checkpoint and eval shares.
    assert "t1 " in proc.stdout and "t2 " in proc.stdout and "fsdp" in proc.stdout
    # First (before the rungs' runs), at a rank's 32 rows of the ladder's 256 over 8 GPUs, in its
    # micro-batches of 4: gradients accumulate as they do in the ladder.
    assert "memory   t2 (fsdp, 32 rows a step in micro-batches of 4 x 128, 3 steps" in proc.stdout
    assert proc.stdout.index("memory   t2") < proc.stdout.index("t1 ")
    assert "checkpoints " in proc.stdout and "at the ladder's every" in proc.stdout


@pytest.mark.unit
def test_the_gpu_check_wrapper_gives_memory_rungs_their_time_and_says_when_the_limit_ends_it(
    tmp_path,
):
    """gpu_check.sh's limit is GPU_CHECK_TIMEOUT plus GPU_CHECK_MEMORY_SECONDS per --memory-rung,
    and a check the limit ends says so in one line (here a python that never finishes: the
    wrapper's limit is what is under test)."""
    slow = tmp_path / "python3"
    slow.write_text('#!/bin/bash\n[ "$1" = "-c" ] && exit 0\nexec sleep 60\n')  # CUDA "found"
    slow.chmod(0o755)
    env = {**os.environ, "PY": str(slow), "GPU_CHECK_TIMEOUT": "1", "GPU_CHECK_MEMORY_SECONDS": "2"}
    proc = subprocess.run(
        ["bash", REPO / "benchmarks" / "gpu_check.sh", "--memory-rung", "l1.3b",
         "--memory-rung", "l2.6b"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 124
    assert proc.stderr.strip().splitlines()[-1] == (
        "gpu_check: stopped at its limit of 5 s before it finished; raise GPU_CHECK_TIMEOUT "
        "(or GPU_CHECK_MEMORY_SECONDS, per --memory-rung) to let it run on"
    )


@pytest.mark.unit
def test_the_gpu_check_wrapper_refuses_an_old_python_first(tmp_path):
    """kinfuse_ray's config needs Python 3.11 (StrEnum): an older python3 on the GPU box is one
    line before anything else runs."""
    old = tmp_path / "python3"
    old.write_text('#!/bin/bash\n[ "$1" = "-V" ] && { echo "Python 3.10.12"; exit 0; }\n'
                   'case "$2" in *version_info*) exit 1 ;; esac\nexit 0\n')  # fmt: skip
    old.chmod(0o755)
    proc = subprocess.run(["bash", REPO / "benchmarks" / "gpu_check.sh"],
                          env={**os.environ, "PY": str(old)}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"gpu_check: needs Python 3.11 or newer (kinfuse_ray's config uses StrEnum); {old} is "
        "Python 3.10.12: set PY"
    )
