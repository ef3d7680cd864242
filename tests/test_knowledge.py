import json

import pytest

from kinfuse_ray.config import DataConfig
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.knowledge import load_templates, load_triples, make_probes, object_pools

pytestmark = pytest.mark.unit

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
        (
            [triple(), "{oops"],
            "facts.jsonl: line 2: expected a record with subject, relation and object",
        ),
        (
            [triple(), {"subject": "x", "relation": "born_in"}],
            "line 2: expected a record with subject",
        ),
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
    triples = load_triples(BUNDLED.domain_facts, relations)[:200]
    pools = object_pools(triples)
    probes = make_probes(triples, relations, pools, n_choices=4, seed=0)
    answers = [p.answer for p in probes]
    assert {0, 1, 2, 3} == set(answers)  # the right answer is not always in one place
    for t, p in zip(triples, probes, strict=True):
        assert p.options[p.answer] == t.object and len(set(p.options)) == 4
        assert all(o in pools[t.relation] for o in p.options)
        assert t.subject in p.prompt


def test_csv_and_parquet_triples_read_like_json_lines(tmp_path, relations):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [triple(), triple(s="Bo Kim", o="Lima")]
    expected = load_triples(write(tmp_path, rows), relations)
    csv_path = tmp_path / "facts.csv"
    csv_path.write_text(
        "subject,relation,object\n"
        + "".join(f"{r['subject']},{r['relation']},{r['object']}\n" for r in rows)
    )
    assert load_triples(csv_path, relations) == expected
    parquet_path = tmp_path / "facts.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet_path)
    assert load_triples(parquet_path, relations) == expected

    csv_path.write_text(csv_path.read_text() + "Cy Day,born_in\n")
    with pytest.raises(KinfuseError, match="facts.csv: line 4: empty subject, relation or object"):
        load_triples(csv_path, relations)
    pq.write_table(pa.Table.from_pylist([*rows, {**rows[0], "object": "Rome"}]), parquet_path)
    with pytest.raises(KinfuseError, match="facts.parquet: row 3: contradicts row 1"):
        load_triples(parquet_path, relations)


def test_frequency_weighted_distractors_keep_a_frequent_object_from_giving_answers_away():
    """Real relations are skewed (many cities, few countries): with uniform distractors,
    answering the most frequent option beats chance; drawn as often as each object is an
    answer, it stays near chance."""
    from kinfuse_ray.knowledge import Relation, Triple, most_frequent_guesser

    relations = {"in": Relation("in", ("{subject} is in {object}.",), "{subject} is in")}
    # One object holds a fifth of the facts, the rest share 60 objects (as country of a city).
    objects = ["Big"] * 100 + [f"c{i % 60}" for i in range(400)]
    triples = [Triple(f"s{i}", "in", o) for i, o in enumerate(objects)]
    pools = object_pools(triples)
    accuracy = {}
    for mode in ("uniform", "frequency"):
        probes = make_probes(triples, relations, pools, 4, seed=0, distractors=mode)
        accuracy[mode] = most_frequent_guesser(probes, pools, lambda probe: "in")
    assert accuracy["uniform"] > 0.35  # "Big" whenever it is offered: right a fifth of the time
    assert abs(accuracy["frequency"] - 0.25) < 0.06, accuracy


def test_uniform_distractors_are_those_of_earlier_versions(relations):
    """Equal counts or not, the default draws the same distractors as before weighting existed
    (measured results stay reproducible)."""
    import numpy as np

    triples = load_triples(DataConfig().general_facts, relations)[:40]
    pools = object_pools(triples)
    probes = make_probes(triples, relations, pools, 4, seed=3)
    rng = np.random.default_rng(3)
    for triple, probe in zip(triples, probes, strict=True):
        others = sorted(
            {t.object for t in triples if t.relation == triple.relation} - {triple.object}
        )
        chosen = rng.choice(others, size=3, replace=False)
        order = rng.permutation(4)
        assert probe.options == tuple(str([triple.object, *chosen][i]) for i in order)
