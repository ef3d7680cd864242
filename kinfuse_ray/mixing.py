"""The training stream at infusion ratio r: exact, reproducible, and read by index.

Mixing is per sequence: of the trial's n training sequences, round(r * n) hold domain-knowledge
text and the rest general text, spread at random but evenly (every block of `BLOCK` sequences
holds its exact share). The domain share of tokens therefore equals r up to one sequence.

- Domain text: the domain facts back to back, epoch after epoch, in a fresh order each epoch,
  each fact cycling through its paraphrases.
- General text: runs of the corpus alternating with short paragraphs of general facts (drawn
  the same way), the facts holding `fact_share` of its tokens on average, so general knowledge
  keeps being rehearsed at rate (1 - r) * fact_share.

Every piece is drawn from (seed, its own index) alone, so any batch can be built without the
ones before it: memory is O(facts + batch) whatever the token budget, a resumed run reads on
from its step, and data-parallel ranks each read only their rows.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

import numpy as np

FACTS_PER_PARAGRAPH = 4  # general facts appear as short paragraphs between runs of corpus text
BLOCK = 4096  # sequences per block of the domain/general layout
CHUNK = 1 << 20  # tokens each text stream materialises at a time


def _last_starting_by(start: Callable[[int], int], offset: int) -> int:
    """The last piece i with start(i) <= offset, for increasing starts from start(0) = 0:
    galloping then binary search, so a piece far into an endless stream costs O(log i) calls."""
    low, high = 0, 1
    while start(high) <= offset:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if start(mid) <= offset else (low, mid)
    return low


class FactStream:
    """An endless stream of fact renderings, epoch after epoch. Epoch e holds every fact once, in
    an order drawn from (seed, e); each fact cycles through its paraphrases from a random first
    one. Epoch lengths are therefore known in closed form, so any token or sentence is found
    without drawing the epochs before it, whatever the budget."""

    def __init__(self, facts: list[list[np.ndarray]], seed: list[int]):
        self.facts, self.seed = facts, seed
        self.n = len(facts)
        self.n_templates = np.array([len(f) for f in facts], dtype=np.int64)
        self.first = (np.random.default_rng([*seed, 0]).random(self.n) * self.n_templates).astype(
            np.int64
        )
        self.lengths = np.zeros((self.n, max(self.n_templates, default=1)), dtype=np.int64)
        for i, fact in enumerate(facts):
            self.lengths[i, : len(fact)] = [len(r) for r in fact]
        # Every rendering back to back, and where each starts: text is gathered, not joined.
        self.flat = np.concatenate([r for fact in facts for r in fact] or [np.zeros(0, np.int32)])
        flat_lengths = self.lengths.ravel()  # fact-major, as `flat` is; padding adds nothing
        self.offsets = (np.cumsum(flat_lengths) - flat_lengths).reshape(self.lengths.shape)
        # Facts with t paraphrases add a length that repeats every t epochs: per t, its cycle.
        self.cycles = {}
        for t in np.unique(self.n_templates):
            facts_t = np.flatnonzero(self.n_templates == t)
            self.cycles[int(t)] = np.array(
                [self.lengths[facts_t, (e + self.first[facts_t]) % t].sum() for e in range(t)]
            )
        self._cached: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None

    def _draw(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Order, paraphrases and cumulative ends (in tokens) of the renderings of `epoch`."""
        if self._cached is None or self._cached[0] != epoch:
            order = np.random.default_rng([*self.seed, 1, epoch]).permutation(self.n)
            choice = (epoch + self.first[order]) % self.n_templates[order]
            self._cached = (epoch, order, choice, np.cumsum(self.lengths[order, choice]))
        return self._cached[1:]

    def epoch_start(self, epoch: int) -> int:
        """Token offset of `epoch`: the lengths of the epochs before it, in closed form."""
        return sum(
            epoch // t * int(cycle.sum()) + int(cycle[: epoch % t].sum())
            for t, cycle in self.cycles.items()
        )

    def epoch_at(self, offset: int) -> int:
        """The epoch holding token `offset`."""
        return _last_starting_by(self.epoch_start, offset)

    def sentence_start(self, k: int) -> int:
        """Token offset of the k-th rendering."""
        epoch, i = divmod(k, self.n)
        return self.epoch_start(epoch) + (int(self._draw(epoch)[2][i - 1]) if i else 0)

    def sentences(self, k: int, count: int) -> list[np.ndarray]:
        """Renderings k..k+count-1."""
        out = []
        while len(out) < count:
            epoch, i = divmod(k + len(out), self.n)
            order, choice, _ = self._draw(epoch)
            stop = min(self.n, i + count - len(out))
            out += [self.facts[order[j]][choice[j]] for j in range(i, stop)]
        return out

    def complete_before(self, offset: int) -> int:
        """How many renderings end at or before token `offset`."""
        epoch = self.epoch_at(offset)
        within = offset - self.epoch_start(epoch)
        return epoch * self.n + int(np.searchsorted(self._draw(epoch)[2], within, "right"))

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Tokens start..stop-1, gathered epoch by epoch in a few vectorised steps."""
        pieces, epoch = [], self.epoch_at(start)
        while start < stop:
            order, choice, ends = self._draw(epoch)
            base = self.epoch_start(epoch)
            first = int(np.searchsorted(ends, start - base, "right"))
            last = min(self.n, int(np.searchsorted(ends, stop - base, "left")) + 1)
            lengths = self.lengths[order[first:last], choice[first:last]]
            starts = self.offsets[order[first:last], choice[first:last]]
            # Token j of the run comes from flat[start of its rendering + its place in it].
            within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            text = self.flat[np.repeat(starts, lengths) + within]
            skip = start - base - (int(ends[first - 1]) if first else 0)
            pieces.append(text[skip : skip + stop - start])
            start += len(pieces[-1])
            epoch += 1
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int32)


class Stream:
    """The n_sequences x seq_len training stream of one trial at domain share `ratio`."""

    def __init__(
        self,
        corpus: np.ndarray,
        general_facts: list[list[np.ndarray]],
        domain_facts: list[list[np.ndarray]],
        *,
        ratio: float,
        n_sequences: int,
        seq_len: int,
        fact_share: float,
        seed: int,
    ):
        if not 0.0 <= ratio < 1.0:
            raise ValueError(f"ratio must lie in [0, 1), got {ratio}")
        self.ratio, self.n_sequences, self.seq_len, self.seed = ratio, n_sequences, seq_len, seed
        self.corpus = corpus
        self.domain = FactStream(domain_facts, [seed, 1])
        self.general = FactStream(general_facts, [seed, 2])
        self.corpus_start = int(np.random.default_rng([seed, 3]).integers(len(corpus)))
        # Corpus tokens per paragraph of general facts, so that facts hold `fact_share` of the
        # general text on average.
        mean_fact = self.general.lengths.sum() / max(1, self.general.n_templates.sum())
        self.run_length = FACTS_PER_PARAGRAPH * mean_fact * (1 - fact_share) / fact_share
        self._chunks: dict[str, tuple[int, np.ndarray]] = {}
        self._block: tuple[int, np.ndarray] | None = None

    # Layout: which sequences are domain text, and each one's place in its own text stream.
    def _domain_before(self, index: int) -> int:
        """Domain sequences among the first `index` (exact at every block boundary)."""
        return int(round(self.ratio * min(index, self.n_sequences)))

    def _layout(self, block: int) -> np.ndarray:
        """Cumulative domain count at each sequence of `block`, starting from the block's first."""
        if self._block is None or self._block[0] != block:
            start = block * BLOCK
            size = min(BLOCK, self.n_sequences - start)
            count = self._domain_before(start + size) - self._domain_before(start)
            is_domain = np.zeros(size, dtype=bool)
            rng = np.random.default_rng([self.seed, 4, block])
            is_domain[rng.choice(size, count, replace=False)] = True
            self._block = (block, np.concatenate([[0], np.cumsum(is_domain)]))
        return self._block[1]

    def _places(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """For sequences start..stop-1: domain or not, and the index within that text stream."""
        flags, domain_ranks = [], []
        for block in range(start // BLOCK, -(-stop // BLOCK)):
            offset = block * BLOCK
            lo, hi = max(start, offset) - offset, min(stop, offset + BLOCK) - offset
            counts = self._layout(block)
            flags.append(np.diff(counts)[lo:hi].astype(bool))
            domain_ranks.append(self._domain_before(offset) + counts[lo:hi])
        is_domain, ranks = np.concatenate(flags), np.concatenate(domain_ranks)
        return is_domain, np.where(is_domain, ranks, np.arange(start, stop) - ranks)

    def is_domain(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self._places(start, self.n_sequences if stop is None else stop)[0]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Sequences start..stop-1 as a (stop - start, seq_len) int32 array."""
        if not 0 <= start <= stop <= self.n_sequences:
            raise IndexError(f"rows {start}:{stop} outside the stream's {self.n_sequences}")
        out = np.empty((stop - start, self.seq_len), dtype=np.int32)
        if stop == start:
            return out
        is_domain, places = self._places(start, stop)
        for kind, mask in (("domain", is_domain), ("general", ~is_domain)):
            if mask.any():  # each kind's rows are consecutive in its own stream
                first, last = places[mask][0], places[mask][-1] + 1
                text = self._text(kind, first * self.seq_len, last * self.seq_len)
                out[mask] = text.reshape(-1, self.seq_len)
        return out

    def _text(self, kind: str, start: int, stop: int) -> np.ndarray:
        """Tokens start..stop-1 of the domain or general text, through a cached chunk."""
        chunk_start, chunk = self._chunks.get(kind, (0, np.zeros(0, np.int32)))
        if not chunk_start <= start <= stop <= chunk_start + len(chunk):
            read, n_rows = (
                (self.domain.tokens, self.n_domain)
                if kind == "domain"
                else (self._general_tokens, self.n_sequences - self.n_domain)
            )
            end = min(start + CHUNK, n_rows * self.seq_len)
            chunk_start, chunk = start, read(start, max(stop, end))
            self._chunks[kind] = (chunk_start, chunk)
        return chunk[start - chunk_start : stop - chunk_start]

    # General text: unit u is corpus run u, then renderings 4u..4u+3 of the general facts.
    def _run_bounds(self, unit: int) -> tuple[int, int]:
        return int(unit * self.run_length), int((unit + 1) * self.run_length)

    def _unit_start(self, unit: int) -> int:
        return self._run_bounds(unit)[0] + self.general.sentence_start(unit * FACTS_PER_PARAGRAPH)

    def _unit_at(self, offset: int) -> int:
        """The unit holding general-text token `offset`."""
        return _last_starting_by(self._unit_start, offset)

    def _general_tokens(self, start: int, stop: int) -> np.ndarray:
        if self.general.n == 0:
            return self._corpus_run(start, stop)
        unit = self._unit_at(start)
        skip = start - self._unit_start(unit)
        pieces, total = [], -skip
        while total < stop - start:
            pieces.append(self._corpus_run(*self._run_bounds(unit)))
            pieces += self.general.sentences(unit * FACTS_PER_PARAGRAPH, FACTS_PER_PARAGRAPH)
            total += sum(len(p) for p in pieces[-1 - FACTS_PER_PARAGRAPH :])
            unit += 1
        return np.concatenate(pieces)[skip : skip + stop - start]

    def _corpus_run(self, start: int, stop: int) -> np.ndarray:
        n, length = len(self.corpus), stop - start
        begin = (self.corpus_start + start) % n
        if begin + length <= n:
            return np.asarray(self.corpus[begin : begin + length], dtype=np.int32)
        # Past the end the corpus is read round again (slices only: it may be sharded).
        pieces, at = [], begin
        while length > 0:
            take = min(length, n - at)
            pieces.append(np.asarray(self.corpus[at : at + take], dtype=np.int32))
            length, at = length - take, 0
        return np.concatenate(pieces)

    # What the trial learns from: reported beside its metrics.
    @property
    def n_tokens(self) -> int:
        return self.n_sequences * self.seq_len

    @property
    def n_domain(self) -> int:
        return self._domain_before(self.n_sequences)

    @property
    def domain_share(self) -> float:
        return self.n_domain / self.n_sequences if self.n_sequences else 0.0

    @cached_property
    def domain_exposures(self) -> float:
        """Complete renderings per domain fact, on average."""
        if not self.n_domain:
            return 0.0
        return self.domain.complete_before(self.n_domain * self.seq_len) / self.domain.n

    @cached_property
    def general_exposures(self) -> float:
        """Complete renderings per general fact in the general text, on average."""
        end = (self.n_sequences - self.n_domain) * self.seq_len
        if self.general.n == 0 or end == 0:
            return 0.0
        unit = self._unit_at(end)
        run_start, run_stop = self._run_bounds(unit)
        facts_start = self._unit_start(unit) + run_stop - run_start  # past the unit's corpus run
        first = unit * FACTS_PER_PARAGRAPH
        kept = self.general.complete_before(self.general.sentence_start(first) + end - facts_start)
        return max(first, kept) / self.general.n
