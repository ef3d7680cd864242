"""Training throughput and model FLOPs utilisation of ladder sizes: the project's own training
step (bf16 autocast on GPUs, optional torch.compile, micro-batches) on random tokens, no Ray,
no data pipeline: what the hardware gives a trial at best.

    .venv/bin/python benchmarks/throughput.py sweeps/gpu_ladder.yaml --sizes 2 --device cuda
    .venv/bin/python benchmarks/throughput.py sweeps/quickstart.yaml --device cpu

Prints tokens/s per device and, on GPUs with a known peak, MFU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from kinfuse_ray.config import load_sweep
from kinfuse_ray.model import build_model
from kinfuse_ray.plan import flops_per_token
from kinfuse_ray.train import device_peak_flops, make_optimizer


def measure(sweep, size, device: torch.device, steps: int, warmup: int, compile_model: bool):
    vocab = max(sweep.data.vocab_size, 32_000 if sweep.data.tokenizer else 0)
    seq, micro = sweep.data.seq_len, sweep.train.micro_batch_size or sweep.train.batch_size
    torch.manual_seed(0)
    model = build_model(size, vocab, seq).to(device)
    optimizer = make_optimizer(model, sweep.rungs[size.name].train)
    step_model = torch.compile(model) if compile_model else model
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    batch = torch.from_numpy(np.random.default_rng(0).integers(0, vocab, (micro, seq))).to(device)

    def step():
        with autocast:
            loss = step_model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):  # compilation and allocator warm-up
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    tokens_per_s = steps * micro * seq / (time.perf_counter() - start)
    peak = device_peak_flops(device, sweep.train)
    mfu = tokens_per_s * flops_per_token(size, vocab, seq) / peak if peak else None
    return tokens_per_s, mfu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_file")
    parser.add_argument("--sizes", type=int, default=2, help="the smallest this many rungs")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    sweep = load_sweep(args.sweep_file)
    device = torch.device(args.device)
    compile_model = sweep.train.compile and not args.no_compile
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; bf16 autocast {device.type == 'cuda'}; torch.compile {compile_model}")
    for size in sorted(sweep.ladder, key=lambda s: sweep.n_params[s.name])[: args.sizes]:
        tokens_per_s, mfu = measure(sweep, size, device, args.steps, args.warmup, compile_model)
        mfu_text = f"MFU {mfu:.1%}" if mfu is not None else "MFU n/a (no known peak)"
        print(
            f"{size.name:<8} {sweep.n_params[size.name]:>14,} non-embedding params  "
            f"{tokens_per_s:12,.0f} tokens/s  {mfu_text}",
            flush=True,
        )


if __name__ == "__main__":
    main()
