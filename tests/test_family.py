"""A ladder of checkpoints (issue 38): rungs read from Hugging Face model folders, their shape and
N from config.json, one tokenizer for the ladder, retention counted on what each checkpoint knew,
and every bad folder refused in one line through the real `kinfuse sweep` with nothing written.
The folders are real: `save_pretrained` of LLaMA models beside a saved fast tokenizer."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from kinfuse_ray import cli
from kinfuse_ray.config import DataConfig, parse_sweep
from kinfuse_ray.model import EMBEDDING_PARAMS, load_pretrained

from .family import (
    DATA,
    STEPS,
    family_sweep,
    history_sweep,
    make_family,
    make_member,
    make_target,
    save_tokenizer,
)
from .helpers import finished_trials, kill_with_its_ray, run_cli, runs_of, start_sweep, wait_for


def non_embedding(folder: Path) -> int:
    """The loaded model's own count of parameters outside the embeddings and LM head."""
    model = load_pretrained(folder)
    return sum(
        p.numel() for name, p in model.named_parameters()
        if not any(part in name for part in EMBEDDING_PARAMS)
    )  # fmt: skip


@pytest.fixture(scope="module")
def blank(tmp_path_factory):
    """Two untrained members (they know nothing beyond guessing), a folder holding only the
    larger one's config (a target), and a member whose tokenizer is another BPE."""
    root = tmp_path_factory.mktemp("blank")
    save_tokenizer(tokenizer := root / "tokenizer")
    for name, width in (("w32", 32), ("w48", 48)):
        make_member({0: root / name}, width, tokenizer=tokenizer)
    (root / "target").mkdir()
    shutil.copy(root / "w48" / "config.json", root / "target")
    save_tokenizer(root / "other-tokenizer", DataConfig(**{**DATA, "vocab_size": 400}))
    make_member({0: root / "other"}, 32, tokenizer=root / "other-tokenizer")
    return root


@pytest.mark.unit
def test_a_checkpoint_rung_takes_its_shape_and_tokenizer_from_its_folder(blank, monkeypatch):
    sweep = parse_sweep(
        family_sweep({"a": blank / "w32", "b": blank / "w48"},
                     predict={"target": {"size": {"name": "t", "checkpoint": str(blank / "target")}}})
    )  # fmt: skip
    a = sweep.ladder[0]
    assert (a.hidden_size, a.n_layers, a.n_heads) == (32, 2, 2)
    assert sweep.data.tokenizer == blank / "w32"  # the first rung's, for corpus, facts, probes
    assert sweep.n_params["a"] == non_embedding(a.checkpoint)  # N from config: the model's own
    assert sweep.target_n_params == sweep.n_params["b"]  # a target folder needs its config only
    # Trials run in working directories of their own: a relative folder is made absolute.
    monkeypatch.chdir(blank)
    relative = parse_sweep(family_sweep({"a": Path("w32"), "b": Path("w48")}))
    assert relative.ladder[0].checkpoint == blank / "w32"
    # Dumped and read again (resume, budgets, the confirmation run) it is the same sweep.
    assert parse_sweep(sweep.model_dump(mode="json")) == sweep
    assert sweep.confirmation(0.5).size("t").checkpoint == blank / "target"


@pytest.mark.unit
def test_a_grouped_query_checkpoint_counts_its_own_parameters(blank, tmp_path):
    """Fewer key/value heads than query heads (SmolLM2, Qwen, Llama 3): N from config.json is
    still the loaded model's own non-embedding count."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(blank / "tokenizer")
    config = LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=96, vocab_size=len(tokenizer),
                         max_position_embeddings=128)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path / "gqa")
    tokenizer.save_pretrained(tmp_path / "gqa")
    sweep = parse_sweep(family_sweep({"g": tmp_path / "gqa"}))
    assert sweep.ladder[0].n_kv_heads == 2
    assert sweep.n_params["g"] == non_embedding(tmp_path / "gqa")


@pytest.mark.unit
def test_another_architecture_is_read_loaded_and_scored(blank, tmp_path):
    """A GPT-NeoX folder (Pythia's architecture) saved by transformers: its shape from its
    config, loaded by AutoModelForCausalLM and scored on the facts as a LLaMA rung is."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from kinfuse_ray.base_store import rung_bundle
    from kinfuse_ray.data import build_bundle
    from kinfuse_ray.pretrained import score_checkpoint

    tokenizer = PreTrainedTokenizerFast.from_pretrained(blank / "tokenizer")
    config = GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=128, vocab_size=len(tokenizer),
                           max_position_embeddings=128)  # fmt: skip
    GPTNeoXForCausalLM(config).save_pretrained(tmp_path / "neox")
    tokenizer.save_pretrained(tmp_path / "neox")
    sweep = parse_sweep(family_sweep({"p": tmp_path / "neox", "q": tmp_path / "neox"}))
    assert (sweep.ladder[0].hidden_size, sweep.ladder[0].ffn_size) == (32, 128)
    rung = sweep.rungs["p"]
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed)
    record = score_checkpoint(rung, rung_bundle(rung, bundle))
    assert record["metrics"]["general_facts_probed"] == 90
    assert record["metrics"]["facts_known_beyond_chance"] < 20  # untrained: it guesses


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
        ("some pre-training tokens", "pretrained_tokens: give every rung's, or none"),
        ("pre-training tokens of a shape", "pretrained_tokens belongs to a checkpoint rung"),
        ("a target with no D", "predict.target: the ladder's D is pre-training tokens"),
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
    elif case == "some pre-training tokens":
        raw["ladder"][0]["pretrained_tokens"] = 100_000
    elif case == "pre-training tokens of a shape":
        raw["ladder"] = [{"name": "s", "hidden_size": 32, "n_layers": 2, "n_heads": 2,
                          "pretrained_tokens": 100_000}]  # fmt: skip
    elif case == "a target with no D":
        for rung in raw["ladder"]:
            rung["pretrained_tokens"] = 100_000
        raw["predict"] = {"target": {"size": {"name": "t", "checkpoint": str(blank / "target")}}}
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
    """The tiny family at three pre-training steps and a larger member (about a minute)."""
    root = tmp_path_factory.mktemp("family")
    return root, make_family(root, steps=STEPS), make_target(root)


@pytest.mark.full
def test_a_family_forecasts_its_larger_member_at_its_final_step_and_resumes(family, tmp_path):
    """A ladder of sizes x pre-training steps through the real `kinfuse sweep`, Ray Tune and
    MLflow: each checkpoint scored once on what it knew (kept in the base store without its
    weights), every trial continued from its weights with retention on those facts, the driver
    killed mid-sweep and resumed; the law reads pre-training tokens as D and forecasts the
    larger member at the final step, which is then trained at the forecast's ratios
    (predict.confirm); and the held-out-budget check (fit on the earlier steps, forecast the
    final one) runs on what MLflow recorded."""
    _, members, target = family
    raw = history_sweep(members, target, name="micro")
    raw["predict"]["confirm"] = True  # then the target member is trained at the forecast's ratios
    text = yaml.safe_dump(raw)
    proc, log = start_sweep(tmp_path, text)
    wait_for(lambda: finished_trials(log) >= 10, proc, timeout=600, every=0.05)
    kill_with_its_ray(proc)
    first = log.read_text()
    for name, folder in members.items():  # scored once, before any trial
        assert f"{name}: scored {folder} on its general facts" in first, first[-3000:]
        assert f"{name}: its checkpoint knew " in first

    resumed = run_cli(tmp_path, text, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in members:  # their scores come from the store (the target is scored to confirm)
        assert f"{name}: scored" not in resumed.stdout
    _, runs = runs_of(tmp_path)
    assert {r.info.status for r in runs} == {"FINISHED"}
    trials = [r.data.tags.get("kinfuse.trial", "") for r in runs]
    infusions = [t for t in trials if t.startswith("infuse-")]
    assert len(infusions) == len(set(infusions))  # each trial once
    confirmations = [t for t in infusions if t.startswith("infuse-f222k-")]
    assert len(infusions) - len(confirmations) == 45 and len(confirmations) >= 2

    store = tmp_path / "runs" / ".kinfuse-base"
    records = [json.loads((f / "progress.json").read_text()) for f in store.iterdir()]
    assert len(records) == 10 and not list(store.rglob("*.distcp"))  # 9 rungs + the target
    for record in records:  # retention is on the facts it answered right: 1 before infusion
        assert record["known"] and record["metrics"]["retention"] == 1.0
        assert record["metrics"]["facts_known_beyond_chance"] >= 20

    summary = json.loads((tmp_path / "runs" / "micro" / "summary.json").read_text())
    assert {s["tokens"] for s in summary["sizes"]} == set(STEPS)  # D: pre-training tokens
    assert summary["law"]["form"].startswith("power_nd")  # the ladder spans D: the law reads it
    rec = summary["recommendation"]
    assert (rec["target"], rec["tokens"]) == ("f222k", STEPS[-1])
    assert rec["n_params"] == parse_sweep(raw).target_n_params  # N from the target's config
    assert 0 < rec["collapse_ratio"] < 1
    assert f"units: over {100_000:,} tokens" in resumed.stdout  # exposures per infused token
    confirmed = summary["confirmation"]  # the member trained from its own weights
    assert {row["role"] for row in confirmed} >= {"recommended", "collapse"}
    assert {(row["target"], row["tokens"]) for row in confirmed} == {("f222k", STEPS[-1])}

    # Fit on the earlier steps, forecast the final one: every size's final checkpoint.
    from kinfuse_ray.analysis import size_curves
    from kinfuse_ray.config import EvalConfig
    from kinfuse_ray.law import FitSettings, leave_one_size_out
    from kinfuse_ray.records import load_trials

    recorded = load_trials(f"sqlite:///{tmp_path / 'mlflow.db'}", ["micro"])
    ladder = [t for t in recorded.trials if t.size != "f222k"]  # not the confirmation's
    curves = size_curves(ladder, EvalConfig(), recorded.base)
    held = leave_one_size_out(curves, FitSettings(n_bootstrap=200), hold_out="later")
    finals = [h for h in held if h.size.endswith(f"-d{STEPS[-1]}")]
    assert len(finals) == 3 and all(h.form.startswith("power_nd") for h in finals)
    for h in finals:
        print(f"{h.size}: r* {h.measured:.3f}, forecast {h.predicted:.3f} {h.interval}")


@pytest.mark.unit
def test_pretraining_tokens_are_the_laws_d_and_exposures_stay_per_infused_token():
    """Trials of a checkpoint rung with pretrained_tokens: their curve sits at D = those tokens,
    while exposures per fact are per token infused (the forecast's units line)."""
    from kinfuse_ray.analysis import size_curves
    from kinfuse_ray.config import EvalConfig
    from kinfuse_ray.law.prediction import exposures_at
    from kinfuse_ray.spec import Phase, TrialResult, TrialSpec

    def result(phase: Phase, ratio: float, retention: float) -> TrialResult:
        metrics = {"tokens": 100_000, "retention": retention, "acquisition": 0.1,
                   "val_loss": 5.0, "tokens_per_s": 1.0, "stopped_early": 0.0,
                   "exposures_per_fact": 40.0 * ratio, "general_exposures_per_fact": 30.0}  # fmt: skip
        spec = TrialSpec(phase, "f25k", ratio)
        return TrialResult.from_metrics(spec, metrics, n_params=25_000, tokens=100_000,
                                        pretrained_tokens=300_000)  # fmt: skip

    base = result(Phase.base, 0.0, 1.0)
    assert base.tokens == 100_000  # a base record keeps its own budget
    trials = [result(Phase.infuse, r, k) for r, k in ((0.2, 1.0), (0.5, 0.8), (0.9, 0.2))]
    assert {(t.tokens, t.infused) for t in trials} == {(300_000, 100_000)}
    (curve,) = size_curves(trials, EvalConfig(), [base])
    assert (curve.tokens, curve.infused_tokens) == (300_000, 100_000)
    assert curve.domain_per_token == pytest.approx(40.0 / 100_000)  # per infused token
    assert exposures_at([curve], 300_000).tokens == 100_000
