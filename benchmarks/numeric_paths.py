"""Which CPU math settings reproduce the golden quickstart's numbers on this CPU? The quickstart's
first base run (its smallest rung, about 13 s) trained in a fresh process under each oneMKL
branch (MKL_CBWR) and oneDNN cap, beside the validation loss pinned on each CPU vendor
(tests/golden/sweep/<vendor>.json).

    .venv/bin/python benchmarks/numeric_paths.py          # about 2.5 min on 2 cores

Every setting keeps torch's own kernels at AVX2 (ATEN_CPU_CAPABILITY, as `portable` pins them):
what differs is oneMKL's code path for matrix products, which it picks by CPU vendor and model,
and oneDNN's. A setting whose loss equals another vendor's pinned one would be a numeric path
those two vendors share.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from kinfuse_ray.provenance import PINNING_VARIABLES, describe  # noqa: E402
from tests import golden  # noqa: E402

QUICKSTART = REPO / "sweeps" / "quickstart.yaml"
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2"}
SETTINGS: dict[str, dict[str, str]] = {
    "portable (COMPATIBLE, oneDNN AVX2)": {
        **AVX2, "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "AVX2",
    },
    "COMPATIBLE, oneDNN uncapped": {**AVX2, "MKL_CBWR": "COMPATIBLE"},
    "COMPATIBLE,STRICT": {**AVX2, "MKL_CBWR": "COMPATIBLE,STRICT"},
    "SSE4_1": {**AVX2, "MKL_CBWR": "SSE4_1"},
    "SSE4_2": {**AVX2, "MKL_CBWR": "SSE4_2"},
    "AVX": {**AVX2, "MKL_CBWR": "AVX"},
    "AVX2": {**AVX2, "MKL_CBWR": "AVX2"},
    "AVX2,STRICT": {**AVX2, "MKL_CBWR": "AVX2,STRICT"},
    "AVX512": {**AVX2, "MKL_CBWR": "AVX512"},
    "oneMKL's own choice": AVX2,
}  # fmt: skip


def base_run_loss() -> float:
    """Train the quickstart's smallest rung's base run here (no Ray); its validation loss."""
    from kinfuse_ray.config import load_sweep
    from kinfuse_ray.data import build_bundle
    from kinfuse_ray.spec import Phase, TrialSpec
    from kinfuse_ray.trial import run_trial

    sweep = load_sweep(QUICKSTART)
    smallest = sweep.ladder[0].name
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed, sweep.largest_knowledge_load)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "quickstart"
        out.mkdir()
        metrics = run_trial(TrialSpec(Phase.base, smallest, 0.0), rung=sweep.rungs[smallest],
                            out=out, bundle=bundle, report=lambda metrics, save: None)  # fmt: skip
    return float(metrics["val_loss"])


def measured(env: dict[str, str]) -> float:
    """The loss in a fresh process under `env` (set before torch loads)."""
    clean = {k: v for k, v in os.environ.items() if k not in PINNING_VARIABLES}
    proc = subprocess.run([sys.executable, __file__, "--measure"], env={**clean, **env},
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(proc.stdout.splitlines()[-1])["val_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps({"val_loss": base_run_loss()}))
        return
    print(describe())
    pinned = {}
    for vendor in golden.pinned_vendors():
        outcomes, _ = golden.pinned_sweep(vendor)
        base = next(t for name, t in outcomes["trials"].items() if name.startswith("base n25k"))
        pinned[vendor] = base["val_loss"]
        print(f"pinned on {'; '.join(outcomes['cpus'])}: {base['val_loss']!r}")
    print(
        f"{'oneMKL branch (torch kernels AVX2)':36s} {'val loss':>18s}  equals the pinned loss of"
    )
    for name, env in SETTINGS.items():
        loss = measured(env)
        same = [v for v, pinned_loss in pinned.items() if pinned_loss == loss] or ["none"]
        print(f"{name:36s} {loss!r:>18s}  {', '.join(same)}")


if __name__ == "__main__":
    main()
