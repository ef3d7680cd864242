"""What produced a number: the code's commit, the torch version and the kernels it ran on.

The same seed gives other numbers under another torch version or other CPU kernels (AVX-512
sums in another order than AVX2), so every number a script prints for the docs carries this
line, and the base-run store keys on the kernels (`base_store.key_inputs`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
CODE = ("kinfuse_ray", "sweeps", "benchmarks", "scripts")  # what decides a number


def kernels() -> dict[str, str]:
    """The torch version and the CPU kernels torch picked (ATEN_CPU_CAPABILITY sets them)."""
    import torch  # here, not above: the base store's listing reads provenance without torch

    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}


def pin_cpu_kernels(wanted: str | None) -> str | None:
    """Make torch use the CPU kernels `wanted` (`train.cpu_kernels`) in this process and in the
    Ray workers it starts (they inherit the environment); call before torch is imported. Returns
    a one-line note where torch uses other kernels (imported earlier, or a CPU without them)."""
    if wanted is None:
        return None
    if "torch" not in sys.modules:
        os.environ["ATEN_CPU_CAPABILITY"] = wanted
    used = kernels()["cpu"]
    if used.lower() == wanted:
        return None
    why = (
        f"torch was imported before the sweep could set them: set ATEN_CPU_CAPABILITY={wanted}"
        if os.environ.get("ATEN_CPU_CAPABILITY") != wanted
        else "this CPU lacks them"
    )
    return (
        f"train.cpu_kernels: torch uses {used} kernels, not {wanted} ({why}); "
        "numbers may differ from a run on those"
    )


def commit() -> str:
    """The checkout's short commit, with "+uncommitted" where the code (the package, sweeps,
    benchmarks, scripts) differs from it; "?" where the package does not run from a checkout
    (or where there is no git: a cluster image, a bare GPU box)."""
    try:
        found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=CHECKOUT,
                               capture_output=True, text=True, timeout=10)  # fmt: skip
        changed = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", *CODE], cwd=CHECKOUT, timeout=10
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    short = found.stdout.strip()
    if not short:
        return "?"
    return short + ("+uncommitted" if changed.returncode == 1 else "")


def describe() -> str:
    k = kernels()
    return f"commit {commit()}, torch {k['torch']}, CPU kernels {k['cpu']}"
