"""Tokenize a sweep's corpus once, on Ray (Ray Data), into memory-mapped shards.

The corpus is cut into units (a Parquet file's row groups one by one; any other source whole),
and Ray Data maps the units over the cluster's CPUs: each writes its tokens as one `.npy` shard
(documents each followed by a blank line, as the single-process path writes them), atomically,
and a unit whose shard exists is skipped, so an interrupted job resumes where it stopped. The
index (the shards in corpus order) is written last; sweeps then read the shards as one corpus
(`data.ShardedTokens`), the same token sequence the single-process path would have written.

    kinfuse tokenize sweeps/gpu_ladder.yaml      # on a cluster: submit it as a Ray job
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from kinfuse_ray.config import DataConfig
from kinfuse_ray.corpus import corpus_documents
from kinfuse_ray.data import corpus_tokenizer
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.files import atomic_path, write_json_atomic
from kinfuse_ray.knowledge import load_templates, load_triples
from kinfuse_ray.tokens import SHARD_INDEX, encode, is_complete_shards, token_shards_dir

BATCH_DOCUMENTS = 1024


@dataclass(frozen=True)
class Unit:
    """One shard's worth of the corpus: a Parquet file's row group, or a whole source."""

    source: str
    row_group: int | None = None


def corpus_units(source: Path | str, max_documents: int) -> list[Unit]:
    """The corpus in units, in corpus order. A Parquet file splits by row group (the unit of
    parallelism); other sources are read whole, by one task."""
    path = Path(str(source))
    if path.name.lower().endswith(".parquet") and path.is_file():
        import pyarrow.parquet as pq

        try:
            groups = pq.ParquetFile(path).num_row_groups
        except (OSError, ValueError) as exc:
            raise KinfuseError(f"{path}: cannot read a Parquet file ({exc})") from None
        return [Unit(str(path), g) for g in range(groups)]
    return [Unit(str(source))]


def unit_documents(unit: Unit, max_documents: int) -> Iterator[str]:
    if unit.row_group is None:
        yield from corpus_documents(unit.source, max_documents)
        return
    import pyarrow.parquet as pq

    table = pq.ParquetFile(unit.source).read_row_group(unit.row_group, columns=["text"])
    yield from (doc for doc in table.column("text").to_pylist() if doc and doc.strip())


class TokenizeUnits:
    """Ray Data's map over units: tokenize one unit into its shard (or find it done)."""

    def __init__(self, tokenizer_json: str, folder: str, max_documents: int):
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.folder, self.max_documents = Path(folder), max_documents

    def __call__(self, row: dict) -> dict:
        unit = Unit(row["source"], None if row["row_group"] < 0 else int(row["row_group"]))
        shard = self.folder / f"shard-{int(row['index']):06d}.npy"
        began = time.perf_counter()
        if not shard.exists():
            documents = (doc + "\n\n" for doc in unit_documents(unit, self.max_documents))
            pieces = []
            while texts := list(itertools.islice(documents, BATCH_DOCUMENTS)):
                pieces += encode(self.tokenizer, texts)
            tokens = np.concatenate(pieces) if pieces else np.empty(0, np.int32)
            with atomic_path(shard) as tmp:  # a resumed job redoes only missing shards
                np.save(tmp, tokens)
        n_tokens = len(np.load(shard, mmap_mode="r"))
        return {
            **row,
            "shard": shard.name,
            "tokens": n_tokens,
            "seconds": time.perf_counter() - began,
        }


def tokenize_corpus(data: DataConfig) -> tuple[Path, int, float]:
    """Tokenize a sweep's corpus (`data`) into shards on the connected Ray instance; returns
    (shard folder, tokens, seconds). Shards already written are kept (resume)."""
    import ray.data

    if data.corpus.suffix == ".npy":
        raise KinfuseError(f"data.corpus: {data.corpus} is already token ids")
    relations = load_templates(data.templates)
    facts = load_triples(data.general_facts, relations) + load_triples(data.domain_facts, relations)
    tokenizer, _, corpus_key = corpus_tokenizer(data, facts, relations)
    folder = token_shards_dir(tokenizer, corpus_key)
    if is_complete_shards(folder):
        return folder, _count(folder), 0.0
    folder.mkdir(parents=True, exist_ok=True)
    units = corpus_units(data.corpus, data.max_documents)
    rows = [
        {"index": i, "source": u.source, "row_group": -1 if u.row_group is None else u.row_group}
        for i, u in enumerate(units)
    ]
    began = time.perf_counter()
    done = (
        ray.data.from_items(rows, override_num_blocks=len(rows))
        .map(
            TokenizeUnits,
            fn_constructor_args=(tokenizer.to_str(), str(folder), data.max_documents),
            concurrency=max(1, int(ray.cluster_resources().get("CPU", 1))),
            num_cpus=1,
            # One core per actor: the tokenizer's own thread pool would take them all.
            runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1"}},
        )
        .take_all()
    )
    seconds = time.perf_counter() - began
    shards = [r["shard"] for r in sorted(done, key=lambda r: r["index"])]
    write_json_atomic(folder / SHARD_INDEX, {"shards": shards, "source": str(data.corpus)})
    return folder, sum(r["tokens"] for r in done), seconds


def _count(folder: Path) -> int:
    from kinfuse_ray.tokens import ShardedTokens

    return len(ShardedTokens.open(folder))
