"""kinfuse-ray: find where knowledge infusion collapses retention, and predict it for larger models."""

from kinfuse_ray.law import CollapseRecord, InfusionLaw, Prediction, compare_laws, select_law

__all__ = ["CollapseRecord", "InfusionLaw", "Prediction", "compare_laws", "select_law"]
__version__ = "0.1.0"
