"""MLflow I/O: one experiment per study, a parent run per sweep, a child run per trial.

Only the driver writes (through an explicit `MlflowClient`), so a sqlite store never sees
concurrent writers and trials need no access to the tracking server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from kinfuse_ray.errors import KinfuseError

# A new sqlite store announces its schema set-up at INFO; the sweep says what it records itself.
for _chatty in ("mlflow.store.db.utils", "alembic.runtime.migration"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)

TRIAL_TAG = "kinfuse.trial"  # a child run's trial key: phase-size-ratio
OUTPUT_TAG = "kinfuse.output_dir"  # a sweep's parent run: where its outputs live
FORECAST_TAG = "kinfuse.forecast"  # a sweep's parent run: a confirmed forecast, as JSON
BUDGETS_TAG = "kinfuse.budget_experiments"  # a size x budget ladder's run: its budgets' studies
# MLflow 3 opens an experiment without a kind in its GenAI view (traces, judges); ours is model
# training.
KIND_TAG = "mlflow.experimentKind"
# The runs table shows only names and dates until someone picks columns; a saved view (what the
# UI's "Share" button writes: an experiment tag its link names) opens it on the columns that
# matter: each sweep's answer on its row, each trial's outcome on its own (under its sweep's).
VIEW_KEY = "kinfuse"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_COLUMNS = (
    ("metrics", "retention"), ("metrics", "acquisition"), ("metrics", "val_loss"),
    ("metrics", "stopped_early"), ("metrics", "recommended_ratio"),
    ("metrics", "predicted_collapse_ratio"), ("params", "size"), ("params", "ratio"),
)  # fmt: skip
EXPERIMENT_TAGS = {
    KIND_TAG: "custom_model_development",
    VIEW_TAG: json.dumps({"selectedColumns": [f"{kind}.`{name}`" for kind, name in VIEW_COLUMNS]}),
}


def experiment_page(experiment_id: str) -> str:
    """The experiment's runs in the model-training view, on the columns of the saved view (MLflow
    opens an experiment in its GenAI view unless the address asks otherwise)."""
    return (
        f"/#/experiments/{experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"
    )


def _reason(exc: Exception) -> str:
    """The gist of a store's failure, not a page of urllib3 retry detail."""
    text = str(exc)
    known_failures = (
        "Connection refused", "Name or service not known", "timed out",
        "password authentication failed", "does not exist",
    )  # fmt: skip
    for known in known_failures:
        if known in text:
            return known.lower()
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:160]


@contextlib.contextmanager
def scoped_env(**values: str) -> Iterator[None]:
    """Set environment variables for a block, then restore what was there."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# Once a sweep is under way, a tracking server that blips (a restart, a network hiccup) must not
# end days of training: MLflow's client retries with backoff (the user's settings win).
RETRY_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "10",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "120",
}


def redacted(uri: str) -> str:
    """`uri` with any password in it replaced by ***, for messages."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _check_database(uri: str) -> None:
    """First contact with a database store in seconds and one line: MLflow's own engine set-up
    retries for about 100 s and prints each failure."""
    import sqlalchemy

    name = f"mlflow.tracking_uri '{redacted(uri)}'"
    timeout = {"connect_timeout": 10} if uri.startswith("postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=timeout)
    except ModuleNotFoundError as exc:  # the database's driver is not installed
        extra = " (pip install 'kinfuse-ray[postgres]')" if "postgres" in uri else ""
        raise KinfuseError(
            f"{name}: its client library '{exc.name}' is not installed{extra}"
        ) from None
    try:
        with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
        raise KinfuseError(f"{name}: cannot reach the tracking store ({_reason(exc)})") from None
    finally:
        engine.dispose()


def store_failure(exc: BaseException) -> bool:
    """Whether `exc` is the tracking store failing (unreachable, refusing, erroring)."""
    import requests
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException | requests.RequestException | sqlalchemy.exc.DBAPIError)


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str):
        for key, value in RETRY_SETTINGS.items():
            os.environ.setdefault(key, value)
        self.uri, self.experiment = tracking_uri, experiment
        scheme = urlsplit(tracking_uri).scheme
        if scheme not in ("", "file", "sqlite", "http", "https", "databricks"):
            _check_database(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        # The first contact fails fast (seconds, not minutes of retries) on a wrong address.
        with scoped_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
            self.experiment_id = self._experiment(experiment)

    def __reduce__(self):  # pickled (with Tune's callbacks): reconnects where it is loaded
        return Tracker, (self.uri, self.experiment)

    def _experiment(self, experiment: str) -> str:
        try:
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                experiment_id = self.client.create_experiment(
                    experiment, artifact_location=self._artifacts(experiment), tags=EXPERIMENT_TAGS
                )
            else:
                experiment_id = found.experiment_id
                for key, value in EXPERIMENT_TAGS.items():  # a store older than these tags
                    if found.tags.get(key) != value:
                        self.client.set_experiment_tag(experiment_id, key, value)
            return experiment_id
        except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
            raise KinfuseError(
                f"mlflow.tracking_uri '{redacted(self.uri)}': cannot reach the tracking store "
                f"({_reason(exc)})"
            ) from None

    def _artifacts(self, experiment: str) -> str | None:
        # A local store keeps artifacts beside it (not in ./mlruns); a server decides for itself.
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri.removeprefix("sqlite:///")).resolve()
            return (db.parent / "mlartifacts" / experiment).as_uri()
        return None

    def start_run(
        self, name: str, params: dict, tags: dict | None = None, parent: str | None = None
    ) -> str:
        tags = dict(tags or {})
        if parent:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict) -> None:
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(run_id, metrics=batch)

    def set_tags(self, run_id: str, tags: dict) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, run_id: str, path: Path) -> None:
        self.client.log_artifact(run_id, str(path))

    def failed_midway(self, exc: BaseException) -> KinfuseError:
        """The one line for a store that failed while a sweep ran."""
        return KinfuseError(
            f"mlflow.tracking_uri '{redacted(self.uri)}': the tracking store failed midway "
            f"({_reason(exc)}); runs it could not close stay RUNNING until the sweep carries on "
            "with --resume (or starts afresh), which closes them"
        )

    def describe(self, run_id: str, markdown: str) -> None:
        """The run's description: MLflow shows it on the run's overview page."""
        self.set_tags(run_id, {"mlflow.note.content": markdown})

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def reopen(self, run_id: str) -> None:
        """Mark a run RUNNING again: a resumed sweep carries on its own runs."""
        self.client.update_run(run_id, status="RUNNING")

    def child_runs(self, parent: str) -> dict:
        """The trial runs of sweep run `parent`, by trial key."""
        runs = child_run_search(self.client, [self.experiment_id], parent)
        return {r.data.tags[TRIAL_TAG]: r for r in runs if TRIAL_TAG in r.data.tags}

    def sweep_runs(self, output_dir: Path) -> list:
        """The parent runs of sweeps that wrote to `output_dir`, newest first."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{OUTPUT_TAG}` = '{output_dir}'",
            order_by=["attributes.start_time DESC"],
        )

    def end_open_children(self, parent: str, status: str = "FAILED") -> int:
        """Close every child run of `parent` still RUNNING (a crash must not leave any open)."""
        runs = child_run_search(self.client, [self.experiment_id], parent, status="RUNNING")
        for run in runs:
            self.end_run(run.info.run_id, status)
        return len(runs)


def child_run_search(
    client: MlflowClient, experiments: list[str], parent: str, status: str = ""
) -> list:
    """The child runs of `parent` (with `status`, if given): the one query for a sweep's trials."""
    where = f"tags.mlflow.parentRunId = '{parent}'"
    if status:
        where += f" and attributes.status = '{status}'"
    return client.search_runs(experiments, filter_string=where, max_results=50_000)
