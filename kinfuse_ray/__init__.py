"""kinfuse-ray: find where knowledge infusion collapses retention, and predict it for larger models."""

from kinfuse_ray.law import InfusionLaw, Prediction, SizeCurve, compare_laws, select_law

__all__ = ["InfusionLaw", "Prediction", "SizeCurve", "compare_laws", "select_law"]
__version__ = "0.1.0"
