"""Peak memory of one evaluation (retention and acquisition probes, validation loss) as the
validation set grows, with evaluation batched to `eval.batch_tokens` against everything in one
forward pass (what evaluation did before it was batched).

Each point runs in a fresh process: the peak resident memory (VmHWM, reset through
/proc/self/clear_refs just before) minus the memory before evaluating.

    .venv/bin/python benchmarks/eval_memory.py

Prints the extra memory per validation-set size for both; batched stays flat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

MEASURE = """
import json, sys
import torch
from kinfuse_ray.config import DataConfig, EvalConfig, ModelSize
from kinfuse_ray.data import build_bundle
from kinfuse_ray.model import build_model
from kinfuse_ray.train import evaluate
val_sequences, batch_tokens = json.loads(sys.argv[1])
torch.set_num_threads(2)
data = DataConfig(n_general_facts=500, n_domain_facts=500, vocab_size=8192, seq_len=512)
evals = EvalConfig(val_sequences=val_sequences, batch_tokens=batch_tokens, acquisition_probes=500)
bundle = build_bundle(data, evals, seed=0).for_load(500, 500, evals, 0)
model = build_model(ModelSize(name="m", hidden_size=256, n_layers=2, n_heads=4), 8192, 512)
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")
before = rss("VmRSS:")
evaluate(model, bundle, evals)
print(json.dumps(rss("VmHWM:") - before))
"""


def peak_mib(val_sequences: int, batch_tokens: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps([val_sequences, batch_tokens])],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1]) / 2**20


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()  # --help: what it measures
    print("validation sequences (x 512 tokens), 500 + 500 probes; vocab 8,192")
    print(f"{'sequences':>10} {'batched (16,384 tokens)':>24} {'one pass':>10}")
    for n in (16, 64, 256):
        batched, whole = peak_mib(n, 16_384), peak_mib(n, 10**9)
        print(f"{n:>10} {batched:>20.0f} MiB {whole:>6.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
