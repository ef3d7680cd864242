"""The training stream at GPU-ladder scale: how fast one rank builds its batches, and that its
memory (what a trial allocates for its stream) stays flat as the token budget grows.

    .venv/bin/python benchmarks/stream.py

Synthetic knowledge the size of sweeps/gpu_ladder.yaml's (100K domain and 20K general facts, 3
paraphrases of 12-30 tokens each), a 200M-token memory-mapped corpus, sequences of 2,048 tokens,
32 sequences per rank and step (a 256-sequence global batch over 8 GPUs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from kinfuse_ray.mixing import Stream

SEQ_LEN, ROWS, STEPS = 2048, 32, 100


def facts(n: int, rng: np.random.Generator) -> list[list[np.ndarray]]:
    return [[rng.integers(0, 32_000, rng.integers(12, 31), dtype=np.int32) for _ in range(3)]
            for _ in range(n)]  # fmt: skip


def read(corpus, general, domain, ratio: float, n_sequences: int) -> tuple[float, float]:
    """Set-up seconds (the stream and its exposure counts over the whole budget) and one rank's
    tokens/s over STEPS steps read mid-run, as a resumed trial reads."""
    began = time.perf_counter()
    stream = Stream(
        corpus, general, domain,
        ratio=ratio, n_sequences=n_sequences, seq_len=SEQ_LEN, fact_share=0.05, seed=0,
    )  # fmt: skip
    assert stream.domain_exposures > 0 and stream.general_exposures > 0
    setup = time.perf_counter() - began
    start = n_sequences // 2
    began = time.perf_counter()
    for step in range(STEPS):
        stream.rows(start + step * 256, start + step * 256 + ROWS)
    return setup, STEPS * ROWS * SEQ_LEN / (time.perf_counter() - began)


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()  # --help: what it measures
    rng = np.random.default_rng(0)
    domain, general = facts(100_000, rng), facts(20_000, rng)
    path = Path(tempfile.mkdtemp(prefix="kinfuse-stream-")) / "corpus.int32"
    with path.open("wb") as f:  # in pieces, so that making it does not raise the peak RSS
        for _ in range(20):
            rng.integers(0, 32_000, 10_000_000, dtype=np.int32).tofile(f)
    corpus = np.memmap(path, dtype=np.int32, mode="r")
    print(f"\n{'budget':>10}{'ratio':>7}{'set-up s':>10}{'rank tokens/s':>15}{'peak heap MB':>14}")
    for budget in (1e9, 1e10, 1e11):
        for ratio in (0.1, 0.5):
            n_sequences = int(budget) // SEQ_LEN // 256 * 256
            setup, rate = read(corpus, general, domain, ratio, n_sequences)
            tracemalloc.start()  # again, traced: numpy's allocations, not the corpus map's pages
            read(corpus, general, domain, ratio, n_sequences)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            print(f"{budget:>10.0e}{ratio:>7}{setup:>10.2f}{rate:>15,.0f}{peak:>14,.1f}")
    path.unlink()
    print(
        "\n(a rank reads 32 x 2,048 tokens a step; an H100 trains a 110M model at roughly"
        " 0.5-1M tokens/s, so the stream needs to be well above that)"
    )


if __name__ == "__main__":
    main()
