"""What MLflow holds, read back: the finished trials of a study's latest sweep with that sweep's
own settings, the law refitted from them, and every confirmed forecast in a store."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from kinfuse_ray.analysis import Forecast, size_curves
from kinfuse_ray.config import EvalConfig, PredictConfig, SweepConfig, parse_sweep
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.law import InfusionLaw, from_sweep, select_law
from kinfuse_ray.law.settings import overridden
from kinfuse_ray.output import SWEEP_FILE
from kinfuse_ray.provenance import commit
from kinfuse_ray.spec import Phase, TrialResult, TrialSpec
from kinfuse_ray.tracking import (
    BUDGETS_TAG,
    FORECAST_TAG,
    OUTPUT_TAG,
    child_run_search,
    scoped_env,
)


def _reader(tracking_uri: str) -> MlflowClient:
    """A client for a store that exists: reading must not create one (MLflow makes an empty
    sqlite store at any path it is given, so a typo would read as "nothing recorded")."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise KinfuseError(
                f"mlflow: no tracking store at {tracking_uri} ({path} does not exist)"
            )
    return MlflowClient(tracking_uri=tracking_uri)


@dataclass
class Recorded:
    """What MLflow holds of one or more studies' latest sweeps."""

    trials: list  # finished infusion trials (TrialResult)
    base: list  # finished base runs (TrialResult)
    sweep_files: list[dict]  # each latest sweep's own settings (its logged sweep.yaml)


def _trial_result(run) -> TrialResult:
    """A finished trial's run as the trial reported it (what older runs lack reads as NaN)."""
    p, m = run.data.params, run.data.metrics
    nan = float("nan")
    metrics = {
        "acquisition": nan, "val_loss": nan, "tokens_per_s": nan, "stopped_early": 0.0, **m,
        "tokens": m.get("tokens") or int(p["tokens"]),
        "exposures_per_fact": float(p.get("exposures_per_fact", "nan")),
        "general_exposures_per_fact": float(p.get("general_exposures_per_fact", "nan")),
        "seconds": (run.info.end_time - run.info.start_time) / 1000 if run.info.end_time else 0.0,
    }  # fmt: skip
    spec = TrialSpec(Phase(p["phase"]), p["size"], float(p["ratio"]))
    pretrained = int(p["pretrained_tokens"]) if "pretrained_tokens" in p else None
    return TrialResult.from_metrics(
        spec, metrics, n_params=int(p["n_params"]), tokens=int(p["tokens"]),
        pretrained_tokens=pretrained,
    )  # fmt: skip


def load_trials(tracking_uri: str, experiments: str | list[str]) -> Recorded:
    """Rebuild the finished trials of the latest sweep recorded in each of `experiments` (one
    study's name, or several that combine; an earlier sweep under the same name, run before its
    file or the code changed, does not), with that sweep's own settings. A size x budget
    ladder's study stands for its budgets' studies."""
    experiments = [experiments] if isinstance(experiments, str) else list(experiments)
    client = _reader(tracking_uri)
    runs, sweep_files, ladders = [], [], []
    for name in experiments:
        latest = _latest_sweep(client, name, tracking_uri)
        if latest is None:
            continue
        run_id = latest.info.run_id
        if SWEEP_FILE in {a.path for a in client.list_artifacts(run_id)}:  # older sweeps: none
            sweep_files.append(_recorded_settings(client, run_id, tracking_uri))
        if budgets := latest.data.tags.get(BUDGETS_TAG):  # a ladder: trials by budget
            ladders.append(load_trials(tracking_uri, budgets.split(",")))
            continue
        runs += child_run_search(client, [latest.info.experiment_id], run_id, "FINISHED")
    done = [
        _trial_result(r) for r in runs if "retention" in r.data.metrics and "phase" in r.data.params
    ]
    for ladder in ladders:
        done += ladder.trials + ladder.base
        sweep_files += ladder.sweep_files  # after the ladder's own: its settings win
    trials = [t for t in done if t.phase is Phase.infuse]
    if not trials:
        raise KinfuseError(f"mlflow: no finished infusion trials in {', '.join(experiments)}")
    return Recorded(trials, [t for t in done if t.phase is Phase.base], sweep_files)


def _latest_sweep(client: MlflowClient, study: str, tracking_uri: str):
    """The parent run of the latest sweep recorded under `study` (None: none recorded yet)."""
    found = client.get_experiment_by_name(study)
    if found is None:
        raise KinfuseError(f"mlflow: no experiment named '{study}' at {tracking_uri}")
    latest = client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{OUTPUT_TAG}` != ''",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return latest[0] if latest else None


def _recorded_settings(client: MlflowClient, run_id: str, tracking_uri: str) -> dict:
    """The sweep file a parent run recorded; an unreadable one is an error naming it, never a
    silent fallback to default settings."""
    text = _artifact(client, run_id, SWEEP_FILE, tracking_uri)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KinfuseError(
            f"{tracking_uri}: cannot read the settings run {run_id} recorded ({SWEEP_FILE}: "
            f"{str(exc)[:200]})"
        ) from None


def _artifact(client: MlflowClient, run_id: str, path: str, tracking_uri: str) -> str:
    """A text file a run recorded (the sweep file, the answer); an unreadable one is an error
    naming it, never a silent fallback."""
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            scoped_env(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"),
        ):
            return Path(client.download_artifacts(run_id, path, tmp)).read_text()
    except Exception as exc:  # noqa: BLE001 - MLflow and the artifact store raise many kinds
        raise KinfuseError(
            f"{tracking_uri}: cannot read what run {run_id} recorded ({path}: "
            f"{type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def recorded_answer(
    tracking_uri: str, study: str, paths: tuple[str, ...] = ("answer.txt",)
) -> tuple[list[str], str]:
    """(what the latest sweep of `study` recorded at each of `paths`: answer.txt, the answer as
    it printed it, summary.json, report.html; a line saying which run and when). Every file
    from that one run."""
    client = _reader(tracking_uri)
    latest = _latest_sweep(client, study, tracking_uri)
    if latest is None or latest.info.status != "FINISHED":
        state = "no sweep" if latest is None else f"its latest sweep ended {latest.info.status}"
        raise KinfuseError(f"mlflow: {state} in '{study}' at {tracking_uri}: no answer recorded")
    when = datetime.fromtimestamp(latest.info.start_time / 1000).strftime("%Y-%m-%d %H:%M")
    texts = [_artifact(client, latest.info.run_id, path, tracking_uri) for path in paths]
    return texts, f"study {study}: sweep run {latest.info.run_id}, started {when}"


def confirmed_forecasts(tracking_uri: str) -> list[Forecast]:
    """Every confirmed forecast in the store (all studies), oldest first, with its study."""
    client = _reader(tracking_uri)
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    if not experiments:
        return []
    runs = client.search_runs(
        list(experiments),
        filter_string=f"tags.`{FORECAST_TAG}` != ''",
        order_by=["attributes.start_time ASC"],
        max_results=50_000,
    )
    return [
        Forecast.from_dict({**json.loads(r.data.tags[FORECAST_TAG]), "study":
                            experiments[r.info.experiment_id], "run_id": r.info.run_id,
                            "start_time": r.info.start_time})
        for r in runs
    ]  # fmt: skip


def fit_recorded(
    experiments: str | list[str], tracking_uri: str, overrides: dict | None = None
) -> tuple[InfusionLaw, SweepConfig | None, list[str]]:
    """Refit the law from the trials MLflow holds of `experiments` (one study's name, or several
    that combine), with the sweep's own settings as logged on its parent run (the first
    study's). `overrides` (None values ignored) win and are named in the notes returned, as is
    anything that falls back to a default."""
    experiments = [experiments] if isinstance(experiments, str) else list(experiments)
    recorded = load_trials(tracking_uri, experiments)
    sweep, notes = None, []
    evals = EvalConfig()
    settings, forecast = from_sweep(evals, PredictConfig())
    if recorded.sweep_files:
        raw = recorded.sweep_files[0]
        try:
            sweep = parse_sweep(raw, f"{experiments[0]}'s sweep.yaml")
            evals = sweep.eval
            settings, forecast = from_sweep(evals, sweep.predict, sweep.seed)
            notes.append(f"settings: sweep '{sweep.name}' as recorded on its parent run")
        except KinfuseError as exc:  # recorded by an older version of kinfuse
            with contextlib.suppress(ValueError):
                evals = EvalConfig.model_validate(raw.get("eval") or {})
                settings, forecast = from_sweep(evals, PredictConfig())
            notes.append(f"settings: the recorded ones' eval section ({exc})")
    else:
        notes.append("settings: none recorded with these trials; the defaults")
    settings, forecast, changed = overridden(settings, forecast, overrides or {})
    notes += changed
    # The ladder's trials only: a confirmation run's target is not a point of the law.
    rungs = {rung["name"] for raw in recorded.sweep_files for rung in raw.get("ladder", [])}
    trials, base = (
        [t for t in found if not rungs or t.size in rungs]
        for found in (recorded.trials, recorded.base)
    )
    law, _ = select_law(size_curves(trials, evals, base), settings=settings, forecast=forecast)
    named = {"sweep": sweep.name} if sweep is not None else {}
    law = law.sourced(study="+".join(experiments), **named, commit=commit())
    return law, sweep, notes
