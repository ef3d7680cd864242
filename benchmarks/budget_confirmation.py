"""A size x budget ladder's forecast beyond it, against what a confirmation sweep measured.

The law a ladder fitted (its law.json) forecasts the confirmation sweep's one rung at that
sweep's budget: the collapse point r* and, at each ratio the confirmation trained, the share of
retention kept (over its general-only reference trial), each with its interval; beside them
what the trials measured. Both sweeps are read from MLflow.

    .venv/bin/python benchmarks/budget_confirmation.py runs/budget_continued/law.json \\
        --experiment budget_continued_confirm
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from kinfuse_ray.analysis import confirmation_rows, size_curves  # noqa: E402
from kinfuse_ray.config import EvalConfig  # noqa: E402
from kinfuse_ray.law import InfusionLaw  # noqa: E402
from kinfuse_ray.presentation import describe_confirmation  # noqa: E402
from kinfuse_ray.provenance import describe  # noqa: E402
from kinfuse_ray.records import load_trials  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("law_file", help="the ladder's law.json")
    parser.add_argument("--experiment", required=True, help="the confirmation sweep's study")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    args = parser.parse_args()
    law = InfusionLaw.load(args.law_file)
    recorded = load_trials(args.tracking_uri, [args.experiment])
    (curve,) = size_curves(recorded.trials, EvalConfig(), recorded.base)
    n, d = curve.n_params, curve.tokens
    p = law.predict(n, d)
    measured = curve.collapse(law.settings.threshold)
    fitted = [(c.n_params, c.tokens) for c in law.curves]
    print(describe())
    print(
        f"law {law.form} over {len(fitted)} (size, budget) curves, N up to "
        f"{max(f[0] for f in fitted):,.0f}, D up to {max(f[1] for f in fitted):,.0f} tokens; "
        f"forecast for {curve.name} at N {n:,.0f}, D {d:,.0f}:"
    )
    lo, hi = p.interval
    bracket = f"bracket {measured.bracket[0]:.2f}-{measured.bracket[1]:.2f}"
    if measured.found:
        verdict = "inside" if lo <= measured.ratio <= hi else "OUTSIDE"
        result = f"measured {measured.ratio:.3f} ({bracket}): {verdict}"
    else:
        result = f"measured: {measured.outcome.value} ({bracket})"
    print(
        f"collapse r*: forecast {p.collapse_ratio:.3f} ({law.forecast.confidence:.0%} interval {lo:.3f}-{hi:.3f}); "
        + result
    )
    rows = confirmation_rows(law, p, recorded.trials + recorded.base)
    for row in rows:
        print(describe_confirmation(row))
    inside = [r.covered for r in rows if r.covered is not None]
    print(f"retention kept inside its interval at {sum(inside)} of {len(inside)} ratios")


if __name__ == "__main__":
    main()
