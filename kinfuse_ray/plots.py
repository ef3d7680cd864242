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
        ticks = sorted({t.ratio for t in summary.trials})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], rotation=60, fontsize=7)
        ax.minorticks_off()
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
    and the queried prediction; in the general share 1 - r* when that is what the law fits (its
    power law is then a straight line)."""
    share = law.target == "general_share"

    def y(ratio):
        return 1.0 - np.asarray(ratio, dtype=float) if share else np.asarray(ratio, dtype=float)

    def point(ax, x, center, ends, **style):
        """A marker at y(center) with an error bar spanning y(ends)."""
        c, e = float(y(center)), sorted(float(v) for v in y(ends))
        ax.errorbar([x], [c], yerr=[[c - e[0]], [e[1] - c]], capsize=3, **style)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, rec in enumerate(law.records_):
        label = "measured (bracket)" if i == 0 else None
        point(ax, rec.n_params, rec.ratio, rec.bracket, fmt="o", color="C0", label=label)
    n = np.array([rec.n_params for rec in law.records_])
    top = max(n.max(), prediction.n_params if prediction else 0)
    grid = np.geomspace(n.min() / 1.5, top * 1.5, 60)
    preds = [law.predict(x) for x in grid]
    ax.plot(grid, y([p.ratio for p in preds]), color="C1", label=f"{law.form} fit ({law.target})")
    ax.fill_between(
        grid, y([p.interval[0] for p in preds]), y([p.interval[1] for p in preds]), color="C1",
        alpha=0.2, label=f"{law.confidence:.0%} bootstrap interval",
    )  # fmt: skip
    v = law.validation_
    if v is not None:
        held = max(law.records_, key=lambda rec: rec.n_params)
        point(ax, held.n_params, v.predicted, v.interval, fmt="s", mfc="none", color="C2",
              label=f"held-out prediction of {v.held_out}")  # fmt: skip
    if prediction:
        p = prediction
        point(ax, p.n_params, p.ratio, p.interval, fmt="*", ms=12, color="C3",
              label=f"prediction for {target}")  # fmt: skip
        ax.plot([p.n_params], y([p.safe_ratio]), "v", color="C3",
                label=f"recommended r = {p.safe_ratio:.3f}")  # fmt: skip
    ylabel = "general share at collapse, 1 - r*" if share else "collapse ratio r*"
    ax.set(xscale="log", yscale="log", xlabel="non-embedding parameters N", ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(f"{title}: collapse point vs model size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
