"""The knowledge-infusion scaling law, as a scikit-learn-style estimator.

    law = InfusionLaw(form="power_n", target="general_share").fit(points)
    law.predict(n_params=1e8)  # -> Prediction with interval and recommended safe ratio

Forms (log-linear in their parameters, fitted in log space):
- power_n:  y = c * N^b            log y = a + b log N
- power_nd: y = c * N^b * D^g      log y = a + b log N + g log D
where y is the collapse ratio r* (target="ratio") or the general share 1 - r* (target=
"general_share"; r* is bounded by 1, so for large models its general share is the quantity that
follows a clean power law, see the science notes).

Fitting: Huber loss on log residuals (robust to one bad collapse point), several starting points,
best cost kept. Intervals: bootstrap over points, each point's r* redrawn log-uniformly within
its bracket. Every fit also reports leave-the-largest-size-out validation next to the baseline
"use the largest fitted size's r* as is".
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from kinfuse_ray.errors import KinfuseError

FORMS = {"power_n": ("log_c", "b_n"), "power_nd": ("log_c", "b_n", "g_d")}
TARGETS = ("ratio", "general_share")
HUBER_SCALE = 0.1  # log-space residual where the loss turns from quadratic to linear
EXTRAPOLATION_WARN = 10.0  # warn when the query lies this factor beyond the fitted sizes


@dataclass(frozen=True)
class CollapseRecord:
    """One measured collapse point: r* of a model of `n_params` trained on `tokens` tokens."""

    n_params: float
    tokens: float
    ratio: float
    bracket: tuple[float, float]
    name: str = ""
    acquisition: tuple[tuple[float, float], ...] = ()  # (ratio, acquisition) measured at this size


@dataclass(frozen=True)
class Prediction:
    n_params: float
    tokens: float
    ratio: float
    interval: tuple[float, float]
    confidence: float
    safe_ratio: float
    safety_margin: float
    warnings: tuple[str, ...] = ()
    # Domain acquisition the largest fitted size reached at the recommended ratio: a floor, since
    # larger models acquire more at a given ratio. None when that ratio lies outside its trials.
    expected_acquisition: float | None = None

    def describe(self) -> str:
        lo, hi = self.interval
        text = (
            f"collapse ratio r* = {self.ratio:.3f} ({self.confidence:.0%} interval {lo:.3f}-{hi:.3f}); "
            f"recommended infusion ratio {self.safe_ratio:.3f} "
            f"(lower bound less a {self.safety_margin:.0%} margin)"
        )
        if self.expected_acquisition is not None:
            text += (
                f"; expected domain acquisition at least {self.expected_acquisition:.2f} "
                "(chance-corrected, as the largest fitted size reached there)"
            )
        return text


@dataclass(frozen=True)
class Validation:
    """Leave-the-largest-size-out: fit the rest, predict the largest."""

    held_out: str
    measured: float
    predicted: float
    interval: tuple[float, float]
    log_error: float
    covered: bool
    baseline: float  # the largest remaining size's r*, used as is
    baseline_log_error: float

    @property
    def beats_baseline(self) -> bool:
        return abs(self.log_error) < abs(self.baseline_log_error)


def _acquisition_at(curve: tuple[tuple[float, float], ...], ratio: float) -> float | None:
    """Interpolate a measured acquisition curve; None outside the ratios it was measured at."""
    if not curve:
        return None
    ratios, values = zip(*sorted(curve), strict=True)
    if not ratios[0] <= ratio <= ratios[-1]:
        return None
    return float(np.interp(ratio, ratios, values))


@dataclass
class InfusionLaw:
    form: str = "power_n"
    target: str = "general_share"
    confidence: float = 0.9
    safety_margin: float = 0.1
    n_bootstrap: int = 1000
    seed: int = 0
    # Fitted state (set by fit, saved by save):
    params_: list[float] = field(default_factory=list)
    bootstrap_params_: list[list[float]] = field(default_factory=list)
    records_: list[CollapseRecord] = field(default_factory=list)
    validation_: Validation | None = None

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise KinfuseError(f"unknown law form '{self.form}' (choose from {', '.join(FORMS)})")
        if self.target not in TARGETS:
            raise KinfuseError(
                f"unknown law target '{self.target}' (choose from {', '.join(TARGETS)})"
            )

    @property
    def min_points(self) -> int:
        return len(FORMS[self.form]) + 1  # one more point than parameters, else nothing is tested

    # --- transforms -------------------------------------------------------------------------
    def _design(self, n_params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        cols = [np.ones_like(n_params), np.log(n_params)]
        if self.form == "power_nd":
            cols.append(np.log(tokens))
        return np.stack(cols, axis=1)

    def _to_y(self, ratio: np.ndarray) -> np.ndarray:
        return np.log(ratio if self.target == "ratio" else 1.0 - np.asarray(ratio))

    def _to_ratio(self, log_y: np.ndarray) -> np.ndarray:
        y = np.exp(log_y)
        return np.clip(y if self.target == "ratio" else 1.0 - y, 0.0, 1.0)

    # --- fitting ----------------------------------------------------------------------------
    def _solve(self, X: np.ndarray, y: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """Huber fit from several starts (or from `start` alone, for bootstrap refits)."""
        if start is not None:
            starts = [start]
        else:
            starts = [np.linalg.lstsq(X, y, rcond=None)[0], np.zeros(X.shape[1])]
            starts += [np.r_[y.mean(), np.full(X.shape[1] - 1, s)] for s in (-1.0, 1.0)]
        fits = [
            least_squares(
                lambda p: X @ p - y, x0, jac=lambda p: X, loss="huber", f_scale=HUBER_SCALE
            )
            for x0 in starts
        ]
        return min(fits, key=lambda f: f.cost).x

    def fit(self, records: list[CollapseRecord], validate: bool = True) -> InfusionLaw:
        """Fit to `records`. Without `validate` (a quick point estimate, e.g. to seed a search)
        one point per parameter is enough and no held-out check is made."""
        records = [r for r in records if r.ratio is not None]
        sizes = {(r.n_params, r.tokens) for r in records}
        needed = self.min_points if validate else self.min_points - 1
        if len(sizes) < needed:
            raise KinfuseError(
                f"the {self.form} law needs collapse points at {needed} or more distinct "
                f"sizes, got {len(sizes)}; add sizes or widen the ratios so more sizes collapse"
            )
        if self.form == "power_nd" and len({r.tokens for r in records}) < 2:
            raise KinfuseError("the power_nd law needs collapse points at 2 or more token budgets")
        self._fit_points(records)
        self.validation_ = self._validate(records) if validate else None
        return self

    def _fit_points(self, records: list[CollapseRecord]) -> None:
        n = np.array([r.n_params for r in records], float)
        X = self._design(n, np.array([r.tokens for r in records], float))
        self.records_ = list(records)
        self.params_ = self._solve(X, self._to_y(np.array([r.ratio for r in records]))).tolist()
        self.bootstrap_params_ = self._bootstrap(records, X, np.array(self.params_))

    def _bootstrap(
        self, records: list[CollapseRecord], X: np.ndarray, start: np.ndarray
    ) -> list[list[float]]:
        rng = np.random.default_rng(self.seed)
        lo = np.log([max(r.bracket[0], 1e-6) for r in records])
        hi = np.maximum(lo, np.log([min(r.bracket[1], 1 - 1e-6) for r in records]))
        samples = []
        for _ in range(self.n_bootstrap):
            idx = rng.integers(len(records), size=len(records))
            if len(np.unique(X[idx, 1:], axis=0)) < X.shape[1]:
                continue  # too few distinct sizes in this draw to identify the parameters
            ratio = np.exp(rng.uniform(lo[idx], hi[idx]))
            samples.append(self._solve(X[idx], self._to_y(ratio), start).tolist())
        return samples

    def _validate(self, records: list[CollapseRecord]) -> Validation | None:
        largest = max(records, key=lambda r: (r.n_params, r.tokens))
        rest = [r for r in records if (r.n_params, r.tokens) != (largest.n_params, largest.tokens)]
        if len({(r.n_params, r.tokens) for r in rest}) < self.min_points - 1:
            return None
        sub = InfusionLaw(
            self.form,
            self.target,
            self.confidence,
            self.safety_margin,
            min(self.n_bootstrap, 200),
            self.seed,
        )
        sub._fit_points(rest)
        pred = sub.predict(largest.n_params, largest.tokens)
        baseline = max(rest, key=lambda r: (r.n_params, r.tokens)).ratio
        return Validation(
            held_out=largest.name or f"N={largest.n_params:.3g}",
            measured=largest.ratio,
            predicted=pred.ratio,
            interval=pred.interval,
            log_error=math.log(pred.ratio / largest.ratio),
            covered=bool(pred.interval[0] <= largest.ratio <= pred.interval[1]),
            baseline=baseline,
            baseline_log_error=math.log(baseline / largest.ratio),
        )

    # --- prediction -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.params_:
            raise KinfuseError("the law is not fitted yet: call fit() or load() first")

    def predict_point(self, n_params: float, tokens: float | None = None) -> float:
        """The fitted collapse ratio alone, without its interval."""
        self._check_fitted()
        tokens = tokens or max(self.records_, key=lambda r: r.n_params).tokens
        X = self._design(np.array([float(n_params)]), np.array([float(tokens)]))
        return float(self._to_ratio(X @ np.array(self.params_))[0])

    def predict(self, n_params: float, tokens: float | None = None) -> Prediction:
        ratio = self.predict_point(n_params, tokens)
        largest = max(self.records_, key=lambda r: r.n_params)
        tokens = tokens or largest.tokens
        X = self._design(np.array([float(n_params)]), np.array([float(tokens)]))
        boot = self._to_ratio(X @ np.array(self.bootstrap_params_).T)[0]
        tail = (1 - self.confidence) / 2 * 100
        lo, hi = (float(v) for v in np.percentile(boot, [tail, 100 - tail]))
        # Resampling r* within brackets that sit off-centre can shift every bootstrap fit one way;
        # the interval still holds the fitted value (a widened interval, never a broken one).
        lo, hi = min(lo, ratio), max(hi, ratio)
        safe = max(0.0, lo * (1 - self.safety_margin))
        return Prediction(
            n_params=float(n_params),
            tokens=float(tokens),
            ratio=ratio,
            interval=(lo, hi),
            confidence=self.confidence,
            safe_ratio=safe,
            safety_margin=self.safety_margin,
            warnings=tuple(self._range_warnings(n_params, tokens)),
            expected_acquisition=_acquisition_at(largest.acquisition, safe),
        )

    def _range_warnings(self, n_params: float, tokens: float) -> list[str]:
        warnings = []
        for label, value, fitted in (
            ("size", n_params, [r.n_params for r in self.records_]),
            ("token budget", tokens, [r.tokens for r in self.records_]),
        ):
            if value > max(fitted) * EXTRAPOLATION_WARN or value < min(fitted) / EXTRAPOLATION_WARN:
                warnings.append(
                    f"extrapolating: {label} {value:.3g} lies far outside the fitted range "
                    f"{min(fitted):.3g}-{max(fitted):.3g}"
                )
        return warnings

    @property
    def exponents(self) -> dict[str, float]:
        self._check_fitted()
        return dict(zip(FORMS[self.form], self.params_, strict=True))

    def exponent_intervals(self) -> dict[str, tuple[float, float]]:
        tail = (1 - self.confidence) / 2 * 100
        boot = np.array(self.bootstrap_params_)
        return {
            name: tuple(float(v) for v in np.percentile(boot[:, i], [tail, 100 - tail]))
            for i, name in enumerate(FORMS[self.form])
        }

    def report(self) -> str:
        """A few lines for people: the fitted parameters with intervals and the held-out check."""
        self._check_fitted()
        n = [r.n_params for r in self.records_]
        lines = [
            f"law {self.form} on {self.target}, fitted to {len(self.records_)} collapse points "
            f"(N {min(n):,.0f} to {max(n):,.0f}):"
        ]
        intervals = self.exponent_intervals()
        for name, value in self.exponents.items():
            lo, hi = intervals[name]
            lines.append(
                f"  {name} = {value:+.3f}  ({self.confidence:.0%} interval {lo:+.3f} to {hi:+.3f})"
            )
        v = self.validation_
        if v is None:
            lines.append("  held-out check: needs one more size")
        else:
            verdict = "beats" if v.beats_baseline else "does not beat"
            lines.append(
                f"  held out {v.held_out}: measured r* {v.measured:.3f}, law {v.predicted:.3f} "
                f"({v.interval[0]:.3f}-{v.interval[1]:.3f}, {'covers' if v.covered else 'misses'}; "
                f"log error {v.log_error:+.3f}); baseline {v.baseline:.3f} "
                f"(log error {v.baseline_log_error:+.3f}): the law {verdict} the baseline"
            )
        return "\n".join(lines)

    # --- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)

    @classmethod
    def from_dict(cls, raw: dict) -> InfusionLaw:
        raw = dict(raw)
        records = [
            CollapseRecord(**{**r, "bracket": tuple(r["bracket"])}) for r in raw.pop("records_")
        ]
        validation = raw.pop("validation_")
        law = cls(**raw)
        law.records_ = records
        if validation:
            law.validation_ = Validation(
                **{**validation, "interval": tuple(validation["interval"])}
            )
        return law

    @classmethod
    def from_mlflow(
        cls,
        experiment: str | list[str],
        tracking_uri: str = "sqlite:///mlflow.db",
        threshold: float = 0.5,
        plateau_points: int = 2,
        **law_options,
    ) -> InfusionLaw:
        """Fit on the collapse points rebuilt from the finished trials of one or more sweeps'
        MLflow experiments (not from any cached summary). `law_options` go to the constructor;
        a `form` or `target` left out (or "auto") is chosen by `compare_laws`."""
        from kinfuse_ray.analysis import collapse_records, size_results
        from kinfuse_ray.config import EvalConfig
        from kinfuse_ray.tracking import load_trials

        names = [experiment] if isinstance(experiment, str) else list(experiment)
        trials = load_trials(tracking_uri, names)
        evals = EvalConfig(collapse_threshold=threshold, plateau_points=plateau_points)
        records = collapse_records(size_results(trials, evals))
        form, target = law_options.pop("form", "auto"), law_options.pop("target", "auto")
        return select_law(records, form, target, **law_options)

    @classmethod
    def load(cls, path: str | Path) -> InfusionLaw:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise KinfuseError(f"{path}: not a saved infusion law ({exc})") from None


@dataclass(frozen=True)
class LawComparison:
    """How one candidate law fits the same collapse points, scored in the common space log r*."""

    law: InfusionLaw
    aicc: float  # Gaussian AICc of the log r* residuals (lower is better)
    held_out_error: float | None  # |log error| predicting the largest size from the rest

    @property
    def name(self) -> str:
        return f"{self.law.form}/{self.law.target}"


def compare_laws(
    records: list[CollapseRecord],
    forms: tuple[str, ...] = tuple(FORMS),
    targets: tuple[str, ...] = TARGETS,
    **options,
) -> list[LawComparison]:
    """Fit every law form and target the points allow; best first. The held-out error ranks
    laws when every candidate has one, the AICc otherwise (and breaks ties)."""
    budgets = len({r.tokens for r in records})
    candidates = [(f, t) for f in forms for t in targets if f == "power_n" or budgets >= 2]
    out = []
    for form, target in candidates:
        try:
            law = InfusionLaw(form=form, target=target, **options).fit(records)
        except KinfuseError:
            continue  # too few points for this form
        fitted = np.array([law.predict(r.n_params, r.tokens).ratio for r in law.records_])
        measured = np.array([r.ratio for r in law.records_])
        residual = np.log(np.clip(fitted, 1e-9, None)) - np.log(measured)
        n, k = len(measured), len(law.params_)
        rss = max(float(residual @ residual), 1e-12)
        aicc = (
            n * math.log(rss / n)
            + 2 * k
            + (2 * k * (k + 1) / (n - k - 1) if n > k + 1 else math.inf)
        )
        v = law.validation_
        out.append(LawComparison(law, aicc, abs(v.log_error) if v else None))
    if not out:
        raise KinfuseError(f"no law could be fitted to {len(records)} collapse points")
    by_held_out = all(c.held_out_error is not None for c in out)
    return sorted(out, key=lambda c: ((c.held_out_error if by_held_out else 0.0), c.aicc))


def candidates(form: str = "auto", target: str = "auto") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The forms and targets to compare: the one named, or all of them for "auto"."""
    return (tuple(FORMS) if form == "auto" else (form,)), (
        TARGETS if target == "auto" else (target,)
    )


def select_law(
    records: list[CollapseRecord], form: str = "auto", target: str = "auto", **options
) -> InfusionLaw:
    """The law named by `form` and `target`, or the best by `compare_laws` where one is "auto"."""
    return compare_laws(records, *candidates(form, target), **options)[0].law
