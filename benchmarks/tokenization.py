"""Corpus tokenization throughput: the single-process path (`data.tokenize_to_file`, what a
sweep does when no shards exist) against the Ray Data job (`kinfuse tokenize`) on a local Ray
instance with this machine's cores, on the bundled corpus repeated `--copies` times as Parquet.

    .venv/bin/python benchmarks/tokenization.py [--copies 8]

Prints tokens/s of each (the Ray job's time without and with Ray's start-up).
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="kinfuse-tokenize-"))
    os.environ["KINFUSE_CACHE"] = str(scratch / "cache")

    import ray

    from kinfuse_ray.cluster import connect_ray
    from kinfuse_ray.config import BUNDLED_DATA, parse_sweep
    from kinfuse_ray.corpus import paragraphs
    from kinfuse_ray.data import corpus_tokenizer
    from kinfuse_ray.knowledge import load_templates, load_triples
    from kinfuse_ray.tokenize_job import tokenize_corpus
    from kinfuse_ray.tokens import map_tokens, tokenize_to_file

    with gzip.open(BUNDLED_DATA / "corpus" / "shakespeare.txt.gz", "rt") as f:
        text = f.read()
    documents = [d for d in text.split("\n\n") if d.strip()] * args.copies
    corpus = scratch / "corpus.parquet"
    pq.write_table(pa.table({"text": documents}), corpus, row_group_size=4096)
    sweep = parse_sweep(
        {
            "name": "tok",
            "ladder": [{"name": "a", "hidden_size": 16, "n_layers": 1, "n_heads": 2}],
            "ratios": [0.5],
            "data": {"corpus": str(corpus), "vocab_size": 2048},
        }
    )
    data = sweep.data
    relations = load_templates(data.templates)
    facts = load_triples(data.general_facts, relations) + load_triples(data.domain_facts, relations)
    tokenizer, _, _ = corpus_tokenizer(data, facts, relations)  # trained once, cached

    began = time.perf_counter()
    n = len(map_tokens(tokenize_to_file(tokenizer, paragraphs(data), "single")))
    single = time.perf_counter() - began
    print(
        f"corpus: {len(documents):,} documents, {n:,} tokens, {pq.ParquetFile(corpus).num_row_groups} row groups"
    )
    print(f"single process:        {n / single:>12,.0f} tokens/s ({single:.1f} s)", flush=True)

    began = time.perf_counter()
    connect_ray(sweep.ray)
    _, tokens, job = tokenize_corpus(sweep.data)
    total = time.perf_counter() - began
    ray.shutdown()
    assert tokens == n
    cpus = os.cpu_count()
    print(
        f"Ray Data job, {cpus} CPUs: {n / job:>12,.0f} tokens/s ({job:.1f} s; {total:.1f} s with Ray start-up)"
    )


if __name__ == "__main__":
    main()
