"""kinfuse-ray: find where knowledge infusion collapses retention, and predict it for larger models."""

from kinfuse_ray.law import CollapseRecord, InfusionLaw, Prediction

__all__ = ["CollapseRecord", "InfusionLaw", "Prediction"]
__version__ = "0.1.0"
