"""Wikidata dumps in, the project's triples out (`kinfuse knowledge`).

Two dump formats, streamed line by line (a full dump is over 100 GB), plain, .gz or .bz2:
- the JSON entity dump: a JSON array with one entity per line (`[`, `{...},` ..., `]`);
- the truthy N-Triples dump: `<.../entity/Q42> <.../prop/direct/P19> <.../entity/Q350> .`, and
  label lines `<.../entity/Q42> <http://www.w3.org/2000/01/rdf-schema#label> "Douglas Adams"@en .`

Two passes: the first keeps the statements of the selected properties whose value is an item
(best rank first in the JSON dump; deprecated values never), the second reads the English labels
of the entities those statements name. A statement is kept when both ends have an English label
that no other entity of the result shares (an ambiguous name makes an ambiguous question), and
it is the first value of its (subject, property): a relation of the project holds one object
per subject. Everything dropped is counted by reason.
"""

from __future__ import annotations

import bz2
import gzip
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kinfuse_ray.errors import KinfuseError

ENTITY = "http://www.wikidata.org/entity/"
DIRECT = "http://www.wikidata.org/prop/direct/"
LABELS = {
    "http://www.w3.org/2000/01/rdf-schema#label",
    "http://schema.org/name",
    "http://www.w3.org/2004/02/skos/core#prefLabel",
}
NTRIPLE = re.compile(
    r'^<([^>]*)>\s+<([^>]*)>\s+(<[^>]*>|"(?:[^"\\]|\\.)*"(?:@[\w-]+|\^\^<[^>]*>)?)\s*\.\s*$'
)
RANKS = {"preferred": 0, "normal": 1}  # deprecated values are never facts


@dataclass(frozen=True)
class Statement:
    subject: str  # item id, e.g. Q42
    prop: str  # property id, e.g. P19
    object: str  # item id


@dataclass
class Extraction:
    triples: list[dict] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    lines: int = 0

    def report(self) -> str:
        reasons = ", ".join(f"{n:,} {why}" for why, n in self.dropped.most_common())
        return f"kept {len(self.triples):,} triples" + (f"; dropped {reasons}" if reasons else "")


def _open(path: Path) -> TextIO:
    name = path.name.lower()
    try:
        if name.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8")
        if name.endswith(".bz2"):
            return bz2.open(path, "rt", encoding="utf-8")
        return path.open(encoding="utf-8")
    except OSError as exc:
        raise KinfuseError(f"{path}: cannot read the dump ({exc.strerror or exc})") from None


def _lines(path: Path, progress: Callable[[int], None]) -> Iterator[tuple[int, str]]:
    try:
        with _open(path) as f:
            for lineno, line in enumerate(f, start=1):
                if lineno % 1_000_000 == 0:
                    progress(lineno)
                yield lineno, line
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise KinfuseError(f"{path}: cannot read the dump ({exc})") from None


def _dump_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz").removesuffix(".bz2")
    if name.endswith(".json"):
        return "json"
    if name.endswith(".nt"):
        return "ntriples"
    raise KinfuseError(f"{path}: not a Wikidata dump (.json or .nt, plain, .gz or .bz2)")


class _Reader:
    """One pass over a dump, turning lines into records; malformed lines raise (naming the line)
    or, with `skip_malformed`, are counted."""

    def __init__(self, path: Path, skip_malformed: bool, dropped: Counter, progress):
        self.path, self.skip, self.dropped, self.progress = path, skip_malformed, dropped, progress
        self.format = _dump_format(path)

    def malformed(self, lineno: int, why: str) -> None:
        if not self.skip:
            raise KinfuseError(
                f"{self.path}: line {lineno}: {why} (--skip-malformed counts such lines instead)"
            )
        self.dropped["malformed lines skipped"] += 1

    def entities(self) -> Iterator[dict]:
        for lineno, line in _lines(self.path, self.progress):
            text = line.strip().rstrip(",")
            if text in ("[", "]", ""):
                continue
            try:
                entity = json.loads(text)
            except json.JSONDecodeError as exc:
                self.malformed(lineno, f"malformed JSON: {exc.msg}")
                continue
            if not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
                self.malformed(lineno, "not an entity (no 'id')")
                continue
            yield entity

    def ntriples(self) -> Iterator[tuple[str, str, str]]:
        for lineno, line in _lines(self.path, self.progress):
            if not line.strip() or line.startswith("#"):
                continue
            match = NTRIPLE.match(line.strip())
            if match is None:
                self.malformed(lineno, "not an N-Triples statement")
                continue
            yield match.groups()


def _statements_json(entity: dict, properties: dict[str, str]) -> Iterator[tuple[Statement, str]]:
    """(statement, why-dropped or "") for each selected property's values, best rank first."""
    claims = entity.get("claims") or {}
    for prop in properties:
        values = []
        for claim in claims.get(prop) or []:
            snak = claim.get("mainsnak") or {}
            rank = claim.get("rank", "normal")
            if rank not in RANKS:
                continue
            value = (snak.get("datavalue") or {}).get("value")
            if not (isinstance(value, dict) and str(value.get("id", "")).startswith("Q")):
                values.append((2, None))  # no value, some value, or not an item
                continue
            values.append((RANKS[rank], value["id"]))
        for _, obj in sorted(values, key=lambda v: v[0]):
            if obj is None:
                yield Statement(entity["id"], prop, ""), "values that are not items"
            else:
                yield Statement(entity["id"], prop, obj), ""


def _english_label(entity: dict) -> str | None:
    label = ((entity.get("labels") or {}).get("en") or {}).get("value")
    return label.strip() if isinstance(label, str) and label.strip() else None


def _literal(text: str) -> tuple[str, str] | None:
    """An N-Triples string literal as (value, language), or None for anything else."""
    match = re.fullmatch(r'"((?:[^"\\]|\\.)*)"(?:@([\w-]+))?', text)
    if match is None:
        return None
    body = re.sub(r"\\U([0-9A-Fa-f]{8})", lambda m: chr(int(m.group(1), 16)), match.group(1))
    try:
        return json.loads(f'"{body}"'), (match.group(2) or "")
    except json.JSONDecodeError:
        return None


def extract(
    path: str | Path,
    properties: dict[str, str],
    *,
    skip_malformed: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> Extraction:
    """Triples of the `properties` (Wikidata id -> relation name) in the dump at `path`."""
    path = Path(path)
    if not path.is_file():
        raise KinfuseError(f"{path}: no such dump file")
    out = Extraction()
    started = time.monotonic()

    def tick(pass_name: str) -> Callable[[int], None]:
        def report(lineno: int) -> None:
            rate = lineno / max(time.monotonic() - started, 1e-9)
            progress(f"{pass_name}: {lineno:,} lines ({rate:,.0f} lines/s)")

        return report

    # Pass 1: the statements.
    reader = _Reader(path, skip_malformed, out.dropped, tick("statements"))
    statements: list[Statement] = []
    first: set[tuple[str, str]] = set()

    def keep(statement: Statement) -> None:
        if (statement.subject, statement.prop) in first:
            out.dropped["further values of a subject's relation (one object each)"] += 1
            return
        first.add((statement.subject, statement.prop))
        statements.append(statement)

    if reader.format == "json":
        for entity in reader.entities():
            for statement, why in _statements_json(entity, properties):
                if why:
                    out.dropped[why] += 1
                else:
                    keep(statement)
    else:
        for s, p, o in reader.ntriples():
            prop = p.removeprefix(DIRECT)
            if prop == p or prop not in properties or not s.startswith(ENTITY):
                continue
            if not o.startswith(f"<{ENTITY}Q"):
                out.dropped["values that are not items"] += 1
                continue
            keep(Statement(s.removeprefix(ENTITY), prop, o[1:-1].removeprefix(ENTITY)))

    # Pass 2: English labels of every entity the statements name.
    needed = {s.subject for s in statements} | {s.object for s in statements}
    labels: dict[str, str] = {}
    reader = _Reader(path, skip_malformed, Counter(), tick("labels"))
    if reader.format == "json":
        for entity in reader.entities():
            if entity["id"] in needed and (label := _english_label(entity)):
                labels[entity["id"]] = label
    else:
        for s, p, o in reader.ntriples():
            qid = s.removeprefix(ENTITY)
            if p in LABELS and qid in needed and qid not in labels:
                literal = _literal(o)
                if literal and literal[1] == "en" and literal[0].strip():
                    labels[qid] = literal[0].strip()
    owners = Counter(labels.values())

    for st in statements:
        ends = (labels.get(st.subject), labels.get(st.object))
        if None in ends:
            out.dropped["statements whose subject or object has no English label"] += 1
        elif any(owners[label] > 1 for label in ends):
            out.dropped["statements naming an entity by an ambiguous label"] += 1
        else:
            out.triples.append(
                {"subject": ends[0], "relation": properties[st.prop], "object": ends[1],
                 "subject_id": st.subject, "property": st.prop, "object_id": st.object}
            )  # fmt: skip
    return out


def parse_properties(text: str) -> dict[str, str]:
    """`P19=born_in,P106=works_as` -> {"P19": "born_in", "P106": "works_as"}."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        prop, _, name = item.partition("=")
        if not re.fullmatch(r"P\d+", prop) or not re.fullmatch(r"[A-Za-z_][\w]*", name):
            raise KinfuseError(
                f"--properties: '{item}' is not PID=relation_name (e.g. P19=born_in)"
            )
        out[prop] = name
    if not out:
        raise KinfuseError("--properties: name at least one, e.g. P19=born_in")
    return out


def write_triples(triples: list[dict], out: Path) -> None:
    """JSON Lines, written whole or not at all."""
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w") as f:
        for triple in triples:
            f.write(json.dumps(triple, ensure_ascii=False) + "\n")
    tmp.replace(out)
