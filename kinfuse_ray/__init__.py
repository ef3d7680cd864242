"""kinfuse-ray: find where knowledge infusion collapses retention, and predict it for larger models.

The public names are imported on first use, so `import kinfuse_ray` (and the training code a
bare GPU box runs) needs neither scipy nor Ray nor MLflow.
"""

from importlib import import_module

_EXPORTS = {
    "InfusionLaw": "kinfuse_ray.law",
    "Prediction": "kinfuse_ray.law",
    "SizeCurve": "kinfuse_ray.law",
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
