"""A ladder of checkpoints (issue 38): rungs read from Hugging Face model folders, their shape and
N from config.json, one tokenizer for the ladder, retention counted on what each checkpoint knew,
and every bad folder refused in one line through the real `kinfuse sweep` with nothing written.
The folders are real: `save_pretrained` of LLaMA models beside a saved fast tokenizer."""

import json
import shutil

import pytest
import yaml

from kinfuse_ray import cli
from kinfuse_ray.config import DataConfig, parse_sweep
from kinfuse_ray.model import EMBEDDING_PARAMS, load_pretrained

from .family import DATA, make_family, make_member, save_tokenizer
from .helpers import finished_trials, kill_with_its_ray, run_cli, runs_of, start_sweep, wait_for


@pytest.fixture(scope="module")
def blank(tmp_path_factory):
    """Two untrained members (they know nothing beyond guessing), a folder holding only the
    larger one's config (a target), and a member whose tokenizer is another BPE."""
    root = tmp_path_factory.mktemp("blank")
    save_tokenizer(tokenizer := root / "tokenizer")
    for name, width in (("w32", 32), ("w48", 48)):
        make_member(root / name, width, 0, tokenizer=tokenizer)
    (root / "target").mkdir()
    shutil.copy(root / "w48" / "config.json", root / "target")
    save_tokenizer(root / "other-tokenizer", DataConfig(**{**DATA, "vocab_size": 400}))
    make_member(root / "other", 32, 0, tokenizer=root / "other-tokenizer")
    return root


def family_sweep(rungs: dict, **extra) -> dict:
    """A sweep file's fields for a ladder of checkpoint folders, on the tiny family's data."""
    return {
        "name": "fam",
        "ladder": [{"name": name, "checkpoint": str(folder)} for name, folder in rungs.items()],
        "ratios": [0.3, 0.9],
        "data": {k: v for k, v in DATA.items() if k != "vocab_size"},
        "train": {"tokens": 16_000, "batch_size": 8},
        "eval": {"every_tokens": 16_000, "acquisition_probes": 20, "val_sequences": 2},
        **extra,
    }


@pytest.mark.unit
def test_a_checkpoint_rung_takes_its_shape_and_tokenizer_from_its_folder(blank):
    sweep = parse_sweep(
        family_sweep({"a": blank / "w32", "b": blank / "w48"},
                     predict={"target": {"size": {"name": "t", "checkpoint": str(blank / "target")}}})
    )  # fmt: skip
    a = sweep.ladder[0]
    assert (a.hidden_size, a.n_layers, a.n_heads) == (32, 2, 2)
    assert sweep.data.tokenizer == blank / "w32"  # the first rung's, for corpus, facts, probes
    model = load_pretrained(a.checkpoint)
    counted = sum(
        p.numel() for name, p in model.named_parameters()
        if not any(part in name for part in EMBEDDING_PARAMS)
    )  # fmt: skip
    assert sweep.n_params["a"] == counted  # N read from config.json is the model's own
    assert sweep.target_n_params == sweep.n_params["b"]  # a target folder needs its config only
    # Dumped and read again (resume, budgets, the confirmation run) it is the same sweep.
    assert parse_sweep(sweep.model_dump(mode="json")) == sweep
    assert sweep.confirmation(0.5).size("t").checkpoint == blank / "target"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("missing weights", "no weights (model.safetensors"),
        ("not a model", "not a model folder (no config.json)"),
        ("no such folder", "no such folder"),
        ("tokenizers differ", "rung b: its tokenizer"),
        ("shape and checkpoint", "hidden_size 64: the checkpoint's config.json says 48"),
        ("mixed ladder", "rungs s are shapes and the others checkpoints"),
        ("scratch", "train.schedule must be continued"),
        ("knows nothing", "rung a: "),
    ],
)  # fmt: skip
def test_a_bad_checkpoint_is_one_line_and_leaves_nothing(blank, tmp_path, monkeypatch, capsys,
                                                         case, says):  # fmt: skip
    rungs, extra = {"a": blank / "w32", "b": blank / "w48"}, {}
    if case == "missing weights":
        shutil.copytree(blank / "w48", tmp_path / "w48")
        (tmp_path / "w48" / "model.safetensors").unlink()
        rungs["b"] = tmp_path / "w48"
    elif case == "not a model":
        (tmp_path / "empty").mkdir()
        rungs["b"] = tmp_path / "empty"
    elif case == "no such folder":
        rungs["b"] = tmp_path / "nowhere"
    elif case == "tokenizers differ":
        rungs["b"] = blank / "other"
    elif case == "scratch":
        extra["train"] = {"schedule": "scratch", "tokens": 16_000}
    raw = family_sweep(rungs, **extra)
    if case == "shape and checkpoint":
        raw["ladder"][1]["hidden_size"] = 64
    elif case == "mixed ladder":
        raw["ladder"].append({"name": "s", "hidden_size": 32, "n_layers": 2, "n_heads": 2})
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(raw))
    before = sorted(tmp_path.rglob("*"))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sweep", "sweep.yaml"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("kinfuse: error: ") and says in last, last
    if case == "knows nothing":  # scored, then refused: an untrained model guesses
        assert "beyond guessing, fewer than eval.min_known_facts 20" in last, last
    assert sorted(tmp_path.rglob("*")) == before  # no store record, no MLflow, no runs/


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """Three members pre-trained on the general stream (about 40 s) and a target's config."""
    root = tmp_path_factory.mktemp("family")
    members = make_family(root)
    (root / "f222k").mkdir()
    config = json.loads((members["f101k"] / "config.json").read_text())
    config.update(hidden_size=96, num_attention_heads=3, num_key_value_heads=3)
    config.pop("intermediate_size")
    (root / "f222k" / "config.json").write_text(json.dumps(config))
    return root, members


@pytest.mark.full
def test_a_family_sweep_forecasts_its_larger_member_and_resumes(family, tmp_path):
    """Through the real `kinfuse sweep`, Ray Tune and MLflow: each checkpoint scored once on what
    it knew (kept in the base store without its weights, recorded as its base run), every trial
    continued from its weights with retention on those facts, the driver killed mid-sweep and
    resumed, and a forecast for the family's larger member from its config."""
    root, members = family
    raw = family_sweep(
        members, name="micro", ratios=[0.2, 0.45, 0.73, 0.9, 0.97],
        train={"tokens": 100_000, "batch_size": 8, "lr": 0.01},
        eval={"every_tokens": 25_000, "acquisition_probes": 100, "val_sequences": 8,
              "distractors": "frequency"},
        predict={"target": {"size": {"name": "f222k", "checkpoint": str(root / "f222k")}},
                 "bootstrap": 200},
    )  # fmt: skip
    text = yaml.safe_dump(raw)
    proc, log = start_sweep(tmp_path, text)
    wait_for(lambda: finished_trials(log) >= 6, proc, timeout=600, every=0.05)
    kill_with_its_ray(proc)
    first = log.read_text()
    for name, folder in members.items():  # scored once, before any trial
        assert f"{name}: {folder} answers " in first, first[-3000:]

    resumed = run_cli(tmp_path, text, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "answers" not in resumed.stdout  # the scores come from the store
    _, runs = runs_of(tmp_path)
    assert {r.info.status for r in runs} == {"FINISHED"}
    trials = [r.data.tags.get("kinfuse.trial", "") for r in runs]
    assert len({t for t in trials if t.startswith("infuse-")}) == 15
    assert sum(t.startswith("infuse-") for t in trials) == 15  # none twice

    store = tmp_path / "runs" / ".kinfuse-base"
    records = [json.loads((f / "progress.json").read_text()) for f in store.iterdir()]
    assert len(records) == 3 and not list(store.rglob("*.distcp"))  # scores, no weights
    for record in records:  # retention is on the facts it answered right: 1 before infusion
        assert record["known"] and record["metrics"]["retention"] == 1.0
        assert record["metrics"]["facts_known_beyond_chance"] >= 20

    summary = json.loads((tmp_path / "runs" / "micro" / "summary.json").read_text())
    assert [s["outcome"] for s in summary["sizes"]] == ["collapsed"] * 3  # all forget in the grid
    rec = summary["recommendation"]
    assert rec["target"] == "f222k"
    assert rec["n_params"] == parse_sweep(raw).target_n_params  # N from the target's config
    assert 0 < rec["collapse_ratio"] < 1
