"""`kinfuse knowledge` on small Wikidata dumps written here, in both formats and compressions,
through the real command line, and their triples read back by the project's own loader."""

import bz2
import gzip
import json

import pytest

from kinfuse_ray.config import BUNDLED_DATA
from kinfuse_ray.knowledge import load_templates, load_triples
from kinfuse_ray.wikidata import extract

from .helpers import kinfuse

PROPS = "P19=born_in,P27=citizen_of"


def item(qid, label=None, **claims):
    """A JSON-dump entity: English label (if any), claims {PID: [(target QID or None, rank)]}."""
    entity = {"id": qid, "type": "item", "labels": {}, "claims": {}}
    if label:
        entity["labels"]["en"] = {"language": "en", "value": label}
    for prop, values in claims.items():
        entity["claims"][prop] = [
            {
                "rank": rank,
                "mainsnak": {"snaktype": "value", "property": prop, "datavalue": (
                    {"type": "wikibase-entityid", "value": {"id": target}} if target
                    else {"type": "string", "value": "not an item"}
                )},
            }
            for target, rank in values
        ]  # fmt: skip
    return entity


ENTITIES = [
    item("Q1", "Ada Byron", P19=[("Q10", "normal")], P27=[("Q20", "normal"), ("Q21", "preferred")]),
    item("Q2", "Alan Turing", P19=[("Q11", "normal")], P27=[(None, "normal")]),
    item("Q3", None, P19=[("Q10", "normal")]),  # no English label: dropped
    item("Q4", "Grace Hopper", P19=[("Q12", "deprecated"), ("Q13", "normal")]),
    item("Q5", "Paris", P19=[("Q10", "normal")]),  # shares its label with Q10: ambiguous
    item("Q10", "Paris"),
    item("Q11", "Maida Vale"),
    item("Q13", "New York City"),
    item("Q20", "Kingdom of Great Britain"),
    item("Q21", "United Kingdom"),
]


def json_dump(path, entities=ENTITIES, extra_line=None):
    lines = ["["] + [json.dumps(e) + "," for e in entities[:-1]] + [json.dumps(entities[-1])]
    if extra_line:
        lines.insert(3, extra_line)
    text = "\n".join(lines + ["]"]) + "\n"
    opener = gzip.open if path.suffix == ".gz" else bz2.open if path.suffix == ".bz2" else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def nt_dump(path, extra_line=None):
    e, p = "http://www.wikidata.org/entity/", "http://www.wikidata.org/prop/direct/"
    label = "http://www.w3.org/2000/01/rdf-schema#label"
    lines = []
    for entity in ENTITIES:
        qid = entity["id"]
        if "en" in entity["labels"]:
            value = json.dumps(entity["labels"]["en"]["value"])
            lines.append(f"<{e}{qid}> <{label}> {value}@en .")
            lines.append(f'<{e}{qid}> <{label}> "Etikett"@de .')
        for prop, claims in entity["claims"].items():
            # The truthy dump holds the best-ranked values only.
            best = min({"preferred": 0, "normal": 1}.get(c["rank"], 9) for c in claims)
            for c in claims:
                if {"preferred": 0, "normal": 1}.get(c["rank"], 9) != best:
                    continue
                value = c["mainsnak"]["datavalue"]["value"]
                obj = f"<{e}{value['id']}>" if isinstance(value, dict) else '"not an item"'
                lines.append(f"<{e}{qid}> <{p}{prop}> {obj} .")
    if extra_line:
        lines.insert(2, extra_line)
    with bz2.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


EXPECTED = {
    (
        "Ada Byron",
        "citizen_of",
        "United Kingdom",
    ),  # her preferred value; born in an ambiguous Paris
    ("Alan Turing", "born_in", "Maida Vale"),
    ("Grace Hopper", "born_in", "New York City"),
}


@pytest.mark.unit
@pytest.mark.parametrize("name", ["dump.json", "dump.json.gz", "dump.json.bz2"])
def test_the_json_dump_becomes_triples_with_provenance(tmp_path, name):
    found = extract(json_dump(tmp_path / name), {"P19": "born_in", "P27": "citizen_of"})
    assert {(t["subject"], t["relation"], t["object"]) for t in found.triples} == EXPECTED
    ada = next(t for t in found.triples if t["subject"] == "Ada Byron")
    assert (ada["subject_id"], ada["property"], ada["object_id"]) == ("Q1", "P27", "Q21")
    assert found.dropped == {
        "statements naming an entity by an ambiguous label": 2,  # Ada and Q5 born in 'Paris'
        "statements whose subject or object has no English label": 1,  # Q3
        "further values of a subject's relation (one object each)": 1,  # Ada's second P27
        "values that are not items": 1,  # Alan's P27
    }


@pytest.mark.unit
def test_the_truthy_ntriples_dump_gives_the_same_triples(tmp_path):
    found = extract(nt_dump(tmp_path / "truthy.nt.bz2"), {"P19": "born_in", "P27": "citizen_of"})
    assert {(t["subject"], t["relation"], t["object"]) for t in found.triples} == EXPECTED


@pytest.mark.unit
def test_the_command_writes_a_triples_file_the_project_reads(tmp_path):
    json_dump(tmp_path / "dump.json.gz")
    proc = kinfuse(tmp_path, "knowledge", "dump.json.gz", "--properties", PROPS, "--out", "f.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert "kept 3 triples; dropped 2 statements naming an entity by an ambiguous label" in (
        proc.stdout
    )
    # The templates shipped for Wikidata's P19, P106, P27 and P36 read what it wrote.
    relations = load_templates(BUNDLED_DATA / "knowledge" / "wikidata_templates.json")
    triples = load_triples(tmp_path / "f.jsonl", relations)
    assert {(t.subject, t.relation, t.object) for t in triples} == EXPECTED


@pytest.mark.unit
@pytest.mark.parametrize("dump", ["json", "nt"])
def test_a_malformed_line_is_named_or_counted_when_asked(tmp_path, dump):
    if dump == "json":
        json_dump(tmp_path / "d.json", extra_line='{"id": "Q99", "claims": {"P19": [')
        name, line = "d.json", 4
    else:
        nt_dump(tmp_path / "d.nt.bz2", extra_line="<broken> statement")
        name, line = "d.nt.bz2", 3
    args = ("knowledge", name, "--properties", PROPS, "--out", "f.jsonl")
    proc = kinfuse(tmp_path, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"kinfuse: error: {name}: line {line}: ")
    assert "--skip-malformed" in proc.stderr and not (tmp_path / "f.jsonl").exists()
    skipped = kinfuse(tmp_path, *args, "--skip-malformed")
    assert skipped.returncode == 0, skipped.stderr
    assert "kept 3 triples" in skipped.stdout and "1 malformed lines skipped" in skipped.stdout


@pytest.mark.unit
def test_bad_arguments_are_one_line(tmp_path):
    json_dump(tmp_path / "d.json")
    for args, message in [
        (("d.json", "--properties", "born_in"), "--properties: 'born_in' is not PID=relation_name"),
        (("missing.json", "--properties", PROPS), "missing.json: no such dump file"),
        (("d.json", "--properties", "P999=nothing"), "no triples of P999 kept"),
    ]:
        proc = kinfuse(tmp_path, "knowledge", *args, "--out", "f.jsonl")
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    (tmp_path / "d.txt").write_text("hello\n")
    proc = kinfuse(tmp_path, "knowledge", "d.txt", "--properties", PROPS, "--out", "f.jsonl")
    assert "not a Wikidata dump" in proc.stderr


@pytest.mark.full
def test_on_ray_data_the_same_triples_come_out(tmp_path):
    """The dump parsed on a local Ray instance (Ray Data, as on a cluster) gives the same file;
    a malformed line is quoted (Ray Data carries no line numbers) or counted."""
    json_dump(tmp_path / "dump.json.bz2")
    args = ("knowledge", "dump.json.bz2", "--properties", PROPS)
    serial = kinfuse(tmp_path, *args, "--out", "serial.jsonl")
    parallel = kinfuse(tmp_path, *args, "--out", "ray.jsonl", "--ray", "local")
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stderr[-2000:]
    assert (tmp_path / "ray.jsonl").read_text() == (tmp_path / "serial.jsonl").read_text()
    assert "kept 3 triples" in parallel.stdout

    json_dump(tmp_path / "bad.json", extra_line='{"id": "Q99", "claims": {"P19": [')
    bad = kinfuse(tmp_path, "knowledge", "bad.json", "--properties", PROPS, "--out", "b.jsonl",
                  "--ray", "local")  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    last = bad.stderr.strip().splitlines()[-1]
    assert "malformed JSON" in last and "Q99" in last and not (tmp_path / "b.jsonl").exists()
