"""The MLflow layer on a real (sqlite) store."""

import json

import pytest

from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.records import load_trials
from kinfuse_ray.tracking import OUTPUT_TAG, TRIAL_TAG, VIEW_TAG, Tracker

pytestmark = pytest.mark.unit


def record_sweep(tracker: Tracker, ratios: list[float], retention: float) -> None:
    parent = tracker.start_run("sweep", {}, {OUTPUT_TAG: "runs/study"})
    for ratio in ratios:
        params = {"phase": "infuse", "size": "n1k", "n_params": 1000, "ratio": ratio}
        run = tracker.start_run(
            f"infuse-n1k-r{ratio}", {**params, "tokens": 100}, {TRIAL_TAG: ratio}, parent
        )
        tracker.log_metrics(run, {"retention": retention, "acquisition": 0.1}, step=100)
        tracker.end_run(run)
    tracker.end_run(parent)


def test_trials_come_from_the_latest_sweep_of_each_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study, other = Tracker(uri, "study"), Tracker(uri, "other")
    record_sweep(study, [0.1, 0.5, 0.9], retention=0.2)  # an earlier design of the study
    record_sweep(study, [0.3, 0.6], retention=0.8)
    record_sweep(other, [0.7], retention=0.5)
    trials = load_trials(uri, ["study"]).trials
    assert sorted(t.ratio for t in trials) == [0.3, 0.6]
    assert {t.retention for t in trials} == {0.8}
    both = load_trials(uri, ["study", "other"]).trials
    assert sorted(t.ratio for t in both) == [0.3, 0.6, 0.7]
    with pytest.raises(KinfuseError, match="no experiment named 'nothing'"):
        load_trials(uri, ["nothing"])


def test_reading_a_store_that_does_not_exist_is_one_line_and_creates_nothing(tmp_path, capsys):
    from kinfuse_ray import cli

    typo = tmp_path / "typo.db"
    for argv in (["forecasts"], ["fit", "--experiment", "quickstart"],
                 ["predict", "--experiment", "quickstart", "--n-params", "1e6"]):  # fmt: skip
        assert cli.main([*argv, "--tracking-uri", f"sqlite:///{typo}"]) == 2
        err = capsys.readouterr().err.strip()
        assert (
            err
            == f"kinfuse: error: mlflow: no tracking store at sqlite:///{typo} ({typo} does not exist)"
        )
    assert not typo.exists()


def test_recorded_settings_that_cannot_be_read_are_an_error_not_the_defaults(tmp_path):
    """Recorded settings that cannot be read (here a damaged file in the artifact store) stop
    the refit with the run named, instead of refitting with default settings and saying none
    were recorded."""
    from pathlib import Path

    from kinfuse_ray.output import SWEEP_FILE

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    study = Tracker(uri, "study")
    record_sweep(study, [0.3, 0.6], retention=0.8)
    assert load_trials(uri, ["study"]).sweep_files == []  # recorded none: an older sweep
    parent = study.client.search_runs(
        [study.experiment_id], filter_string=f"tags.`{OUTPUT_TAG}` != ''"
    )[0]
    (tmp_path / SWEEP_FILE).write_text("name: study\n")
    study.client.log_artifact(parent.info.run_id, str(tmp_path / SWEEP_FILE))
    assert load_trials(uri, ["study"]).sweep_files == [{"name": "study"}]
    stored = Path(parent.info.artifact_uri.removeprefix("file://")) / SWEEP_FILE
    stored.write_text("name: [unclosed\n")
    with pytest.raises(KinfuseError, match=f"cannot read the settings run {parent.info.run_id}"):
        load_trials(uri, ["study"])


def test_the_printed_link_opens_a_saved_view_of_the_columns_that_matter(tmp_path):
    """The runs table lists names and dates only until someone picks columns: the sweep saves a
    view (an experiment tag, as MLflow's "Share" writes) and the link it prints names it; a store
    made before the view gets it when a sweep next opens the experiment."""
    from kinfuse_ray.cli import _mlflow_ui_hint

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "study")
    tracker.client.delete_experiment_tag(tracker.experiment_id, VIEW_TAG)  # an older store
    Tracker(uri, "study")
    view = json.loads(tracker.client.get_experiment(tracker.experiment_id).tags[VIEW_TAG])
    assert {"metrics.`retention`", "metrics.`recommended_ratio`", "params.`ratio`"} <= set(
        view["selectedColumns"]
    )
    hint = _mlflow_ui_hint(uri, "study")
    assert hint.endswith(
        f"/#/experiments/{tracker.experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={VIEW_TAG.rsplit('.', 1)[1]}"
    )
