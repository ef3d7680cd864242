"""Tokenizers and token files: the sweep's tokenizer or a byte-level BPE trained once (cached),
the corpus tokenized into a flat file or shards in a cache every node sees, memory-mapped back,
and digests that key the caches and the base-run store."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from kinfuse_ray.config import DataConfig
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.files import atomic_path, write_text_atomic

EOS = "<|endoftext|>"


def load_tokenizer(path: Path) -> tuple[Tokenizer, str]:
    """A local Hugging Face tokenizer (a folder with tokenizer.json, or the file) and its
    end-of-text token, from tokenizer_config.json's eos_token or the usual names."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exceptions
        raise KinfuseError(f"{file}: cannot load a tokenizer ({exc})") from None
    config = file.parent / "tokenizer_config.json"
    eos = json.loads(config.read_text()).get("eos_token") if config.exists() else None
    eos = eos.get("content") if isinstance(eos, dict) else eos
    for token in (eos, EOS, "</s>", "<eos>", "<|end_of_text|>"):
        if token and tokenizer.token_to_id(token) is not None:
            return tokenizer, token
    raise KinfuseError(f"{path}: the tokenizer has no end-of-text token")


def _cache_dir(kind: str) -> Path:
    """Where tokenizers and token files are kept (`KINFUSE_CACHE`: on a cluster, a folder every
    node sees)."""
    root = os.environ.get("KINFUSE_CACHE") or Path.home() / ".cache" / "kinfuse-ray"
    return Path(root) / kind


def train_tokenizer(texts: Iterable[str], vocab_size: int, cache_key: str = "") -> Tokenizer:
    """Byte-level BPE trained on the project's own text; with `cache_key` (what identifies the
    texts), kept and reused by key and vocab size."""
    name = hashlib.sha256(f"{cache_key}/{vocab_size}".encode()).hexdigest()[:16]
    cached = _cache_dir("tokenizers") / f"bpe-{vocab_size}-{name}.json"
    if cache_key and cached.exists():
        return Tokenizer.from_file(str(cached))
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if cache_key:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:  # concurrent sweeps never read a half-written file
            tokenizer.save(str(tmp))
    return tokenizer


def _token_cache(tokenizer: Tokenizer, cache_key: str) -> Path:
    digest = hashlib.sha256(tokenizer.to_str().encode() + cache_key.encode())
    return _cache_dir("tokens") / digest.hexdigest()[:24]


def token_shards_dir(tokenizer: Tokenizer, cache_key: str) -> Path:
    """Where `kinfuse tokenize` keeps this corpus's shards for this tokenizer."""
    return _token_cache(tokenizer, cache_key).with_suffix(".shards")


def is_complete_shards(folder: Path) -> bool:
    return (folder / SHARD_INDEX).exists()


def tokenize_to_file(
    tokenizer: Tokenizer, documents: Iterable[str], cache_key: str, batch: int = 1024
) -> Path:
    """The documents' token ids as a flat int32 file, written batch by batch (memory does not
    grow with the corpus) and kept by tokenizer and `cache_key`; trials memory-map it."""
    path = _token_cache(tokenizer, cache_key).with_suffix(".int32")
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("wb") as f:  # a broken corpus leaves nothing
        documents = iter(documents)
        while texts := list(itertools.islice(documents, batch)):
            np.concatenate(encode(tokenizer, texts)).tofile(f)
    return path


SHARD_INDEX = "index.json"  # a shard folder's list of shards, written last


class ShardedTokens:
    """Token shards (.npy files, memory-mapped) read as one sequence: `len`, and slicing with a
    step of 1, which gives a lazy view; `np.asarray(view)` reads just that range."""

    def __init__(self, shards: list[np.ndarray], start: int = 0, stop: int | None = None):
        self.shards = shards
        self.bounds = np.concatenate([[0], np.cumsum([len(s) for s in shards])])
        total = int(self.bounds[-1])
        self.start, self.stop = start, total if stop is None else stop

    @classmethod
    def open(cls, folder: Path | str) -> ShardedTokens:
        names = json.loads((Path(folder) / SHARD_INDEX).read_text())["shards"]
        return cls([np.load(Path(folder) / name, mmap_mode="r") for name in names])

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, key: slice) -> ShardedTokens:
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise IndexError("token shards are sliced with step 1")
        return ShardedTokens(self.shards, self.start + start, self.start + max(start, stop))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        first = int(np.searchsorted(self.bounds, self.start, side="right")) - 1
        pieces, at = [], self.start
        for i in range(max(first, 0), len(self.shards)):
            if at >= self.stop:
                break
            lo, hi = at - self.bounds[i], min(self.stop, self.bounds[i + 1]) - self.bounds[i]
            pieces.append(self.shards[i][lo:hi])
            at = self.bounds[i] + hi
        out = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int32)
        return out.astype(dtype or out.dtype, copy=False)


def map_tokens(path: Path | str) -> np.ndarray | ShardedTokens:
    """Token ids, memory-mapped: a folder of shards (`kinfuse tokenize`), a .npy array as
    saved, or this project's flat int32 file."""
    if Path(path).is_dir():
        return ShardedTokens.open(path)
    if str(path).endswith(".npy"):
        return np.load(path, mmap_mode="r")
    return np.memmap(path, dtype=np.int32, mode="r")


def content_digest(path: Path | str) -> str:
    """sha256 of a token corpus's bytes (a .npy, the flat file, or every file of a shard folder
    in name order), cached by the files' paths, sizes and modification times: a large corpus is
    read once, and a corpus rewritten in place under the same name gets a new digest."""
    path = Path(path)
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    stats = repr([(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files])
    cached = _cache_dir("digests") / hashlib.sha256(stats.encode()).hexdigest()[:24]
    if cached.exists():
        return cached.read_text()
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(cached, digest.hexdigest())
    return digest.hexdigest()


def pretokenized(path: Path, tokenizer: Tokenizer) -> Path:
    """A .npy corpus of token ids, checked against the tokenizer on a sample of a million ids."""
    try:
        tokens = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise KinfuseError(f"{path}: cannot read a .npy array of token ids ({exc})") from None
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu":
        raise KinfuseError(
            f"{path}: expected a 1-D integer array of token ids, got {tokens.dtype} {tokens.shape}"
        )
    sample = tokens[:: max(1, len(tokens) // 1_000_000)]
    vocab = tokenizer.get_vocab_size()
    if len(sample) and (sample.min() < 0 or sample.max() >= vocab):
        raise KinfuseError(
            f"{path}: token ids {sample.min()}..{sample.max()} do not fit the tokenizer "
            f"({vocab} tokens)"
        )
    return path


def encode(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids of each text, as int32 arrays."""
    return [np.asarray(e.ids, dtype=np.int32) for e in tokenizer.encode_batch(texts)]


def planned_vocab_size(data: DataConfig) -> tuple[int, str]:
    """The vocabulary a plan counts the embeddings of: a checkpoint ladder's model config's, else
    the sweep's tokenizer's, where this machine can read it, else `data.vocab_size`; and a note
    when it cannot ("" when it can)."""
    file = data.tokenizer and data.tokenizer / "tokenizer.json"
    model = data.tokenizer and data.tokenizer / "config.json"
    if model and model.is_file() and "vocab_size" in (config := json.loads(model.read_text())):
        return int(config["vocab_size"]), ""  # a checkpoint's folder: its embedding rows
    if file and file.is_file():
        return max(data.vocab_size, Tokenizer.from_file(str(file)).get_vocab_size()), ""
    if file:
        return (
            data.vocab_size,
            f"{file} is not readable here; assuming data.vocab_size {data.vocab_size:,}",
        )
    return data.vocab_size, ""
