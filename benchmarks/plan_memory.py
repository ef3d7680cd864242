"""`kinfuse plan`'s memory estimate against the measured peak of real training steps on CPU
(fp32, one worker, DDP-free), for a few shapes with and without activation checkpointing.

Each shape runs in a fresh process: the peak resident memory (VmHWM, reset through
/proc/self/clear_refs once the libraries are loaded) minus the memory before the model existed,
over three steps of the project's own training step (AdamW, micro-batch, clipping).

    .venv/bin/python benchmarks/plan_memory.py

Prints estimate, measurement and their ratio per shape.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

SHAPES = [  # hidden, layers, heads, seq, micro, vocab, activation checkpointing
    (256, 4, 4, 512, 8, 2048, False),
    (512, 4, 8, 512, 8, 8192, False),
    (512, 8, 8, 1024, 4, 8192, False),
    (512, 8, 8, 1024, 4, 8192, True),
    (1024, 4, 16, 512, 4, 16384, False),
]

MEASURE = """
import json, sys
import numpy as np, torch
from kinfuse_ray.config import ModelSize, TrainConfig
from kinfuse_ray.model import build_model
from kinfuse_ray.train import make_optimizer
hidden, layers, heads, seq, micro, vocab, ac = json.loads(sys.argv[1])
torch.set_num_threads(2)
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
batch = torch.from_numpy(np.random.default_rng(0).integers(0, vocab, (micro, seq)))
open("/proc/self/clear_refs", "w").write("5")
before = rss("VmRSS:")
model = build_model(ModelSize(name="m", hidden_size=hidden, n_layers=layers, n_heads=heads), vocab, seq)
if ac:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
optimizer = make_optimizer(model, TrainConfig())
model.train()
for _ in range(3):
    model(input_ids=batch, labels=batch).loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
print(json.dumps(rss("VmHWM:") - before))
"""


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()  # --help: what it measures
    from kinfuse_ray.config import ModelSize
    from kinfuse_ray.plan import FRAGMENTATION, training_memory

    print(f"{'shape (h x L, seq x micro, vocab)':<38} {'estimate':>9} {'measured':>9} {'ratio':>6}")
    for shape in SHAPES:
        hidden, layers, heads, seq, micro, vocab, ac = shape
        size = ModelSize(name="m", hidden_size=hidden, n_layers=layers, n_heads=heads)
        memory = training_memory(size, vocab, seq, micro, activation_checkpointing=ac, gpu=False)
        estimate = memory.total / FRAGMENTATION  # CPU malloc: no caching allocator
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, json.dumps(shape)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        label = f"{hidden} x {layers}, {seq} x {micro}, {vocab}{' +ac' if ac else ''}"
        print(
            f"{label:<38} {estimate / 2**20:>7.0f}MB {measured / 2**20:>7.0f}MB "
            f"{estimate / measured:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
