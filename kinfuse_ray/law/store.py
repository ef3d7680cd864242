"""law.json: the parts of a fitted law as plain JSON (format 4) and back, and the file itself.
A file of another format is refused in one line that says to refit it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import numpy as np

from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.files import write_json_atomic
from kinfuse_ray.law.acquisition import AcquisitionCurve, AcquisitionFit
from kinfuse_ray.law.bootstrap import BootstrapFit, Draws
from kinfuse_ray.law.curves import SizeCurve
from kinfuse_ray.law.fit import PointFit
from kinfuse_ray.law.forms import FORMS

T = TypeVar("T")
FORMAT = 5  # law.json's layout: bumped when a saved law can no longer be read as it was


def fit_to_dict(fit: BootstrapFit) -> dict:
    p = fit.point
    return {
        "form": p.form.name, "method": p.method, "threshold": p.threshold,
        "log_n0": p.log_n0, "log_d0": p.log_d0, "params": list(p.params), "shape": list(p.shape),
        "steepness": p.steepness,
        "curves": [asdict(c) for c in p.curves], "measured": p.measured,
        "size_residuals": list(fit.size_residuals), "trial_sd": fit.trial_sd,
        "draws": fit.draws.to_rows(),
    }  # fmt: skip


def fit_from_dict(raw: dict) -> BootstrapFit:
    curves = tuple(
        SizeCurve(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})
        for c in raw["curves"]
    )
    point = PointFit(FORMS[raw["form"]], raw["method"], raw["threshold"], curves, raw["measured"],
                     raw["log_n0"], raw["log_d0"], tuple(raw["params"]), tuple(raw["shape"]),
                     raw["steepness"])  # fmt: skip
    draws = Draws.from_rows(raw["draws"], len(point.params), len(point.shape))
    return BootstrapFit(point, tuple(raw["size_residuals"]), raw["trial_sd"], draws)


def acquisition_to_dict(a: AcquisitionFit) -> dict:
    curve = a.curve and {"curves": [c.name for c in a.curve.curves], "log_n0": a.curve.log_n0,
                         "log_d0": a.curve.log_d0, "budgets": a.curve.budgets,
                         "params": list(a.curve.params)}  # fmt: skip
    return {"thresholds": a.thresholds, "target": a.target, "curve": curve,
            "size_residuals": list(a.size_residuals), "held_errors": list(a.held_errors),
            "held_params": [list(p) for p in a.held_params],
            "shifts": None if a.shifts is None else a.shifts.tolist(), "rho": a.rho, "note": a.note}  # fmt: skip


def acquisition_from_dict(raw: dict, curves: tuple[SizeCurve, ...]) -> AcquisitionFit:
    """The learning side saved by `acquisition_to_dict`, its curves among the law's `curves`."""
    thresholds = {s: tuple(p) for s, p in raw["thresholds"].items()}
    curve = None
    if raw["curve"]:
        by_name = {c.name: c for c in curves}
        c = raw["curve"]
        curve = AcquisitionCurve(tuple(by_name[s] for s in c["curves"]), c["log_n0"], c["log_d0"],
                                 c["budgets"], tuple(c["params"]))  # fmt: skip
    shifts = None if raw["shifts"] is None else np.asarray(raw["shifts"], float)
    return AcquisitionFit(thresholds, raw["target"], curve, tuple(raw["size_residuals"]),
                          tuple(raw["held_errors"]), tuple(tuple(p) for p in raw["held_params"]),
                          shifts, raw["rho"], raw["note"])  # fmt: skip


def write_law(raw: dict, path: str | Path) -> None:
    write_json_atomic(Path(path), {"format": FORMAT, **raw}, indent=1)


def read_law(path: str | Path, from_dict: Callable[[dict], T]) -> T:
    """`from_dict` of the law saved at `path`; any problem is one line naming the file."""
    try:
        raw = json.loads(Path(path).read_text())
        if isinstance(raw, dict) and {"study", "sizes", "trials"} <= raw.keys():
            raise KinfuseError(
                f"{path}: a sweep's summary.json, not a saved law: load the law.json beside it"
            )
        if not isinstance(raw, dict) or ("retention" not in raw and "params_" not in raw):
            raise KinfuseError(f"{path}: not a saved infusion law (no fitted retention law in it)")
        if raw.get("format") != FORMAT:
            raise KinfuseError(
                f"{path}: saved by an older kinfuse-ray (law format {raw.get('format', 1)}, "
                f"this version reads {FORMAT}): refit it with `kinfuse fit`"
            )
        return from_dict({k: v for k, v in raw.items() if k != "format"})
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise KinfuseError(f"{path}: not a saved infusion law ({exc})") from None
