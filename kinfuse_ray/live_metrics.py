"""Live trial metrics through Ray's metrics API, for the Grafana dashboard in dashboards/.

Ray exports each metric to Prometheus as `ray_<name>` (counters as `ray_<name>_total`),
tagged with the study, size, ratio and phase of the trial that set it.
"""

from __future__ import annotations

from collections.abc import Callable

from ray.util.metrics import Counter, Gauge

from kinfuse_ray.spec import TrialSpec

TAGS = ("study", "size", "ratio", "phase")
GAUGES = {
    "kinfuse_tokens_per_s": ("tokens_per_s", "Training tokens per second of the trial"),
    "kinfuse_retention": ("retention", "Chance-corrected retention of general knowledge"),
    "kinfuse_acquisition": ("acquisition", "Chance-corrected acquisition of domain knowledge"),
    "kinfuse_val_loss": ("val_loss", "Validation loss on held-out corpus text"),
    "kinfuse_tokens_trained": ("tokens", "Tokens the trial has trained on so far"),
    "kinfuse_mfu": ("mfu", "Model FLOPs utilisation of the trial (GPUs with a known peak)"),
    "kinfuse_gpu_memory_gib": ("gpu_memory_gib", "Peak GPU memory allocated per worker, GiB"),
    "kinfuse_eval_share": ("eval_share", "Share of the trial's time spent evaluating"),
    "kinfuse_checkpoint_share": (
        "checkpoint_share",
        "Share of the trial's time spent handing checkpoints over (saving and copying to storage)",
    ),
}
RUNNING = "kinfuse_trial_running"  # 1 while a trial trains, 0 once it has ended
# Counted by the sweep's driver when Tune reports a trial ended (a worker that is dying cannot
# be trusted to export a count), tagged also with how it ended.
FINISHED = "kinfuse_trials_finished"


def exported_names() -> set[str]:
    """The Prometheus series names this module exports (what dashboard panels may query)."""
    return {f"ray_{name}" for name in (*GAUGES, RUNNING)} | {f"ray_{FINISHED}_total"}


class LiveMetrics:
    """One trial's gauges. As a context manager it marks the trial running, and ended (by
    `outcome`: "failed" if the block raised) when the block exits; `wrap(report)` publishes
    every report on its way."""

    def __init__(self, study: str, trial: TrialSpec):
        tags = _tags(study, trial)
        self.gauges = {
            key: Gauge(name, description, TAGS) for name, (key, description) in GAUGES.items()
        }
        self.running = Gauge(RUNNING, "1 while the trial trains", TAGS)
        for metric in (*self.gauges.values(), self.running):
            metric.set_default_tags(tags)

    def __enter__(self) -> LiveMetrics:
        self.running.set(1)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.running.set(0)

    def wrap(self, report: Callable[..., None]) -> Callable[..., None]:
        def publish_and_report(metrics: dict, **kwargs) -> None:
            self.publish(metrics)
            report(metrics, **kwargs)

        return publish_and_report

    def publish(self, metrics: dict[str, float]) -> None:
        for key, gauge in self.gauges.items():
            if key in metrics:
                gauge.set(float(metrics[key]))


class EndedTrials:
    """The driver's count of ended trials, by study, size, ratio, phase and outcome
    ("completed", "stopped_early" or "failed")."""

    def __init__(self, study: str):
        self.study = study
        self.counter = Counter(FINISHED, "Trials ended, by outcome", (*TAGS, "outcome"))

    def ended(self, trial: TrialSpec, outcome: str) -> None:
        self.counter.inc(1, tags={**_tags(self.study, trial), "outcome": outcome})


def _tags(study: str, trial: TrialSpec) -> dict[str, str]:
    return {
        "study": study,
        "size": trial.size,
        "ratio": f"{trial.ratio:g}",
        "phase": trial.phase.value,
    }
