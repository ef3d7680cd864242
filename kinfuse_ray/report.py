"""The sweep's report: one self-contained, interactive HTML file (`report.html` beside
summary.json, and on the MLflow parent run) that a team can mail or open offline. It holds the
answer's text and the PNG plots' content as Plotly charts (hover for values, click the legend to
hide a line): retention and acquisition against the ratio per size, the window against size with
the law's bands, and the decision at the target."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from markdown_it import MarkdownIt
from plotly.subplots import make_subplots
from scipy.special import logit

from kinfuse_ray.analysis import Summary, collapse_curve
from kinfuse_ray.config import EVAL_DEFAULTS, PREDICT_DEFAULTS, EvalConfig
from kinfuse_ray.files import write_text_atomic
from kinfuse_ray.law import InfusionLaw, Prediction
from kinfuse_ray.plots import RATIO_TICKS, window_series
from kinfuse_ray.presentation import describe_headline, describe_summary

COLORS = pio.templates["plotly_white"].layout.colorway  # one color per size
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}pre{background:#f6f8fa;padding:.8em;white-space:pre-wrap;font-size:13px}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em}.note{color:#666;font-size:13px}"""


def _ratio_ticks(ratios) -> dict:
    """A logit axis labelled in plain ratios: Plotly has no logit scale, so values are drawn at
    logit(r) and labelled r."""
    ratios = sorted(set(ratios))
    return {"tickvals": list(logit(ratios)), "ticktext": [f"{r:g}" for r in ratios]}


def _band(fig, x, lo, hi, color: str, name: str, **where) -> None:
    """A shaded interval between `lo` and `hi`, one legend entry."""
    fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(hi) + list(lo)[::-1],
                             fill="toself", fillcolor=color, opacity=0.18, line={"width": 0},
                             name=name, hoverinfo="skip"), **where)  # fmt: skip


def retention_figure(
    summary: Summary,
    evals: EvalConfig = EVAL_DEFAULTS,
    acquisition_target: float = PREDICT_DEFAULTS.acquisition_target,
) -> go.Figure:
    """Retention and acquisition against the ratio, one line per size, each size's r* dotted,
    with the collapse and tolerance lines (of the largest size's plateau) and the acquisition
    target."""
    fig = make_subplots(rows=1, cols=2, shared_xaxes=True, subplot_titles=(
        "Retention of general knowledge", "Acquisition of domain knowledge"))  # fmt: skip
    ratios = [t.ratio for t in summary.trials if t.ratio > 0]
    for i, size in enumerate(summary.sizes):
        color = COLORS[i % len(COLORS)]
        r, retention, acquisition = collapse_curve(summary.trials, size.n_params, size.tokens)
        name = f"{size.size} ({size.n_params:,} params, {size.tokens:,} tokens)"
        for col, values, what in ((1, retention, "retention"), (2, acquisition, "acquisition")):
            fig.add_trace(go.Scatter(
                x=logit(r), y=values, mode="lines+markers", name=name, legendgroup=size.size,
                showlegend=col == 1, line={"color": color}, customdata=r,
                hovertemplate=f"{size.size}<br>r %{{customdata:g}}<br>{what} %{{y:.3f}}<extra></extra>",
            ), row=1, col=col)  # fmt: skip
        if size.collapse.found:
            fig.add_vline(x=float(logit(size.collapse.ratio)), line={"color": color, "dash": "dot",
                          "width": 1}, row=1, col=1)  # fmt: skip
    plateau = summary.sizes[-1].collapse.plateau if summary.sizes else None
    if plateau:
        for share, dash, what in ((evals.collapse_threshold, "dot", "collapse"),
                                  (evals.plateau_tolerance, "dash", "tolerance")):  # fmt: skip
            fig.add_hline(y=share * plateau, line={"color": "grey", "dash": dash, "width": 1},
                          annotation_text=f"{what}: {share:.0%} of {summary.sizes[-1].size}'s "
                          "plateau", row=1, col=1)  # fmt: skip
    fig.add_hline(y=acquisition_target, line={"color": "grey", "dash": "dash", "width": 1},
                  annotation_text=f"learns: acquisition >= {acquisition_target:.2f}", row=1, col=2)  # fmt: skip
    if ratios:
        fig.update_xaxes(title="infusion ratio r", **_ratio_ticks(ratios))
    fig.update_yaxes(title="retention (chance-corrected)", row=1, col=1)
    fig.update_yaxes(title="acquisition (chance-corrected)", row=1, col=2)
    fig.update_layout(template="plotly_white", height=480, legend={"orientation": "h", "y": -0.25})
    return fig


def window_figure(law: InfusionLaw, prediction: Prediction | None, target: str) -> go.Figure:
    """The infusion window against size (`plots.plot_law`'s content): the keep ratio and the
    learn ratio with their intervals, r* with the measured ones, the target's forecast."""
    w = window_series(law, prediction)
    conf = f"{law.forecast.confidence:.0%}"
    fig = go.Figure()
    _band(fig, w.grid, logit(w.keep_lo), logit(w.keep_hi), "green",
          f"{conf} interval, keep ratio")  # fmt: skip
    fig.add_trace(go.Scatter(x=w.grid, y=logit(w.keep), line={"color": "green"}, customdata=w.keep,
                             name=f"keeps retention >= {w.tolerance:.0%} up to (upper edge)",
                             hovertemplate="N %{x:,.0f}<br>keep ratio %{customdata:.3f}<extra></extra>"))  # fmt: skip
    if w.learn is not None:
        _band(fig, w.grid, logit(w.learn_lo), logit(w.learn_hi), "orange",
              f"{conf} interval, learn ratio")  # fmt: skip
        fig.add_trace(go.Scatter(x=w.grid, y=logit(w.learn), line={"color": "orange", "dash": "dash"},
                                 customdata=w.learn, name="learns the domain from (lower edge)",
                                 hovertemplate="N %{x:,.0f}<br>learn ratio %{customdata:.3f}<extra></extra>"))  # fmt: skip
    fig.add_trace(go.Scatter(x=w.grid, y=logit(w.collapse), line={"color": "royalblue", "dash": "dashdot"},
                             customdata=w.collapse, name=f"collapse point r*: {law.form} ({law.method} fit)",
                             hovertemplate="N %{x:,.0f}<br>r* %{customdata:.3f}<extra></extra>"))  # fmt: skip
    by_name = {c.name: c for c in law.curves}
    measured = list(law.measured.items())
    fig.add_trace(go.Scatter(
        x=[by_name[name].n_params for name, _ in measured], y=logit([r for _, r in measured]),
        mode="markers", marker={"color": "royalblue", "size": 9}, name="measured r*",
        customdata=[[name, r] for name, r in measured],
        hovertemplate="%{customdata[0]}<br>N %{x:,.0f}<br>r* %{customdata[1]:.3f}<extra></extra>",
    ))  # fmt: skip
    shown = [*w.keep_lo, *w.keep_hi, *w.collapse, *law.measured.values()]
    if prediction is not None:
        p = prediction
        fig.add_trace(go.Scatter(
            x=[p.n_params], y=[logit(p.collapse_ratio)], mode="markers", name=f"{target}: r* "
            f"{p.collapse_ratio:.3f} ({p.interval[0]:.3f}-{p.interval[1]:.3f})",
            marker={"symbol": "star", "size": 15, "color": "crimson"},
            error_y={"type": "data", "symmetric": False,
                     "array": [logit(p.interval[1]) - logit(p.collapse_ratio)],
                     "arrayminus": [logit(p.collapse_ratio) - logit(p.interval[0])]},
        ))  # fmt: skip
        shown += list(p.interval)
        if p.recommended_ratio is not None:
            fig.add_trace(go.Scatter(
                x=[p.n_params], y=[logit(p.recommended_ratio)], mode="markers",
                marker={"symbol": "triangle-down", "size": 13, "color": "crimson"},
                name=f"recommended r = {p.recommended_ratio:.3f} ({p.decision.rule})",
            ))  # fmt: skip
    lo, hi = np.clip([min(shown), max(shown)], 1e-4, 1 - 1e-4)
    fig.update_xaxes(type="log", title="non-embedding parameters N")
    fig.update_yaxes(title="infusion ratio r", range=[logit(lo) - 0.3, logit(hi) + 0.3],
                     **_ratio_ticks(t for t in RATIO_TICKS if lo <= t <= hi))  # fmt: skip
    fig.update_layout(template="plotly_white", height=560, legend={"orientation": "h", "y": -0.2},
                      title="The infusion window against model size")  # fmt: skip
    return fig


def decision_figure(law: InfusionLaw, prediction: Prediction, target: str) -> go.Figure:
    """At the target (`plots.plot_decision`'s content): P(keeps), P(learns), P(both) against r
    with the confidence line, the window at that confidence and the recommended ratio."""
    p, d = prediction, prediction.decision
    curves = law.decision_curves(p.n_params, p.tokens)
    x = logit(curves.grid)
    unchecked = set(p.uncalibrated)
    fig = go.Figure()
    sides = [("keeps", f"P(keeps >= {p.tolerance:.0%})", curves.p_keep, "royalblue"),
             ("learns", f"P(learns: acquisition >= {p.acquisition_target:.2f})", curves.p_learn,
              "orange")]  # fmt: skip
    if not unchecked and curves.p_learn is not None:
        sides.append(("both", "P(both)", curves.p_both, "green"))
    for side, name, values, color in sides:
        if values is None:
            continue
        faint = side in unchecked
        fig.add_trace(go.Scatter(
            x=x, y=values, customdata=curves.grid, opacity=0.35 if faint else 1,
            name=name + (" (not calibrated on this ladder)" if faint else ""),
            line={"color": color, "dash": "dash" if side == "both" else "solid"},
            hovertemplate="r %{customdata:.3f}<br>%{y:.2f}<extra>" + side + "</extra>",
        ))  # fmt: skip
    fig.add_hline(y=p.confidence, line={"color": "grey", "dash": "dot", "width": 1},
                  annotation_text=f"confidence {p.confidence:.0%}")  # fmt: skip
    if d.window is not None and not d.window_empty and not unchecked:
        fig.add_vrect(x0=float(logit(d.window[0])), x1=float(logit(d.window[1])),
                      fillcolor="green", opacity=0.1, line_width=0,
                      annotation_text=f"window {d.window[0]:.3f}-{d.window[1]:.3f}",
                      annotation_position="top left")  # fmt: skip
    if d.informative and d.ratio is not None:
        fig.add_vline(x=float(logit(d.ratio)), line={"color": "crimson", "width": 2},
                      annotation_text=f"recommended {d.ratio:.3f}")  # fmt: skip
    fig.add_vline(x=float(logit(p.collapse_ratio)), line={"color": "grey", "dash": "dot", "width": 1},
                  annotation_text=f"r* {p.collapse_ratio:.3f}", annotation_position="bottom right")  # fmt: skip
    verdict = "" if d.informative else f": NOT INFORMATIVE ({'; '.join(d.reasons)})"
    fig.update_xaxes(title="infusion ratio r (share of training tokens from the domain)",
                     **_ratio_ticks(t for t in RATIO_TICKS if curves.grid[0] <= t <= curves.grid[-1]))  # fmt: skip
    fig.update_yaxes(title="probability over the law's draws", range=[-0.03, 1.03])
    fig.update_layout(template="plotly_white", height=480, legend={"orientation": "h", "y": -0.25},
                      title=f"{target} ({p.n_params:,.0f} parameters, {p.tokens:,.0f} tokens){verdict}")  # fmt: skip
    return fig


def write_report(
    summary: Summary,
    path: Path,
    evals: EvalConfig = EVAL_DEFAULTS,
    acquisition_target: float = PREDICT_DEFAULTS.acquisition_target,
) -> Path:
    """`report.html` for `summary`: the answer's headline, the interactive charts, then the
    whole answer (answer.md's text); Plotly's script embedded once, so the file opens offline."""
    figures = [("Retention and acquisition per size", retention_figure(summary, evals, acquisition_target))]  # fmt: skip
    target = summary.target or "target"
    if summary.law is not None:
        figures.append(("The window against size", window_figure(summary.law, summary.recommendation, target)))  # fmt: skip
        if summary.recommendation is not None:
            figures.append((f"The decision for {target}", decision_figure(summary.law, summary.recommendation, target)))  # fmt: skip
    charts = "\n".join(
        f"<h2>{html.escape(title)}</h2>\n"
        + pio.to_html(fig, full_html=False, include_plotlyjs=i == 0, config={"displaylogo": False})
        for i, (title, fig) in enumerate(figures)
    )
    markdown = MarkdownIt()
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(summary.study)}: kinfuse-ray report</title><style>{STYLE}</style>"
        f"</head><body>\n<h1>{html.escape(summary.study)}</h1>\n"
        f"<p class='note'>{html.escape(summary.provenance)}</p>\n"
        f"{markdown.render(describe_headline(summary))}\n{charts}\n"
        f"{markdown.render(describe_summary(summary))}\n</body></html>\n"
    )
    return write_text_atomic(path, page)
