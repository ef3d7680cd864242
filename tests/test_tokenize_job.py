"""`kinfuse tokenize`: the corpus tokenized on a real local Ray instance by Ray Data into one
shard per Parquet row group, the very token sequence the single-process path writes, resumed
after an interruption without redoing finished shards, and read by a sweep's data bundle."""

import gzip
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kinfuse_ray.config import BUNDLED_DATA, DataConfig, EvalConfig
from kinfuse_ray.corpus import paragraphs
from kinfuse_ray.data import build_bundle, corpus_tokenizer
from kinfuse_ray.knowledge import load_templates, load_triples
from kinfuse_ray.tokens import map_tokens, tokenize_to_file

from .helpers import kinfuse

pytestmark = pytest.mark.full


def test_sharded_tokenization_matches_the_single_process_one(tmp_path):
    with gzip.open(BUNDLED_DATA / "corpus" / "shakespeare.txt.gz", "rt") as f:
        text = f.read()
    documents = [d for d in text.split("\n\n") if d.strip()][:6000]
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"text": documents}), corpus, row_group_size=1000)  # 6 row groups
    (tmp_path / "tok.yaml").write_text(
        f"name: tok\nladder: [{{name: a, hidden_size: 16, n_layers: 1, n_heads: 2}}]\n"
        f"ratios: [0.5]\ndata: {{corpus: {corpus}, vocab_size: 512}}\nray: {{num_cpus: 2}}\n"
    )
    os.environ["KINFUSE_CACHE"] = str(tmp_path / "cache")  # the CLI and this process alike
    try:
        first = kinfuse(tmp_path, "tokenize", "tok.yaml")
        assert first.returncode == 0, first.stderr[-3000:]
        folder = next((tmp_path / "cache" / "tokens").glob("*.shards"))
        shards = sorted(folder.glob("shard-*.npy"))
        assert len(shards) == 6
        index = json.loads((folder / "index.json").read_text())
        assert index["shards"] == [s.name for s in shards]

        # An interrupted job: the index and one shard are missing; the rest are kept.
        (folder / "index.json").unlink()
        shards[3].unlink()
        kept = {s.name: s.stat().st_mtime_ns for s in shards if s.exists()}
        again = kinfuse(tmp_path, "tokenize", "tok.yaml")
        assert again.returncode == 0, again.stderr[-3000:]
        assert {s.name: s.stat().st_mtime_ns for s in shards if s.name in kept} == kept
        assert shards[3].exists() and (folder / "index.json").exists()

        # Sweeps read the shards, and they hold what the single-process path writes.
        data = DataConfig(corpus=corpus, vocab_size=512)
        bundle = build_bundle(data, EvalConfig(), seed=0)
        assert bundle.tokens_path == str(folder)
        relations = load_templates(data.templates)
        facts = [
            *load_triples(data.general_facts, relations),
            *load_triples(data.domain_facts, relations),
        ]
        tokenizer, _, _ = corpus_tokenizer(data, facts, relations)
        single = map_tokens(tokenize_to_file(tokenizer, paragraphs(data), "single"))
        sharded = map_tokens(folder)
        assert len(sharded) == len(single)
        assert np.array_equal(np.asarray(sharded[:]), single)
        middle = slice(len(single) // 3, len(single) // 3 + 50_000)  # across shard boundaries
        assert np.array_equal(np.asarray(sharded[middle]), single[middle])
        assert np.array_equal(np.asarray(bundle.val), single[-bundle.n_val :])
    finally:
        del os.environ["KINFUSE_CACHE"]
