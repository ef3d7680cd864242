"""Turn the sweep's data sources into token arrays once, in the driver.

The result, a `DataBundle`, is small (a few MB of int32) and travels to every trial through
Ray's object store; trials only mix and batch it.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from kinfuse_ray.config import DataConfig, EvalConfig
from kinfuse_ray.errors import KinfuseError
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
        return TokenizedProbes(
            [self.prompts[i] for i in keep], [self.options[i] for i in keep], self.answers[keep]
        )


@dataclass(frozen=True)
class DataBundle:
    tokenizer_json: str
    vocab_size: int
    seq_len: int
    eos_id: int
    tokens_path: str  # the general corpus's token ids, int32, memory-mapped by each reader
    n_val: int  # its last n_val tokens are the held-out split
    general_facts: list[list[np.ndarray]]  # [fact][template] -> ids ending in EOS
    domain_facts: list[list[np.ndarray]]
    retention: TokenizedProbes  # probes of the general facts
    acquisition: TokenizedProbes  # probes of the domain facts

    @property
    def corpus(self) -> np.ndarray:
        """Training split of the general corpus (memory-mapped: shared, not copied)."""
        return np.memmap(self.tokens_path, dtype=np.int32, mode="r")[: -self.n_val]

    @property
    def val(self) -> np.ndarray:
        return np.memmap(self.tokens_path, dtype=np.int32, mode="r")[-self.n_val :]

    @property
    def mean_fact_tokens(self) -> float:
        return float(np.mean([len(r) for fact in self.domain_facts for r in fact]))

    def for_load(
        self, n_general: int | None, n_domain: int | None, evals: EvalConfig, seed: int
    ) -> DataBundle:
        """The first `n_general` general and `n_domain` domain facts (None: all) with the probes
        the evaluation uses: every probe, or the seeded samples `evals` asks for."""
        n_general = n_general or len(self.general_facts)
        n_domain = n_domain or len(self.domain_facts)
        return dataclasses.replace(
            self,
            general_facts=self.general_facts[:n_general],
            domain_facts=self.domain_facts[:n_domain],
            retention=self.retention.sample(n_general, evals.retention_probes, seed),
            acquisition=self.acquisition.sample(n_domain, evals.acquisition_probes, seed + 1),
        )


def read_corpus(path: Path, max_documents: int = 100_000) -> list[str]:
    """The general corpus as documents: a text file (optionally .gz) split at blank lines; JSON
    Lines or Parquet with a `text` field; a folder holding a Hugging Face dataset saved with
    `save_to_disk` (its `text` column); or `hf:NAME[:CONFIG]`, a Hugging Face dataset streamed by
    name (or from a local folder of data files), of which the first `max_documents` are read."""
    path = Path(path)
    name = path.name.lower()
    if str(path).startswith("hf:"):
        docs = _hf_stream_texts(str(path).removeprefix("hf:"), max_documents)
    elif path.is_dir():
        docs = _hf_dataset_texts(path)
    elif name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            docs = pq.read_table(path, columns=["text"]).column("text").to_pylist()
        except (OSError, KeyError, ValueError) as exc:
            raise KinfuseError(f"{path}: cannot read a 'text' column ({exc})") from None
    else:
        try:
            raw = path.read_bytes()
            if name.endswith(".gz"):
                raw = gzip.decompress(raw)
        except OSError as exc:
            reason = exc.strerror or f"corrupt gzip: {exc}"
            raise KinfuseError(f"{path}: cannot read corpus ({reason})") from None
        except EOFError as exc:
            raise KinfuseError(f"{path}: cannot read corpus (corrupt gzip: {exc})") from None
        text = raw.decode("utf-8", errors="replace")
        if name.removesuffix(".gz").endswith(".jsonl"):
            docs = _jsonl_texts(path, text)
        else:
            docs = text.split("\n\n")
    docs = [d for d in docs if d and d.strip()]
    if not docs:
        raise KinfuseError(f"{path}: corpus is empty")
    return docs


def _jsonl_texts(path: Path, text: str) -> list[str]:
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            docs.append(str(json.loads(line)["text"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise KinfuseError(
                f"{path}: line {lineno}: expected a JSON object with a 'text' field"
            ) from None
    return docs


def _hf_stream_texts(spec: str, max_documents: int) -> list[str]:
    import datasets

    name, _, config = spec.partition(":")
    try:
        stream = datasets.load_dataset(name, config or None, split="train", streaming=True)
        docs = [row["text"] for row, _ in zip(stream, range(max_documents), strict=False)]
    except KeyError:
        raise KinfuseError(f"hf:{spec}: the dataset has no 'text' column") from None
    except Exception as exc:  # noqa: BLE001 - hub, network and format errors alike
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise KinfuseError(f"hf:{spec}: cannot stream the dataset ({reason})") from None
    return docs


def _hf_dataset_texts(path: Path) -> list[str]:
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise KinfuseError(f"{path}: not a dataset saved with save_to_disk ({exc})") from None
    if isinstance(dataset, datasets.DatasetDict):
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    if "text" not in dataset.column_names:
        raise KinfuseError(f"{path}: the dataset has no 'text' column ({dataset.column_names})")
    return dataset["text"]


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


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE trained on the project's own text, cached by content and vocab size."""
    digest = hashlib.sha256(str(vocab_size).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    cached = _cache_dir("tokenizers") / f"bpe-{vocab_size}-{digest.hexdigest()[:16]}.json"
    if cached.exists():
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
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    tokenizer.save(str(tmp))
    tmp.replace(cached)  # atomic: concurrent sweeps never read a half-written file
    return tokenizer


def tokenize_to_file(tokenizer: Tokenizer, documents: list[str], batch: int = 1024) -> Path:
    """The documents' token ids as a flat int32 file, written batch by batch (memory does not
    grow with the corpus) and cached by tokenizer and content; trials memory-map it."""
    digest = hashlib.sha256(tokenizer.to_str().encode())
    for doc in documents:
        digest.update(hashlib.sha256(doc.encode()).digest())
    path = _cache_dir("tokens") / f"{digest.hexdigest()[:24]}.int32"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        for start in range(0, len(documents), batch):
            np.concatenate(_encode(tokenizer, documents[start : start + batch])).tofile(f)
    tmp.replace(path)  # atomic: a reader never maps a half-written file
    return path


def _encode(tokenizer: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    return [np.asarray(e.ids, dtype=np.int32) for e in tokenizer.encode_batch(texts)]


def _tokenize_facts(
    tokenizer: Tokenizer, triples: list[Triple], relations: dict[str, Relation], eos: int
) -> list[list[np.ndarray]]:
    out = []
    for triple in triples:
        relation = relations[triple.relation]
        texts = [render(triple, relation, t) for t in range(len(relation.templates))]
        out.append([np.append(ids, eos).astype(np.int32) for ids in _encode(tokenizer, texts)])
    return out


def _tokenize_probes(tokenizer: Tokenizer, probes: list, eos: int) -> TokenizedProbes:
    prompts = [
        np.append(eos, ids).astype(np.int32)
        for ids in _encode(tokenizer, [p.prompt for p in probes])
    ]
    options = [_encode(tokenizer, [" " + o for o in p.options]) for p in probes]
    return TokenizedProbes(prompts, options, np.array([p.answer for p in probes]))


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
    documents = read_corpus(data.corpus, data.max_documents)

    all_sentences = [
        render(t, relations[t.relation], i)
        for t in all_general + all_domain
        for i in range(len(relations[t.relation].templates))
    ]
    paragraphs = [doc + "\n\n" for doc in documents]
    if data.tokenizer:
        tokenizer, eos_token = load_tokenizer(data.tokenizer)
    else:
        tokenizer, eos_token = train_tokenizer(paragraphs + all_sentences, data.vocab_size), EOS
    eos = tokenizer.token_to_id(eos_token)
    tokens = tokenize_to_file(tokenizer, paragraphs)
    n_tokens = tokens.stat().st_size // 4
    n_val = max(int(n_tokens * VAL_FRACTION), data.seq_len * evals.val_sequences)
    if n_val * 2 > n_tokens:
        raise KinfuseError(f"{data.corpus}: corpus too small ({n_tokens} tokens)")

    pools_general, pools_domain = object_pools(general), object_pools(domain)
    retention = make_probes(
        general, relations, pools_general, evals.n_choices, seed, data.general_facts
    )
    acquisition = make_probes(
        domain, relations, pools_domain, evals.n_choices, seed + 1, data.domain_facts
    )
    return DataBundle(
        tokenizer_json=tokenizer.to_str(),
        vocab_size=max(data.vocab_size, tokenizer.get_vocab_size()),
        seq_len=data.seq_len,
        eos_id=eos,
        tokens_path=str(tokens),
        n_val=n_val,
        general_facts=_tokenize_facts(tokenizer, general, relations, eos),
        domain_facts=_tokenize_facts(tokenizer, domain, relations, eos),
        retention=_tokenize_probes(tokenizer, retention, eos),
        acquisition=_tokenize_probes(tokenizer, acquisition, eos),
    )
