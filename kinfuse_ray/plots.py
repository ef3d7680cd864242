"""The sweep's two plots, written as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kinfuse_ray.analysis import Summary, collapse_curve  # noqa: E402
from kinfuse_ray.law import InfusionLaw, Prediction  # noqa: E402


def plot_retention(summary: Summary, path: Path) -> Path:
    """Retention and acquisition against infusion ratio, one line per size, r* marked."""
    fig, (ax_ret, ax_acq) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for i, size in enumerate(summary.sizes):
        color = f"C{i}"
        ratios, retention, acquisition = collapse_curve(summary.trials, size.size)
        label = f"{size.size} ({size.n_params:,} params)"
        ax_ret.plot(ratios, retention, "o-", color=color, label=label)
        ax_acq.plot(ratios, acquisition, "o-", color=color, label=label)
        if size.collapse.found:
            ax_ret.axvline(size.collapse.ratio, color=color, ls=":", lw=1)
    ax_ret.set(
        xlabel="infusion ratio r",
        ylabel="retention (chance-corrected)",
        title="Retention of general knowledge",
    )
    ax_acq.set(
        xlabel="infusion ratio r",
        ylabel="acquisition (chance-corrected)",
        title="Acquisition of domain knowledge",
    )
    for ax in (ax_ret, ax_acq):
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
        # Collapse points of larger models crowd towards r = 1: a logit axis spreads them.
        ax.set_xscale("logit")
    ax_ret.legend(fontsize=8)
    fig.suptitle(f"{summary.study}: dotted lines mark each size's collapse point r*")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_law(
    law: InfusionLaw,
    path: Path,
    title: str,
    prediction: Prediction | None = None,
    target: str = "target",
) -> Path:
    """Collapse point against size (log-log) with the fit, its interval band, the held-out check
    and the queried prediction."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    n = np.array([r.n_params for r in law.records_])
    r = np.array([r.ratio for r in law.records_])
    lo = np.array([rec.bracket[0] for rec in law.records_])
    hi = np.array([rec.bracket[1] for rec in law.records_])
    ax.errorbar(
        n, r, yerr=[r - lo, hi - r], fmt="o", color="C0", capsize=3, label="measured r* (bracket)"
    )
    top = max(n.max(), prediction.n_params if prediction else 0)
    grid = np.geomspace(n.min() / 1.5, top * 1.5, 60)
    preds = [law.predict(x) for x in grid]
    ax.plot(grid, [p.ratio for p in preds], color="C1", label=f"{law.form} fit ({law.target})")
    ax.fill_between(
        grid, [p.interval[0] for p in preds], [p.interval[1] for p in preds], color="C1", alpha=0.2,
        label=f"{law.confidence:.0%} bootstrap interval",
    )  # fmt: skip
    v = law.validation_
    if v is not None:
        held = max(law.records_, key=lambda rec: rec.n_params)
        ax.errorbar(
            [held.n_params], [v.predicted], yerr=[[v.predicted - v.interval[0]], [v.interval[1] - v.predicted]],
            fmt="s", mfc="none", color="C2", capsize=3, label=f"held-out prediction of {v.held_out}",
        )  # fmt: skip
    if prediction:
        p = prediction
        ax.errorbar(
            [p.n_params], [p.ratio], yerr=[[p.ratio - p.interval[0]], [p.interval[1] - p.ratio]],
            fmt="*", ms=12, color="C3", capsize=3, label=f"prediction for {target}",
        )  # fmt: skip
        ax.plot(
            [p.n_params],
            [p.safe_ratio],
            "v",
            color="C3",
            label=f"recommended r = {p.safe_ratio:.3f}",
        )
    ax.set(
        xscale="log", yscale="log", xlabel="non-embedding parameters N", ylabel="collapse ratio r*"
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(f"{title}: collapse point vs model size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
