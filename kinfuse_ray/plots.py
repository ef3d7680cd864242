"""The sweep's plots, written as PNG files: retention per size, the law, and the decision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
from scipy.special import expit, logit  # noqa: E402

from kinfuse_ray.analysis import Summary, collapse_curve  # noqa: E402
from kinfuse_ray.config import EVAL_DEFAULTS, PREDICT_DEFAULTS, EvalConfig  # noqa: E402
from kinfuse_ray.law import InfusionLaw, Prediction, spans_budgets  # noqa: E402
from kinfuse_ray.law.prediction import NO_RATIO  # noqa: E402

RATIO_TICKS = (0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998)
SPARSE_TICKS = (0.03, 0.1, 0.3, 0.5, 0.7, 0.9, 0.97, 0.99, 0.998)  # where labels sit side by side


def _ratio_axis(ax, axis: str = "y") -> None:
    """A logit ratio axis labelled in plain ratios (matplotlib's own reads 1-10^-2)."""
    set_ticks = ax.set_yticks if axis == "y" else ax.set_xticks
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    ticks = [t for t in (RATIO_TICKS if axis == "y" else SPARSE_TICKS) if lo <= t <= hi]
    set_ticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()


def plot_retention(
    summary: Summary,
    path: Path,
    evals: EvalConfig = EVAL_DEFAULTS,
    acquisition_target: float = PREDICT_DEFAULTS.acquisition_target,
) -> Path:
    """Retention and acquisition against infusion ratio, one line per size, r* marked, with the
    lines the answer reads them by: retention at the collapse threshold and the tolerance x the
    largest size's plateau (each size's own differs) and the acquisition target."""
    collapse, tolerance = evals.collapse_threshold, evals.plateau_tolerance
    fig, (ax_ret, ax_acq) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    budgets = spans_budgets(summary.sizes)
    for i, size in enumerate(summary.sizes):
        color = f"C{i % 10}"
        ratios, retention, acquisition = collapse_curve(summary.trials, size.n_params, size.tokens)
        label = f"{size.size} ({size.n_params:,} params)"
        if budgets:
            label = f"{size.size}: {size.n_params:,} params, {size.tokens:,} tokens"
        ax_ret.plot(ratios, retention, "o-", color=color, label=label)
        ax_acq.plot(ratios, acquisition, "o-", color=color, label=label)
        if size.collapse.found:
            ax_ret.axvline(size.collapse.ratio, color=color, ls=":", lw=1)
    plateau = summary.sizes[-1].collapse.plateau if summary.sizes else None
    if plateau is not None and plateau > 0:
        for share, style, what in ((collapse, ":", "collapse"), (tolerance, "--", "tolerance")):
            ax_ret.axhline(share * plateau, color="grey", ls=style, lw=1,
                           label=f"{what}: {share:.0%} of {summary.sizes[-1].size}'s plateau")  # fmt: skip
    ax_acq.axhline(acquisition_target, color="grey", ls="--", lw=1,
                   label=f"learns the domain: acquisition >= {acquisition_target:.2f}")  # fmt: skip
    ax_acq.legend(fontsize=7, loc="upper left")
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
        ticks = sorted({t.ratio for t in summary.trials if t.ratio > 0})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], rotation=60, fontsize=7)
        ax.minorticks_off()
    ax_ret.legend(fontsize=8)
    fig.suptitle(f"{summary.study}: dotted lines mark each size's collapse point r*")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class WindowSeries:
    """The infusion window against size as the plots draw it: at each size of `grid`, the keep
    ratio (the window's upper edge) with its interval, r*, and the learn ratio (lower edge) with
    its interval where the law has a learning side."""

    grid: np.ndarray
    tolerance: float
    keep: list[float]
    keep_lo: list[float]
    keep_hi: list[float]
    collapse: list[float]
    learn: list[float] | None
    learn_lo: list[float] | None
    learn_hi: list[float] | None


def window_series(
    law: InfusionLaw, prediction: Prediction | None = None, points: int = 40
) -> WindowSeries:
    """`WindowSeries` from a third below the smallest rung to half again past the largest (or
    the target)."""
    sizes = [c.n_params for c in law.curves]
    top = max(max(sizes), prediction.n_params if prediction else 0)
    grid = np.geomspace(min(sizes) / 1.5, top * 1.5, points)
    preds = [law.at(x).prediction() for x in grid]
    keeps = [p.keep_row for p in preds]
    learns = preds[0].acquisition_threshold is not None
    return WindowSeries(
        grid, preds[0].tolerance,
        keep=[row.ratio for row in keeps],
        keep_lo=[row.interval[0] for row in keeps],
        keep_hi=[row.interval[1] for row in keeps],
        collapse=[p.collapse_ratio for p in preds],
        learn=[p.acquisition_threshold for p in preds] if learns else None,
        learn_lo=[p.acquisition_interval[0] for p in preds] if learns else None,
        learn_hi=[p.acquisition_interval[1] for p in preds] if learns else None,
    )  # fmt: skip


def plot_law(
    law: InfusionLaw,
    path: Path,
    title: str,
    prediction: Prediction | None = None,
    target: str = "target",
) -> Path:
    """The infusion window against size on a logit axis: its upper edge, the ratio that keeps
    retention at the tolerance, and its lower edge, the ratio that learns the domain, each law
    with its prediction band; the collapse point r* past the window with the measured ones and
    the leave-one-size-out predictions; the target's forecast with its recommended ratio."""
    w = window_series(law, prediction)
    grid = w.grid
    conf = f"{law.forecast.confidence:.0%}"
    fig, ax = plt.subplots(figsize=(7, 6.4))
    ax.plot(grid, w.keep, color="C2",
            label=f"keeps retention >= {w.tolerance:.0%} up to (window's upper edge)")  # fmt: skip
    ax.fill_between(grid, w.keep_lo, w.keep_hi, color="C2", alpha=0.15,
                    label=f"{conf} prediction interval, keep ratio")  # fmt: skip
    ax.plot(grid, w.collapse, color="C0", ls="-.",
            label=f"collapse point r* (half kept): {law.form} ({law.method} fit)")  # fmt: skip
    by_name = {c.name: c for c in law.curves}
    ax.plot([by_name[s].n_params for s in law.measured], list(law.measured.values()), "o",
            color="C0", label="measured r* (detector)")  # fmt: skip
    for i, h in enumerate(law.held_out):
        ax.errorbar([h.n_params], [h.predicted], yerr=[[h.predicted - h.interval[0]], [h.interval[1] - h.predicted]],
                    fmt="s", mfc="none", color="C0", capsize=3,
                    label="leave-one-size-out prediction of r*" if i == 0 else None)  # fmt: skip
    thresholds = law.acquisition.thresholds
    if thresholds:
        ax.plot([v[0] for v in thresholds.values()], [v[2] for v in thresholds.values()], "^",
                color="C1", label=f"learns the domain (acquisition {law.settings.acquisition_target:.2f})")  # fmt: skip
    if w.learn is not None:
        ax.plot(grid, w.learn, color="C1", ls="--",
                label="learns the domain from (window's lower edge)")  # fmt: skip
        ax.fill_between(grid, w.learn_lo, w.learn_hi, color="C1", alpha=0.1,
                        label=f"{conf} prediction interval, learn ratio")  # fmt: skip
    if prediction:
        p = prediction
        r, (lo, hi) = p.collapse_ratio, p.interval
        ax.errorbar([p.n_params], [r], yerr=[[r - lo], [hi - r]], fmt="*", ms=12, color="C3",
                    capsize=3, label=f"{target}: r* {r:.3f}")  # fmt: skip
        if p.recommended_ratio is not None:
            ax.plot([p.n_params], [p.recommended_ratio], "v", color="C3",
                    label=f"recommended r = {p.recommended_ratio:.3f} ({p.decision.rule})")  # fmt: skip
    ax.set(
        xscale="log", yscale="logit", xlabel="non-embedding parameters N", ylabel="infusion ratio r"
    )
    # matplotlib's logit axis does not autoscale to what is drawn: span every value, with a
    # margin of 0.3 in logit on each side.
    shown = [v for line in ax.get_lines() for v in np.atleast_1d(line.get_ydata())]
    shown += [*w.keep_lo, *w.keep_hi]
    shown = [v for v in shown if v <= NO_RATIO]  # a size that learns at no ratio sets no limit
    lo, hi = logit(np.clip([min(shown), max(shown)], 1e-4, 1 - 1e-4))
    ax.set_ylim(expit(lo - 0.3), expit(hi + 0.3))
    _ratio_axis(ax, "y")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    ax.set_title(f"{title}: the infusion window vs model size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_budgets(
    law: InfusionLaw, path: Path, title: str, prediction: Prediction | None = None
) -> Path:
    """A law over (N, D): r* against N at each budget and against D at each size, the law's
    lines through the measured collapse points, the target's forecast starred in both."""
    budgets = sorted({c.tokens for c in law.curves})
    sizes = sorted({c.n_params for c in law.curves})
    points = [(c.n_params, c.tokens, law.measured[c.name]) for c in law.curves
              if c.name in law.measured]  # fmt: skip
    fig, (by_n, by_d) = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    axes = ((by_n, budgets, sizes, 0, "budget D {:,.0f} tokens"),
            (by_d, sizes, budgets, 1, "size N {:,.0f}"))  # fmt: skip
    for ax, lines, across, held, label in axes:
        top = max(across[-1], prediction.tokens if held and prediction else 0,
                  prediction.n_params if not held and prediction else 0)  # fmt: skip
        grid = np.geomspace(across[0] / 1.5, top * 1.5, 40)
        for i, fixed in enumerate(lines):
            n, d = (grid, fixed) if held == 0 else (fixed, grid)
            ax.plot(grid, law.predict_point(n, d) if held == 0 else
                    [law.predict_point(fixed, x) for x in grid], color=f"C{i}", label=label.format(fixed))  # fmt: skip
            mine = [(pt[held], pt[2]) for pt in points if pt[1 - held] == fixed]
            ax.plot([m[0] for m in mine], [m[1] for m in mine], "o", color=f"C{i}")
        if prediction:
            x = prediction.n_params if held == 0 else prediction.tokens
            lo, hi = prediction.interval
            ax.errorbar([x], [prediction.collapse_ratio], yerr=[[prediction.collapse_ratio - lo], [hi - prediction.collapse_ratio]],
                        fmt="*", ms=12, color="k", capsize=3, label=f"target: r* {prediction.collapse_ratio:.3f}")  # fmt: skip
        ax.set(xscale="log", yscale="logit")
        ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: the minor labels overlap
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    by_n.set(xlabel="non-embedding parameters N", ylabel="collapse point r*",
             title="r* against size, one line per budget")  # fmt: skip
    by_d.set(xlabel="infusion tokens per trial D", title="r* against budget, one line per size")
    _ratio_axis(by_n, "y")
    fig.suptitle(f"{title}: the law over (N, D), {law.form}; dots are measured collapse points")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_decision(law: InfusionLaw, prediction: Prediction, path: Path, target: str) -> Path:
    """At the target: retention one run keeps against r (median and band) with the tolerance,
    and P(keeps), P(learns), P(both) against r, the window at the stated confidence shaded and
    the recommended ratio marked."""
    p, d = prediction, prediction.decision
    conf = f"{p.confidence:.0%}"
    curves = law.decision_curves(p.n_params, p.tokens)
    grid = expit(np.linspace(logit(0.02), logit(0.998), 60))
    fig, (ax_ret, ax_p) = plt.subplots(1, 2, figsize=(11, 4.4), sharex=True)
    if law.method == "joint":
        kept = [law.expected_retention(p.n_params, p.tokens, r) for r in grid]
        ax_ret.plot(grid, [k[0] for k in kept], color="C0", label="retention one run keeps")
        ax_ret.fill_between(grid, [k[1][0] for k in kept], [k[1][1] for k in kept], color="C0",
                            alpha=0.15, label=f"{conf} prediction interval")  # fmt: skip
    ax_ret.axhline(p.tolerance, color="C3", ls="--", lw=1,
                   label=f"tolerance: {p.tolerance:.0%} of plateau")  # fmt: skip
    ax_ret.axvline(
        p.collapse_ratio, color="grey", ls=":", lw=1, label=f"r* = {p.collapse_ratio:.3f}"
    )
    ax_ret.set(ylabel="retention, share of its pre-infusion level", ylim=(-0.1, 1.15),
               title=f"{target}: retention against the infusion ratio")  # fmt: skip
    # A side that failed its held-out check is drawn faint and named so; P(both) and the window
    # need both sides.
    unchecked = set(p.uncalibrated)
    tag = {side: " (not calibrated on this ladder)" if side in unchecked else ""
           for side in ("keeps", "learns")}  # fmt: skip
    ax_p.plot(curves.grid, curves.p_keep, color="C0", alpha=0.35 if tag["keeps"] else 1,
              label=f"P(keeps >= {p.tolerance:.0%}){tag['keeps']}")  # fmt: skip
    if curves.p_learn is not None:
        ax_p.plot(curves.grid, curves.p_learn, color="C1", alpha=0.35 if tag["learns"] else 1,
                  label=f"P(learns: acquisition >= {p.acquisition_target:.2f}){tag['learns']}")  # fmt: skip
        if not unchecked:
            ax_p.plot(curves.grid, curves.p_both, color="C2", ls="--", label="P(both)")
    ax_p.axhline(p.confidence, color="grey", ls=":", lw=1, label=f"confidence {conf}")
    ax_p.set(ylabel="probability over the law's draws", ylim=(-0.03, 1.03),
             title=f"{target}: the decision at {conf} confidence")  # fmt: skip
    for ax in (ax_ret, ax_p):
        if d.window is not None and not d.window_empty and not unchecked:
            ax.axvspan(*d.window, color="C2", alpha=0.12,
                       label=f"window at {conf}: {d.window[0]:.3f}-{d.window[1]:.3f}")  # fmt: skip
        if d.informative and d.ratio is not None:
            ax.axvline(d.ratio, color="C3", lw=1.5,
                       label=f"recommended r = {d.ratio:.3f} ({d.rule})")  # fmt: skip
        ax.set_xscale("logit")
        ax.set_xlim(grid[0], grid[-1])
        _ratio_axis(ax, "x")
        ax.set_xlabel("infusion ratio r (share of training tokens from the domain)")
        ax.grid(alpha=0.3)
        # Below the axes: inside, it covered P(learns) rising through the lower left.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    verdict = "" if d.informative else f"NOT INFORMATIVE ({'; '.join(d.reasons)})"
    fig.suptitle(f"{target} ({p.n_params:,.0f} parameters, {p.tokens:,.0f} tokens) {verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
