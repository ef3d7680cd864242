import pytest

from kinfuse_ray.config import BUNDLED_DATA, ModelSize, load_sweep, parse_sweep
from kinfuse_ray.errors import KinfuseError

from .helpers import REPO, kinfuse, micro_sweep

pytestmark = pytest.mark.unit

GOOD = """
name: t
ladder:
  - {name: a, hidden_size: 32, n_layers: 2, n_heads: 4}
ratios: [0.5, 0.1]
"""


def sweep_file(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_every_bundled_sweep_file_is_valid():
    for path in (REPO / "sweeps").glob("*.yaml"):
        data = load_sweep(path).data  # and the bundled files it names are shipped
        named = (data.corpus, data.general_facts, data.domain_facts, data.templates)
        assert all(p.exists() for p in named if p.is_relative_to(BUNDLED_DATA)), path


def test_defaults_and_sorted_ratios(tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, GOOD))
    assert sweep.ratios == [0.1, 0.5]
    assert sweep.mlflow.tracking_uri == "sqlite:///mlflow.db" and sweep.ray.address == ""
    assert sweep.out.name == "t"


def test_non_embedding_params_are_counted_from_the_model():
    # LLaMA layer: 4 h^2 attention + 3 h f SwiGLU + 2 h norms; plus the final norm.
    size = ModelSize(name="a", hidden_size=32, n_layers=2, n_heads=4)
    h, f = 32, size.ffn_size
    assert size.non_embedding_params == 2 * (4 * h * h + 3 * h * f + 2 * h) + h
    assert size.param_count(512).non_embedding == size.param_count(4096).non_embedding


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD + "ratioz: [0.1]\n", "field 'ratioz': unknown field"),
        (
            GOOD.replace("n_layers: 2", "n_layers: two"),
            "field 'ladder.0.n_layers': Input should be a valid integer",
        ),
        (GOOD.replace("[0.5, 0.1]", "[0.5, 1.0]"), "field 'ratios.1': Input should be less than 1"),
        (
            GOOD.replace("[0.5, 0.1]", "[-0.1]"),
            "field 'ratios.0': Input should be greater than or equal to 0",
        ),
        (GOOD.replace("[0.5, 0.1]", "[0.5, 0.5]"), "field 'ratios': ratios must be unique"),
        (
            "name: t\nladder: []\nratios: [0.1]\n",
            "field 'ladder': List should have at least 1 item",
        ),
        (
            GOOD.replace("n_heads: 4", "n_heads: 5"),
            "field 'ladder.0': hidden_size 32 is not divisible",
        ),
        (GOOD + "train: {schedule: sideways}\n", "field 'train.schedule'"),
        (GOOD + "budgets: [100, 100]\n", "field 'budgets': budgets must be unique"),
        (GOOD + "budgets: [100]\n", "field 'budgets': List should have at least 2 items"),
        (GOOD + "budgets: [100, 0]\n", "field 'budgets.1': Input should be greater than 0"),
        (
            GOOD.replace("[0.5, 0.1]", "[0, 0.5]") + "search: {strategy: bisect}\n",
            "ratio 0 .* needs search.strategy grid",
        ),
        (
            GOOD + "budgets: [100, 200]\npredict: {target: {size: {name: b, hidden_size: 64, "
            "n_layers: 2, n_heads: 4}}, confirm: true}\n",
            "predict.confirm with budgets",
        ),
        (GOOD + "search: {strategy: decision}\n", "search.strategy decision .* name a target"),
        (
            GOOD + "search: {strategy: decision}\npredict: {target: {size: {name: b, "
            "hidden_size: 64, n_layers: 2, n_heads: 4}}}\n",
            "search.budget 0.333 gives each size 0.7 of its 2 ratios",
        ),
        ("name: t\nladder: [\n", "line 3: malformed YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_schema_errors_are_one_line_naming_the_field(tmp_path, text, message):
    with pytest.raises(KinfuseError, match=message) as err:
        load_sweep(sweep_file(tmp_path, text))
    assert "\n" not in str(err.value)


def test_cli_prints_one_line_and_exits_2_without_a_traceback(tmp_path):
    path = sweep_file(tmp_path, GOOD + "bogus: 1\n")
    proc = kinfuse(tmp_path, "sweep", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"kinfuse: error: {path}: field 'bogus': unknown field"
    assert not list(tmp_path.glob("runs")) and not (tmp_path / "mlflow.db").exists()


def test_overrides_set_nested_fields_and_are_validated(tmp_path):
    path = sweep_file(tmp_path, GOOD)
    sweep = load_sweep(path, ["seed=7", "train.tokens=200000", "name=other"])
    assert (sweep.seed, sweep.train.tokens, sweep.name) == (7, 200_000, "other")
    with pytest.raises(KinfuseError, match=r"field 'train.tokens': Input should be greater than 0"):
        load_sweep(path, ["train.tokens=-1"])
    with pytest.raises(KinfuseError, match="expected FIELD=VALUE"):
        load_sweep(path, ["seed"])


GOOD_RAW = {
    "name": "t",
    "ladder": [{"name": "a", "hidden_size": 32, "n_layers": 1, "n_heads": 2}],
    "ratios": [0.5],
}


def test_each_budget_of_a_ladder_is_a_sweep_of_its_own(tmp_path):
    text = (
        GOOD + "budgets: [200, 50]\npredict: {target: {size: {name: b, hidden_size: 64, "
        "n_layers: 2, n_heads: 4}, tokens: 800}}\n"
    )
    sweep = load_sweep(sweep_file(tmp_path, text))
    assert sweep.budgets == [50, 200] and sweep.target_tokens == 800
    part = sweep.at_budget(50)
    assert (part.name, part.train.tokens, part.budgets) == ("t-d50", 50, None)
    assert part.out == sweep.out.with_name("t-d50") and part.experiment == "t-d50"
    assert part.predict.target.tokens is None
    assert part.target_tokens == 50  # each budget forecasts at its own
    plain = load_sweep(sweep_file(tmp_path, GOOD))
    assert plain.target_tokens == plain.train.tokens


def test_the_domain_load_grows_with_the_rung():
    data = {"n_general_facts": 60, "n_domain_facts": 100, "domain_facts_exponent": 0.5}
    sweep = parse_sweep({**GOOD_RAW, "data": data})
    n = sweep.n_params["a"]
    assert sweep.knowledge_load(n) == (60, 100)
    assert sweep.knowledge_load(4 * n) == (60, 200)  # general facts (and rehearsal) stay put
    with pytest.raises(KinfuseError, match="domain_facts_exponent needs n_domain_facts"):
        parse_sweep({**GOOD_RAW, "data": {"domain_facts_exponent": 1}})


def test_a_target_deeper_than_every_rung_says_the_law_reads_n_alone():
    """benchmarks/shape.py: rungs grown in depth raised r* a third as fast per log N as rungs
    grown in width, so a target outside the ladder's depths is a forecast across shapes."""

    def notes(layers: int) -> tuple[str, ...]:
        target = {"size": {"name": "t", "hidden_size": 64, "n_layers": layers, "n_heads": 2}}
        return parse_sweep(micro_sweep(predict={"target": target})).target_point.notes

    assert notes(1) == ()  # the ladder's one rung has 1 layer
    (note,) = notes(4)
    assert note.startswith("the target has 4 layers, the rungs 1: the law reads size as")
    assert "add a rung of its depth" in note
