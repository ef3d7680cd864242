"""Turn the sweep's data sources into token arrays once, in the driver.

The corpus streams, document by document, into a flat token file in a cache every node sees;
the result, a `DataBundle`, holds the facts and probes as token arrays and that file's path, so
it stays small whatever the corpus and travels to every trial through Ray's object store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from kinfuse_ray.config import DataConfig, EvalConfig
from kinfuse_ray.corpus import corpus_fingerprint, paragraphs
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
from kinfuse_ray.tokens import (
    EOS,
    content_digest,
    encode,
    is_complete_shards,
    load_tokenizer,
    map_tokens,
    pretokenized,
    token_shards_dir,
    tokenize_to_file,
    train_tokenizer,
)

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
