"""What produced a number: the code's commit, the torch version and the CPU math it ran on.

The same seed gives other numbers under another torch version or another numeric path: torch's
own kernels (AVX-512 sums in another order than AVX2) and oneMKL's matrix products, which pick
their code path by CPU vendor and model, and differ between vendors even on its COMPATIBLE
branch (the `portable` pin: the same numbers on AMD EPYCs with and without AVX-512, others on an
Intel Xeon). So every number a script prints for the docs carries this line, the CPU included,
and the base-run store keys on the numeric path and the CPU vendor (`base_store.key_inputs`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
CODE = ("kinfuse_ray", "sweeps", "benchmarks", "scripts")  # what decides a number


# What each `train.cpu_kernels` setting puts in the environment before torch loads (Ray
# workers get the same through the runtime env). `portable` is one numeric path on the CPUs of
# one vendor whatever their vector width: torch's AVX2 kernels, oneMKL's COMPATIBLE branch and
# oneDNN capped at AVX2. oneMKL documents COMPATIBLE as the same on Intel and other vendors'
# CPUs, but the quickstart's first base run ends 5.1726239 on AMD EPYCs and 5.1726200 on an
# Intel Xeon (no MKL_CBWR branch, STRICT or not, nor oneDNN's cap, gives AMD's there), so
# outcomes are pinned per vendor (tests/golden/).
CPU_KERNEL_ENV: dict[str, dict[str, str]] = {
    "default": {"ATEN_CPU_CAPABILITY": "default"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512"},
    "portable": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE",
                 "ONEDNN_MAX_CPU_ISA": "AVX2"},
}  # fmt: skip
# Every variable a setting may set: a process that is to follow the sweep file's own pin (a
# golden run, a test's fresh process) starts without any of them.
PINNING_VARIABLES = frozenset(name for env in CPU_KERNEL_ENV.values() for name in env)


def kernel_env(wanted: str | None) -> dict[str, str]:
    """The environment that pins `wanted` (a `train.cpu_kernels` value; None: nothing)."""
    return dict(CPU_KERNEL_ENV[wanted]) if wanted else {}


def numeric_path(capability: str, mkl_branch: str | None) -> str:
    """The name of a numeric path: torch's kernels, and oneMKL's branch where one is pinned
    (AVX2, AVX2/mkl-compatible)."""
    return capability.upper() + (f"/mkl-{mkl_branch.lower()}" if mkl_branch else "")


def kernels() -> dict[str, str]:
    """The torch version and the numeric path this process runs: the CPU kernels torch picked
    (ATEN_CPU_CAPABILITY sets them), oneMKL's pinned branch (MKL_CBWR), if any, and the CPU's
    vendor (whose oneMKL path differs on every branch)."""
    import torch  # here, not above: the base store's listing reads provenance without torch

    capability = torch.backends.cpu.get_cpu_capability()
    path = numeric_path(capability, os.environ.get("MKL_CBWR"))
    return {"torch": torch.__version__, "cpu": path, "vendor": cpu_vendor()}


def pinned_path(wanted: str) -> str:
    """The numeric path a `train.cpu_kernels` setting pins, as `kernels()` names it."""
    env = CPU_KERNEL_ENV[wanted]
    return numeric_path(env["ATEN_CPU_CAPABILITY"], env.get("MKL_CBWR"))


def pin_cpu_kernels(wanted: str | None) -> str | None:
    """Pin the numeric path `wanted` (`train.cpu_kernels`) in this process and in the Ray
    workers it starts (they inherit the environment); call before torch is imported. Returns
    a one-line note where torch runs another path (imported earlier, or a CPU without it)."""
    if wanted is None:
        return None
    env = kernel_env(wanted)
    if "torch" not in sys.modules:
        os.environ.update(env)
    used, path = kernels()["cpu"], pinned_path(wanted)
    if used == path:
        return None
    unset = " ".join(f"{k}={v}" for k, v in env.items() if os.environ.get(k) != v)
    why = (
        f"torch was imported before the sweep could set them: set {unset}"
        if unset
        else "this CPU lacks them"
    )
    return (
        f"train.cpu_kernels: torch runs {used}, not {path} ({why}); "
        "numbers may differ from a run on those"
    )


def _cpuinfo() -> dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def cpu_vendor() -> str:
    """This machine's CPU vendor as the CPU names it (GenuineIntel, AuthenticAMD; "unknown")."""
    return _cpuinfo().get("vendor_id", "unknown")


def cpu_model() -> str:
    """This machine's CPU: vendor, model and widest vector instructions (from /proc/cpuinfo;
    "unknown CPU" where there is none)."""
    info = _cpuinfo()
    if not info:
        return "unknown CPU"
    flags = set(info.get("flags", "").split())
    widest = next((isa for isa in ("avx512f", "avx2", "sse4_2") if isa in flags), "sse2")
    return f"{info.get('vendor_id', '?')} {info.get('model name', '?')} ({widest})"


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
    return f"commit {commit()}, torch {k['torch']}, CPU kernels {k['cpu']} on {cpu_model()}"
