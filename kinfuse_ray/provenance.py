"""What produced a number: the code's commit, the torch version and the kernels it ran on.

The same seed gives other numbers under another torch version or other CPU kernels (AVX-512
sums in another order than AVX2), so every number a script prints for the docs carries this
line, and the base-run store keys on the kernels (`trial.base_key`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

CHECKOUT = Path(__file__).resolve().parents[1]


def kernels() -> dict[str, str]:
    """The torch version and the CPU kernels torch picked (ATEN_CPU_CAPABILITY sets them)."""
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}


def commit() -> str:
    """The checkout's short commit, or "?" where the package does not run from one (or where
    there is no git: a cluster image, a bare GPU box)."""
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=CHECKOUT,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return found.stdout.strip() or "?"


def describe() -> str:
    k = kernels()
    return f"commit {commit()}, torch {k['torch']}, CPU kernels {k['cpu']}"
