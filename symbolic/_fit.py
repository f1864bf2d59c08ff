r"""A smooth, exportable :math:`p^n(x)` from binned Monte Carlo: a weighted fit with the logarithms of QCD built in.

Near a singular endpoint, at distance :math:`d` and :math:`t = d/(b - a)`, a fixed-order
coefficient has the form :math:`d\,p^n = \sum_{j < 2n} L^j P_j(t)` with :math:`L = \log(1/t)`
and :math:`P_j` smooth: the leading logarithms are explicit, the power corrections are
polynomials. The fit takes exactly that form (each :math:`P_j` a Chebyshev series in
:math:`t`), so it extrapolates below the data as QCD does; on a regular support
:math:`p^n` is one Chebyshev series. Bin averages of the basis are computed by Gauss–Legendre
quadrature in :math:`\log d`, the fit is linear least squares weighted by the bin errors, and the
degree is chosen by Akaike's criterion. The result is an explicit SymPy expression, so
everything downstream (expansion, exact minimizer, codegen, training) treats it as a formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ._data import Histogram
from ._errors import SpecError, one_line

__all__ = ["OrderFit", "DataSource", "fit_order"]

#: Highest Chebyshev degree tried per logarithm power.
MAX_DEGREE = 16
#: A fit whose χ² has a p-value below this is refused: the basis does not describe the data.
MIN_P_VALUE = 1e-6
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(24)


@dataclass(frozen=True, eq=False)  # arrays: compared by identity
class OrderFit:
    r"""The fitted :math:`p^n`: coefficients, their covariance and the fit's quality.

    Attributes:
        n: The order.
        support, singular: The problem's support and singular endpoint.
        logs: The highest power of :math:`L` (``None`` on a regular support or for a regular
            :math:`p^0`: then no :math:`1/d`).
        degree: The Chebyshev degree of each :math:`P_j`.
        coefficients: Ordered by logarithm power, then degree.
        covariance: Their covariance matrix.
        chi2, ndf: The fit's :math:`\chi^2` and degrees of freedom.
        bins: Bins fitted.
    """

    n: int
    support: tuple[float, float]
    singular: str
    logs: int | None
    degree: int
    coefficients: np.ndarray
    covariance: np.ndarray
    chi2: float
    ndf: int
    bins: int

    @property
    def chi2_per_ndf(self) -> float:
        return self.chi2 / self.ndf

    def columns(self, x: np.ndarray) -> np.ndarray:
        r"""The basis functions at ``x``, shape ``(len(x), K)``."""
        return _columns(np.asarray(x, dtype=float), self.support, self.singular, self.logs, self.degree)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.columns(x) @ self.coefficients

    def error(self, x: np.ndarray) -> np.ndarray:
        r"""One standard deviation of the fit at ``x``."""
        basis = self.columns(x)
        return np.sqrt(np.maximum(np.einsum("ik,kl,il->i", basis, self.covariance, basis), 0.0))

    def expression(self, x: sp.Symbol) -> sp.Expr:
        r"""The fit as a SymPy expression in ``x``: :math:`\frac{1}{d}\sum_j L^j \sum_k a_{jk} d^k`.

        Each coefficient is a literal of 15 significant digits multiplying a power of
        :math:`d`, a form SymPy neither distributes nor refactors, so that its text reads back
        to the same expression (a run directory stores it as a formula).
        """
        a, b = self.support
        width = sp.nsimplify(b - a)
        distance = (sp.nsimplify(b) - x) if self.singular == "upper" else (x - sp.nsimplify(a))
        terms = []
        for j, coefficients in zip([None] if self.logs is None else range(self.logs + 1), self.power_series()):
            polynomial = sp.Add(*(sp.Float(f"{c:.15g}", 15) * distance**m for m, c in enumerate(coefficients)))
            terms.append(polynomial if j is None else polynomial * sp.log(width / distance) ** j)
        total = sp.Add(*terms)
        return total if self.logs is None else total / distance


    def power_series(self) -> list[np.ndarray]:
        r"""Per power of :math:`L`, the coefficients :math:`a_k` of :math:`P_j` in powers of :math:`d`, rounded
        to the 15 digits the expression carries."""
        a, b = self.support
        per_power = self.degree + 1
        out = []
        for k in range(self.coefficients.size // per_power):
            series = np.polynomial.Chebyshev(self.coefficients[k * per_power:(k + 1) * per_power], domain=[0.0, 1.0])
            in_t = series.convert(kind=np.polynomial.Polynomial).coef
            out.append(np.array([float(f"{c / (b - a) ** m:.15g}") for m, c in enumerate(in_t)]))
        return out

    def exportable(self, x: np.ndarray) -> bool:
        r"""Whether the power series the expression uses reproduces the Chebyshev series at ``x`` to 1e-9
        (in powers of :math:`d` a high degree cancels: the coefficients of :math:`T_{16}` reach 1e12)."""
        d = _distance(np.asarray(x, dtype=float), self.support, self.singular)
        a, b = self.support
        per_power = self.degree + 1
        for k, coefficients in enumerate(self.power_series()):
            exact = np.polynomial.chebyshev.chebval(2 * d / (b - a) - 1, self.coefficients[k * per_power:(k + 1) * per_power])
            scale = max(float(np.max(np.abs(exact))), 1e-300)
            if np.max(np.abs(np.polynomial.polynomial.polyval(d, coefficients) - exact)) > 1e-9 * scale:
                return False
        return True


def _distance(x: np.ndarray, support: tuple[float, float], singular: str) -> np.ndarray:
    a, b = support
    return b - x if singular == "upper" else x - a


def _columns(x: np.ndarray, support: tuple[float, float], singular: str, logs: int | None, degree: int) -> np.ndarray:
    a, b = support
    d = _distance(x, support, singular)
    t = d / (b - a)
    chebyshev = np.polynomial.chebyshev.chebvander(2 * t - 1, degree)
    if logs is None:
        return chebyshev
    with np.errstate(divide="ignore"):
        L = np.log(1 / t)
    return np.concatenate([chebyshev * (L**j / d)[:, None] for j in range(logs + 1)], axis=1)


def _bin_averages(lo: np.ndarray, hi: np.ndarray, support: tuple[float, float], singular: str, logs: int | None, degree: int) -> np.ndarray:
    r""":math:`\frac{1}{\Delta}\int_{bin} \phi_k`, by Gauss–Legendre in :math:`\log d` near a singular end (in :math:`x` otherwise)."""
    if logs is None:
        half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
        x = mid[:, None] + half[:, None] * _NODES[None, :]
        values = _columns(x.ravel(), support, singular, logs, degree).reshape(*x.shape, -1)
        return np.einsum("n,bnk->bk", _WEIGHTS, values) * half[:, None] / (hi - lo)[:, None]
    d_lo, d_hi = np.sort([_distance(lo, support, singular), _distance(hi, support, singular)], axis=0)
    u_lo, u_hi = np.log(d_lo), np.log(d_hi)
    half, mid = 0.5 * (u_hi - u_lo), 0.5 * (u_hi + u_lo)
    d = np.exp(mid[:, None] + half[:, None] * _NODES[None, :])
    a, b = support
    x = (b - d) if singular == "upper" else (a + d)
    values = _columns(x.ravel(), support, singular, logs, degree).reshape(*x.shape, -1)
    # dx = d du
    return np.einsum("n,bnk->bk", _WEIGHTS, values * d[..., None]) * half[:, None] / (d_hi - d_lo)[:, None]


def _solve(design: np.ndarray, values: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    r"""Weighted least squares by SVD of the column-scaled design: coefficients, covariance, χ²."""
    weighted = design / errors[:, None]
    scale = np.linalg.norm(weighted, axis=0)
    scale[scale == 0] = 1.0
    u, s, vt = np.linalg.svd(weighted / scale, full_matrices=False)
    keep = s > s[0] * 1e-13
    inverse = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
    coefficients = (vt.T * inverse) @ (u.T @ (values / errors)) / scale
    covariance = ((vt.T * inverse**2) @ vt) / np.outer(scale, scale)
    residual = (design @ coefficients - values) / errors
    return coefficients, covariance, float(residual @ residual)


def _normalized(coefficients: np.ndarray, covariance: np.ndarray, constraint: np.ndarray, target: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The least-squares estimate and covariance under the linear constraint ``constraint @ c = target``."""
    gain = covariance @ constraint / (constraint @ covariance @ constraint)
    return coefficients - gain * (constraint @ coefficients - target), covariance - np.outer(gain, constraint @ covariance)


def _integrals(degree: int, width: float) -> np.ndarray:
    r""":math:`\int_a^b T_m(2t - 1)\, dx = (b - a)/(1 - m^2)` for even :math:`m`, 0 for odd."""
    m = np.arange(degree + 1)
    return np.where(m % 2 == 0, width / np.where(m == 1, 1, 1 - m**2), 0.0)


def fit_order(histogram: Histogram, n: int, support: tuple[float, float], singular: str) -> OrderFit:
    r"""Fits :math:`p^n` to a histogram's bins (see the module docstring).

    On a regular support the fit is constrained to :math:`\int p^n = \delta_{n0}`: the target is
    normalized order by order, and with ``f = log`` a target short of 1 by its statistical error
    would have no minimizer at all. At a singular end the δ part takes that role, as for a formula.

    Raises:
        SpecError: If the bins are too few for the smallest basis, or if no degree describes the
            data (the χ² p-value of the chosen fit is below :data:`MIN_P_VALUE`).
    """
    logs = 2 * n - 1 if singular != "none" and n >= 1 else None
    powers = 1 if logs is None else logs + 1
    lo, hi = histogram.lo, histogram.hi
    values, errors = histogram.values[n], histogram.errors[n]
    bins = lo.size
    if bins < powers + 2:
        raise SpecError(f"{one_line(histogram.source)}: p{n}: {bins} bins cannot fit even the {powers} logarithmic terms of order {n} "
                        f"with a degree of freedom to spare (at least {powers + 2} bins are needed)")
    best, free = None, {}
    for degree in range(MAX_DEGREE + 1):
        parameters = powers * (degree + 1)
        if bins - parameters < 2:
            break
        design = _bin_averages(lo, hi, support, singular, logs, degree)
        coefficients, covariance, chi2 = _solve(design, values, errors)
        ndf = bins - parameters
        if logs is None and singular == "none":
            constraint = _integrals(degree, support[1] - support[0])
            free[degree] = (float(constraint @ coefficients), float(np.sqrt(max(constraint @ covariance @ constraint, 0.0))))
            coefficients, covariance = _normalized(coefficients, covariance, constraint, 1.0 if n == 0 else 0.0)
            residual = (design @ coefficients - values) / errors
            chi2, ndf = float(residual @ residual), ndf + 1
        fit = OrderFit(n, support, singular, logs, degree, coefficients, covariance, chi2, ndf, bins)
        aic = chi2 + 2 * parameters
        if not fit.exportable(np.concatenate([lo, hi])):
            break  # higher degrees cancel worse
        reached = degree
        if best is None or aic < best[0]:
            best = (aic, fit)
    fit = best[1]
    if fit.degree in free:
        integral, error = free[fit.degree]
        expected = 1.0 if n == 0 else 0.0
        if abs(integral - expected) > 5 * error + 1e-9 * max(1.0, abs(expected)):
            raise SpecError(f"{one_line(histogram.source)}: p{n}: the bins integrate to {integral:.6g} ± {error:.2g} over the support, but a "
                            f"normalized target needs {expected:g} (more than five standard deviations away)")
    from scipy import stats  # 0.3 s to import: only where a fit is made

    p_value = float(stats.chi2.sf(fit.chi2, fit.ndf))
    if p_value < MIN_P_VALUE:
        raise SpecError(f"{one_line(histogram.source)}: p{n}: no fit of the form (1/d) sum_j log(1/t)^j P_j(t) describes the bins "
                        f"(best chi2/ndf = {fit.chi2_per_ndf:.3g} on {bins} bins, p-value {p_value:.1e}): errors too small, "
                        "or structure the basis lacks (a kink, a threshold)" if logs is not None else
                        f"{one_line(histogram.source)}: p{n}: no Chebyshev series up to degree {reached} describes the bins "
                        f"(best chi2/ndf = {fit.chi2_per_ndf:.3g} on {bins} bins, p-value {p_value:.1e}; higher degrees would "
                        "not survive as a formula)")
    return fit


def check_normalization(histogram: Histogram) -> None:
    r"""Refuses events whose totals contradict :math:`\int p^n = \delta_{n0}` beyond five standard deviations.

    Only where the events reach the singular endpoint (the δ parts are in the file): without them
    the total of a plus-distribution order is the cut-off regular part alone.
    """
    for n, (total, error) in histogram.totals.items():
        if histogram.endpoint.get(n, (0.0, 0.0)) == (0.0, 0.0) and n >= 1:
            continue
        expected = 1.0 if n == 0 else 0.0
        if abs(total - expected) > 5 * error + 1e-9 * max(1.0, abs(total)):  # beyond five sigma and the sum's rounding
            raise SpecError(f"{one_line(histogram.source)}: the weights w{n} sum to {total:.6g} ± {error:.2g}, but a normalized target needs "
                            f"the integral of p^{n} to be {expected:g} (more than five standard deviations away)")


@dataclass(frozen=True)
class DataSource:
    r"""Where a numeric target came from: the file, its content hash, and the fit of each order it gave."""

    kind: str
    path: str
    sha256: str
    fits: tuple[OrderFit, ...]
    events: int = 0

    def describe(self) -> str:
        quality = ", ".join(f"p{f.n}: chi2/ndf = {f.chi2:.1f}/{f.ndf}" for f in self.fits)
        return f"{self.kind} {self.path} (sha256 {self.sha256[:16]}): {quality}"


def numeric_orders(kind: str, path: str, variable: str, support: tuple[float, float], singular: str, order: int, x: sp.Symbol) -> tuple[dict[int, sp.Expr], DataSource]:
    r"""The orders a data file gives, each fitted as an expression in ``x``, and their provenance."""
    from ._data import read_events, read_histogram

    if math.isinf(support[0]) or math.isinf(support[1]):
        raise SpecError(f"target.{kind}: a numeric target on an infinite support is not supported yet (the fit has no model for the tail)")
    if kind == "events":
        histogram = read_events(path, variable, support, singular, order)
        check_normalization(histogram)
    else:
        histogram = read_histogram(path, support)
        if histogram.orders[-1] > order:
            raise SpecError(f"{one_line(path)}: column p{histogram.orders[-1]} is beyond the target's order {order}")
    fits = tuple(fit_order(histogram, n, support, singular) for n in histogram.orders)
    return {f.n: f.expression(x) for f in fits}, DataSource(kind, str(path), histogram.sha256, fits, histogram.events)
