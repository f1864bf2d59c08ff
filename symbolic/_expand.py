r"""α-expansion of the target and its distributional (δ and plus) coefficients."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy as sp

from ._errors import SpecError
from ._numeric import numeric
from ._quadrature import endpoint_map, integrate, integrate_support
from ._spec import Problem

__all__ = ["Coefficient", "expand", "coefficients"]


@dataclass(frozen=True)
class Coefficient:
    r"""The coefficient :math:`p^n` of :math:`\alpha^n` as a distribution on the support.

    With :math:`g = p^n_{reg}` the pointwise coefficient and :math:`e` the singular endpoint,

    .. math:: p^n = \delta_n\, \delta(x - e) + [g]_+ \quad\text{if } g \text{ is not integrable at } e,
    .. math:: p^n = \delta_n\, \delta(x - e) + g \quad\text{otherwise,}

    where :math:`\int [g]_+ \varphi = \int g\, (\varphi(x) - \varphi(e))` and the δ weight is fixed by
    :math:`\int p^n = \delta_{n0}` (the normalization of the platonic distribution at every α).

    Attributes:
        n: The order.
        regular: :math:`g(x)`, a SymPy expression.
        delta: The weight of :math:`\delta(x - e)` (zero when ``singular = none``).
        plus: :math:`g` when it needs the plus prescription, else ``0``.
        integral: :math:`\int g\,dx` over the support, ``inf`` if it diverges.
    """

    n: int
    regular: sp.Expr
    delta: sp.Expr
    plus: sp.Expr
    integral: float
    problem: Problem

    @cached_property
    def _values(self):
        return numeric(self.regular, (self.problem.x,))

    def values(self, x: np.ndarray) -> np.ndarray:
        r"""The regular part :math:`g(x)` at interior points."""
        x = np.asarray(x, dtype=float)
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(self._values(x), dtype=float), x.shape).copy()

    def cumulant(self, x: np.ndarray) -> np.ndarray:
        r""":math:`\Sigma^n(x) = \int_a^x p^n` including the δ and plus parts.

        With the plus prescription at a singular lower endpoint,
        :math:`\Sigma^n(x) = \delta_n - \int_x^b g` (a plus distribution integrates to zero);
        otherwise :math:`\Sigma^n(x) = \delta_n [e = a] + \int_a^x g`.
        """
        p = self.problem
        x = np.atleast_1d(np.asarray(x, dtype=float))
        if p.singular == "lower" and self.plus != 0:
            return float(self.delta) - np.array([_integral(p, self.values, xi, "above") for xi in x])
        offset = float(self.delta) if p.singular == "lower" else 0.0
        return offset + np.array([_integral(p, self.values, xi, "below") for xi in x])


def _integral(problem: Problem, g, x: float, side: str) -> float:
    r""":math:`\int_a^x g` (``below``) or :math:`\int_x^b g` (``above``) in the endpoint map."""
    mapping = endpoint_map(problem.support_floats, problem.singular)
    u = float(mapping.u(x))
    increasing = mapping.kind != "upper"
    lo, hi = (mapping.lo, u) if (side == "below") == increasing else (u, mapping.hi)
    return integrate(lambda t: g(mapping.x(t)) * mapping.jacobian(t), lo, hi).value


def expand(problem: Problem) -> list[sp.Expr]:
    r"""Pointwise coefficients :math:`p^n(x) = \frac{1}{n!}\partial_\alpha^n p|_{\alpha=0}`, :math:`n \le N`.

    Running couplings such as :math:`\alpha/(1 + \alpha b \log x)` expand into powers of logs.
    """
    alpha = problem.coupling
    terms = []
    derivative = problem.density
    for n in range(problem.order + 1):
        value = derivative.subs(alpha, 0)
        if value.has(sp.nan, sp.zoo) or not value.is_finite and value.is_finite is not None:
            try:
                value = sp.limit(derivative, alpha, 0, "+")
            except Exception as error:  # SymPy raises many types for non-analytic input
                raise SpecError(f"target.density: cannot expand in {alpha} at order {n} ({type(error).__name__}: {error}); the target must be a power series in {alpha}") from None
        if value.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
            raise SpecError(f"target.density: the coefficient of alpha^{n} is not finite ({sp.sstr(value)}); the target is not a power series in {alpha}")
        value = value / math.factorial(n)
        if sp.count_ops(value) < 200:
            value = sp.simplify(value)
        terms.append(value)
        derivative = sp.diff(derivative, alpha)
    return terms


def _integrability(problem: Problem, g: sp.Expr) -> float:
    r""":math:`\int g` over the support; ``inf`` when it diverges at an endpoint."""
    if g == 0:
        return 0.0
    fn = numeric(g, (problem.x,))
    return integrate_support(lambda x: np.asarray(fn(x), dtype=float), endpoint_map(problem.support_floats, problem.singular), rtol=1e-12)


#: δ weights below this are quadrature noise (the integrals run at relative 1e-12).
_ZERO = 1e-11


def coefficients(problem: Problem) -> list[Coefficient]:
    r"""The distributional coefficients :math:`p^0, \dots, p^N` (see :class:`Coefficient`)."""
    out = []
    for n, g in enumerate(expand(problem)):
        total = _integrability(problem, g)
        unit = sp.Integer(1 if n == 0 else 0)
        if problem.singular == "none":
            delta, plus = sp.Integer(0), sp.Integer(0)
        elif math.isinf(total):
            delta, plus = unit, g
        else:
            weight = float(unit) - total
            # exact when nothing was integrated; a weight at the quadrature's accuracy is zero
            if total == 0:
                delta = unit
            else:
                delta = sp.Float(weight, 15) if abs(weight) > _ZERO else sp.Integer(0)
            plus = sp.Integer(0)
        out.append(Coefficient(n=n, regular=g, delta=delta, plus=plus, integral=total, problem=problem))
    return out
