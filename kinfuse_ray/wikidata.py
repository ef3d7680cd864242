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
from kinfuse_ray.files import atomic_path

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


def _record(line: str, fmt: str) -> dict | tuple[str, str, str] | None:
    """One line as an entity (JSON dump) or an (s, p, o) statement (N-Triples); None for the
    lines that hold neither (array brackets, blanks, comments). ValueError: malformed."""
    text = line.strip()
    if fmt == "json":
        text = text.rstrip(",")
        if text in ("[", "]", ""):
            return None
        try:
            entity = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"malformed JSON: {exc.msg}") from None
        if not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
            raise ValueError("not an entity (no 'id')")
        return entity
    if not text or text.startswith("#"):
        return None
    match = NTRIPLE.match(text)
    if match is None:
        raise ValueError("not an N-Triples statement")
    return match.groups()


def _statements(record, fmt: str, properties: dict[str, str]) -> Iterator[tuple[Statement, str]]:
    """(statement, "") for each selected value of an item, best rank first, or (None, why)."""
    if fmt == "json":
        yield from _statements_json(record, properties)
        return
    s, p, o = record
    prop = p.removeprefix(DIRECT)
    if prop == p or prop not in properties or not s.startswith(ENTITY):
        return
    if not o.startswith(f"<{ENTITY}Q"):
        yield None, "values that are not items"
        return
    yield Statement(s.removeprefix(ENTITY), prop, o[1:-1].removeprefix(ENTITY)), ""


def _label(record, fmt: str, needed: set[str]) -> tuple[str, str] | None:
    """(item id, English label) when the record gives one for an item in `needed`."""
    if fmt == "json":
        label = _english_label(record) if record["id"] in needed else None
        return (record["id"], label) if label else None
    s, p, o = record
    qid = s.removeprefix(ENTITY)
    if p not in LABELS or qid not in needed:
        return None
    literal = _literal(o)
    if literal and literal[1] == "en" and literal[0].strip():
        return qid, literal[0].strip()
    return None


def _records(path: Path, fmt: str, skip: bool, dropped: Counter, progress) -> Iterator:
    """Every record of the dump, in order, one process; a malformed line raises naming it, or
    with `skip` is counted."""
    for lineno, line in _lines(path, progress):
        try:
            record = _record(line, fmt)
        except ValueError as exc:
            if not skip:
                raise KinfuseError(
                    f"{path}: line {lineno}: {exc} (--skip-malformed counts such lines instead)"
                ) from None
            dropped["malformed lines skipped"] += 1
            continue
        if record is not None:
            yield record


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
                yield None, "values that are not items"
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


def _parallel_records(path: Path, fmt: str, fn, skip: bool, dropped: Counter) -> list:
    """`fn(record)`'s non-empty results for every record, the lines parsed on the Ray cluster
    (Ray Data, blocks in file order). Malformed lines carry no line number here: the first is
    quoted instead."""
    import ray.data

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    name = path.name.lower()
    compression = "gzip" if name.endswith(".gz") else "bz2" if name.endswith(".bz2") else None
    args = {"compression": compression} if compression else {}
    lines = ray.data.read_text(str(path), arrow_open_stream_args=args)

    def batch(rows: dict) -> dict:
        out, bad = [], []
        for line in rows["text"]:
            try:
                record = _record(line, fmt)
            except ValueError as exc:
                bad.append(f"{exc}: {line.strip()[:60]!r}")
                continue
            if record is not None:
                out.extend(fn(record))
        return {
            "item": [json.dumps(["ok", x]) for x in out] + [json.dumps(["bad", b]) for b in bad]
        }

    found = []
    # Every result first, then judge: raising mid-iteration would leave Ray Data's executor
    # running into the shutdown.
    for row in lines.map_batches(batch, batch_format="numpy").take_all():
        kind, value = json.loads(row["item"])
        if kind == "bad":
            if not skip:
                raise KinfuseError(f"{path}: {value} (--skip-malformed counts such lines instead)")
            dropped["malformed lines skipped"] += 1
        else:
            found.append(value)
    return found


def extract(
    path: str | Path,
    properties: dict[str, str],
    *,
    skip_malformed: bool = False,
    parallel: bool = False,
    progress: Callable[[str], None] = lambda message: None,
) -> Extraction:
    """Triples of the `properties` (Wikidata id -> relation name) in the dump at `path`; with
    `parallel`, the lines are parsed on the connected Ray cluster (Ray Data)."""
    path = Path(path)
    if not path.is_file():
        raise KinfuseError(f"{path}: no such dump file")
    fmt = _dump_format(path)
    out = Extraction()
    started = time.monotonic()

    def tick(pass_name: str) -> Callable[[int], None]:
        def report(lineno: int) -> None:
            rate = lineno / max(time.monotonic() - started, 1e-9)
            progress(f"{pass_name}: {lineno:,} lines ({rate:,.0f} lines/s)")

        return report

    def each(fn, pass_name: str, dropped: Counter) -> Iterator:
        """fn's results over every record, in file order."""
        if parallel:
            yield from _parallel_records(path, fmt, fn, skip_malformed, dropped)
            return
        for record in _records(path, fmt, skip_malformed, dropped, tick(pass_name)):
            yield from fn(record)

    # Pass 1: the statements (as plain lists, which travel from Ray workers as they are).
    statements: list[Statement] = []
    first: set[tuple[str, str]] = set()

    def pass1(record) -> list:
        return [[st and [st.subject, st.prop, st.object], why]
                for st, why in _statements(record, fmt, properties)]  # fmt: skip

    for st, why in each(pass1, "statements", out.dropped):
        if why:
            out.dropped[why] += 1
            continue
        statement = Statement(*st)
        if (statement.subject, statement.prop) in first:
            out.dropped["further values of a subject's relation (one object each)"] += 1
            continue
        first.add((statement.subject, statement.prop))
        statements.append(statement)

    # Pass 2: English labels of every entity the statements name.
    needed = {s.subject for s in statements} | {s.object for s in statements}

    def pass2(record) -> list:
        found = _label(record, fmt, needed)
        return [list(found)] if found else []

    labels: dict[str, str] = {}
    for qid, label in each(pass2, "labels", Counter()):
        labels.setdefault(qid, label)
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
    with atomic_path(out) as tmp, tmp.open("w") as f:
        for triple in triples:
            f.write(json.dumps(triple, ensure_ascii=False) + "\n")
