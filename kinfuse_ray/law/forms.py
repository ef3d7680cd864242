"""The law's forms: r* = r_max sigmoid(eta), eta linear in the form's features of log N (and
log D). A form is one `Form` in `FORMS`, keyed by the sweep schema's names (`config.LawForm`):
adding one is an entry here and a name there.

    power_n:      r* = 1 / (1 + C N^-b)              i.e. (1 - r*) / r* = C N^-b
    power_nd:     r* = 1 / (1 + C N^-b D^-g)
    power_n_sat:  r* = r_max / (1 + C N^-b)          saturates at r_max < 1 as N grows: the
    power_nd_sat: r* = r_max / (1 + C N^-b D^-g)     constant term of Gu et al. 2024's CMR law
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit

from kinfuse_ray.law.curves import clipped_logit

# Features of the centred logs (x_n = log N - log N0, x_d = log D - log D0) after the intercept.
Features = Callable[[np.ndarray, np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class Form:
    """eta = eta0 + features(x_n, x_d) . coefficients; r* = r_max sigmoid(eta), r_max a fitted
    parameter (`logit_r_max`) when the form saturates, else 1."""

    name: str
    coefficients: tuple[str, ...]  # the features' coefficients' names, in order
    features: Features
    uses_tokens: bool = False
    saturates: bool = False

    @property
    def parameters(self) -> tuple[str, ...]:
        return ("eta0", *self.coefficients, *(("logit_r_max",) if self.saturates else ()))

    @property
    def n_params(self) -> int:
        return len(self.parameters)

    def equation(self, log_n0: float, log_d0: float) -> str:
        """The law with its parameters' names and the fitted centre: eta0 is logit r* at N0
        (and D0), b_n (g_d) how fast the odds of r* grow with N (D)."""
        terms = ["eta0", f"b_n ln(N / {np.exp(log_n0):,.0f})"]
        if self.uses_tokens:
            terms.append(f"g_d ln(D / {np.exp(log_d0):,.0f})")
        return f"r* = {'r_max ' if self.saturates else ''}sigmoid({' + '.join(terms)})"

    def design(self, n: np.ndarray, d: np.ndarray, log_n0: float, log_d0: float) -> np.ndarray:
        x_n, x_d = np.log(n) - log_n0, np.log(d) - log_d0
        return np.stack([np.ones_like(n), *self.features(x_n, x_d)], axis=1)

    def ratio(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        k = X.shape[1]
        r_max = expit(theta[k]) if self.saturates else 1.0
        return r_max * expit(X @ theta[:k])

    def start(self, logit_r: np.ndarray, X: np.ndarray) -> list[np.ndarray]:
        """Starting points for the solver: the least-squares line through the points and a flat
        one (each with a high and a far r_max when the form saturates)."""
        base = np.linalg.lstsq(X, logit_r, rcond=None)[0] if len(logit_r) else np.zeros(X.shape[1])
        starts = [base, np.r_[base[0], np.zeros(X.shape[1] - 1)]]
        if self.saturates:
            top = float(expit(logit_r.max())) if len(logit_r) else 0.9
            starts = [np.r_[s, v] for s in starts
                      for v in (clipped_logit(min(top + 0.02, 0.999)), 6.0)]  # fmt: skip
        return starts


def _n(x_n: np.ndarray, x_d: np.ndarray) -> list[np.ndarray]:
    return [x_n]


def _nd(x_n: np.ndarray, x_d: np.ndarray) -> list[np.ndarray]:
    return [x_n, x_d]


FORMS: dict[str, Form] = {
    "power_n": Form("power_n", ("b_n",), _n),
    "power_nd": Form("power_nd", ("b_n", "g_d"), _nd, uses_tokens=True),
    "power_n_sat": Form("power_n_sat", ("b_n",), _n, saturates=True),
    "power_nd_sat": Form("power_nd_sat", ("b_n", "g_d"), _nd, uses_tokens=True, saturates=True),
}
DEFAULT_FORM = "power_n"


def solve(residuals: Callable, starts: Sequence[np.ndarray], loss: str, scale: float) -> np.ndarray:
    """The best of a robust least-squares fit from each start."""
    fits = [least_squares(residuals, x0, loss=loss, f_scale=scale) for x0 in starts]
    return min(fits, key=lambda f: f.cost).x
