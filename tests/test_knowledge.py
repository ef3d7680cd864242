import json

import pytest

from kinfuse_ray.config import DataConfig
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.knowledge import load_templates, load_triples, make_probes, object_pools

BUNDLED = DataConfig()


@pytest.fixture
def relations():
    return load_templates(BUNDLED.templates)


def write(tmp_path, rows):
    path = tmp_path / "facts.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def triple(s="Ada Lovel", rel="born_in", o="Oslo"):
    return {"subject": s, "relation": rel, "object": o}


def test_bundled_knowledge_is_balanced(relations):
    triples = load_triples(BUNDLED.general_facts, relations)
    pools = object_pools(triples)
    assert set(pools) == set(relations) and all(len(p) == 40 for p in pools.values())
    for rel in relations:  # objects used equally often, so frequency gives away nothing
        counts = [sum(t.object == o for t in triples if t.relation == rel) for o in pools[rel]]
        assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize(
    "rows, message",
    [
        ([triple(), "{oops"], "facts.jsonl: line 2: expected a JSON object"),
        ([triple(), {"subject": "x", "relation": "born_in"}], "line 2: expected a JSON object"),
        ([triple(), triple(rel="flies_to")], "line 2: unknown relation 'flies_to'"),
        ([triple(), triple()], "line 2: duplicate line 1"),
        ([triple(), triple(o="Lima")], "line 2: contradicts line 1"),
        ([], "no triples"),
    ],
)
def test_broken_knowledge_files_name_the_line(tmp_path, relations, rows, message):
    with pytest.raises(KinfuseError, match=message):
        load_triples(write(tmp_path, rows), relations)


def test_templates_need_their_placeholders(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(
            {"relations": {"r": {"templates": ["{subject} is here."], "question": "{subject}"}}}
        )
    )
    with pytest.raises(KinfuseError, match="relation 'r': template .* lacks"):
        load_templates(path)


def test_probes_have_type_consistent_distractors(relations):
    triples = load_triples(BUNDLED.domain_facts, relations, limit=200)
    pools = object_pools(triples)
    probes = make_probes(triples, relations, pools, n_choices=4, seed=0)
    answers = [p.answer for p in probes]
    assert {0, 1, 2, 3} == set(answers)  # the right answer is not always in one place
    for t, p in zip(triples, probes, strict=True):
        assert p.options[p.answer] == t.object and len(set(p.options)) == 4
        assert all(o in pools[t.relation] for o in p.options)
        assert t.subject in p.prompt
