"""Every Grafana panel in dashboards/ queries a metric the trials really export, and every
metric they export is on a panel."""

import json
import re

import pytest

from kinfuse_ray.live_metrics import exported_names

from .helpers import REPO

DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))


def queried_metrics(dashboard: dict) -> set[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        if isinstance(var.get("query"), dict):
            exprs.append(var["query"]["query"])
    return {m for expr in exprs for m in re.findall(r"\bray_[a-zA-Z_:][a-zA-Z0-9_:]*", expr)}


@pytest.mark.unit
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_queries_an_exported_metric(path):
    dashboard = json.loads(path.read_text())
    assert dashboard["panels"] and all(p.get("targets") for p in dashboard["panels"])
    queried = queried_metrics(dashboard)
    assert queried and queried <= exported_names(), queried - exported_names()


@pytest.mark.unit
def test_every_exported_metric_is_on_a_dashboard():
    """Nothing a trial publishes goes unseen (and the dashboards folder is not empty)."""
    shown = set().union(*(queried_metrics(json.loads(p.read_text())) for p in DASHBOARDS))
    assert exported_names() - shown == set()


@pytest.mark.slow
def test_trial_metrics_reach_prometheus_through_ray():
    """A real local Ray instance exports what a trial publishes on its Prometheus endpoint."""
    import socket
    import time
    import urllib.request

    import ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(
        num_cpus=1,
        _metrics_export_port=port,
        _system_config={"metrics_report_interval_ms": 500},
    )
    try:

        @ray.remote
        def trial():
            from kinfuse_ray.live_metrics import LiveMetrics
            from kinfuse_ray.spec import Phase, TrialSpec

            with LiveMetrics("probe", TrialSpec(Phase.infuse, "s1", 0.5)) as live:
                live.wrap(lambda metrics: None)({"retention": 0.7, "tokens_per_s": 123.0})
                time.sleep(3)
            time.sleep(3)

        done = trial.remote()
        # Ended trials are counted by the sweep's driver, as MlflowTrials does.
        from kinfuse_ray.live_metrics import EndedTrials
        from kinfuse_ray.spec import Phase, TrialSpec

        EndedTrials("probe").ended(TrialSpec(Phase.infuse, "s1", 0.5), "completed")
        wanted = {"ray_kinfuse_retention", "ray_kinfuse_trials_finished_total"}
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while not wanted <= seen and time.monotonic() < deadline:
            time.sleep(1)
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            lines = body.decode().splitlines()
            seen = {line.split("{")[0] for line in lines if line.startswith("ray_kinfuse")}
        ray.get(done)
    finally:
        ray.shutdown()
    assert wanted <= seen <= exported_names()
    assert any('study="probe"' in line and line.endswith(" 0.7") for line in lines)
