"""Text for people: the law, a forecast and a sweep's answer, written from their typed results.

Every number printed comes from the result objects (law.py, decision.py, analysis.py); nothing
here computes one. Each label says what its number is: a median, an interval, or a bound that
holds at the stated confidence.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from kinfuse_ray.analysis import Confirmation, Forecast, Summary, score_forecasts
from kinfuse_ray.base_store import Entry
from kinfuse_ray.law import InfusionLaw, Prediction, spans_budgets
from kinfuse_ray.law.prediction import NO_RATIO
from kinfuse_ray.plan import GIB, TIGHT_ABOVE, BudgetPlan, CpuTime, SimulatedSearch, SweepPlan
from kinfuse_ray.spec import Phase, TrialSpec

LEVERS = (
    "a larger model, more infusion tokens (train.tokens) or fewer domain facts raise acquisition "
    "at a given ratio; predict.rule: balanced picks the ratio most likely to do both"
)
NARROWING = {
    "size scatter": "another rung near the target, or more seeds (each rung's r* is measured "
    "less noisily)",
    "curve shape": "ratios spaced around every rung's collapse, so each curve's fall is seen",
    "law parameters": "more retention probes (more general facts) or seeds: less trial noise",
}


UNCALIBRATED = "not calibrated on this ladder"


def _curves_label(budgets: bool) -> str:
    """What the law's points are: sizes, or (size, budget) curves on a size x budget ladder."""
    return "(size, budget) curves" if budgets else "sizes"


def _held_out_label(budgets: bool) -> str:
    return "leave-one-(size, budget)-out" if budgets else "leave-one-size-out"


def _target_label(target: str | None, p: Prediction) -> str:
    """The target by name with its size and budget, or by those alone (`kinfuse predict`)."""
    size = f"{p.n_params:,.0f} non-embedding params, {p.tokens:,.0f} tokens"
    return f"{target} ({size})" if target else size


def describe_source(law: InfusionLaw) -> str:
    """One line: what the law was fitted on and by what (as its law.json records it)."""
    given = [f"{k} {v}" for k, v in law.source.items()]
    return f"law fitted on: {', '.join([*given, f'measurements {law.measurements}'])}"


def describe_law(law: InfusionLaw) -> str:
    """A few lines: the law, its parameters, how r* moves over the top sizes, the held-out check."""
    n, d = [c.n_params for c in law.curves], [c.tokens for c in law.curves]
    conf = f"{law.forecast.confidence:.0%}"
    budgets = spans_budgets(law.curves)  # one curve per (size, budget)
    curves = _curves_label(budgets)
    tokens = f", D {min(d):,.0f} to {max(d):,.0f} tokens" if budgets else ""
    point = law.retention.point
    lines = [
        f"law {law.form} ({law.method} fit), {len(law.curves)} {curves} "
        f"(N {min(n):,.0f} to {max(n):,.0f}{tokens}), "
        f"{sum(len(c.ratios) for c in law.curves)} trials:",
        f"  {point.form.equation(point.log_n0, point.log_d0)}",
    ]
    intervals = law.parameter_intervals()
    for name, value in law.parameters.items():
        lo, hi = intervals[name]
        lines.append(f"  {name} = {value:+.3f}  ({conf} interval {lo:+.3f} to {hi:+.3f})")
    if "g_d" in intervals:
        lines.append(f"  budget: {describe_budget_exponent(*intervals['g_d'])}")
    if point.steepness_terms:
        slopes = " + ".join(f"{v:+.3f} ln({axis} / {np.exp(centre):,.0f})" for v, axis, centre
                            in zip(point.shape[2:], "ND", (point.log_n0, point.log_d0), strict=False))  # fmt: skip
        lines.append(
            f"  curve steepness moves with size (chosen by leave-one-size-out): ln k = "
            f"{point.shape[0]:+.3f} + {slopes}"
        )
    if law.top_slope is not None:
        s = law.top_slope
        verdict = "moves" if s.moving else "is not shown to move (3 sizes: a test of little power)"
        lines.append(
            f"  r* over {', '.join(s.sizes)} {verdict}: slope of logit r* in log N "
            f"{s.slope:+.2f} ({conf} interval {s.interval[0]:+.2f} to {s.interval[1]:+.2f})"
        )
    if (learning := law.acquisition.slope(law.forecast.confidence)) is not None:
        slope, (lo, hi) = learning
        top = max(law.acquisition.curve.curves, key=lambda c: (c.n_params, c.tokens)).name
        lines.append(
            f"  learning side: acquisition a sigmoid in logit r, its location and ceiling laws "
            f"in N; the ratio that learns (acquisition {law.settings.acquisition_target:.2f}) "
            f"moves with N at {top}: slope of its logit in log N {slope:+.2f} ({conf} interval "
            f"{lo:+.2f} to {hi:+.2f}; negative: larger models learn from less of the mix)"
        )
    dof = law.retention.degrees_of_freedom
    if dof <= 2:
        lines.append(
            f"  note: {len(law.retention.size_residuals)} {curves} leave {dof} degree(s) of freedom for "
            "how far sizes scatter around the law, so intervals are wide: add sizes to narrow them"
        )
    summary = law.held_out_summary
    held = _held_out_label(budgets)
    if summary is None:
        lines.append("  held-out check: needs one more size")
    else:
        lines.append(
            f"  {held} over {summary['sizes']} {curves}: {summary['coverage']:.0%} of "
            f"{conf} intervals cover; median |log error| in 1 - r* "
            f"{summary['median_abs_log_error']:.3f} vs {summary['baseline_median_abs_log_error']:.3f} "
            "for the nearest measured size as is"
        )
    if law.keep_widening > 1:
        lines.append(
            f"  keep ratio: its spread widened x{law.keep_widening:.2f}, as far as {held} put the "
            f"held-out {curves}' own keep ratios outside its {conf} intervals"
        )
    for check in law.calibration:
        verdict = "calibrated on this ladder" if check.calibrated else UNCALIBRATED.upper()
        lines.append(f"  P({check.side}): {verdict}; {check.describe()}")
    return "\n".join(lines)


def describe_budget_exponent(lo: float, hi: float) -> str:
    """Which reading of the token budget the interval of g_d (logit r* = ... + g_d log D)
    supports: the share view, r* the same at every budget (g_d = 0), or the exposure view, each
    general fact needing the same number of rehearsals, (1 - r*) D fixed (g_d = 1 near r* = 1)."""
    views = (
        "the share view (r* the same at every budget, g_d = 0)",
        ("the exposure view (each general fact needs the same rehearsals, g_d = 1)"),
    )
    share, exposure = lo <= 0 <= hi, lo <= 1 <= hi
    if share and exposure:
        return f"the interval holds both {views[0]} and {views[1]}: more budgets or seeds"
    if share:
        return f"consistent with {views[0]}, not with {views[1]}"
    if exposure:
        return f"consistent with {views[1]}, not with {views[0]}"
    if hi < 0:
        return "r* falls as the budget grows: neither the share nor the exposure view"
    if lo > 1:
        return "r* rises with the budget faster than the exposure view (g_d = 1) would"
    return (
        "between the share view (g_d = 0) and the exposure view (g_d = 1): a larger budget "
        "allows a larger share, but less than a fixed number of rehearsals would"
    )


def _range(interval: tuple[float, float]) -> str:
    """lo-hi with 3 decimals, more (up to 6) where 3 would print both ends alike or as 1.000."""
    lo, hi = interval
    for digits in range(3, 7):
        a, b = f"{lo:.{digits}f}", f"{hi:.{digits}f}"
        if a != b and (hi >= 1 or float(b) < 1):
            return f"{a}-{b}"
    return f"{lo:.3f}-{hi:.3f}"


def _units(p: Prediction, ratio: float) -> str:
    """A ratio in exposures: what carries to another corpus, fact set or budget."""
    if p.exposures is None:
        return ""
    general, domain = p.exposures.at(ratio)
    return f" [{general:.1f} rehearsals per general fact, {domain:.1f} exposures per domain fact]"


def _uncalibrated(p: Prediction, side: str) -> str | None:
    """Why a side's probabilities are not stated, or None where they can be."""
    check = p.check(side)
    return None if check is None or check.calibrated else f"{UNCALIBRATED} ({check.describe()})"


def _probabilities(p: Prediction) -> str:
    """P(keeps), P(learns) and P(both) at the recommended ratio, each only where the sides it
    rests on passed their held-out check; the others named as not calibrated."""
    d = p.decision
    keeps, learns = _uncalibrated(p, "keeps") is None, _uncalibrated(p, "learns") is None
    stated, unstated = [], []
    for name, value, holds in (
        ("P(keeps)", d.p_keep, keeps),
        ("P(learns)", d.p_learn, learns),
        ("P(both)", d.p_both, keeps and learns),
    ):
        if value is not None:
            (stated if holds else unstated).append(f"{name} {value:.2f}" if holds else name)
    text = ", ".join(stated)
    if unstated:
        text += ("; " if text else "") + f"{', '.join(unstated)}: {UNCALIBRATED}"
    return text


def _at_least(ratio: float) -> str:
    """The learning edge as a bound, or that no ratio reaches it."""
    return "more than any ratio gives" if ratio > NO_RATIO else f"r >= {ratio:.3f}"


def describe_prediction(p: Prediction) -> str:
    """The forecast at one size: r*, both sides of the window, and one decision. A side that
    failed its held-out check is given as medians and intervals, never as a probability."""
    d, conf, tol = p.decision, f"{p.confidence:.0%}", f"{p.tolerance:.0%}"
    keep = p.keep_row
    keep_unchecked, learn_unchecked = _uncalibrated(p, "keeps"), _uncalibrated(p, "learns")
    lines = [
        f"collapse point r* = {p.collapse_ratio:.3f} ({conf} interval {_range(p.interval)}): past it the "
        "model has lost half of what it knew",
        *(
            [f"units: over {p.exposures.tokens:,.0f} tokens, as the largest rung renders its facts"]
            if p.exposures
            else []
        ),
        f"keeps retention >= {tol} of its pre-infusion level up to r = {keep.ratio:.3f} (median; "
        f"{conf} interval {_range(keep.interval)}){_units(p, keep.ratio)}",
        *([f"  keeping side {keep_unchecked}"] if keep_unchecked else []),
    ]
    if p.acquisition_threshold is None:
        lines.append(f"learning side unknown: {p.acquisition_note}")
    elif p.learns_at_no_ratio:
        lines.append(
            f"learns the domain (chance-corrected acquisition >= {p.acquisition_target:.2f}) at "
            f"no ratio (median): at this size acquisition tops out below "
            f"{p.acquisition_target:.2f} however much is infused (a larger model, more infusion tokens "
            "or fewer domain facts raise it)"
        )
    else:
        lines.append(
            f"learns the domain (chance-corrected acquisition >= {p.acquisition_target:.2f}) from "
            f"r = {p.acquisition_threshold:.3f} (median; {conf} interval "
            f"{_range(p.acquisition_interval)}){_units(p, p.acquisition_threshold)}"
        )
        lo, hi = d.best_window
        best = (
            f"{lo:.3f} to {hi:.3f}"
            if lo <= hi
            else f"none (learns from {lo:.3f} > keeps up to {hi:.3f})"
        )
        lines.append(f"best-estimate window: {best}")
        if learn_unchecked:
            lines.append(f"  learning side {learn_unchecked}: its probabilities (the window at "
                         f"{conf} confidence, c*) are not stated")  # fmt: skip
    if p.acquisition_threshold is not None and not learn_unchecked:
        wlo, whi = d.window
        lines.append(
            f"window at {conf} confidence: "
            + (
                f"EMPTY (learning needs {_at_least(wlo)}, keeping needs r <= {whi:.3f})"
                if d.window_empty
                else f"{wlo:.3f} to {whi:.3f}"
            )
        )
        where = f" at r = {d.c_star_ratio:.3f}" if d.c_star > 0 else ""
        lines.append(
            f"c* = {d.c_star:.2f}{where}: the highest confidence at which one ratio both keeps "
            "retention and learns the domain"
        )
    if not d.informative:
        lines.append(
            f"NOT INFORMATIVE ({'; '.join(d.reasons)}): the ratio that keeps {tol} lies within "
            f"{_range(d.keep_interval)} ({conf}); no single ratio is recommended"
        )
        lo, hi = d.best_window or (0.0, 1.0)
        if p.rung is not None and lo > hi:  # measured here: the medians already answer
            lines.append(f"  no ratio does both at this size ({p.rung}, a measured rung): it "
                         f"learns from {lo:.3f}, above {hi:.3f}, the most it keeps {tol} to")  # fmt: skip
        if p.width_sources:
            shares = ", ".join(f"{k} {v:.0%}" for k, v in p.width_sources.items())
            lines.append(f"  width lost when each source is held fixed: {shares}")
            worst = max(p.width_sources, key=p.width_sources.get)
            advice = NARROWING[worst]
            if worst == "size scatter" and p.rung is not None:
                advice = (
                    f"more seeds of {p.rung} (it is a measured rung: a rung beside it adds little)"
                )
            lines.append(f"  to narrow it, start with {worst}: {advice}")
    elif d.ratio is None:
        lines.append(f"no ratio meets rule {d.rule} at {conf} confidence")
    else:
        lines.append(_recommendation(p))
    if p.tolerances:
        lines.append(
            f"  {'retention kept':>14}  {'median r':>8}  {conf + ' interval':<13}  "
            f"at least this with {conf} confidence"
        )
        for row in p.tolerances:
            lines.append(
                f"  {row.tolerance:>14.0%}  {row.ratio:>8.3f}  {_range(row.interval):<13}  "
                f"{row.bound:.3f}"
            )
    return "\n".join(lines)


def _recommendation(p: Prediction) -> str:
    d, conf, tol = p.decision, f"{p.confidence:.0%}", f"{p.tolerance:.0%}"
    what = {
        "retention_first": f"the largest ratio that keeps retention >= {tol} with {conf} "
        "confidence",
        "balanced": "where P(keeps) and P(learns) are jointly highest",
        "domain_first": f"the smallest ratio that learns the domain with {conf} confidence",
    }[d.rule]
    text = (
        f"recommended infusion ratio {d.ratio:.3f}{_units(p, d.ratio)}\n  ({d.rule}: {what}): "
        + _probabilities(p)
    )
    if p.expected_retention is not None:
        # One-sided: the interval's upper end can pass 1 (a run can measure above its own
        # plateau), which reads as nonsense; what a team bets on is the least it keeps.
        point, (least, _) = p.expected_retention
        text += (
            f"; one run keeps {point:.2f} of its retention there (at least {least:.3f} with "
            f"{(1 + p.confidence) / 2:.0%} confidence)"
        )
    if d.learns is False and _uncalibrated(p, "learns") is None:
        text += f"\n  keeps retention; probably does not learn the domain: {LEVERS}"
    return text


def _prediction_with_warnings(p: Prediction) -> str:
    """The forecast, its warnings first: one far from the rungs says so before any number."""
    return "\n".join([*(f"warning: {w}" for w in p.warnings), describe_prediction(p)])


def describe_recommendation(p: Prediction, target: str | None) -> str:
    """The forecast for `target` as the command line prints it, warnings included."""
    head = f"recommendation for {_target_label(target, p)}:"
    return "\n".join([head, textwrap.indent(_prediction_with_warnings(p), "  ")])


def describe_answer(summary: Summary) -> str:
    """A sweep's answer as `kinfuse sweep` prints it (and saves as answer.txt): the collapse
    table, the law, the forms compared and the recommendation."""
    parts = [size_table(summary), ""]
    parts.append(describe_law(summary.law) if summary.law else f"no law fitted: {summary.law_note}")
    if len(summary.law_comparison) > 1:
        ranked = ", ".join(
            f"{c['law']} (held-out |log error| {c['held_out_log_error']})"
            for c in summary.law_comparison
        )
        held = _held_out_label(spans_budgets(summary.sizes))
        parts.append(f"  forms compared by {held}, best first: {ranked}")
    if summary.recommendation:
        parts += ["", describe_recommendation(summary.recommendation, summary.target)]
    return "\n".join(parts)


def describe_confirmation(c: Confirmation) -> str:
    what = f"{c.role:<13} r = {c.ratio:.4f}: retention kept {c.measured:.2f} of plateau"
    if c.predicted is not None:
        lo, hi = c.interval
        verdict = "inside" if c.covered else "OUTSIDE"
        what += f", predicted {c.predicted:.2f} ({lo:.2f}-{hi:.2f}, {verdict})"
    if c.role == "learning edge" and c.learned is not None:
        stated = "" if c.p_learns is None else f" (stated P(learns) {c.p_learns:.2f})"
        what += f"; acquisition {c.acquisition:.2f}: {'learned' if c.learned else 'NOT learned'}{stated}"
    return what


def size_table(summary: Summary) -> str:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    budgets = spans_budgets(summary.sizes)  # then names carry -d<D> and a budget column
    width = max(len(s.size) for s in summary.sizes) + 1 if budgets else 12  # names carry -d<D>
    tokens = max(len(f"{s.tokens:,}") for s in summary.sizes) + 2 if budgets else 0
    lines = [
        f"{'size':<{width}}{'n_params':>10}{'tokens'.rjust(tokens) if budgets else ''}  "
        f"{'collapse r*':>11}  "
        f"{'bracket':<13}  {'best safe':>9}  {'learns from':>11}  note"
    ]
    for s in summary.sizes:
        c = s.collapse
        lines.append(
            f"{s.size:<{width}}{s.n_params:>10,}{f'{s.tokens:,}' if budgets else '':>{tokens}}  "
            f"{fmt(c.ratio):>11}  "
            f"{f'{c.bracket[0]:.2f}-{c.bracket[1]:.2f}':<13}  {fmt(s.best_safe_ratio):>9}  "
            f"{fmt(s.acquisition_threshold):>11}  "
            + "; ".join(n for n in ("" if c.found else c.outcome.value, s.learning_note) if n)
        )
    return "\n".join(lines)


def describe_trial_run(trial: TrialSpec) -> str:
    """What a trial run's page says above its charts."""
    what = (
        f"Base run of {trial.size}: general text only, from scratch."
        if trial.phase is Phase.base
        else f"Infusion trial of {trial.size} at ratio {trial.ratio:g}: that share of its "
        "training tokens is domain knowledge."
    )
    return (
        f"{what} In the charts the x axis (Step) counts training tokens. Retention is "
        "chance-corrected accuracy on the general facts; under the continued schedule it can dip "
        "and recover early in infusion, where the re-warmed learning rate peaks."
    )


def describe_headline(summary: Summary, width: int = 100) -> str:
    """The answer first, in a few short lines (Markdown, wrapped at `width`): what the sweep's
    parent run shows at the top of its MLflow page; the full tables are its answer.md."""
    p, paragraphs = summary.recommendation, []
    if p is not None:
        d, conf = p.decision, f"{p.confidence:.0%}"
        where = _target_label(summary.target, p)
        if d.informative and d.ratio is not None:
            paragraphs.append(
                f"**Recommended infusion ratio for {where}: {d.ratio:.3f}** ({d.rule} at {conf} "
                f"confidence: {_probabilities(p)})."
            )
        else:
            why = "; ".join(d.reasons) or "no ratio meets the rule at this confidence"
            paragraphs.append(f"**No single ratio recommended for {where}**: {why}.")
        lo, hi = p.interval
        keep_lo, keep_hi = d.keep_interval
        paragraphs.append(
            f"Collapse point r* {p.collapse_ratio:.3f} ({conf} interval {lo:.3f}-{hi:.3f}); keeps "
            f"retention >= {p.tolerance:.0%} of its plateau up to {keep_lo:.3f}-{keep_hi:.3f} "
            f"({conf} interval)."
        )
    elif summary.law is None:
        paragraphs.append(f"No law fitted: {summary.law_note}")
    found = [f"{s.size} {s.collapse.ratio:.3f}" for s in summary.sizes if s.collapse.found]
    curves = _curves_label(spans_budgets(summary.sizes))
    law = f"law {summary.law.form} over {len(summary.law.curves)} {curves}; " if summary.law else ""
    paragraphs.append(f"{law}collapse point per size: {', '.join(found) or 'none found'}.")
    if summary.confirmation:
        checked = "; ".join(describe_confirmation(c) for c in summary.confirmation)
        paragraphs.append(f"Confirmation, {summary.target} trained: {checked}.")
    paragraphs.append(
        "Full tables: answer.md; interactive charts: report.html; plots: retention_vs_ratio.png, "
        "collapse_vs_size.png, decision.png (Artifacts). Trial charts: the x axis (Step) counts "
        "training tokens."
    )
    return "\n\n".join(textwrap.fill(text, width) for text in paragraphs)


def describe_summary(summary: Summary) -> str:
    """The whole answer in Markdown: the sweep's parent run keeps it as answer.md."""
    parts = [f"## {summary.study}: collapse per size", "", "```", size_table(summary), "```", ""]
    if summary.law is None:
        parts.append(f"No law fitted: {summary.law_note}")
    else:
        parts += ["## The law", "", "```", describe_law(summary.law), "```", ""]
    if summary.recommendation is not None:
        p = summary.recommendation
        parts += [f"## Recommendation for {_target_label(summary.target, p)}", "", "```",
                  _prediction_with_warnings(p), "```"]  # fmt: skip
    if summary.confirmation:
        parts += ["", f"## Confirmation: {summary.target} trained at the forecast's ratios", "",
                  "```", *(describe_confirmation(c) for c in summary.confirmation), "```"]  # fmt: skip
    return "\n".join(parts)


def describe_store(root: Path, entries: list[Entry], needed: set[str] | None) -> str:
    """The base-run store as a table: what each run was trained with and its size; with
    `needed` (the keys some sweep files use), which runs those files use."""
    total = sum(e.bytes for e in entries)
    lines = [f"{root}: {len(entries)} base runs, {total / 1e6:.1f} MB"]
    head = f"{'key':<22} {'MB':>7}  {'shape':<12} {'tokens':>9} {'seed':>4}  {'torch':<14} "
    lines.append(head + f"{'kernels':<13} state" + ("  used" if needed is not None else ""))
    for e in entries:
        i = e.inputs or {}
        shape = i.get("shape")
        shape = f"{shape['hidden_size']}x{shape['n_layers']}" if shape else "?"
        state = "writing" if e.staging else "complete" if e.complete else "incomplete"
        # A checkpoint's entry holds its scores: it trained no tokens of ours.
        tokens = "scores" if "checkpoint" in i else i.get("train", {}).get("base_tokens", "?")
        row = (
            f"{e.key:<22} {e.bytes / 1e6:>7.1f}  "
            f"{shape:<12} "
            f"{tokens:>9} {i.get('seed', '?'):>4}  "
            f"{i.get('torch', '?'):<14} {i.get('kernels', '?'):<13} {state}"
        )
        if needed is not None:
            row += "  " + ("yes" if e.key in needed else "no")
        lines.append(row)
    if needed is not None:
        unused = [e for e in entries if e.key not in needed and not e.staging]
        lines.append(
            f"{len(unused)} not used by these sweep files "
            f"({sum(e.bytes for e in unused) / 1e6:.1f} MB)"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def describe_cpu_time(time: CpuTime, cpu: str) -> str:
    """A CPU sweep's training time on this machine, as `kinfuse plan` prints it."""
    rates = ", ".join(f"{name} {1e6 * s:.0f}" for name, s in time.seconds_per_token.items())
    base = f" and {time.base_runs} base runs" if time.base_runs else ""
    return (
        f"time on this machine ({cpu}): about {_duration(time.seconds)} of training for "
        f"{time.trials} infusion trials{base}, {time.slots} at a time; Ray's start, the records "
        f"and the law's fit come on top, early stopping and stored base runs take some off "
        f"(each rung's loop timed here for one evaluation interval, microseconds per token: "
        f"{rates})"
    )


def describe_simulated_decision(plan: SweepPlan, simulated: SimulatedSearch, law: str) -> str:
    """The decision search's cost on ladders drawn from a previous law, beside the grid's: its
    infusion trials, share of the grid's trial-tokens and (on GPUs) GPU-hours, least to most."""
    counts = [sum(run.values()) for run in simulated.trials]
    share = [t / simulated.grid_tokens for t in simulated.tokens]
    moved = (f"; its r* moved {simulated.moved:+.2f} logits to collapse mid-grid"
             if simulated.moved else "")  # fmt: skip
    line = (
        f"decision (simulated on {len(counts)} ladders drawn from {law}{moved}): "
        f"{min(counts)}-{max(counts)} infusion trials (grid {plan.grid_trials}), "
        f"{min(share):.0%}-{max(share):.0%} of the grid's trial-tokens"
    )
    if all(r.trial_gpu_hours is not None for r in plan.rungs):
        hours = [sum(r.base_gpu_hours + run[r.name] * r.trial_gpu_hours for r in plan.rungs)
                 for run in simulated.trials]  # fmt: skip
        line += f", {_gpu_hours(min(hours))}-{_gpu_hours(max(hours))} GPU-hours with base runs"
    failed = [why for why in simulated.stops if "fit no law" in why]
    if failed:  # a search that stops there leaves no forecast: its cost is not the decision's
        line += (f"; {len(failed)} of {len(counts)} ended with no forecast ({failed[0]}): "
                 "the grid does not hold every rung's collapse there")  # fmt: skip
    return line


def describe_plan(plan: SweepPlan) -> str:
    """A sweep's plan as `kinfuse plan` prints it."""
    where = (
        f"on {plan.gpu}; throughput at an assumed {plan.mfu:.0%} MFU"
        if plan.gpu
        else "on CPUs (no train.gpu named): memory per worker, no GPU throughput"
    )
    lines = [
        f"plan for '{plan.name}': {plan.workers} worker(s) per trial {where}",
        f"{'rung':<8} {'params':>8} {'non-emb':>8} {'mode':<7} {'weights':>8} {'grads':>7} "
        f"{'optim':>7} {'activ':>7} {'total':>8} {'tok/s/GPU':>10} {'GPU-h/trial':>11} "
        f"{'ckpt':>8}",
    ]
    for r in plan.rungs:
        m = r.memory
        mode = r.parallelism + ("+ac" if r.activation_checkpointing else "")
        speed = f"{r.tokens_per_s_per_gpu:,.0f}" if r.tokens_per_s_per_gpu else "-"
        hours = _gpu_hours(r.trial_gpu_hours) if r.trial_gpu_hours is not None else "-"
        lines.append(
            f"{r.name:<8} {_count_short(r.params.total):>8} {_count_short(r.params.non_embedding):>8} "
            f"{mode:<7} {_gib(m.weights):>8} {_gib(m.gradients):>7} {_gib(m.optimizer):>7} "
            f"{_gib(m.activations):>7} {_gib(m.total):>8} {speed:>10} {hours:>11} "
            f"{_gib(r.checkpoint_bytes):>8}"
        )
    lines.append("memory in GiB per GPU (total: +10% fragmentation); ckpt: weights + AdamW state")
    for r in plan.rungs:
        if r.usable_share is not None and r.usable_share > TIGHT_ABOVE:
            lines.append(
                f"tight: {r.name} would use {r.usable_share:.0%} of a {plan.gpu}'s usable memory; "
                "the CUDA context, NCCL buffers and compile workspaces are not counted: measure "
                f"it first (python benchmarks/gpu_check.py --memory-rung {r.name}) or lower "
                "train.micro_batch_size"
            )
    spacing = plan.grid_spacing
    for label, trials, hours, reach in (
        ("grid", plan.grid_trials, plan.grid_gpu_hours,
         f"r* to the grid's spacing (bracket hi/lo - 1 up to {spacing:.0%})"),
        ("bisection (expected)", plan.bisect_trials, plan.bisect_gpu_hours,
         f"the grid as a coarse pass, then r* to hi/lo - 1 <= {plan.precision:.0%} "
         "(search.precision)"),
        ("decision (at most)", plan.decision_trials, plan.decision_gpu_hours,
         f"the grid's trials that narrow the target's keep ratio most, to {plan.budget:.0%} of "
         "its trial-tokens (search.budget; GPU-hours if they spread over the sizes as the "
         "grid's do)"),
    ):  # fmt: skip
        cost = f", {_gpu_hours(hours)} GPU-hours with base runs" if hours is not None else ""
        if label.startswith("decision") and plan.budget < plan.min_budget:
            lines.append(f"{label}: needs search.budget >= {plan.min_budget:.2f} (2 ratios per "
                         f"size bracket its collapse; {plan.budget:.2f} set)")  # fmt: skip
            continue
        lines.append(f"{label}: {trials} infusion trials{cost}; {reach}")
    lines.append(
        f"checkpoint storage, at most: {plan.storage_bytes / 1e12:.2f} TB "
        "(base runs, and two per trial until the sweep ends)"
    )
    return "\n".join(lines)


def _gpu_hours(hours: float) -> str:
    """Whole GPU-hours, or two significant digits below one (a small model's trial)."""
    return f"{hours:.2g}" if 0 < hours < 1 else f"{hours:,.0f}"


def _gib(n: float) -> str:
    return f"{n / GIB:.1f}" if n >= 0.1 * GIB else f"{n / GIB:.3f}"


def _count_short(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def describe_budget_plan(plan: BudgetPlan, confidence: float = 0.9) -> str:
    return (
        f"D exponent: +/-{plan.halfwidth:.2f} ({confidence:.0%}) with one seed, if each "
        f"(size, budget) collapse point lies {plan.scatter:.2f} logits off the law; "
        f"+/-{plan.precision:g} needs {plan.seeds_needed} seed(s) of these budgets, or "
        f"{plan.budgets_needed} budgets {plan.factor:.2g}x apart with one seed"
    )


def describe_forecasts(forecasts: list[Forecast], where: str) -> str:
    """Every confirmed forecast (of the store at `where`), a row per ratio trained, and how
    they did together (`analysis.score_forecasts`)."""
    import datetime

    if not forecasts:
        return f"no confirmed forecasts at {where} (sweeps with predict.confirm: true)"
    lines = [
        f"{'date':<11}{'study':<22}{'target':<10}{'N':>12}  {'ratio':>7}  {'role':<14}"
        f"{'predicted':>9}  {'interval':<11}  {'measured':>8}  verdict"
    ]
    for f in forecasts:
        day = datetime.datetime.fromtimestamp(f.start_time / 1000).date().isoformat()
        for r in f.rows:
            interval, verdict = "", ""
            if r.predicted is not None:
                interval = f"{r.interval[0]:.2f}-{r.interval[1]:.2f}"
                verdict = "inside" if r.covered else "OUTSIDE"
            predicted = "-" if r.predicted is None else f"{r.predicted:.2f}"
            lines.append(
                f"{day:<11}{f.study[:21]:<22}{f.target[:9]:<10}{f.n_params:>12,.0f}  "
                f"{r.ratio:>7.4f}  {r.role:<14}{predicted:>9}  {interval:<11}  "
                f"{r.measured:>8.2f}  {verdict}"
            )
    score = score_forecasts(forecasts)
    if score.predictions:
        lines.append(
            f"\n{score.forecasts} confirmed forecasts, {score.predictions} predictions: "
            f"{score.inside} inside their intervals; mean |measured - predicted| retention "
            f"{score.mean_abs_error:.3f}"
        )
    for edge, (n, stated, held) in score.edges.items():
        where = "the recommended ratio" if edge == "keeps" else "the learning edge"
        lines.append(f"P({edge}) at {where}: stated {stated:.2f} on average over {n}, "
                     f"happened {held:.0%}")  # fmt: skip
    return "\n".join(lines)
