"""The knowledge-infusion scaling law r*(N, D), bounded in (0, 1), fitted to every trial.

    law, compared = select_law(curves)              # one SizeCurve per model size (all seeds)
    law.predict(n_params=1e8, tokens=2e9)           # -> Prediction: r*, interval, window, ratio

Bottom to top: `curves` (the data), `forms` (the law's shapes, a registry), `settings`, `fit` (one
point fit), `bootstrap` (its draws), `acquisition` (the learning side), `checks` (held-out sizes,
the top slope), `store` (law.json), `prediction` and `draws` (a forecast's result and the
arrays it is made of), `forecast` (the fitted, frozen `InfusionLaw`), `select` (fit, validate,
choose the form). Written r* = r_max * sigmoid(eta) with eta linear in log N (and log D), every
form predicts r* in (0, 1); near r* = 1 the odds law is the pilot's power law in 1 - r*.
"""

from kinfuse_ray.law.checks import HeldOut, HeldValue, LawComparison, TopSlope
from kinfuse_ray.law.curves import (
    SizeCurve,
    curve_name,
    curves_from_points,
    size_curve,
    spans_budgets,
)
from kinfuse_ray.law.fit import point_law
from kinfuse_ray.law.forecast import InfusionLaw
from kinfuse_ray.law.forms import DEFAULT_FORM, FORMS, Form
from kinfuse_ray.law.prediction import Exposures, Prediction, ToleranceRow
from kinfuse_ray.law.select import (
    MIN_SIZES_TO_SELECT,
    compare_laws,
    leave_one_size_out,
    select_law,
)
from kinfuse_ray.law.settings import FitSettings, ForecastSettings, from_sweep
from kinfuse_ray.law.store import FORMAT

__all__ = [
    "DEFAULT_FORM", "FORMAT", "FORMS", "MIN_SIZES_TO_SELECT", "Exposures", "FitSettings",
    "ForecastSettings", "Form", "HeldOut", "HeldValue", "InfusionLaw", "LawComparison",
    "Prediction", "SizeCurve", "ToleranceRow", "TopSlope", "compare_laws", "curve_name", "curves_from_points",
    "from_sweep", "leave_one_size_out", "point_law", "select_law", "size_curve", "spans_budgets",
]  # fmt: skip
