"""Knowledge bases: (subject, relation, object) triples, their paraphrase templates, and the
multiple-choice probes that measure whether a model knows them.

File formats (checked record by record, errors name the file and line or row):
- triples (Wikidata-style): JSON Lines, one {"subject": ..., "relation": ..., "object": ...} per
  line; CSV with a subject,relation,object header; or Parquet with those columns;
- templates: JSON {"relations": {name: {"templates": [...], "question": "..."}}}, every training
  template holding {subject} and {object}, every question holding {subject} and ending where the
  object would follow (probes score the object as the question's continuation).
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinfuse_ray.errors import KinfuseError


@dataclass(frozen=True)
class Triple:
    subject: str
    relation: str
    object: str


@dataclass(frozen=True)
class Relation:
    name: str
    templates: tuple[str, ...]
    question: str


@dataclass(frozen=True)
class Probe:
    """A multiple-choice question: `prompt` continued by each option; `answer` indexes the truth."""

    prompt: str
    options: tuple[str, ...]
    answer: int


def load_templates(path: Path) -> dict[str, Relation]:
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise KinfuseError(f"{path}: cannot read templates file ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise KinfuseError(f"{path}: line {exc.lineno}: malformed JSON: {exc.msg}") from None
    relations = raw.get("relations") if isinstance(raw, dict) else None
    if not isinstance(relations, dict) or not relations:
        raise KinfuseError(f"{path}: expected a non-empty 'relations' mapping")
    out = {}
    for name, spec in relations.items():
        where = f"{path}: relation '{name}'"
        templates = spec.get("templates") if isinstance(spec, dict) else None
        question = spec.get("question") if isinstance(spec, dict) else None
        if not isinstance(templates, list) or not templates or not isinstance(question, str):
            raise KinfuseError(f"{where}: needs a non-empty 'templates' list and a 'question'")
        for template in templates:
            if "{subject}" not in template or "{object}" not in template:
                raise KinfuseError(
                    f"{where}: template {template!r} lacks {{subject}} or {{object}}"
                )
        if "{subject}" not in question or "{object}" in question:
            raise KinfuseError(f"{where}: question {question!r} must hold {{subject}} only")
        out[name] = Relation(name, tuple(templates), question)
    return out


def _rows(path: Path) -> Iterator[tuple[str, object]]:
    """(where, row) for each record of a triples file: JSON Lines (line numbers), CSV with a
    header (line numbers) or Parquet (row numbers)."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise KinfuseError(f"{path}: cannot read Parquet ({exc})") from None
        for i, row in enumerate(table.to_pylist(), start=1):
            yield f"row {i}", row
        return
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise KinfuseError(f"{path}: cannot read knowledge file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise KinfuseError(f"{path}: not UTF-8 text") from None
    if name.endswith(".csv"):
        reader = csv.DictReader(lines)
        for row in reader:
            yield f"line {reader.line_num}", row
        return
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield f"line {lineno}", json.loads(line)
        except json.JSONDecodeError:
            yield f"line {lineno}", None


def load_triples(path: Path, relations: dict[str, Relation]) -> list[Triple]:
    """Read a triples file (JSON Lines, CSV or Parquet with subject, relation and object); reject
    malformed records, unknown relations, duplicates and contradictions, naming the line."""
    path = Path(path)
    triples: list[Triple] = []
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for where, row in _rows(path):
        try:
            values = [row[k] for k in ("subject", "relation", "object")]
        except (KeyError, TypeError):
            raise KinfuseError(
                f"{path}: {where}: expected a record with subject, relation and object"
            ) from None
        if any(v is None or not str(v).strip() for v in values):
            raise KinfuseError(f"{path}: {where}: empty subject, relation or object")
        triple = Triple(*(str(v).strip() for v in values))
        if triple.relation not in relations:
            raise KinfuseError(f"{path}: {where}: unknown relation '{triple.relation}'")
        key = (triple.subject, triple.relation)
        if key in seen:
            earlier_object, earlier = seen[key]
            kind = "duplicate" if earlier_object == triple.object else "contradicts"
            raise KinfuseError(f"{path}: {where}: {kind} {earlier} ({key[0]}, {key[1]})")
        seen[key] = (triple.object, where)
        triples.append(triple)
    if not triples:
        raise KinfuseError(f"{path}: no triples")
    return triples


def first_facts(triples: list[Triple], n: int | None, path: Path) -> list[Triple]:
    """The first `n` triples of a file (None: all of them)."""
    if n and n > len(triples):
        raise KinfuseError(f"{path}: the sweep asks for {n} facts, the file has {len(triples)}")
    return triples[:n]


def object_pools(triples: list[Triple]) -> dict[str, Counter]:
    """The objects each relation takes, with how many facts have each: the type-consistent
    distractors of its probes."""
    pools: dict[str, Counter] = defaultdict(Counter)
    for triple in triples:
        pools[triple.relation][triple.object] += 1
    return dict(pools)


def most_frequent_guesser(probes: list[Probe], pools: dict[str, Counter], relation_of) -> float:
    """Accuracy of answering every probe with its most frequent option (frequency among the
    relation's facts): near 1 / n_choices when object frequency gives nothing away."""
    right = 0
    for probe in probes:
        counts = pools[relation_of(probe)]
        guess = max(range(len(probe.options)), key=lambda i: counts[probe.options[i]])
        right += guess == probe.answer
    return right / len(probes)


def render(triple: Triple, relation: Relation, template: int) -> str:
    return relation.templates[template].format(subject=triple.subject, object=triple.object)


def make_probes(
    triples: list[Triple],
    relations: dict[str, Relation],
    pools: dict[str, Counter],
    n_choices: int,
    seed: int,
    source: Path | str = "knowledge",
    distractors: str = "uniform",
) -> list[Probe]:
    """One probe per triple: the true object and `n_choices - 1` distractors of the same
    relation, drawn uniformly, or (`distractors="frequency"`) as often as each object is an
    answer, so that a frequent object is no better a guess than a rare one."""
    rng = np.random.default_rng(seed)
    probes = []
    for triple in triples:
        counts = pools[triple.relation]
        others = [o for o in sorted(counts) if o != triple.object]
        if len(others) < n_choices - 1:
            raise KinfuseError(
                f"{source}: relation '{triple.relation}' has {len(others) + 1} objects, "
                f"fewer than the {n_choices} choices a probe needs"
            )
        weights = None
        if distractors == "frequency":
            weights = np.array([counts[o] for o in others], dtype=float)
            weights /= weights.sum()
        chosen = rng.choice(others, size=n_choices - 1, replace=False, p=weights)
        options = [triple.object, *chosen]
        order = rng.permutation(n_choices)
        prompt = relations[triple.relation].question.format(subject=triple.subject)
        probes.append(
            Probe(prompt, tuple(str(options[i]) for i in order), int(np.argmax(order == 0)))
        )
    return probes
