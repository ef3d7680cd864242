"""Live trial metrics through Ray's metrics API, for the Grafana dashboard in dashboards/.

Ray exports each metric to Prometheus as `ray_<name>` (counters as `ray_<name>_total`),
tagged with the study, size, ratio and phase of the trial that set it.
"""

from __future__ import annotations

from collections.abc import Callable

from ray.util.metrics import Counter, Gauge

TAGS = ("study", "size", "ratio", "phase")
GAUGES = {
    "kinfuse_tokens_per_s": ("tokens_per_s", "Training tokens per second of the trial"),
    "kinfuse_retention": ("retention", "Chance-corrected retention of general knowledge"),
    "kinfuse_acquisition": ("acquisition", "Chance-corrected acquisition of domain knowledge"),
    "kinfuse_val_loss": ("val_loss", "Validation loss on held-out corpus text"),
    "kinfuse_tokens_trained": ("tokens", "Tokens the trial has trained on so far"),
}
RUNNING = "kinfuse_trial_running"  # 1 while a trial trains, 0 once it has ended
FINISHED = "kinfuse_trials_finished"  # counter, tagged also with how the trial ended


def exported_names() -> set[str]:
    """The Prometheus series names this module exports (what dashboard panels may query)."""
    return {f"ray_{name}" for name in (*GAUGES, RUNNING)} | {f"ray_{FINISHED}_total"}


class LiveMetrics:
    """One trial's gauges. As a context manager it marks the trial running, and ended (by
    `outcome`: "failed" if the block raised) when the block exits; `wrap(report)` publishes
    every report on its way."""

    def __init__(self, study: str, size: str, ratio: float, phase: str):
        tags = {"study": study, "size": size, "ratio": f"{ratio:g}", "phase": phase}
        self.gauges = {
            key: Gauge(name, description, TAGS) for name, (key, description) in GAUGES.items()
        }
        self.running = Gauge(RUNNING, "1 while the trial trains", TAGS)
        self.finished = Counter(FINISHED, "Trials ended, by outcome", (*TAGS, "outcome"))
        for metric in (*self.gauges.values(), self.running):
            metric.set_default_tags(tags)
        self.tags = tags
        self.outcome = "completed"

    def __enter__(self) -> LiveMetrics:
        self.running.set(1)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.running.set(0)
        outcome = "failed" if exc_type else self.outcome
        self.finished.inc(1, tags={**self.tags, "outcome": outcome})

    def wrap(self, report: Callable[..., None]) -> Callable[..., None]:
        def publish_and_report(metrics: dict, **kwargs) -> None:
            self.publish(metrics)
            if metrics.get("stopped_early"):
                self.outcome = "stopped_early"
            report(metrics, **kwargs)

        return publish_and_report

    def publish(self, metrics: dict[str, float]) -> None:
        for key, gauge in self.gauges.items():
            if key in metrics:
                gauge.set(float(metrics[key]))
