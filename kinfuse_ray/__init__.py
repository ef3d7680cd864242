"""kinfuse-ray: find where knowledge infusion collapses retention, and predict it for larger models.

The public API, imported on first use (so `import kinfuse_ray`, and the training code a bare GPU
box runs, needs neither scipy nor Ray nor MLflow):

- `load_sweep(path)` / `parse_sweep(dict)`: a validated `SweepConfig`; `run_sweep(sweep)` runs it
  on Ray (Tune + Train) and records it in MLflow, returning a `Summary`.
- `load_trials(tracking_uri, experiments)` and `fit_recorded(experiments, tracking_uri)`: the
  recorded trials of earlier sweeps, and the law refitted from them with their own settings.
- `InfusionLaw`, `SizeCurve`, `curves_from_points`, `select_law`, `compare_laws`: fit the
  knowledge-infusion law to your own measurements; `InfusionLaw.predict` gives a `Prediction`
  with its `Decision`.
"""

from importlib import import_module

_EXPORTS = {
    "SweepConfig": "kinfuse_ray.config",
    "load_sweep": "kinfuse_ray.config",
    "parse_sweep": "kinfuse_ray.config",
    "run_sweep": "kinfuse_ray.sweep",
    "Summary": "kinfuse_ray.analysis",
    "load_trials": "kinfuse_ray.records",
    "fit_recorded": "kinfuse_ray.records",
    "InfusionLaw": "kinfuse_ray.law",
    "Prediction": "kinfuse_ray.law",
    "SizeCurve": "kinfuse_ray.law",
    "curves_from_points": "kinfuse_ray.law",
    "compare_laws": "kinfuse_ray.law",
    "select_law": "kinfuse_ray.law",
    "Decision": "kinfuse_ray.decision",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kinfuse_ray' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
