"""The general corpus as text, document by document, from any of the sources a sweep file names
(text, JSON Lines, Parquet, a saved Hugging Face dataset, hf:NAME), and its fingerprint for the
caches."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from kinfuse_ray.config import DataConfig
from kinfuse_ray.errors import KinfuseError


def corpus_documents(path: Path | str, max_documents: int = 100_000) -> Iterator[str]:
    """The general corpus, document by document (memory does not grow with it): a text file
    (optionally .gz) split at blank lines; JSON Lines or Parquet with a `text` field; a folder
    holding a Hugging Face dataset saved with `save_to_disk` (its `text` column); or
    `hf:NAME[:CONFIG]`, a Hugging Face dataset streamed by name (or from a local folder of data
    files), of which the first `max_documents` are read."""
    path_str = str(path)
    path = Path(path)
    if path_str.startswith("hf:"):
        docs = _hf_stream_texts(path_str.removeprefix("hf:"), max_documents)
    elif path.is_dir():
        docs = _hf_dataset_texts(path)
    elif path.name.lower().endswith(".parquet"):
        docs = _parquet_texts(path)
    elif path.name.lower().removesuffix(".gz").endswith(".jsonl"):
        docs = _jsonl_texts(path)
    else:
        docs = _paragraphs(path)
    empty = True
    for doc in docs:
        if doc and doc.strip():
            empty = False
            yield doc
    if empty:
        raise KinfuseError(f"{path_str}: corpus is empty")


def _lines(path: Path) -> Iterator[str]:
    try:
        with (gzip.open if path.name.lower().endswith(".gz") else open)(
            path, "rt", encoding="utf-8", errors="replace"
        ) as f:
            yield from f
    except OSError as exc:
        reason = exc.strerror or f"corrupt gzip: {exc}"
        raise KinfuseError(f"{path}: cannot read corpus ({reason})") from None
    except EOFError as exc:
        raise KinfuseError(f"{path}: cannot read corpus (corrupt gzip: {exc})") from None


def _paragraphs(path: Path) -> Iterator[str]:
    """Documents separated by blank lines."""
    lines: list[str] = []
    for line in _lines(path):
        if line.strip():
            lines.append(line)
        elif lines:
            yield "".join(lines).removesuffix("\n")
            lines = []
    if lines:
        yield "".join(lines).removesuffix("\n")


def _jsonl_texts(path: Path) -> Iterator[str]:
    for lineno, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            yield str(json.loads(line)["text"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise KinfuseError(
                f"{path}: line {lineno}: expected a JSON object with a 'text' field"
            ) from None


def _parquet_texts(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(path).iter_batches(columns=["text"]):
            yield from batch.column("text").to_pylist()
    except (OSError, KeyError, ValueError) as exc:
        raise KinfuseError(f"{path}: cannot read a 'text' column ({exc})") from None


def _hf_stream_texts(spec: str, max_documents: int) -> Iterator[str]:
    import datasets

    name, _, config = spec.partition(":")
    try:
        stream = datasets.load_dataset(name, config or None, split="train", streaming=True)
        for row, _ in zip(stream, range(max_documents), strict=False):
            yield row["text"]
    except KeyError:
        raise KinfuseError(f"hf:{spec}: the dataset has no 'text' column") from None
    except Exception as exc:  # noqa: BLE001 - hub, network and format errors alike
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise KinfuseError(f"hf:{spec}: cannot stream the dataset ({reason})") from None


def _hf_dataset_texts(path: Path) -> Iterator[str]:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise KinfuseError(f"{path}: not a dataset saved with save_to_disk ({exc})") from None
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    if "text" not in dataset.column_names:
        raise KinfuseError(f"{path}: the dataset has no 'text' column ({dataset.column_names})")
    for batch in dataset.select_columns(["text"]).iter(batch_size=1024):
        yield from batch["text"]


def corpus_fingerprint(path: Path | str, max_documents: int) -> str:
    """What identifies a corpus for the caches without reading it: the source and every file's
    size and modification time (a hub dataset: its name and how many documents are read)."""
    path_str = str(path)
    local = Path(path_str.removeprefix("hf:"))
    files = sorted(f for f in local.rglob("*") if f.is_file()) if local.is_dir() else [local]
    stats = [
        (str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists()
    ]
    return hashlib.sha256(repr((path_str, max_documents, stats)).encode()).hexdigest()


def paragraphs(data: DataConfig) -> Iterator[str]:
    """The corpus's documents as the token stream has them: each followed by a blank line."""
    return (doc + "\n\n" for doc in corpus_documents(data.corpus, data.max_documents))
