"""End to end: the real CLI runs a micro sweep on a real local Ray instance (started and stopped
by the sweep itself) with a real sqlite MLflow store."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kinfuse_ray.base_store import BaseStore, base_inputs, rung_bundle
from kinfuse_ray.config import parse_sweep
from kinfuse_ray.data import build_bundle

from .helpers import (
    MICRO,
    MICRO_RATIOS,
    REPO,
    base_runs,
    kinfuse,
    micro_sweep_yaml,
    run_cli,
    runs_of,
)

N_TRIALS = 3 * len(MICRO_RATIOS)


@pytest.mark.slow
def test_micro_sweep_records_every_trial_and_writes_the_summary(micro_sweep):
    tmp_path, proc = micro_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "collapse r*" in proc.stdout
        and "mlflow ui --backend-store-uri sqlite:///mlflow.db" in proc.stdout
    )
    # Live progress (every 5 s here): per size done/running/pending and the bracket so far.
    progress = [line for line in proc.stdout.splitlines() if line.startswith("progress: ")]
    assert progress and "elapsed, " in progress[-1]
    assert re.search(r"^  c  \d+ done, \d+ running, \d+ pending;", proc.stdout, re.MULTILINE)

    out = tmp_path / "runs" / "micro"
    summary = json.loads((out / "summary.json").read_text())
    assert [s["size"] for s in summary["sizes"]] == ["a", "b", "c"]
    assert len(summary["trials"]) == N_TRIALS
    for trial in summary["trials"]:
        assert -1 / 3 - 1e-9 <= trial["retention"] <= 1 and trial["tokens_per_s"] > 0
        assert trial["exposures_per_fact"] > 0
    assert (out / "retention_vs_ratio.png").stat().st_size > 10_000
    assert len(base_runs(tmp_path / "runs")) == 3  # one per size, in the shared store

    client, runs = runs_of(tmp_path)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3 + N_TRIALS
    assert {r.info.status for r in runs} == {"FINISHED"}
    parent = parents[0]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    infused = [c for c in children if c.data.params["phase"] == "infuse"]
    assert {float(c.data.params["ratio"]) for c in infused} == set(MICRO_RATIOS)
    for child in infused:
        assert {"size", "n_params", "ratio", "tokens", "exposures_per_fact", "seed"} <= set(
            child.data.params
        )
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "retention")]
        # Whole global batches of 8 x 64 tokens: at most the budget rounded up to a batch.
        assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] <= 100_352
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.json", "retention_vs_ratio.png", "sweep.yaml"} <= artifacts
    assert {"law.json", "collapse_vs_size.png", "report.html"} <= artifacts
    # The report: the answer's headline and the whole answer, three charts, and Plotly's script
    # once (it opens offline; the browser test renders it).
    report = (out / "report.html").read_text()
    assert parent.data.tags["mlflow.note.content"].splitlines()[0].strip("*")[:40] in report
    assert "collapse per size" in report and "Recommendation for big" in report
    assert report.count('class="plotly-graph-div"') == 3 and report.count("Plotly.newPlot") == 3
    assert report.count("plotly.js v") == 1


@pytest.mark.slow
def test_the_micro_ladder_collapses_later_as_size_grows(micro_sweep):
    """The phenomenon itself, at micro scale: every size collapses and r* rises with N."""
    tmp_path, _ = micro_sweep
    summary = json.loads((tmp_path / "runs" / "micro" / "summary.json").read_text())
    r_star = [s["collapse_ratio"] for s in summary["sizes"]]
    assert all(r is not None for r in r_star) and r_star == sorted(r_star)
    law = summary["law"]
    assert law["form"] == "power_n" and summary["law_comparison"] == []  # 3 sizes: the default
    assert law["params"]["b_n"] > 0  # the odds of r* grow with N
    rec, decision = summary["recommendation"], summary["recommendation"]["decision"]
    assert 0 < decision["ratio"] < rec["collapse_ratio"] < 1  # the rule's ratio, below r*
    # A number to use only where the forecast is informative (None beside "not informative").
    assert rec["recommended_ratio"] == (decision["ratio"] if decision["informative"] else None)


@pytest.mark.slow
def test_law_from_mlflow_matches_the_sweep_and_the_cli_predicts(micro_sweep):
    from kinfuse_ray.records import fit_recorded

    tmp_path, _ = micro_sweep
    summary = json.loads((tmp_path / "runs" / "micro" / "summary.json").read_text())
    law, sweep, notes = fit_recorded(["micro"], f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert sweep.name == "micro" and "as recorded on its parent run" in notes[0]
    assert law.measured == {s["size"]: s["collapse_ratio"] for s in summary["sizes"]}
    assert law.parameters == pytest.approx(summary["law"]["params"])

    fit = kinfuse(tmp_path, "fit", "--experiment", "micro")
    assert fit.returncode == 0, fit.stderr[-2000:]
    # Beside the sweep's own outputs, which stay as the sweep wrote them.
    refit = tmp_path / "runs" / "micro" / "refit"
    assert "b_n = " in fit.stdout and (refit / "collapse_vs_size.png").exists()
    assert f"law: {refit / 'law.json'}" in fit.stdout and not (tmp_path / "law.json").exists()
    law_file = str(refit / "law.json")
    # From another folder (another checkout, a colleague's machine): under that folder, never
    # into the recorded output_dir of the sweep.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    away = kinfuse(elsewhere, "fit", "--experiment", "micro", "--tracking-uri", uri)
    assert away.returncode == 0, away.stderr[-2000:]
    assert (elsewhere / "runs" / "micro" / "refit" / "law.json").exists()
    assert f"law: {elsewhere / 'runs' / 'micro' / 'refit' / 'law.json'}" in away.stdout
    # The study's answer from the store, as the sweep printed it, from anywhere.
    shown = kinfuse(elsewhere, "show", "micro", "--tracking-uri", uri)
    assert shown.returncode == 0, shown.stderr[-2000:]
    where, answer = shown.stdout.split("\n", 1)
    assert where.startswith("study micro: sweep run ")
    assert answer.rstrip() == (tmp_path / "runs" / "micro" / "answer.txt").read_text().rstrip()
    as_json = json.loads(
        kinfuse(elsewhere, "show", "micro", "--tracking-uri", uri, "--json").stdout
    )
    assert as_json["study"] == "micro" and as_json["recommendation"]["target"] == "big"
    # The report to share, from the store: the very file the sweep wrote.
    shared = kinfuse(elsewhere, "show", "micro", "--tracking-uri", uri, "--report", "r.html")
    assert shared.returncode == 0, shared.stderr[-2000:]
    assert f"report: {elsewhere / 'r.html'}" in shared.stdout
    written = (tmp_path / "runs" / "micro" / "report.html").read_text()
    assert (elsewhere / "r.html").read_text() == written
    predict = kinfuse(tmp_path, "predict", "--law-file", law_file, "--n-params", "1e5")
    assert predict.returncode == 0, predict.stderr[-2000:]
    # The law says where it came from: the refit's study and sweep, the sweep's own law its data.
    assert re.search(r"law fitted on: study micro, sweep micro, commit \S+, measurements [0-9a-f]{12}",
                     predict.stdout), predict.stdout[:500]  # fmt: skip
    own = json.loads((tmp_path / "runs" / "micro" / "law.json").read_text())["source"]
    assert own["study"] == own["sweep"] == "micro" and re.fullmatch("[0-9a-f]{12}", own["data"])
    # One number only when the forecast is informative; either way the text says which.
    assert ("recommended infusion ratio" in predict.stdout) != ("NOT INFORMATIVE" in predict.stdout)
    # For scripts: the forecast as JSON on stdout, the text for people on stderr.
    as_json = kinfuse(tmp_path, "predict", "--law-file", law_file, "--n-params", "1e5", "--json")
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    forecast = json.loads(as_json.stdout)
    assert forecast["n_params"] == 1e5 and "p_keep" in forecast["decision"]
    assert 0 < forecast["collapse_ratio"] < 1 and forecast["law_source"]["study"] == "micro"
    # Options a fitted law cannot honour are refused, not silently ignored.
    for extra, says in ((["--law", "power_n"], "--law cannot apply to --law-file"),
                        (["--experiment", "micro"], "--law-file or --experiment, not both")):  # fmt: skip
        refused = kinfuse(tmp_path, "predict", "--law-file", law_file, "--n-params", "1e5", *extra)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
    stricter = kinfuse(tmp_path, "predict", "--law-file", law_file, "--n-params", "1e5",
                       "--confidence", "0.8")  # fmt: skip
    assert "note: --confidence 0.8 overrides the law file's 0.9" in stricter.stdout
    missing = kinfuse(tmp_path, "predict", "--experiment", "nope", "--n-params", "1e5")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "kinfuse: error: mlflow: no experiment named 'nope' at sqlite:///mlflow.db"
    )


# The micro sweep with settings other than the defaults, and a confirmation run of its target.
CONFIRM = (
    MICRO.replace("name: micro", "name: confirm")
    .replace(
        "  bootstrap: 200",
        "  bootstrap: 200\n  confirm: true\n  acquisition_target: 0.2\n  tolerances: [0.95, 0.85]",
    )
    .replace(
        "val_sequences: 8}",
        "val_sequences: 8, collapse_threshold: 0.6, plateau_tolerance: 0.85}",
    )
)


@pytest.fixture(scope="module")
def confirm_sweep(tmp_path_factory):  # the tests that use it are in the full tier
    tmp_path = tmp_path_factory.mktemp("confirm")
    return tmp_path, run_cli(tmp_path, CONFIRM)


@pytest.mark.full
def test_a_confirmation_run_trains_the_target_and_records_the_forecast(confirm_sweep):
    tmp_path, proc = confirm_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "confirm" / "summary.json").read_text())
    rec, rows = summary["recommendation"], summary["confirmation"]
    # Both edges: the recommended ratio (keeps?) and, where the forecast has a learning side,
    # the smallest ratio that learns with the stated confidence (learns?); and the collapse point.
    window = rec["decision"]["window"]
    edge = window is not None and 0.001 <= window[0] <= 0.999
    assert {r["role"] for r in rows} == {"recommended", "collapse", *(["learning edge"] * edge)}
    by_role = {r["role"]: r for r in rows}
    for row in rows:
        assert row["p_keeps"] is not None and row["kept"] == (row["measured"] >= 0.85)
    if edge:
        learning = by_role["learning edge"]
        assert learning["ratio"] == pytest.approx(window[0], abs=1e-4)
        assert learning["learned"] == (learning["acquisition"] >= 0.2)
        assert learning["p_learns"] == pytest.approx(0.9, abs=0.05)  # stated at the confidence
    # The rule's ratio, trained even where the forecast is not informative (recommended_ratio
    # None in the JSON then).
    assert by_role["recommended"]["ratio"] == pytest.approx(rec["decision"]["ratio"], abs=1e-4)
    assert by_role["collapse"]["ratio"] == pytest.approx(rec["collapse_ratio"], abs=1e-4)
    for row in rows:  # a real trial of the target size, scored against the law's curve
        assert row["target"] == "big" and row["predicted"] is not None
    # The law puts the target at its collapse point at 0.6 of plateau (the sweep's threshold).
    assert by_role["collapse"]["predicted"] == pytest.approx(0.6, abs=0.01)
    assert by_role["recommended"]["predicted"] > 0.85  # kept at the lower end of the interval

    client, runs = runs_of(tmp_path, "confirm")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert "confirm.recommended.measured_retention" in parent.data.metrics
    forecast = json.loads(parent.data.tags["kinfuse.forecast"])
    assert forecast["target"] == "big" and len(forecast["rows"]) == len(rows)
    big = [r for r in runs if r.data.params.get("size") == "big"]
    assert sorted(r.data.params["phase"] for r in big) == ["base", *["infuse"] * len(rows)]

    listed = kinfuse(tmp_path, "forecasts")
    assert listed.returncode == 0, listed.stderr
    assert "confirm" in listed.stdout
    assert f"1 confirmed forecasts, {len(rows)} predictions" in listed.stdout
    assert "P(keeps) at the recommended ratio: stated" in listed.stdout
    # The same forecast from Python: a typed record, scored by the one function the table uses.
    from kinfuse_ray.analysis import score_forecasts
    from kinfuse_ray.records import confirmed_forecasts

    (found,) = confirmed_forecasts(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert (found.study, found.target, found.run_id) == ("confirm", "big", parent.info.run_id)
    assert [r.ratio for r in found.rows] == [row["ratio"] for row in rows]
    score = score_forecasts([found])
    assert (score.forecasts, score.predictions) == (1, len(rows))
    assert score.edges["keeps"][0] == 1 and ("learns" in score.edges) == edge
    assert score.inside == sum(bool(row["covered"]) for row in rows)


@pytest.mark.full
def test_the_study_opens_as_model_training_with_the_answer_on_its_run(confirm_sweep):
    tmp_path, _ = confirm_sweep
    client, runs = runs_of(tmp_path, "confirm")
    experiment = client.get_experiment_by_name("confirm")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    # The run's page opens with the answer in a few short lines; the tables are answer.md.
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith(("**Recommended infusion ratio for big", "**No single ratio"))
    assert "keeps retention >= 85% of its plateau" in note and "Confirmation, big trained" in note
    assert max(len(line) for line in note.splitlines()) <= 100
    answer = Path(client.download_artifacts(parent.info.run_id, "answer.md", str(tmp_path)))
    for part in ("collapse per size", "## The law", "## Recommendation for big",
                 "keeps retention >= 85%", "## Confirmation"):  # fmt: skip
        assert part in answer.read_text()


@pytest.mark.full
def test_kinfuse_fit_uses_the_sweeps_own_settings(confirm_sweep):
    """Non-default threshold, tolerance and acquisition target: `kinfuse fit` gives what the
    sweep's own summary gave, and a flag that overrides a setting says so."""
    tmp_path, _ = confirm_sweep
    summary = json.loads((tmp_path / "runs" / "confirm" / "summary.json").read_text())
    fit = kinfuse(tmp_path, "fit", "--experiment", "confirm", "--out", "refit")
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert "settings: sweep 'confirm' as recorded on its parent run" in fit.stdout
    rec = summary["recommendation"]
    if rec["decision"]["informative"]:
        assert f"recommended infusion ratio {rec['recommended_ratio']:.3f}" in fit.stdout
    else:
        assert "NOT INFORMATIVE" in fit.stdout and "recommended infusion ratio" not in fit.stdout
    assert f"collapse point r* = {rec['collapse_ratio']:.3f}" in fit.stdout
    law = json.loads((tmp_path / "refit" / "law.json").read_text())
    settings, forecast = law["settings"], law["forecast"]
    assert (settings["threshold"], forecast["tolerance"], settings["acquisition_target"]) == (
        0.6,
        0.85,
        0.2,
    )

    other = kinfuse(tmp_path, "fit", "--experiment", "confirm", "--threshold", "0.5",
                    "--out", "other", "--json")  # fmt: skip
    assert other.returncode == 0, other.stderr[-2000:]
    assert "--threshold 0.5 overrides the sweep's 0.6" in other.stderr  # stdout is the JSON
    assert json.loads(other.stdout)["law"] == str(tmp_path / "other" / "law.json")


ONE_TRIAL = micro_sweep_yaml()  # one rung, one ratio: seconds of training


@pytest.mark.full  # Tune's retries of the failing trial take half a minute
def test_a_failing_sweep_leaves_no_run_open(tmp_path):
    """A corrupt base checkpoint in the shared store makes the infusion trial fail (after
    Tune's retries): the sweep exits non-zero with one line, and every MLflow run it opened
    ends FAILED or FINISHED."""
    sweep = parse_sweep(yaml.safe_load(ONE_TRIAL))
    sweep = sweep.model_copy(update={"output_dir": (tmp_path / "runs" / "micro").resolve()})
    bundle = build_bundle(sweep.data, sweep.eval, sweep.seed, sweep.largest_knowledge_load)
    base = BaseStore.beside(sweep.out).folder(
        base_inputs(sweep.rungs["a"], rung_bundle(sweep.rungs["a"], bundle))
    )
    base.mkdir(parents=True)
    metrics = {"retention": 0.5, "acquisition": 0.0, "val_loss": 5.0, "tokens": 1000,
               "exposures_per_fact": 0.0, "tokens_per_s": 1.0, "stopped_early": 0}  # fmt: skip
    (base / "progress.json").write_text(json.dumps({"metrics": metrics}))
    (base / ".metadata").write_bytes(b"not a checkpoint")
    proc = run_cli(tmp_path, ONE_TRIAL)
    assert "a: base run reused from the shared store" in proc.stdout
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("kinfuse: error: ")
    _, runs = runs_of(tmp_path)
    assert runs and {r.info.status for r in runs} <= {"FAILED", "FINISHED"}
    assert any(r.info.status == "FAILED" for r in runs)
    assert not (tmp_path / "runs" / "micro" / "summary.json").exists()


@pytest.mark.full
def test_sweeps_that_need_the_same_base_run_share_it(tmp_path):
    """A second sweep under another name (another study, another output folder) that needs the
    same base run takes it from the shared store: it trains none, records it as reused, and its
    infusion trial, continued from the same weights, measures what the first one did."""
    first = run_cli(tmp_path, ONE_TRIAL)
    assert first.returncode == 0, first.stderr[-3000:]
    (tmp_path / "second.yaml").write_text(ONE_TRIAL.replace("name: micro", "name: second"))
    second = kinfuse(tmp_path, "sweep", "second.yaml")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "a: base run reused from the shared store" in second.stdout
    assert not re.search(r"^  base ", second.stdout, re.MULTILINE)  # no base trial ran
    assert re.search(r"^  base ", first.stdout, re.MULTILINE)
    assert len(base_runs(tmp_path / "runs")) == 1

    summaries = [
        json.loads((tmp_path / "runs" / name / "summary.json").read_text())
        for name in ("micro", "second")
    ]
    assert summaries[0]["base_runs"][0]["retention"] == summaries[1]["base_runs"][0]["retention"]
    assert summaries[0]["trials"][0]["retention"] == summaries[1]["trials"][0]["retention"]
    _, runs = runs_of(tmp_path, "second")
    base = next(r for r in runs if r.data.params.get("phase") == "base")
    assert base.info.status == "FINISHED" and "kinfuse.reused_base_run" in base.data.tags
    assert base.data.metrics["retention"] == summaries[0]["base_runs"][0]["retention"]

    # A sweep whose base run differs (another learning rate) trains its own.
    (tmp_path / "third.yaml").write_text(micro_sweep_yaml(name="third", train={"lr": 0.02}))
    third = kinfuse(tmp_path, "sweep", "third.yaml")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "reused" not in third.stdout and len(base_runs(tmp_path / "runs")) == 2
    # ... and says why: what differs from the stored run of that shape (read from its key.json).
    assert (
        "a: base run to train: the closest stored run (1 of this shape) differs in train.lr "
        in third.stdout
    )


@pytest.mark.full
def test_the_own_data_example_runs_as_the_readme_says(tmp_path):
    """sweeps/own_data.yaml (the README's starting point for one's own knowledge) runs from the
    repository root on its own files and ends in an answer for its target shape."""
    proc = subprocess.run(
        [sys.executable, "-m", "kinfuse_ray.cli", "sweep", "sweeps/own_data.yaml",
         "--output-dir", str(tmp_path / "own_data"),
         "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "own_data" / "summary.json").read_text())
    rec = summary["recommendation"]
    assert summary["law"] is not None and rec["target"] == "n396k"
    # It ends in an answer: every rung collapses and learns inside the grid, and the forecast
    # recommends a ratio inside its best-estimate window, or (on a numeric path that draws it
    # too wide) says it is not informative, how wide, and what to change first. AMD's path
    # recommends 0.901; Intel's draws 5.8 logits: 40 retention probes leave it on the edge.
    for size in summary["sizes"]:
        assert size["outcome"] == "collapsed" and size["acquisition_threshold"] is not None, size
    assert "recommendation for n396k" in proc.stdout
    if not rec["decision"]["informative"]:
        assert rec["recommended_ratio"] is None
        assert "NOT INFORMATIVE (width" in proc.stdout and "to narrow it, start with" in proc.stdout
        return
    low, high = rec["decision"]["best_window"]
    assert low < rec["recommended_ratio"] <= high
    assert f"recommended infusion ratio {rec['recommended_ratio']:.3f}" in proc.stdout
