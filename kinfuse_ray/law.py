"""The knowledge-infusion scaling law r*(N, D), bounded in (0, 1), fitted to every trial.

    law = InfusionLaw(form="power_n").fit(curves)   # one SizeCurve per model size (all seeds)
    law.predict(n_params=1e8, tokens=2e9)           # -> Prediction: r*, interval, window, ratio

Forms. The odds of the general share at collapse follow a power law in N (and D):
    power_n:      r* = 1 / (1 + C N^-b)              i.e. (1 - r*) / r* = C N^-b
    power_nd:     r* = 1 / (1 + C N^-b D^-g)
    power_n_sat:  r* = r_max / (1 + C N^-b)          saturates at r_max < 1 as N grows: the
    power_nd_sat: r* = r_max / (1 + C N^-b D^-g)     constant term of Gu et al. 2024's CMR law
Written r* = r_max * sigmoid(eta) with eta linear in log N (and log D), every form predicts r* in
(0, 1); near r* = 1 the odds law is the pilot's power law in 1 - r*.

Methods:
- joint (default): every trial of every size and seed at once. A size's retention curve is its
  plateau (the base model's retention) times sigmoid(k (logit r*(N, D) - logit r) + logit t):
  retention falls to t x plateau (t the collapse threshold) exactly at r = r*(N, D). One
  steepness k for all sizes; soft-L1 loss, so a stray trial cannot drag the law.
- points: the collapse detector's r* per size, then the law through those points (Huber loss in
  logit r*). The method of earlier versions, kept as the comparison.

Uncertainty: a parametric bootstrap of the two-level model the fit implies. Each size's collapse
deviates from the law by a size-level residual (the measured ones, centred and inflated for the
parameters the law spends) and each trial by trial-level noise (resampled within its size). Every
draw regenerates the data, refits the law, and adds a fresh size-level residual to the prediction
for the queried size: a prediction interval for a new model, not only the law's confidence band.
Nothing is widened by hand; the point estimate may lie anywhere in its interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit, logit
from scipy.stats import t as student_t

from kinfuse_ray.collapse import CollapsePoint, detect_acquisition, detect_collapse
from kinfuse_ray.config import EVAL_DEFAULTS, LAW_FORMS, LAW_METHODS, PREDICT_DEFAULTS
from kinfuse_ray.decision import Decision, DecisionCurves, decide, width_sources
from kinfuse_ray.errors import KinfuseError
from kinfuse_ray.files import write_json_atomic

# Each form's parameters (the forms named once, in config.LAW_FORMS).
FORMS: dict[str, tuple[str, ...]] = {
    form: ("eta0", "b_n", *(("g_d",) if "nd" in form else ()),
           *(("logit_r_max",) if form.endswith("_sat") else ()))
    for form in LAW_FORMS
}  # fmt: skip
METHODS = LAW_METHODS
# Below this many sizes with a collapse, leave-one-size-out cannot score a three-parameter form
# on held-out sizes: the two-parameter power_n is then the law, fixed before looking.
MIN_SIZES_TO_SELECT = 4
DEFAULT_FORM = "power_n"
HUBER_LOGIT = 0.3  # points method: logit residual where the loss turns linear
SOFT_L1_RETENTION = 0.05  # joint method: retention residual where the loss turns linear
EXTRAPOLATION_WARN = 10.0  # warn when the query lies this factor beyond the fitted sizes
EDGE = 1e-6  # ratios are kept this far inside (0, 1) before taking logits
FORMAT = 2  # law.json's layout: bumped when a saved law can no longer be read as it was


def _logit(p: np.ndarray | float) -> np.ndarray:
    return logit(np.clip(p, EDGE, 1 - EDGE))


# --- data ---------------------------------------------------------------------------------------
def spans_budgets(items: Iterable) -> bool:
    """Whether `items` (curves, trials, per-size results: anything with `tokens`) come from two
    or more token budgets, a size x budget ladder: curves are then named by size and budget and
    the law needs a D term."""
    return len({item.tokens for item in items}) > 1


@dataclass(frozen=True)
class SizeCurve:
    """Every infusion trial of one model size at one token budget, all seeds together."""

    name: str
    n_params: float
    tokens: float
    ratios: tuple[float, ...]  # one entry per trial
    retention: tuple[float, ...]
    acquisition: tuple[float, ...]
    plateau: float  # retention before infusion: the base model's (else the low-ratio median)
    # Renderings per domain fact per domain token, and per general fact per general token, in
    # this size's trials: exposures = r D x the first, rehearsals = (1 - r) D x the second.
    domain_per_token: float = float("nan")
    general_per_token: float = float("nan")

    def __post_init__(self) -> None:
        where = f"SizeCurve {self.name!r}"
        for name in ("n_params", "tokens"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{where}: {name} must be a positive finite number, got {value!r}")
        n = len(self.ratios)
        for name in ("retention", "acquisition"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{where}: {name} has {len(getattr(self, name))} values for {n} ratios"
                )
        r = np.asarray(self.ratios, float)
        if n and not np.all((r > 0) & (r < 1)):
            raise ValueError(f"{where}: ratios must lie in (0, 1) (shares, not percent), got "
                             f"{r.min():g}..{r.max():g}")  # fmt: skip
        for name in ("retention", "acquisition"):  # chance-corrected; acquisition NaN: unmeasured
            v = np.asarray(getattr(self, name), float)
            v = v[~np.isnan(v)] if name == "acquisition" else v
            if len(v) and not np.all(np.isfinite(v) & (v >= -1) & (v <= 1)):
                raise ValueError(f"{where}: {name} must be chance-corrected scores in [-1, 1]")
        if not (math.isfinite(self.plateau) and -1 <= self.plateau <= 1):
            raise ValueError(
                f"{where}: plateau must be a retention in [-1, 1], got {self.plateau!r}"
            )

    def mean_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ratios tried, with retention and acquisition averaged over repeats (seeds)."""
        r = np.asarray(self.ratios, float)
        ratios = np.unique(r)
        ret = np.array([np.mean(np.asarray(self.retention)[r == x]) for x in ratios])
        acq = np.array([np.mean(np.asarray(self.acquisition)[r == x]) for x in ratios])
        return ratios, ret, acq

    def collapse(self, threshold: float) -> CollapsePoint:
        ratios, retention, _ = self.mean_curve()
        return detect_collapse(ratios, retention, threshold, plateau=self.plateau)

    def acquisition_threshold(self, target: float) -> float | None:
        ratios, _, acquisition = self.mean_curve()
        return detect_acquisition(ratios, acquisition, target)


def curves_from_points(
    n_params: Sequence[float],
    ratios: Sequence[float],
    retention: Sequence[float],
    acquisition: Sequence[float] | None = None,
    *,
    tokens: Sequence[float] | float = 1.0,
    plateau: dict[float, float] | None = None,
) -> list[SizeCurve]:
    """Your own measurements as `SizeCurve`s, one per (size, budget): one entry per trial of
    its non-embedding parameter count, infusion ratio in (0, 1), chance-corrected retention of
    what the model knew (and acquisition of the infused knowledge; NaN-free, default 0: no
    learning side), at `tokens` per trial. `plateau` maps a size to its retention before
    infusion (default: the mean of its two lowest ratios'). Then `InfusionLaw().fit(curves)`."""
    columns = {"n_params": n_params, "ratios": ratios, "retention": retention}
    if acquisition is not None:
        columns["acquisition"] = acquisition
    if not np.isscalar(tokens):
        columns["tokens"] = tokens
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"the columns differ in length: {lengths}")
    n = lengths["n_params"]
    table = {
        "n": np.asarray(n_params, float), "r": np.asarray(ratios, float),
        "ret": np.asarray(retention, float),
        "acq": np.zeros(n) if acquisition is None else np.asarray(acquisition, float),
        "d": np.full(n, float(tokens)) if np.isscalar(tokens) else np.asarray(tokens, float),
    }  # fmt: skip
    curves = []
    pairs = sorted({(a, b) for a, b in zip(table["n"], table["d"], strict=True)})
    budgets = len({b for _, b in pairs}) > 1  # then a curve is named by size and budget
    for size, budget in pairs:
        at = (table["n"] == size) & (table["d"] == budget)
        order = np.argsort(table["r"][at])
        low = table["ret"][at][order][:2]
        base = (plateau or {}).get(size)
        curves.append(SizeCurve(
            name=f"n{size:,.0f}" + (f"-d{budget:,.0f}" if budgets else ""),
            n_params=float(size), tokens=float(budget),
            ratios=tuple(table["r"][at]), retention=tuple(table["ret"][at]),
            acquisition=tuple(table["acq"][at]),
            plateau=float(np.mean(low)) if base is None else float(base),
        ))  # fmt: skip
    return curves


# --- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exposures:
    """Ratios in units a team can carry to another setting: how often each general fact is
    rehearsed and each domain fact seen over `tokens`, at the largest fitted size's rates (its
    fact sets and renderings)."""

    tokens: float
    domain_per_token: float
    general_per_token: float

    def at(self, ratio: float) -> tuple[float, float]:
        """(rehearsals per general fact, exposures per domain fact) at `ratio`."""
        return (
            (1 - ratio) * self.tokens * self.general_per_token,
            ratio * self.tokens * self.domain_per_token,
        )


@dataclass(frozen=True)
class ToleranceRow:
    """The ratio up to which retention stays at `tolerance` x plateau at the queried size: its
    median over the draws, its central interval, and the bound it exceeds at the stated
    confidence (the largest ratio with P_keep >= confidence)."""

    tolerance: float
    ratio: float
    interval: tuple[float, float]
    bound: float


@dataclass(frozen=True)
class Prediction:
    """The forecast for one size and token budget: r* with its interval, the ratios that keep
    each tolerance, the learning side, and the decision (kinfuse_ray/decision.py) at the stated
    confidence. Every quantity is evaluated at the queried size itself."""

    n_params: float
    tokens: float
    ratio: float  # r*: the law's collapse point here (predict_point)
    interval: tuple[float, float]
    confidence: float
    tolerance: float  # the tolerance the decision keeps
    decision: Decision
    tolerances: tuple[ToleranceRow, ...] = ()
    acquisition_threshold: float | None = None  # median ratio that learns the domain
    acquisition_interval: tuple[float, float] | None = None
    acquisition_target: float = PREDICT_DEFAULTS.acquisition_target
    acquisition_note: str | None = None  # why the learning side is unknown
    # Retention one trial keeps at the recommended ratio (share of plateau), with its interval.
    expected_retention: tuple[float, tuple[float, float]] | None = None
    # Share of the keep ratio's interval width each source accounts for (held fixed in turn).
    width_sources: dict[str, float] = field(default_factory=dict)
    exposures: Exposures | None = None  # None: the trials did not record them
    warnings: tuple[str, ...] = ()

    @property
    def recommended_ratio(self) -> float | None:
        return self.decision.ratio

    @property
    def window_empty(self) -> bool:
        return self.decision.window_empty

    def to_dict(self) -> dict:
        """Plain JSON: every field, with the recommended ratio and whether the window is empty."""
        return {
            **asdict(self),
            "recommended_ratio": self.recommended_ratio,
            "window_empty": self.window_empty,
        }


@dataclass(frozen=True)
class HeldValue:
    """One quantity of a held-out size: measured, predicted by the law fitted without it (with
    its interval), and the nearest remaining size's measured value used as is (the baseline)."""

    measured: float
    predicted: float
    interval: tuple[float, float]
    baseline: float

    @property
    def covered(self) -> bool:
        return self.interval[0] <= self.measured <= self.interval[1]

    @property
    def width_logits(self) -> float:
        return float(_logit(self.interval[1]) - _logit(self.interval[0]))

    @property
    def logit_error(self) -> float:
        return float(_logit(self.predicted) - _logit(self.measured))

    @property
    def baseline_logit_error(self) -> float:
        return float(_logit(self.baseline) - _logit(self.measured))


@dataclass(frozen=True)
class HeldOut:
    """One size left out of the fit and predicted by the rest (leave-one-size-out): its r*, and
    where measured, the ratio keeping the tolerance and the ratio learning the domain."""

    size: str
    n_params: float
    form: str  # the law the other sizes chose (or were given)
    measured: float  # the detector's r* of that size
    predicted: float
    interval: tuple[float, float]
    baseline: float  # the nearest remaining size's measured r*, used as is
    keep: HeldValue | None = None
    learn: HeldValue | None = None

    @property
    def rstar(self) -> HeldValue:
        return HeldValue(self.measured, self.predicted, self.interval, self.baseline)

    @property
    def covered(self) -> bool:
        return self.rstar.covered

    @property
    def log_error(self) -> float:
        """Error in log general share, log(1 - r*): the quantity the pilot's power law is in."""
        return math.log((1 - self.predicted) / (1 - self.measured))

    @property
    def baseline_log_error(self) -> float:
        return math.log((1 - self.baseline) / (1 - self.measured))

    @classmethod
    def from_dict(cls, raw: dict) -> HeldOut:
        def value(v):
            return v and HeldValue(**{**v, "interval": tuple(v["interval"])})

        return cls(**{**raw, "interval": tuple(raw["interval"]), "keep": value(raw.get("keep")),
                      "learn": value(raw.get("learn"))})  # fmt: skip


@dataclass(frozen=True)
class TopSlope:
    """Does r* still move with N over the top sizes? The slope of their logit r* in log N, with
    a t interval from the sizes' scatter around the law. A diagnostic: the forecast is the law
    evaluated at the queried size either way (with three sizes the test has little power, so a
    slope whose interval includes 0 is "not shown to move", never "saturated")."""

    sizes: tuple[str, ...]
    slope: float
    interval: tuple[float, float]

    @property
    def moving(self) -> bool:
        return self.interval[0] > 0.0


# --- the law's arithmetic -----------------------------------------------------------------------
class _Form:
    """eta = eta0 + b (log N - log N0) [+ g (log D - log D0)]; r* = r_max sigmoid(eta)."""

    def __init__(self, name: str, log_n0: float, log_d0: float):
        self.name, self.log_n0, self.log_d0 = name, log_n0, log_d0
        self.uses_tokens = "nd" in name
        self.saturating = name.endswith("_sat")
        self.n_params = len(FORMS[name])

    def design(self, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        cols = [np.ones_like(n), np.log(n) - self.log_n0]
        if self.uses_tokens:
            cols.append(np.log(d) - self.log_d0)
        return np.stack(cols, axis=1)

    def ratio(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        k = X.shape[1]
        r_max = expit(theta[k]) if self.saturating else 1.0
        return r_max * expit(X @ theta[:k])

    def start(self, logit_r: np.ndarray, X: np.ndarray) -> list[np.ndarray]:
        base = np.linalg.lstsq(X, logit_r, rcond=None)[0] if len(logit_r) else np.zeros(X.shape[1])
        starts = [base, np.r_[base[0], np.zeros(X.shape[1] - 1)]]
        if self.saturating:
            top = float(expit(logit_r.max())) if len(logit_r) else 0.9
            starts = [np.r_[s, v] for s in starts for v in (_logit(min(top + 0.02, 0.999)), 6.0)]
        return starts


def _solve(
    residuals: Callable, starts: Sequence[np.ndarray], loss: str, scale: float
) -> np.ndarray:
    fits = [least_squares(residuals, x0, loss=loss, f_scale=scale) for x0 in starts]
    return min(fits, key=lambda f: f.cost).x


def _floor_and_offset(shape, threshold: float) -> tuple[float, float]:
    """A curve's floor (share of plateau kept however much is infused, below the threshold) and
    the sigmoid's offset that puts retention at threshold x plateau exactly at r*."""
    floor = threshold * expit(shape[1])
    return floor, float(_logit((threshold - floor) / (1 - floor)))


def _retention_model(plateau, logit_rstar, shape, ratio_logit, threshold: float):
    """plateau x [floor + (1 - floor) sigmoid(k (logit r* - logit r) + offset)], shape = (log k,
    floor parameter): falls from the plateau through threshold x plateau at r* to the floor."""
    floor, offset = _floor_and_offset(shape, threshold)
    k = np.exp(np.clip(shape[0], -5.0, 5.0))
    return plateau * (floor + (1 - floor) * expit(k * (logit_rstar - ratio_logit) + offset))


def _logit_ratio_keeping(logit_rstar, shape, threshold: float, tolerance: float):
    """logit of the ratio where retention is tolerance x plateau (tolerance above the floor)."""
    floor, offset = _floor_and_offset(shape, threshold)
    k = np.exp(np.clip(shape[0], -5.0, 5.0))
    return logit_rstar + (offset - _logit((tolerance - floor) / (1 - floor))) / k


@dataclass
class InfusionLaw:
    """The knowledge-infusion scaling law, fitted as an estimator: `fit(curves)` on one
    `SizeCurve` per size, then `predict(n_params, tokens)` for a `Prediction` (r* with its
    interval, the ratios that keep each tolerance, the learning side and the `Decision`);
    `save(path)` / `InfusionLaw.load(path)` as JSON. `form` is the law's shape (`FORMS`),
    `method` fits every trial ("joint") or each size's r* ("points")."""

    form: str = DEFAULT_FORM
    method: str = PREDICT_DEFAULTS.method
    threshold: float = EVAL_DEFAULTS.collapse_threshold  # the collapse threshold defining r*
    confidence: float = PREDICT_DEFAULTS.confidence
    # The recommended ratio keeps retention at this share of its plateau.
    tolerance: float = EVAL_DEFAULTS.plateau_tolerance
    tolerances: tuple[float, ...] = tuple(PREDICT_DEFAULTS.tolerances)
    # "Learns the domain": chance-corrected acquisition at least this.
    acquisition_target: float = PREDICT_DEFAULTS.acquisition_target
    # How the decision picks one ratio (kinfuse_ray/decision.py): retention_first, balanced or
    # domain_first.
    rule: str = PREDICT_DEFAULTS.rule
    n_bootstrap: int = PREDICT_DEFAULTS.bootstrap
    seed: int = 0
    # Fitted state (set by fit, saved by save):
    log_n0: float = 0.0
    log_d0: float = 0.0
    params_: list[float] = field(default_factory=list)
    shape_: list[float] = field(default_factory=list)  # joint: log steepness, floor parameter
    trial_sd_: float = 0.0  # joint: one trial's retention noise, as a share of plateau
    size_residuals_: list[float] = field(default_factory=list)  # logit r*, inflated, centred
    # per draw: params, curve shape (joint: log k, floor), a new size's deviation in logit r*
    draws_: list[list[float]] = field(default_factory=list)
    curves_: list[SizeCurve] = field(default_factory=list)
    measured_: dict[str, float] = field(default_factory=dict)  # detector r* per size
    acquisition_: dict = field(default_factory=dict)  # the acquisition-threshold law, if any
    held_out_: list[HeldOut] = field(default_factory=list)
    top_slope_: TopSlope | None = None

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise KinfuseError(f"unknown law form '{self.form}' (choose from {', '.join(FORMS)})")
        if self.method not in METHODS:
            raise KinfuseError(
                f"unknown fit method '{self.method}' (choose from {', '.join(METHODS)})"
            )

    def __repr__(self) -> str:  # the fitted state holds every trial and draw: keep it short
        if not self.params_:
            return f"InfusionLaw(form={self.form!r}, method={self.method!r}, unfitted)"
        params = ", ".join(f"{p:+.3f}" for p in self.params_)
        return (
            f"InfusionLaw(form={self.form!r}, method={self.method!r}, sizes={len(self.curves_)}, "
            f"params=[{params}])"
        )

    @property
    def _f(self) -> _Form:
        return _Form(self.form, self.log_n0, self.log_d0)

    def options(self) -> dict:
        """The settings, without fitted state: to build a sibling estimator."""
        keys = ("form", "method", "threshold", "confidence", "tolerance", "tolerances",
                "acquisition_target", "rule", "n_bootstrap", "seed")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    # --- fitting ----------------------------------------------------------------------------
    def fit(self, curves: list[SizeCurve], validate: bool = True) -> InfusionLaw:
        """Fit to every size's curve. `validate` adds leave-one-size-out predictions."""
        curves = [c for c in curves if c.plateau > 0 and len(c.ratios)]
        names = [c.name for c in curves]
        if len(set(names)) < len(names):  # the fit keys each curve by its name
            raise KinfuseError(f"curve names must be unique (one per size and budget): {names}")
        self.curves_ = sorted(curves, key=lambda c: (c.n_params, c.tokens))
        self.measured_ = {
            c.name: p.ratio for c in self.curves_ if (p := c.collapse(self.threshold)).found
        }
        f = _Form(self.form, 0.0, 0.0)
        needed = f.n_params + 1  # one more size than parameters, else no residual is left
        if len(self.measured_) < needed:
            raise KinfuseError(
                f"the {self.form} law needs collapse points at {needed} or more sizes, got "
                f"{len(self.measured_)}; add sizes or widen the ratios so more sizes collapse"
            )
        if f.uses_tokens and not spans_budgets(self.curves_):
            raise KinfuseError(f"the {self.form} law needs sizes at 2 or more token budgets")
        n = np.array([c.n_params for c in self.curves_], float)
        d = np.array([c.tokens for c in self.curves_], float)
        self.log_n0, self.log_d0 = float(np.log(n).mean()), float(np.log(d).mean())
        theta, shape = self._fit_params(self.curves_, self._measured_points())
        self.params_, self.shape_ = theta.tolist(), shape
        free = self._free_logit_rstar(self.curves_)
        # What a new size will show is its r* as the detector measures it: the sizes' scatter
        # around the law is taken in those terms (the joint fit's own per-size r* are smoother
        # and would leave the detector's noise out of the interval).
        measured = {s: float(_logit(r)) for s, r in self.measured_.items()}
        self.size_residuals_ = self._size_residuals(measured)
        self.draws_ = self._bootstrap(free)
        self.top_slope_ = self._top_slope(measured)
        self.acquisition_ = self._acquisition_law()
        # Each fold's interval from a quarter of the draws: validation need not be as fine.
        folds = {**self.options(), "n_bootstrap": max(50, self.n_bootstrap // 4)}
        self.held_out_ = leave_one_size_out(self.curves_, **folds) if validate else []
        return self

    def _measured_points(self) -> list[tuple[float, float, float]]:
        by_name = {c.name: c for c in self.curves_}
        return [(by_name[s].n_params, by_name[s].tokens, r) for s, r in self.measured_.items()]

    def _fit_params(
        self,
        curves: list[SizeCurve],
        points: list[tuple[float, float, float]],
        start: np.ndarray | None = None,
        retention: list[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, list[float]]:
        """The law's parameters and the joint method's curve shape (log steepness, floor
        parameter; empty for points) from `curves` (their own retention, or `retention` in
        their place) or, for the points method, from `points`."""
        f = self._f
        n, d, r = (np.array(v, float) for v in zip(*points, strict=True))
        X_pts = f.design(n, d)
        target = _logit(r)

        def point_residuals(theta):
            return _logit(f.ratio(theta, X_pts)) - target

        if self.method == "points" or start is None:
            starts = [start[: f.n_params]] if start is not None else f.start(target, X_pts)
            theta = _solve(point_residuals, starts, "huber", HUBER_LOGIT)
        if self.method == "points":
            return theta, []
        X = f.design(
            np.array([c.n_params for c in curves], float),
            np.array([c.tokens for c in curves], float),
        )
        plateau = np.concatenate([np.full(len(c.ratios), c.plateau) for c in curves])
        row = np.concatenate([np.full(len(c.ratios), i) for i, c in enumerate(curves)])
        ratio_logit = _logit(np.concatenate([c.ratios for c in curves]))
        y = np.concatenate(retention or [np.asarray(c.retention, float) for c in curves])

        def residuals(p):
            rstar = _logit(f.ratio(p[:-2], X))[row]
            return _retention_model(plateau, rstar, p[-2:], ratio_logit, self.threshold) - y

        starts = [start] if start is not None else [np.r_[theta, lk, -1.0] for lk in (0.0, 1.5)]
        p = _solve(residuals, starts, "soft_l1", SOFT_L1_RETENTION)
        return p[:-2], [float(v) for v in p[-2:]]

    def _free_logit_rstar(self, curves: list[SizeCurve]) -> dict[str, float]:
        """Each collapsed size's own logit r*, not tied to the law: the detector's (points) or
        the sigmoid's with the fitted steepness (joint)."""
        if self.method == "points":
            return {s: float(_logit(r)) for s, r in self.measured_.items()}
        out = {}
        for c in curves:
            if c.name not in self.measured_:
                continue
            x, y = _logit(np.asarray(c.ratios)), np.asarray(c.retention)

            def residuals(z, x=x, y=y, c=c):
                return _retention_model(c.plateau, z[0], self.shape_, x, self.threshold) - y

            start = np.array([_logit(self.measured_[c.name])])
            out[c.name] = float(_solve(residuals, [start], "soft_l1", SOFT_L1_RETENTION)[0])
        return out

    def _law_logit(self, n_params, tokens, theta=None) -> np.ndarray:
        X = self._f.design(
            np.atleast_1d(np.asarray(n_params, float)), np.atleast_1d(np.asarray(tokens, float))
        )
        return _logit(self._f.ratio(np.asarray(self.params_ if theta is None else theta), X))

    @property
    def size_scatter(self) -> float:
        """How far a size's (or a (size, budget)'s) collapse point lies off the law: the sd, in
        logit r*, that forecasts draw a new size's deviation with."""
        e = np.array(self.size_residuals_)
        return float(np.sqrt(e @ e / len(e)))

    def _size_residuals(self, free: dict[str, float]) -> list[float]:
        by_name = {c.name: c for c in self.curves_}
        e = np.array(
            [
                z - self._law_logit(by_name[s].n_params, by_name[s].tokens)[0]
                for s, z in free.items()
            ]
        )
        m, p = len(e), self._f.n_params
        # Residuals of a fit that spent p parameters on m points are too small by sqrt(m / (m - p)).
        return ((e - e.mean()) * math.sqrt(m / (m - p))).tolist()

    def _bootstrap(self, free: dict[str, float]) -> list[list[float]]:
        """Regenerate the data from the fitted two-level model, refit, and keep each draw's
        parameters, curve shape (joint) and a fresh size-level residual for the queried size."""
        rng = np.random.default_rng(self.seed)
        e = np.array(self.size_residuals_)
        law_z = {c.name: self._law_logit(c.n_params, c.tokens)[0] for c in self.curves_}
        x = {c.name: _logit(np.asarray(c.ratios)) for c in self.curves_}
        noise = {}  # joint: trial-level residuals around each size's own curve
        if self.method == "joint":
            for c in self.curves_:
                z = free.get(c.name, law_z[c.name])
                fitted = _retention_model(c.plateau, z, self.shape_, x[c.name], self.threshold)
                noise[c.name] = np.asarray(c.retention) - fitted
            pooled = np.concatenate([noise[c.name] / c.plateau for c in self.curves_])
            self.trial_sd_ = float(np.sqrt(np.mean(pooled**2)))
        start = np.r_[self.params_, self.shape_]
        # Sizes scatter around the law by N(0, tau^2); tau is known only from m - p residuals,
        # so each draw first draws tau (scaled inverse chi-square, as for a regression's
        # prediction interval), then every size's deviation and the new size's from it.
        dof = len(e) - self._f.n_params
        scale2 = float(e @ e) / len(e)  # e is already inflated to an unbiased scale
        draws = []
        for _ in range(self.n_bootstrap):
            tau = math.sqrt(scale2 * dof / rng.chisquare(dof))
            z = {s: law_z[s] + tau * rng.standard_normal() for s in law_z}
            points = [
                (c.n_params, c.tokens, float(expit(z[c.name])))
                for c in self.curves_
                if c.name in free
            ]
            retention = None
            if self.method == "joint":
                retention = [
                    _retention_model(c.plateau, z[c.name], self.shape_, x[c.name], self.threshold)
                    + rng.choice(noise[c.name], len(c.ratios))
                    for c in self.curves_
                ]
            theta, shape = self._fit_params(self.curves_, points, start, retention)
            draws.append([*map(float, theta), *shape, tau * rng.standard_normal()])
        return draws

    def _top_slope(self, free: dict[str, float], top: int = 3) -> TopSlope | None:
        """The slope of the top sizes' own logit r* in log N, with a t interval from the size-level
        scatter around the whole law (a single budget only: with several, N and D mix)."""
        if spans_budgets(self.curves_) or len(free) < top:
            return None
        by_name = {c.name: c for c in self.curves_}
        names = sorted(free, key=lambda s: by_name[s].n_params)[-top:]
        x = np.log([by_name[s].n_params for s in names])
        y = np.array([free[s] for s in names])
        slope = float(np.polyfit(x, y, 1)[0])
        e, p = np.array(self.size_residuals_), self._f.n_params
        dof = len(e) - p
        sd = math.sqrt(float(e @ e) / len(e))  # already inflated to an unbiased scale
        se = sd / math.sqrt(float(((x - x.mean()) ** 2).sum()))
        half = float(student_t.ppf(0.5 + self.confidence / 2, max(dof, 1))) * se
        return TopSlope(tuple(names), slope, (slope - half, slope + half))

    def _acquisition_law(self) -> dict:
        """The lowest ratio that learns the domain, per size, and its own law through them (the
        points method: Gu et al. 2025 find this threshold falls as a power law in N)."""
        points = {}
        for c in self.curves_:
            a = c.acquisition_threshold(self.acquisition_target)
            if a is not None:
                points[c.name] = (c.n_params, c.tokens, a)
        needed = len(FORMS[DEFAULT_FORM]) + 1
        if len(points) < needed:
            note = (
                f"the lowest ratio that learns the domain (acquisition {self.acquisition_target}) "
                f"was found at {len(points)} of {len(self.curves_)} sizes and its law needs "
                f"{needed}: lower the ratios tried or predict.acquisition_target"
            )
            return {"thresholds": points, "note": note}
        curves = [SizeCurve(s, n, d, (a,), (0.0,), (0.0,), 1.0) for s, (n, d, a) in points.items()]
        law = InfusionLaw(form="power_n", method="points", confidence=self.confidence,
                          n_bootstrap=self.n_bootstrap, seed=self.seed)  # fmt: skip
        law.curves_ = curves
        law.measured_ = {s: a for s, (_, _, a) in points.items()}
        law.log_n0 = float(np.mean(np.log([n for n, _, _ in points.values()])))
        law.log_d0 = float(np.mean(np.log([d for _, d, _ in points.values()])))
        theta, _ = law._fit_params(curves, list(points.values()))
        law.params_ = theta.tolist()
        free = {s: float(_logit(a)) for s, (_, _, a) in points.items()}
        law.size_residuals_ = law._size_residuals(free)
        law.draws_ = law._bootstrap(free)
        # How a size's deviation in r* goes with its deviation in the learning threshold: a new
        # size's two deviations are drawn with this correlation (0 with fewer than 3 in common).
        mine = dict(zip(self.measured_, self.size_residuals_, strict=True))
        theirs = dict(zip(points, law.size_residuals_, strict=True))
        common = [s for s in points if s in mine]
        rho = 0.0
        if len(common) >= 3:
            pairs = np.array([[mine[s], theirs[s]] for s in common])
            if pairs.std(axis=0).min() > 0:
                rho = float(np.clip(np.corrcoef(pairs.T)[0, 1], -0.99, 0.99))
        return {"thresholds": points, "law": law.to_dict(shallow=True), "rho": rho}

    # --- prediction -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.params_:
            raise KinfuseError("the law is not fitted yet: call fit() or load() first")

    def _default_tokens(self) -> float:
        return max(self.curves_, key=lambda c: c.n_params).tokens

    def _query(self, n_params: float, tokens: float | None) -> tuple[float, float]:
        """The queried size and budget, checked: positive finite numbers (budget: the fitted
        one when None)."""
        self._check_fitted()
        tokens = self._default_tokens() if tokens is None else tokens
        for name, value in (("n_params", n_params), ("tokens", tokens)):
            if not (
                isinstance(value, int | float | np.number) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        return float(n_params), float(tokens)

    def predict_point(self, n_params: float, tokens: float | None = None) -> float | np.ndarray:
        """The fitted collapse ratio alone, without its interval (an array of sizes: an array)."""
        if np.ndim(n_params):
            return np.array([self.predict_point(n, tokens) for n in np.asarray(n_params).ravel()])
        n_params, tokens = self._query(n_params, tokens)
        return float(expit(self._law_logit(n_params, tokens)[0]))

    def _law_draws_logit(self, n_params: float, tokens: float) -> np.ndarray:
        """Per draw, the law's own logit r* at this size (its parameters only)."""
        k = len(self.params_)
        X = self._f.design(np.array([float(n_params)]), np.array([float(tokens)]))
        return np.array(
            [_logit(self._f.ratio(theta, X))[0] for theta in np.array(self.draws_)[:, :k]]
        )

    def _deviations(self) -> np.ndarray:
        """Per draw, a new size's own deviation from the law, in logit r*."""
        return np.array(self.draws_)[:, -1]

    def _shapes(self) -> np.ndarray:
        """Per draw, the joint method's curve shape (log steepness, floor parameter)."""
        k = len(self.params_)
        return np.array(self.draws_)[:, k : k + 2]

    def _keep_logits(self, z: np.ndarray, shapes: np.ndarray, tolerance: float) -> np.ndarray:
        """Per draw, the logit of the ratio up to which retention stays at `tolerance` x plateau.
        The points method has no curve: its only tolerance is the collapse threshold (r*)."""
        if self.method != "joint":
            return np.asarray(z, float)
        return np.array(
            [
                _logit_ratio_keeping(zb, sh, self.threshold, tolerance)
                for zb, sh in zip(z, shapes, strict=True)
            ]
        )

    def _learn_logits(self, n_params: float, tokens: float, deviation: np.ndarray):
        """Per draw, the logit of the lowest ratio that learns the domain at this size, paired with
        the retention draws: the acquisition law's own parameter draw, and a new size's deviation
        correlated with the retention side's `deviation` as the measured sizes' residuals are."""
        if "law" not in self.acquisition_:
            return None
        law = InfusionLaw.from_dict(self.acquisition_["law"])
        base = law._law_draws_logit(n_params, tokens)
        own = law._deviations()
        rho = float(self.acquisition_.get("rho", 0.0))
        sd = float(deviation.std())
        u = deviation / sd if sd > 0 else np.zeros_like(deviation)
        v = np.random.default_rng(self.seed + 1).standard_normal(len(base))
        return base + float(own.std()) * (rho * u + math.sqrt(1 - rho**2) * v)

    def _interval(self, values: np.ndarray) -> tuple[float, float]:
        tail = (1 - self.confidence) / 2 * 100
        lo, hi = np.percentile(values, [tail, 100 - tail])
        return float(lo), float(hi)

    @property
    def decision_tolerance(self) -> float:
        """The tolerance the decision keeps: the points method knows only the threshold."""
        return self.tolerance if self.method == "joint" else self.threshold

    def expected_retention(
        self, n_params: float, tokens: float, ratio: float
    ) -> tuple[float, tuple[float, float]] | None:
        """The retention one trial of a new size should keep at `ratio`, as a share of its
        plateau, with a prediction interval (the joint method's curve; None for points)."""
        if self.method != "joint":
            return None
        x = float(_logit(ratio))
        z_hat = float(self._law_logit(n_params, tokens)[0])
        point = float(_retention_model(1.0, z_hat, self.shape_, x, self.threshold))
        rng = np.random.default_rng(self.seed)
        drawn = [
            _retention_model(1.0, zb, shape, x, self.threshold) + rng.normal(0, self.trial_sd_)
            for zb, shape in zip(
                self._law_draws_logit(n_params, tokens) + self._deviations(),
                self._shapes(),
                strict=True,
            )
        ]
        return point, self._interval(np.array(drawn))

    def decision_curves(self, n_params: float, tokens: float | None = None) -> DecisionCurves:
        """P_keep, P_learn and P_both over a grid of ratios at this size (the plot's input)."""
        n_params, tokens = self._query(n_params, tokens)
        z = self._law_draws_logit(n_params, tokens) + self._deviations()
        keep = self._keep_logits(z, self._shapes(), self.decision_tolerance)
        learn = self._learn_logits(n_params, tokens, self._deviations())
        return DecisionCurves.from_draws(keep, learn)

    def _width_sources(self, law_z: np.ndarray, z_hat: float, full: float) -> dict[str, float]:
        """How much of the keep ratio's interval width each source accounts for: the width lost
        when it alone is held fixed (a new size's scatter around the law; the curve's shape; the
        law's parameters, which the trials' noise and the sizes' scatter move)."""
        if self.method != "joint":
            return {}
        tol, shapes, deviations = self.decision_tolerance, self._shapes(), self._deviations()
        z = law_z + deviations
        held = {
            "size scatter": self._keep_logits(law_z, shapes, tol),
            "curve shape": self._keep_logits(z, np.tile(self.shape_, (len(z), 1)), tol),
            "law parameters": self._keep_logits(z_hat + deviations, shapes, tol),
        }
        tail = (1 - self.confidence) / 2
        widths = {
            k: float(np.quantile(v, 1 - tail) - np.quantile(v, tail)) for k, v in held.items()
        }
        return width_sources(widths, full)

    def predict(
        self, n_params: float, tokens: float | None = None, rule: str | None = None
    ) -> Prediction | list[Prediction]:
        """The forecast for a model of `n_params` non-embedding parameters trained on `tokens`:
        r* with its interval, the ratio keeping each tolerance, the learning side, and the
        decision by `rule` (default: the law's) at the law's confidence, all at this size.
        An array of sizes gives a list, one forecast each."""
        if np.ndim(n_params):
            return [self.predict(n, tokens, rule) for n in np.asarray(n_params).ravel()]
        n_params, tokens = self._query(n_params, tokens)
        law_z = self._law_draws_logit(n_params, tokens)
        z = law_z + self._deviations()
        shapes, c = self._shapes(), self.confidence
        tolerance = self.decision_tolerance
        keep_by = {
            tol: self._keep_logits(z, shapes, tol)
            for tol in sorted({*(self.tolerances if self.method == "joint" else ()), tolerance})
        }
        rows = tuple(
            ToleranceRow(
                tol,
                float(expit(np.median(k))),
                self._interval(expit(k)),
                float(expit(np.quantile(k, 1 - c))),
            )  # fmt: skip
            for tol, k in sorted(keep_by.items(), reverse=True)
        )
        learn = self._learn_logits(n_params, tokens, self._deviations())
        decision, _ = decide(keep_by[tolerance], learn, c, rule or self.rule)
        expected = (
            self.expected_retention(n_params, tokens, decision.ratio)
            if decision.ratio is not None
            else None
        )
        return Prediction(
            n_params=float(n_params),
            tokens=tokens,
            ratio=self.predict_point(n_params, tokens),
            interval=self._interval(expit(z)),
            confidence=c,
            tolerance=tolerance,
            decision=decision,
            tolerances=rows,
            acquisition_threshold=None if learn is None else float(expit(np.median(learn))),
            acquisition_interval=None if learn is None else self._interval(expit(learn)),
            acquisition_target=self.acquisition_target,
            acquisition_note=self.acquisition_.get("note"),
            expected_retention=expected,
            width_sources=self._width_sources(
                law_z, float(self._law_logit(n_params, tokens)[0]), decision.keep_width_logits
            ),
            exposures=self._exposures(tokens),
            warnings=tuple(self._range_warnings(n_params, tokens)),
        )

    def _exposures(self, tokens: float) -> Exposures | None:
        largest = max(self.curves_, key=lambda c: c.n_params)
        rates = (largest.domain_per_token, largest.general_per_token)
        return None if any(math.isnan(v) for v in rates) else Exposures(tokens, *rates)

    def _range_warnings(self, n_params: float, tokens: float) -> list[str]:
        warnings = []
        budgets = sorted({c.tokens for c in self.curves_})
        if not self._f.uses_tokens and tokens not in budgets:
            warnings.append(
                f"token budget {tokens:,.0f} differs from the ladder's ({', '.join(f'{b:,.0f}' for b in budgets)}): "
                f"this law has no D term, so it assumes r* does not move with the budget; every "
                "fact is seen in proportion to the tokens"
            )
        for label, value, fitted in (
            ("size", n_params, [c.n_params for c in self.curves_]),
            ("token budget", tokens, [c.tokens for c in self.curves_]),
        ):
            if value > max(fitted) * EXTRAPOLATION_WARN or value < min(fitted) / EXTRAPOLATION_WARN:
                warnings.append(
                    f"extrapolating: {label} {value:.3g} lies far outside the fitted range "
                    f"{min(fitted):.3g}-{max(fitted):.3g}"
                )
        return warnings

    # --- reporting --------------------------------------------------------------------------
    @property
    def parameters(self) -> dict[str, float]:
        """The fitted law in readable units: b_n (and g_d) exponents of the odds, r_max."""
        self._check_fitted()
        named = dict(zip(FORMS[self.form], self.params_, strict=True))
        if "logit_r_max" in named:
            named["r_max"] = float(expit(named.pop("logit_r_max")))
        return named

    def parameter_intervals(self) -> dict[str, tuple[float, float]]:
        draws = np.array(self.draws_)[:, : len(self.params_)]
        out = {}
        for i, name in enumerate(FORMS[self.form]):
            values = expit(draws[:, i]) if name == "logit_r_max" else draws[:, i]
            out["r_max" if name == "logit_r_max" else name] = self._interval(values)
        return out

    @property
    def held_out_summary(self) -> dict[str, float] | None:
        """Leave-one-size-out: coverage, median |log error| in 1 - r*, and the baseline's."""
        if not self.held_out_:
            return None
        return {
            "sizes": len(self.held_out_),
            "coverage": float(np.mean([h.covered for h in self.held_out_])),
            "median_abs_log_error": float(np.median([abs(h.log_error) for h in self.held_out_])),
            "baseline_median_abs_log_error": float(
                np.median([abs(h.baseline_log_error) for h in self.held_out_])
            ),
        }

    def report(self) -> dict:
        """The fit as a sweep's summary.json gives it: form, parameters with their intervals,
        the held-out check and the slope over the top sizes."""
        top = self.top_slope_
        return {
            "form": self.form,
            "method": self.method,
            "params": self.parameters,
            "intervals": self.parameter_intervals(),
            "confidence": self.confidence,
            "held_out": [
                {
                    **asdict(h),
                    "covered": h.covered,
                    "log_error": h.log_error,
                    "baseline_log_error": h.baseline_log_error,
                }
                for h in self.held_out_
            ],  # fmt: skip
            "held_out_summary": self.held_out_summary,
            "top_slope": {**asdict(top), "moving": top.moving} if top else None,
        }

    # --- persistence ------------------------------------------------------------------------
    def to_dict(self, shallow: bool = False) -> dict:
        out = {"format": FORMAT, **asdict(self)}
        if shallow:
            out["held_out_"] = []
        return out

    def save(self, path: str | Path) -> None:
        write_json_atomic(Path(path), self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, raw: dict) -> InfusionLaw:
        raw = dict(raw)
        raw.pop("format", None)
        curves = [
            SizeCurve(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})
            for c in raw.pop("curves_")
        ]
        held = [HeldOut.from_dict(h) for h in raw.pop("held_out_")]
        top = raw.pop("top_slope_")
        raw["tolerances"] = tuple(raw["tolerances"])
        law = cls(**raw)
        law.curves_, law.held_out_ = curves, held
        if top:
            law.top_slope_ = TopSlope(tuple(top["sizes"]), top["slope"], tuple(top["interval"]))
        return law

    @classmethod
    def load(cls, path: str | Path) -> InfusionLaw:
        try:
            raw = json.loads(Path(path).read_text())
            if not isinstance(raw, dict) or "params_" not in raw:
                raise KeyError("params_")
            if raw.get("format") != FORMAT:
                raise KinfuseError(
                    f"{path}: saved by an older kinfuse-ray (law format {raw.get('format', 1)}, "
                    f"this version reads {FORMAT}): refit it with `kinfuse fit`"
                )
            return cls.from_dict(raw)
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise KinfuseError(f"{path}: not a saved infusion law ({exc})") from None


# --- choosing the form --------------------------------------------------------------------------
@dataclass(frozen=True)
class LawComparison:
    """One candidate form scored by leave-one-size-out point predictions."""

    form: str
    held_out_error: float  # mean |log error| in 1 - r* over the held-out sizes


def _nearest(values: dict[str, float], curves: list[SizeCurve], held: SizeCurve) -> float:
    """The measured value of the curve nearest to `held` among `curves`: in log N, and in
    log D too where budgets differ."""
    points = {c.name: (c.n_params, c.tokens) for c in curves if c.name in values}

    def distance(name: str) -> float:
        n, d = points[name]
        return math.hypot(math.log(n / held.n_params), math.log(d / held.tokens))

    return values[min(points, key=distance)]


# What a fold leaves out with the held curve: only it, every budget of its size, or every size
# at its budget (calibration across sizes and across budgets).
HOLD_OUT = {
    "curve": lambda c, held: c is held,
    "size": lambda c, held: c.n_params == held.n_params,
    "budget": lambda c, held: c.tokens == held.tokens,
}


def leave_one_size_out(
    curves: list[SizeCurve], form: str = DEFAULT_FORM, hold_out: str = "curve", **options
) -> list[HeldOut]:
    """Each size with a collapse left out in turn and predicted by the law the others give: its
    r*, the ratio keeping the tolerance and the ratio learning the domain (where the held-out
    size measured them), each beside the nearest remaining size's value as is. With `form`
    "auto" the remaining sizes choose the form themselves, as a sweep would; with
    `n_bootstrap=0` only points are predicted (intervals collapse onto them). On a size x
    budget ladder each curve is a (size, budget); `hold_out` "size" or "budget" leaves every
    curve of the held one's size or budget out of its fold (`HOLD_OUT`)."""
    leaves_out = HOLD_OUT[hold_out]
    probe = InfusionLaw(**options)
    threshold, tolerance = probe.threshold, probe.decision_tolerance
    measured = {c.name: m.ratio for c in curves if (m := c.collapse(threshold)).found}
    keeps = {c.name: k for c in curves if (k := _crossing(c, tolerance)) is not None}
    learns = {c.name: a for c in curves if (a := c.acquisition_threshold(probe.acquisition_target))}
    out = []
    for held in curves:
        if held.name not in measured:
            continue
        rest = [c for c in curves if not leaves_out(c, held)]
        try:
            sub, _ = select_law(rest, form, validate=False, **options)
        except KinfuseError:
            continue  # too few sizes left
        n, d = held.n_params, held.tokens
        if probe.n_bootstrap:
            p = sub.predict(n, d)
            rstar, r_interval = p.ratio, p.interval
            row = next(r for r in p.tolerances if r.tolerance == tolerance)
            keep_at, keep_interval = row.ratio, row.interval
            learn_at, learn_interval = p.acquisition_threshold, p.acquisition_interval
        else:
            rstar = keep_at = sub.predict_point(n, d)
            r_interval = keep_interval = (rstar, rstar)
            learn_at = learn_interval = None
        keep = learn = None
        if held.name in keeps and any(c.name in keeps for c in rest):
            keep = HeldValue(keeps[held.name], keep_at, keep_interval, _nearest(keeps, rest, held))
        if held.name in learns and learn_at is not None and any(c.name in learns for c in rest):
            learn = HeldValue(
                learns[held.name], learn_at, learn_interval, _nearest(learns, rest, held)
            )
        out.append(
            HeldOut(
                held.name,
                n,
                sub.form,
                measured[held.name],
                rstar,
                r_interval,
                _nearest(measured, rest, held),
                keep,
                learn,
            )  # fmt: skip
        )
    return out


def _crossing(curve: SizeCurve, share: float) -> float | None:
    """The ratio where a size's retention first falls below `share` x plateau (the detector's
    rule at that share): what the keep ratio's forecast is checked against."""
    found = curve.collapse(share)
    return found.ratio if found.found else None


def compare_laws(
    curves: list[SizeCurve], forms: Sequence[str] = tuple(FORMS), **options
) -> list[LawComparison]:
    """Score each form the data allow by leave-one-size-out over every size (best first)."""
    probe = InfusionLaw(**options)
    budgets = spans_budgets(curves)
    collapsed = sum(c.collapse(probe.threshold).found for c in curves)
    out = []
    for form in forms:
        f = _Form(form, 0, 0)
        if (f.uses_tokens and not budgets) or collapsed - 1 < f.n_params + 1:
            continue
        held = leave_one_size_out(curves, form, **{**options, "n_bootstrap": 0})
        if len(held) == collapsed:  # every fold could fit this form
            out.append(LawComparison(form, float(np.mean([abs(h.log_error) for h in held]))))
    return sorted(out, key=lambda c: (round(c.held_out_error, 4), len(FORMS[c.form])))


def select_law(
    curves: list[SizeCurve], form: str = "auto", validate: bool = True, **options
) -> tuple[InfusionLaw, list[LawComparison]]:
    """The named form, or for "auto" the best by leave-one-size-out when MIN_SIZES_TO_SELECT sizes
    collapsed (else DEFAULT_FORM, fixed before looking); fitted, and validated if `validate`.
    Curves at two or more token budgets (a size x budget ladder) choose among the forms with a
    D term: the ladder was run to measure it."""
    ranked: list[LawComparison] = []
    if form == "auto":
        threshold = options.get("threshold", EVAL_DEFAULTS.collapse_threshold)
        collapsed = sum(c.collapse(threshold).found for c in curves)
        with_d = [f for f in FORMS if _Form(f, 0, 0).uses_tokens]
        forms = with_d if spans_budgets(curves) else list(FORMS)
        if collapsed >= MIN_SIZES_TO_SELECT:
            ranked = compare_laws(curves, forms, **options)
        form = ranked[0].form if ranked else forms[0]
    options = {k: v for k, v in options.items() if k != "form"}
    return InfusionLaw(form=form, **options).fit(curves, validate=validate), ranked


def point_law(points: list[tuple[float, float, float]]) -> Callable[[float, float], float]:
    """A quick power_n fit through (n_params, tokens, r*) points, no uncertainty: to seed a
    search with where the next size's collapse is likely."""
    n = np.array([p[0] for p in points], float)
    f = _Form(DEFAULT_FORM, float(np.log(n).mean()), 0.0)
    X = f.design(n, np.ones_like(n))
    target = _logit(np.array([p[2] for p in points]))
    theta = _solve(
        lambda th: _logit(f.ratio(th, X)) - target, f.start(target, X), "huber", HUBER_LOGIT
    )
    return lambda n_params, tokens: float(
        f.ratio(theta, f.design(np.array([n_params], float), np.ones(1)))[0]
    )
