"""Turn the sweep's data sources into token arrays once, in the driver.

The corpus streams, document by document, into a flat token file in a cache every node sees;
the result, a `DataBundle`, holds the facts and probes as token arrays and that file's path, so
it stays small whatever the corpus and travels to every trial through Ray's object store.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from kinfuse_ray.config import DataConfig, EvalConfig
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.files import atomic_path, write_text_atomic
from kinfuse_ray.knowledge import (
    Relation,
    Triple,
    first_facts,
    load_templates,
    load_triples,
    make_probes,
    object_pools,
    render,
)

EOS = "<|endoftext|>"
VAL_FRACTION = 0.05


@dataclass(frozen=True)
class TokenizedProbes:
    """Multiple-choice probes as token ids: the prompt (EOS-prefixed) and each option."""

    prompts: list[np.ndarray]
    options: list[list[np.ndarray]]
    answers: np.ndarray

    def sample(self, n_facts: int, k: int | None, seed: int) -> TokenizedProbes:
        """The probes of the first `n_facts` facts, or a seeded sample of `k` of them."""
        keep = np.arange(min(n_facts, len(self.prompts)))
        if k and k < len(keep):
            keep = np.sort(np.random.default_rng(seed).choice(keep, k, replace=False))
        return self.take(keep)

    def take(self, indices: np.ndarray) -> TokenizedProbes:
        """The probes at `indices`, in that order (repeats allowed)."""
        return TokenizedProbes(
            [self.prompts[i] for i in indices],
            [self.options[i] for i in indices],
            self.answers[indices],
        )


@dataclass(frozen=True)
class DataBundle:
    tokenizer_digest: str  # sha256 of the tokenizer's JSON: what the token ids mean
    vocab_size: int
    seq_len: int
    eos_id: int
    tokens_path: str  # the general corpus's token ids (.npy, or flat int32), memory-mapped
    corpus_digest: str  # sha256 of those token ids' files (`content_digest`)
    n_val: int  # its last n_val tokens are the held-out split
    general_facts: list[list[np.ndarray]]  # [fact][template] -> ids ending in EOS
    domain_facts: list[list[np.ndarray]]
    retention: TokenizedProbes  # probes of the general facts
    acquisition: TokenizedProbes  # probes of the domain facts

    @property
    def corpus(self) -> np.ndarray:
        """Training split of the general corpus (memory-mapped: shared, not copied)."""
        return map_tokens(self.tokens_path)[: -self.n_val]

    @property
    def val(self) -> np.ndarray:
        return map_tokens(self.tokens_path)[-self.n_val :]

    @property
    def mean_fact_tokens(self) -> float:
        return float(np.mean([len(r) for fact in self.domain_facts for r in fact]))

    def for_load(
        self, n_general: int | None, n_domain: int | None, evals: EvalConfig, seed: int
    ) -> DataBundle:
        """The first `n_general` general and `n_domain` domain facts (None: all) with the probes
        the evaluation uses: every probe, or the seeded samples `evals` asks for."""
        # (The general facts are the same on every rung, so slicing never cuts a document.)
        n_general = n_general or len(self.retention.prompts)
        n_domain = n_domain or len(self.domain_facts)
        return dataclasses.replace(
            self,
            general_facts=self.general_facts[:n_general],
            domain_facts=self.domain_facts[:n_domain],
            retention=self.retention.sample(n_general, evals.retention_probes, seed),
            acquisition=self.acquisition.sample(n_domain, evals.acquisition_probes, seed + 1),
        )


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


def _tokenize_facts(
    tokenizer: Tokenizer, triples: list[Triple], relations: dict[str, Relation], eos: int
) -> list[list[np.ndarray]]:
    out = []
    for triple in triples:
        relation = relations[triple.relation]
        texts = [render(triple, relation, t) for t in range(len(relation.templates))]
        out.append([np.append(ids, eos).astype(np.int32) for ids in encode(tokenizer, texts)])
    return out


def _tokenize_documents(
    tokenizer: Tokenizer, triples: list[Triple], relations: dict[str, Relation], eos: int
) -> list[list[np.ndarray]]:
    """One document per subject (in the order subjects first appear): its facts' sentences in
    one paragraph. Rendering t of a document takes paraphrase t of each of its facts (cycling),
    so the stream varies the wording from epoch to epoch as it does for single facts."""
    by_subject: dict[str, list[Triple]] = {}
    for triple in triples:
        by_subject.setdefault(triple.subject, []).append(triple)
    out = []
    for facts in by_subject.values():
        n = max(len(relations[f.relation].templates) for f in facts)
        texts = [
            " ".join(
                render(f, relations[f.relation], t % len(relations[f.relation].templates))
                for f in facts
            )
            for t in range(n)
        ]
        out.append([np.append(ids, eos).astype(np.int32) for ids in encode(tokenizer, texts)])
    return out


def _tokenize_probes(tokenizer: Tokenizer, probes: list, eos: int) -> TokenizedProbes:
    prompts = [
        np.append(eos, ids).astype(np.int32)
        for ids in encode(tokenizer, [p.prompt for p in probes])
    ]
    options = [encode(tokenizer, [" " + o for o in p.options]) for p in probes]
    return TokenizedProbes(prompts, options, np.array([p.answer for p in probes]))


def paragraphs(data: DataConfig) -> Iterator[str]:
    """The corpus's documents as the token stream has them: each followed by a blank line."""
    return (doc + "\n\n" for doc in corpus_documents(data.corpus, data.max_documents))


def corpus_tokenizer(
    data: DataConfig, facts: list[Triple], relations: dict[str, Relation]
) -> tuple[Tokenizer, str, str]:
    """(tokenizer, its end-of-text token, the corpus's cache key): the sweep's tokenizer, or a
    byte-level BPE trained on the corpus and every rendering of `facts` (cached)."""
    corpus_key = corpus_fingerprint(data.corpus, data.max_documents)
    if data.tokenizer:
        return (*load_tokenizer(data.tokenizer), corpus_key)
    sentences = [
        render(t, relations[t.relation], i)
        for t in facts
        for i in range(len(relations[t.relation].templates))
    ]
    sentences_key = hashlib.sha256("\n".join(sentences).encode()).hexdigest()
    tokenizer = train_tokenizer(
        itertools.chain(paragraphs(data), sentences),
        data.vocab_size,
        cache_key=corpus_key + sentences_key,
    )
    return tokenizer, EOS, corpus_key


def build_bundle(
    data: DataConfig,
    evals: EvalConfig,
    seed: int,
    load: tuple[int | None, int | None] | None = None,
) -> DataBundle:
    """Tokenize the corpus and the first `load` = (general, domain) facts (default: the counts in
    `data`), with a probe for every fact; `DataBundle.for_load` picks a rung's share."""
    n_general, n_domain = load or (data.n_general_facts, data.n_domain_facts)
    relations = load_templates(data.templates)
    # The tokenizer learns every fact of both files, so it does not change with the counts a
    # sweep (or a rung) takes from them.
    all_general = load_triples(data.general_facts, relations)
    all_domain = load_triples(data.domain_facts, relations)
    general = first_facts(all_general, n_general, data.general_facts)
    domain = first_facts(all_domain, n_domain, data.domain_facts)
    overlap = {(t.subject, t.relation) for t in general} & {(t.subject, t.relation) for t in domain}
    if overlap:
        subject, relation = sorted(overlap)[0]
        raise KinfuseError(
            f"{data.domain_facts}: ({subject}, {relation}) also appears in {data.general_facts}"
        )
    tokenizer, eos_token, corpus_key = corpus_tokenizer(data, all_general + all_domain, relations)
    eos = tokenizer.token_to_id(eos_token)
    if data.corpus.suffix == ".npy":
        tokens = pretokenized(data.corpus, tokenizer)
    elif is_complete_shards(shards := token_shards_dir(tokenizer, corpus_key)):
        tokens = shards  # made by `kinfuse tokenize` (Ray Data), read as one corpus
    else:
        tokens = tokenize_to_file(tokenizer, paragraphs(data), corpus_key)
    n_tokens = len(map_tokens(tokens))
    n_val = max(int(n_tokens * VAL_FRACTION), data.seq_len * evals.val_sequences)
    if n_val * 2 > n_tokens:
        raise KinfuseError(f"{data.corpus}: corpus too small ({n_tokens} tokens)")

    pools_general, pools_domain = object_pools(general), object_pools(domain)
    retention = make_probes(
        general,
        relations,
        pools_general,
        evals.n_choices,
        seed,
        data.general_facts,
        evals.distractors,
    )
    acquisition = make_probes(
        domain, relations, pools_domain, evals.n_choices, seed + 1, data.domain_facts,
        evals.distractors,
    )  # fmt: skip
    return DataBundle(
        tokenizer_digest=hashlib.sha256(tokenizer.to_str().encode()).hexdigest(),
        vocab_size=max(data.vocab_size, tokenizer.get_vocab_size()),
        seq_len=data.seq_len,
        eos_id=eos,
        tokens_path=str(tokens),
        corpus_digest=content_digest(tokens),
        n_val=n_val,
        general_facts=(
            _tokenize_documents(tokenizer, general, relations, eos)
            if data.general_layout == "documents"
            else _tokenize_facts(tokenizer, general, relations, eos)
        ),
        domain_facts=_tokenize_facts(tokenizer, domain, relations, eos),
        retention=_tokenize_probes(tokenizer, retention, eos),
        acquisition=_tokenize_probes(tokenizer, acquisition, eos),
    )
