"""Build the training stream at infusion ratio r, exactly and reproducibly.

Mixing is per sequence: of the ceil(D / seq_len) training sequences, round(r * n) are drawn from
domain-knowledge text and the rest from the general stream, in a seeded random order. The domain
share of tokens therefore equals r up to one sequence. The general stream is the corpus with the
general facts woven in (in short paragraphs) at `fact_share` of its tokens, so general knowledge
keeps being rehearsed at rate (1 - r) * fact_share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FACTS_PER_PARAGRAPH = 4  # general facts appear as short paragraphs between runs of corpus text


@dataclass(frozen=True)
class Stream:
    sequences: np.ndarray  # (n_sequences, seq_len) int32
    is_domain: np.ndarray  # (n_sequences,) bool
    domain_exposures: float  # complete renderings per domain fact, on average
    general_exposures: float  # complete renderings per general fact, on average

    @property
    def n_tokens(self) -> int:
        return self.sequences.size

    @property
    def domain_share(self) -> float:
        return float(self.is_domain.mean()) if len(self.is_domain) else 0.0


def _fact_sentences(facts: list[list[np.ndarray]], n_tokens: int, rng: np.random.Generator):
    """Sentences cycling through the facts in shuffled epochs, each in a random paraphrase,
    until they hold at least `n_tokens` tokens."""
    sentences, total = [], 0
    while total < n_tokens:
        for fact in rng.permutation(len(facts)):
            renderings = facts[fact]
            sentences.append(renderings[rng.integers(len(renderings))])
            total += len(sentences[-1])
            if total >= n_tokens:
                break
    return sentences


def _cut(pieces: list[np.ndarray], is_fact: list[bool], n_tokens: int, n_facts: int):
    """Concatenate and cut at `n_tokens`; exposures = fact renderings wholly kept, per fact."""
    ends = np.cumsum([len(p) for p in pieces])
    kept = int(((ends <= n_tokens) & np.asarray(is_fact)).sum())
    return np.concatenate(pieces)[:n_tokens], kept / n_facts


def domain_tokens(facts: list[list[np.ndarray]], n_tokens: int, rng: np.random.Generator):
    if n_tokens == 0:
        return np.zeros(0, np.int32), 0.0
    sentences = _fact_sentences(facts, n_tokens, rng)
    return _cut(sentences, [True] * len(sentences), n_tokens, len(facts))


def general_tokens(
    corpus: np.ndarray,
    facts: list[list[np.ndarray]],
    n_tokens: int,
    fact_share: float,
    rng: np.random.Generator,
):
    """Corpus runs alternating with paragraphs of general facts; facts hold `fact_share` of tokens."""
    if n_tokens == 0:
        return np.zeros(0, np.int32), 0.0
    sentences = _fact_sentences(facts, int(round(n_tokens * fact_share)), rng)
    n_paragraphs = -(-len(sentences) // FACTS_PER_PARAGRAPH)
    n_corpus = max(n_tokens - sum(len(s) for s in sentences), n_paragraphs)
    start = int(rng.integers(len(corpus)))
    run = np.take(corpus, np.arange(start, start + n_corpus), mode="wrap")
    pieces, is_fact = [], []
    for p, corpus_piece in enumerate(np.array_split(run, n_paragraphs)):
        paragraph = sentences[p * FACTS_PER_PARAGRAPH : (p + 1) * FACTS_PER_PARAGRAPH]
        pieces += [corpus_piece, *paragraph]
        is_fact += [False] + [True] * len(paragraph)
    return _cut(pieces, is_fact, n_tokens, len(facts))


def build_stream(
    corpus: np.ndarray,
    general_facts: list[list[np.ndarray]],
    domain_facts: list[list[np.ndarray]],
    ratio: float,
    n_tokens: int,
    seq_len: int,
    fact_share: float,
    seed: int,
) -> Stream:
    """The training stream of at least `n_tokens` tokens at domain share `ratio`."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must lie in [0, 1), got {ratio}")
    order_rng, domain_rng, general_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    n_sequences = -(-n_tokens // seq_len)
    n_domain = int(round(ratio * n_sequences))
    is_domain = np.zeros(n_sequences, dtype=bool)
    is_domain[order_rng.choice(n_sequences, n_domain, replace=False)] = True

    domain, domain_exposures = domain_tokens(domain_facts, n_domain * seq_len, domain_rng)
    general, general_exposures = general_tokens(
        corpus, general_facts, (n_sequences - n_domain) * seq_len, fact_share, general_rng
    )
    sequences = np.empty((n_sequences, seq_len), dtype=np.int32)
    sequences[is_domain] = domain.reshape(n_domain, seq_len)
    sequences[~is_domain] = general.reshape(n_sequences - n_domain, seq_len)
    return Stream(sequences, is_domain, domain_exposures, general_exposures)
