"""Trial start-up cost: from Tune scheduling a trial to its first training step, for a
single-worker trial (the loop runs in the Tune trial itself) and a two-worker Ray Train DDP
trial (a TorchTrainer worker group with torch.distributed set up), on a tiny model.

    .venv/bin/python benchmarks/trial_startup.py

Every trial logs this as the MLflow metric `startup_s`; this script runs both kinds on the
same tiny sweep in scratch stores and prints the medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from kinfuse_ray.config import parse_sweep
from kinfuse_ray.sweep import run_sweep

TINY = {
    "name": "startup",
    "ladder": [{"name": "a", "hidden_size": 32, "n_layers": 1, "n_heads": 2}],
    "ratios": [0.2, 0.4, 0.6, 0.8],
    "data": {"n_general_facts": 20, "n_domain_facts": 40, "vocab_size": 512, "seq_len": 64},
    "train": {"base_tokens": 20000, "tokens": 10000, "batch_size": 8},
    "eval": {"every_tokens": 10000, "acquisition_probes": 20, "val_sequences": 4},
}


def startup_seconds(workers: int, root: Path) -> list[float]:
    raw = {
        **TINY,
        "train": {**TINY["train"], "workers": workers},
        "output_dir": str(root / f"w{workers}"),
        "mlflow": {"tracking_uri": f"sqlite:///{root}/w{workers}.db"},
    }
    run_sweep(parse_sweep(raw))
    client = MlflowClient(tracking_uri=raw["mlflow"]["tracking_uri"])
    experiment = client.get_experiment_by_name("startup")
    runs = client.search_runs([experiment.experiment_id], "params.phase = 'infuse'")
    return [r.data.metrics["startup_s"] for r in runs]


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()  # --help: what it measures
    root = Path(tempfile.mkdtemp(prefix="kinfuse-startup-"))
    rows = {w: startup_seconds(w, root) for w in (1, 2)}
    print("\n== trial start-up: Tune scheduling the trial -> first training step ==")
    for workers, seconds in rows.items():
        kind = "Tune function trainable" if workers == 1 else "Ray Train, 2 DDP workers"
        print(
            f"{kind:<26} median {statistics.median(seconds):6.2f} s  "
            f"(min {min(seconds):.2f}, max {max(seconds):.2f}, {len(seconds)} trials)"
        )


if __name__ == "__main__":
    main()
