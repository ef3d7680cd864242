"""The machine a time was measured on, in one line: the CPU's vendor, model and widest vector
instructions, and two speed figures that make runs on different machines comparable: fp32
matrix products (GFLOP/s on 2 threads) and the bare training step on the quickstart's smallest
rung (tokens/s on 1 thread, as a trial trains it; benchmarks/throughput.py's loop), each on the
CPU's own math path and on the `portable` path the shipped sweeps pin, measured side by side.

    .venv/bin/python benchmarks/machine.py     # about 30 s; .ci/run prints it before the tests
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from kinfuse_ray.provenance import cpu_model, kernel_env  # noqa: E402

QUICKSTART = HERE.parent / "sweeps" / "quickstart.yaml"


def matmul_gflops(n: int = 1024, seconds: float = 2.0) -> float:
    import torch

    torch.set_num_threads(2)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def training_tokens_per_s() -> float:
    import torch

    sys.path.insert(0, str(HERE))
    from throughput import measure  # the project's training step on random tokens

    from kinfuse_ray.config import load_sweep

    torch.set_num_threads(1)
    sweep = load_sweep(QUICKSTART)
    smallest = min(sweep.ladder, key=lambda s: sweep.n_params[s.name])
    tokens_per_s, _ = measure(sweep, smallest, torch.device("cpu"), 60, 10, False)
    return tokens_per_s


def measured(path: str | None) -> dict:
    """The figures in a fresh process on `path` (a `train.cpu_kernels` value; None: the CPU's own
    choice): the environment must be set before torch loads."""
    env = {**os.environ, **kernel_env(path)}
    proc = subprocess.run([sys.executable, __file__, "--measure"], env=env, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        import torch

        found = {"gflops": matmul_gflops(), "path": torch.backends.cpu.get_cpu_capability()}
        found["tokens_per_s"] = training_tokens_per_s()
        print(json.dumps(found))
        return
    own, portable = measured(None), measured("portable")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs; fp32 matmul {own['gflops']:.0f} GFLOP/s "
        f"on 2 threads ({own['path']}), {portable['gflops']:.0f} portable; the quickstart's "
        f"smallest rung trains {own['tokens_per_s']:,.0f} tokens/s on 1 thread, "
        f"{portable['tokens_per_s']:,.0f} portable"
    )


if __name__ == "__main__":
    main()
