r"""The support maps' NumPy face against mpmath, the map choices, and integrals through them."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

from renorm.symbolic import MAPS, NUMPY, SupportMap, default_map, quadrature_map
from renorm.symbolic._quadrature import integrate_support, support_quadratures

#: Supports each map is a bijection onto (from the whole line, or from its latent range).
SUPPORTS = {
    "log_lower": [(0.0, math.inf), (2.5, math.inf), (0.0, 1.0), (-1.0, 3.0)],
    "log_upper": [(-math.inf, 1.0), (-math.inf, -2.0), (0.0, 1.0), (-1.0, 3.0)],
}
FINITE = [(0.0, 1.0), (0.0, 0.5), (-1.0, 3.0), (2.0, 2.25)]

#: x(y) at high precision, written independently of the implementation.
REFERENCE = {
    "log_lower": lambda a, b, y: a + mp.exp(y),
    "log_upper": lambda a, b, y: b - mp.exp(y),
    "tanh": lambda a, b, y: a + (b - a) * (1 + mp.tanh(y)) / 2,
    "logit": lambda a, b, y: a + (b - a) / (1 + mp.exp(-y)),
    "double_log_lower": lambda a, b, y: a + (b - a) * mp.exp(-mp.exp(y)),
    "double_log_upper": lambda a, b, y: b - (b - a) * mp.exp(-mp.exp(y)),
}


def _cases():
    for name in sorted(MAPS):
        for support in SUPPORTS.get(name, FINITE):
            yield name, support


def test_every_registered_map_has_a_reference():
    assert set(REFERENCE) == set(MAPS)


@pytest.mark.parametrize("name, support", list(_cases()))
def test_numpy_face_matches_mpmath(name, support):
    mp.mp.dps = 40
    a, b = support
    support_map = MAPS[name](a, b)
    lo, hi = support_map.latent_range()
    assert lo < hi and math.isfinite(lo) and math.isfinite(hi)
    # points across the range, kept where x is resolved away from both ends in float64
    y = np.linspace(max(lo, -40.0), min(hi, 40.0), 201)
    x = support_map.from_latent(y)
    exact = [REFERENCE[name](mp.mpf(a), mp.mpf(b), mp.mpf(v)) for v in y]
    distance = np.array([float(min(e - a, b - e)) for e in exact])
    inside = distance > 1e-6 * max(1.0, abs(a) if math.isfinite(a) else 0.0, abs(b) if math.isfinite(b) else 0.0)
    assert inside.sum() > 50
    for i in np.nonzero(inside)[0]:
        e, v = exact[i], mp.mpf(y[i])
        assert abs(x[i] - e) <= 1e-14 * max(abs(e), 1.0), (y[i], x[i], e)
        slope = mp.diff(lambda t: REFERENCE[name](mp.mpf(a), mp.mpf(b), t), v)
        assert (slope > 0) == support_map.increasing
        assert abs(support_map.jacobian(y[i]) - abs(slope)) <= 1e-12 * abs(slope), (y[i], support_map.jacobian(y[i]), slope)
        assert abs(support_map.log_jacobian(y[i]) - mp.log(abs(slope))) <= 1e-12 * max(1.0, abs(mp.log(abs(slope))))
        # the inverse, where x itself holds enough digits to recover y
        if distance[i] > 1e-3 * max(abs(float(e)), 1e-300):
            assert abs(support_map.to_latent(x[i]) - y[i]) <= 1e-9 * max(1.0, abs(y[i])), (y[i], support_map.to_latent(x[i]))
    # the latent range ends on the closed support, with a finite Jacobian
    ends = support_map.from_latent(np.array([lo, hi]))
    assert np.all((ends >= a) & (ends <= b)) and np.all(np.isfinite(support_map.log_jacobian(np.array([lo, hi]))))


@pytest.mark.parametrize("name, support", list(_cases()))
def test_whole_line_says_whether_every_real_y_lands_inside(name, support):
    support_map = MAPS[name](*support)
    y = np.array([-30.0, -3.0, 0.0, 3.0, 30.0])
    with np.errstate(all="ignore"):
        x = support_map.from_latent(y)
    inside = bool(np.all((x >= support_map.a) & (x <= support_map.b)))
    if support_map.whole_line():
        assert inside
    else:
        # a log map on a finite support stops at y = log(b - a)
        assert not inside and name in ("log_lower", "log_upper")


def test_faces_are_array_namespaces():
    y = np.array([-1.0, 0.0, 2.0])
    assert np.allclose(NUMPY.sigmoid(y), 1 / (1 + np.exp(-y)), rtol=1e-15)
    assert np.allclose(NUMPY.logsigmoid(y), -np.log1p(np.exp(-y)), rtol=1e-15)
    assert NUMPY.logsigmoid(np.array([-800.0]))[0] == -800.0 and NUMPY.logsigmoid(np.array([800.0]))[0] == 0.0


def test_tanh_log_jacobian_is_finite_where_cosh_overflows():
    support_map = MAPS["tanh"](0.0, 1.0)
    assert support_map.log_jacobian(np.array([800.0]))[0] == pytest.approx(math.log(2.0) - 1600.0, rel=1e-15)


@pytest.mark.parametrize("support, singular, name", [
    ((0.0, 1.0), "lower", "log_lower"), ((0.0, 1.0), "upper", "log_upper"), ((0.0, 1.0), "none", "tanh"),
    ((0.0, math.inf), "none", "log_lower"), ((0.0, math.inf), "lower", "log_lower"), ((-math.inf, 1.0), "none", "log_upper"),
])
def test_quadrature_map_choice(support, singular, name):
    assert quadrature_map(support, singular).name == name


@pytest.mark.parametrize("support, singular, name", [
    ((0.0, 1.0), "lower", "double_log_lower"), ((0.0, 1.0), "upper", "double_log_upper"), ((0.0, 1.0), "none", "logit"),
    ((0.0, math.inf), "none", "log_lower"), ((-math.inf, 1.0), "none", "log_upper"),
])
def test_default_map_choice(support, singular, name):
    assert default_map(support, singular).name == name and default_map(support, singular).whole_line()


def test_default_map_takes_its_maps_from_the_registry_and_quadrature_does_not(monkeypatch):
    class Wider(MAPS["logit"]):
        name = "logit"

    class Other(MAPS["log_lower"]):
        name = "log_lower"

    monkeypatch.setitem(MAPS, "logit", Wider)
    monkeypatch.setitem(MAPS, "log_lower", Other)
    assert type(default_map((0.0, 1.0), "none")) is Wider
    assert type(default_map((0.0, math.inf), "none")) is Other
    assert type(quadrature_map((0.0, 1.0), "lower")) is not Other


def test_register_map_refuses_what_is_not_a_map():
    from renorm.symbolic import register_map

    with pytest.raises(TypeError, match="SupportMap subclass"):
        register_map(object)
    with pytest.raises(TypeError):
        SupportMap(0.0, 1.0)  # abstract


INTEGRALS = [
    # at a singular end other than 0, x - a loses the digits below eps |a| (√eps of this integral):
    # the solver works in the distance to such an end (distance_frame), so these ends sit at 0
    ((0.0, 3.0), "lower", lambda x: x**-0.5, 2 * math.sqrt(3.0)),
    ((-3.0, 0.0), "upper", lambda x: (-x) ** -0.5, 2 * math.sqrt(3.0)),
    ((2.0, 5.0), "none", lambda x: x**2, 39.0),
    ((0.0, 1.0), "lower", lambda x: np.log(1 / x) / x * np.exp(-np.log(x) ** 2), 0.5),
    ((3.0, math.inf), "none", lambda x: np.exp(-(x - 3.0)), 1.0),
    ((-math.inf, 1.0), "none", lambda x: np.exp(x - 1.0), 1.0),
    ((0.0, math.inf), "none", lambda x: 1 / (1 + x) ** 2, 1.0),
    ((0.0, 1.0), "lower", lambda x: 1 / x, math.inf),
    ((-1.0, 0.0), "upper", lambda x: -1 / x, math.inf),
    ((1.0, math.inf), "none", lambda x: 1 / x, math.inf),
    ((-math.inf, -1.0), "none", lambda x: -1 / x, math.inf),
]


@pytest.mark.parametrize("support, singular, fn, exact", INTEGRALS)
def test_integrals_through_the_quadrature_map(support, singular, fn, exact):
    value = integrate_support(fn, quadrature_map(support, singular))
    if math.isinf(exact):
        assert value == math.inf
    else:
        assert value == pytest.approx(exact, rel=1e-11)


def test_integrals_adapted_together_are_each_the_integral_alone():
    # every class of quadrature map, divergent integrals and one whose integrand is NaN somewhere,
    # in one batch: each value is bit for bit what it is alone, and the nodes reproduce it
    cases = INTEGRALS + [((0.0, 1.0), "none", lambda x: np.where(x > 0.5, np.nan, 1.0), math.inf)]
    maps = [quadrature_map(support, singular) for support, singular, _, _ in cases]

    def integrand(x, owner):
        out = np.empty(x.shape)
        for k in np.unique(owner):
            out[owner == k] = cases[k][2](x[owner == k])
        return out

    batch = support_quadratures(integrand, maps)
    for k, (support, singular, fn, exact) in enumerate(cases):
        alone = support_quadratures(lambda x, owner: fn(x), [maps[k]]).values[0]
        assert batch.values[k] == alone, (k, batch.values[k], alone)
        x, w = batch.nodes(k)
        if math.isinf(exact):
            assert alone == math.inf and x.size == 0
        else:
            assert alone == pytest.approx(exact, rel=1e-11)
            assert ((x > support[0]) & (x < support[1])).all()
            with np.errstate(over="ignore"):  # 1/(1 + x)^2 at x = e^600
                assert w @ fn(x) == pytest.approx(alone, rel=1e-14)


def test_integrals_over_several_supports_take_quadrature_maps():
    with pytest.raises(TypeError, match="quadrature_map"):
        support_quadratures(lambda x, owner: x, [default_map((0.0, 1.0), "lower"), default_map((0.0, 2.0), "lower")])
