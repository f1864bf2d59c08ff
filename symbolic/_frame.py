r"""The variable the numerics work in: the distance to the singular endpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ._spec import Problem

__all__ = ["Frame", "distance_frame"]


@dataclass(frozen=True)
class Frame:
    r"""A problem written in the distance :math:`d` to its singular endpoint.

    Float64 resolves :math:`x - a` down to 1e-300 only where :math:`a = 0`: next to any other
    endpoint :math:`x` cannot come closer than its own rounding, :math:`\epsilon |a|`, and that is
    exactly where a perturbative distribution and its minimizer :math:`q^*` part. With
    :math:`x = a + d` (singular lower end :math:`a \ne 0`) or :math:`x = b - d` (singular upper
    end) the support becomes :math:`(0, b - a)` with the singular end at :math:`d = 0`, every
    integral over it is unchanged, and :math:`d` resolves the endpoint as 0 does. Every other
    problem is its own frame (:attr:`identity`).

    Attributes:
        problem: The problem in :math:`d` (the original where :attr:`identity`).
        origin: The endpoint :math:`d` is measured from.
        sign: :math:`x = \text{origin} + \text{sign} \cdot d`.
        label: How :math:`d` reads in terms of :math:`x`, e.g. ``1 - x`` (``x`` where :attr:`identity`).
    """

    problem: Problem
    origin: float
    sign: float
    label: str

    @property
    def identity(self) -> bool:
        return self.origin == 0.0 and self.sign == 1.0

    def x(self, d: np.ndarray) -> np.ndarray:
        r""":math:`x` of distances :math:`d` (rounded to float64 near a nonzero endpoint)."""
        return self.origin + self.sign * np.asarray(d, dtype=float)

    def d(self, x: np.ndarray) -> np.ndarray:
        r"""The distances :math:`d` of points :math:`x`."""
        return self.sign * (np.asarray(x, dtype=float) - self.origin)


def distance_frame(problem: Problem) -> Frame:
    r"""The problem in the distance to its singular endpoint (see :class:`Frame`)."""
    a, b = problem.support
    name = problem.x.name
    if problem.singular == "none" or problem.singular == "lower" and a == 0:
        return Frame(problem, 0.0, 1.0, name)
    distance = sp.Symbol(name, positive=True)
    lower = problem.singular == "lower"
    point = a + distance if lower else b - distance
    moved = lambda expr: expr.xreplace({problem.x: point})
    # the data's fits live in x: the moved problem has its density, not their errors
    shifted = dataclasses.replace(problem, x=distance, density=moved(problem.density), weight=moved(problem.weight),
                                  support=(sp.Integer(0), sp.simplify(b - a)), singular="lower", source=None, data=())
    label = sp.sstr(problem.x - a if lower else b - problem.x)
    return Frame(shifted, float(a) if lower else float(b), 1.0 if lower else -1.0, label)
