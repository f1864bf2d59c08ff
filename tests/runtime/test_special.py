r"""Tests of renorm.runtime.special against mpmath at 30 digits."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import mpmath
import pytest
import torch
from torch import Tensor
from torch.autograd import gradcheck, gradgradcheck

from renorm.runtime import special

DPS = 30
TOLERANCE = {torch.float64: 1e-14, torch.float32: 1e-6}
INV_E = special._INV_E_HI  # the float64 nearest 1/e (it lies above 1/e)


def reference(function: Callable[[mpmath.mpf], mpmath.mpf], points: Tensor) -> Tensor:
    r"""Evaluates an mpmath function at the exact values of float points.

    Arguments:
        function: The mpmath function.
        points: The points, with shape :math:`(N)`.

    Returns:
        The correctly rounded float64 values, with shape :math:`(N)`.
    """

    with mpmath.workdps(DPS):
        values = [function(mpmath.mpf(v)) for v in points.double().tolist()]
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def relative_error(value: Tensor, exact: Tensor) -> Tensor:
    r"""Relative error, with an exact zero required where the reference is zero.

    Arguments:
        value: The computed values, with shape :math:`(N)`.
        exact: The reference values, with shape :math:`(N)`.

    Returns:
        The relative errors, with shape :math:`(N)`.
    """

    value = value.double()
    error = (value - exact).abs() / exact.abs()
    return torch.where(exact == 0, torch.where(value == 0, 0.0, math.inf), error)


def assert_accurate(function: Callable[[Tensor], Tensor], points: Tensor, exact: Tensor, dtype: torch.dtype) -> None:
    r"""Asserts the relative error bound of the dtype and names the worst point.

    Arguments:
        function: The torch function.
        points: The arguments, in the tested dtype, with shape :math:`(N)`.
        exact: The reference values at those arguments, with shape :math:`(N)`.
        dtype: The tested dtype.
    """

    value = function(points)
    assert value.dtype == dtype
    error = relative_error(value, exact)
    worst = int(error.argmax())
    assert error[worst] <= TOLERANCE[dtype], (
        f"relative error {error[worst].item():.3g} at x = {points[worst].item()!r}: "
        f"{value[worst].item()!r} instead of {exact[worst].item()!r}"
    )


def float32_points(points: Tensor, exact: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    r"""Rounds points to float32 and keeps those whose exact value is a normal float32.

    Arguments:
        points: Float64 points, with shape :math:`(N)`.
        exact: The reference function of float points.

    Returns:
        The float32 points and their float64 references, with shapes :math:`(M)`.
    """

    points = points.float()
    points = points[torch.isfinite(points)]
    values = exact(points)
    tiny, huge = torch.finfo(torch.float32).tiny, torch.finfo(torch.float32).max
    keep = ((values.abs() >= tiny) & (values.abs() <= huge)) | (values == 0)
    return points[keep], values[keep]


def logspace(start: float, stop: float, steps: int) -> Tensor:
    r"""Float64 points from :math:`10^{start}` to :math:`10^{stop}`, evenly spaced in logarithm."""

    return torch.logspace(start, stop, steps, dtype=torch.float64)


# Lambert W

def lambertw_exact(points: Tensor) -> Tensor:
    r"""The reference :math:`W_0` at float points of shape :math:`(N)`."""

    return reference(mpmath.lambertw, points)


def lambertw_points() -> Tensor:
    r"""Float64 points from -1/e to the float64 maximum, of shape :math:`(N)`."""

    return torch.cat(
        [
            -logspace(-320, math.log10(0.3678), 400),
            -INV_E + logspace(-16, -0.5, 300),  # the distance to the branch point, down to 1 ulp
            torch.linspace(-0.3678, 3.0, 300, dtype=torch.float64),
            logspace(-320, 300, 500),
            torch.tensor([0.0, -0.0, 1e-3, -1e-3, math.e, 1.0, 1e308, 1.7976931348623157e308], dtype=torch.float64),
        ]
    )


@pytest.fixture(scope="module")
def lambertw_data() -> dict[torch.dtype, tuple[Tensor, Tensor]]:
    # The floats nearest -1/e lie below it (float32 and float64 alike) and are tested
    # with the branch point value.
    points = lambertw_points()
    points = points[points > -INV_E]
    points32 = points.float()
    points32 = points32[points32.double() > -INV_E]
    return {
        torch.float64: (points, lambertw_exact(points)),
        torch.float32: float32_points(points32, lambertw_exact),
    }


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_lambertw_accuracy(lambertw_data: dict[torch.dtype, tuple[Tensor, Tensor]], dtype: torch.dtype) -> None:
    points, exact = lambertw_data[dtype]
    assert points.numel() >= 1000
    assert_accurate(special.lambertw, points, exact, dtype)


def test_lambertw_near_branch_point() -> None:
    # Near the branch point W + 1 ~ p = sqrt(2 (e z + 1)). Forming e z + 1 in floating
    # point leaves an absolute error of about eps/2 in it, hence of eps/(2p) in W + 1
    # (5e-9 at 1e-16 from -1/e, above 1e-14 up to 2e-5 from it): the cancellation
    # region of the textbook method. With 1/e carried in two doubles there is none;
    # the error of W + 1 is that of rounding W next to -1 (eps/4, the spacing there
    # being eps/2) plus a few ulps of the series sum W + 1 <= 1/4: at most eps.
    points = -INV_E + logspace(-16, -2, 200)
    with mpmath.workdps(DPS):
        exact = [mpmath.lambertw(mpmath.mpf(v)) + 1 for v in points.tolist()]
    exact_plus_one = torch.tensor([float(v) for v in exact], dtype=torch.float64)
    computed_plus_one = special.lambertw(points) + 1.0  # exact subtraction (Sterbenz)
    eps = torch.finfo(torch.float64).eps
    assert (computed_plus_one - exact_plus_one).abs().max() <= eps
    assert (computed_plus_one > 0).all()


def test_lambertw_branch_point_value() -> None:
    eps64, eps32 = torch.finfo(torch.float64).eps, torch.finfo(torch.float32).eps
    minus_inv_e = [
        torch.tensor(-1.0 / math.e, dtype=torch.float64),
        -torch.exp(torch.tensor(-1.0, dtype=torch.float64)),
        torch.tensor(-1.0 / math.e, dtype=torch.float32),
        -torch.exp(torch.tensor(-1.0, dtype=torch.float32)),
        torch.tensor(-1.0 / math.e, dtype=torch.float64).nextafter(torch.tensor(-1.0, dtype=torch.float64)),
    ]
    for z in minus_inv_e:
        assert special.lambertw(z).item() == -1.0
    # Below the documented tolerance of eps/2 under -1/e: NaN.
    below = torch.tensor([-INV_E - eps64, -1.0, -math.inf], dtype=torch.float64)
    assert special.lambertw(below).isnan().all()
    below32 = torch.tensor([-1.0 / math.e - eps32], dtype=torch.float32)
    assert special.lambertw(below32).isnan().all()


def test_lambertw_special_values() -> None:
    z = torch.tensor([0.0, -0.0, math.e, math.inf, math.nan], dtype=torch.float64)
    w = special.lambertw(z)
    assert w[0].item() == 0.0 and math.copysign(1.0, w[1].item()) == -1.0
    assert w[2].item() == pytest.approx(1.0, rel=1e-15)
    assert w[3].item() == math.inf and math.isnan(w[4].item())


def test_lambertw_gradient() -> None:
    z = torch.tensor([-0.3, -0.1, 0.0, 1e-5, 5e-4, 2e-3, 0.5, 3.0, 50.0, 1e6], dtype=torch.float64, requires_grad=True)
    assert gradcheck(special.lambertw, (z,))
    assert gradgradcheck(special.lambertw, (z,))


def test_lambertw_gradient_special_points() -> None:
    z = torch.tensor([0.0, -1.0 / math.e, 1e300], dtype=torch.float64, requires_grad=True)
    special.lambertw(z).sum().backward()
    assert z.grad[0].item() == 1.0
    assert z.grad[1].item() == math.inf
    w = special.lambertw(z[2].detach())
    assert z.grad[2].item() == pytest.approx((w / (1e300 * (1.0 + w))).item(), rel=1e-14)
    # W''(0) = -2.
    z0 = torch.zeros((), dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(special.lambertw(z0), z0, create_graph=True)
    (second,) = torch.autograd.grad(first, z0)
    assert second.item() == pytest.approx(-2.0, rel=1e-15)


def test_lambertw_branch_coefficients() -> None:
    # The first terms of the published branch point series.
    coefficients = special._lambertw_branch_coefficients(6)
    published = [Fraction(-1, 3), Fraction(11, 72), Fraction(-43, 540), Fraction(769, 17280), Fraction(-221, 8505)]
    assert coefficients == [0, 1, *published]


# Dilogarithm

def dilog_exact(points: Tensor) -> Tensor:
    r"""The reference :math:`\mathrm{Li}_2` at float points of shape :math:`(N)`."""

    return reference(lambda x: mpmath.polylog(2, x), points)


@pytest.fixture(scope="module")
def dilog_data() -> dict[torch.dtype, tuple[Tensor, Tensor]]:
    points = torch.cat(
        [
            -logspace(-300, 6, 500),
            logspace(-300, 0, 300),
            1.0 - logspace(-16, 0, 200),
            torch.linspace(-2.0, 1.0, 301, dtype=torch.float64),
            torch.tensor([0.0, -0.0, 1e-3, -1e-3, 0.5, -0.5, 1.0, -1.0, -2.0], dtype=torch.float64),
        ]
    )
    return {torch.float64: (points, dilog_exact(points)), torch.float32: float32_points(points, dilog_exact)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dilog_accuracy(dilog_data: dict[torch.dtype, tuple[Tensor, Tensor]], dtype: torch.dtype) -> None:
    points, exact = dilog_data[dtype]
    assert points.numel() >= 1000
    assert_accurate(special.dilog, points, exact, dtype)


def test_dilog_special_values() -> None:
    x = torch.tensor([1.0, 0.0, 1.0 + 2e-16, 2.0, math.inf, -math.inf, math.nan, 5e-324], dtype=torch.float64)
    y = special.dilog(x)
    assert y[0].item() == math.pi**2 / 6 and y[1].item() == 0.0
    assert y[2:5].isnan().all() and y[5].item() == -math.inf and math.isnan(y[6].item())
    assert y[7].item() == 5e-324


def test_dilog_gradient() -> None:
    points = [0.0, 1e-4, -1e-4, 2e-3, -0.3, -0.7, -1.5, -3.0, -50.0, 0.3, 0.7, 0.999]
    x = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    assert gradcheck(special.dilog, (x,))
    assert gradgradcheck(special.dilog, (x,))
    x = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    special.dilog(x).sum().backward()
    assert x.grad.tolist() == [1.0, math.inf]


def test_polylog() -> None:
    x = torch.linspace(-5.0, 1.0, 13, dtype=torch.float64)
    torch.testing.assert_close(special.polylog(1, x), -torch.log1p(-x), rtol=0.0, atol=0.0)
    torch.testing.assert_close(special.polylog(2, x), special.dilog(x), rtol=0.0, atol=0.0)
    with pytest.raises(ValueError, match="s = 3"):
        special.polylog(3, x)


# Gamma

def gamma_exact(points: Tensor) -> Tensor:
    r"""The reference :math:`\Gamma` at float points of shape :math:`(N)`."""

    return reference(mpmath.gamma, points)


@pytest.fixture(scope="module")
def gamma_data() -> dict[torch.dtype, tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(0)
    integers = torch.arange(-20.0, 1.0, dtype=torch.float64)
    points = torch.cat(
        [
            logspace(-300, math.log10(171.6), 400),
            -logspace(-300, math.log10(170.5), 300),
            (torch.rand(300, generator=generator, dtype=torch.float64) - 0.5) * 341.0,
            torch.linspace(-10.0, 12.0, 221, dtype=torch.float64) + 0.05,
            integers + 1e-9,
            integers - 1e-7,
            torch.tensor([0.5, -0.5, 1.0, 2.0, 3.0, 9.5, 10.0, 171.0, -0.4999999, 9.999999], dtype=torch.float64),
        ]
    )
    # float32 overflows beyond x = 35.04 and leaves the normal range below about -38.
    inside32 = (torch.rand(700, generator=generator, dtype=torch.float64) - 0.5) * 76.0
    points32 = torch.cat([points, inside32]).float()

    def off_poles(x: Tensor) -> Tensor:
        return x[(x > 0) | (x != x.floor())]  # the poles are tested separately

    points = off_poles(points)
    exact = gamma_exact(points)
    # Below -171.6 the values are subnormal, with fewer than 53 significant bits.
    keep = exact.abs() >= torch.finfo(torch.float64).tiny
    return {torch.float64: (points[keep], exact[keep]), torch.float32: float32_points(off_poles(points32), gamma_exact)}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gamma_accuracy(gamma_data: dict[torch.dtype, tuple[Tensor, Tensor]], dtype: torch.dtype) -> None:
    points, exact = gamma_data[dtype]
    assert points.numel() >= 1000
    assert_accurate(special.gamma, points, exact, dtype)


def test_gamma_poles_and_limits() -> None:
    x = torch.tensor([0.0, -0.0, -1.0, -2.0, -1e20, -math.inf, math.inf, 172.0, math.nan], dtype=torch.float64)
    y = special.gamma(x).tolist()
    assert y[0] == math.inf and y[1] == -math.inf
    assert all(math.isnan(v) for v in y[2:6])
    assert y[6] == math.inf and y[7] == math.inf and math.isnan(y[8])


def test_gamma_series_coefficients() -> None:
    with mpmath.workdps(40):
        exact = mpmath.taylor(mpmath.rgamma, 1, len(special._RGAMMA_SERIES) - 1)
    assert special._RGAMMA_SERIES == [float(c) for c in exact]


def test_gamma_gradient() -> None:
    x = torch.tensor([-2.5, -0.7, -0.3, 0.3, 1.5, 4.2, 9.7, 10.3, 12.5, 30.1], dtype=torch.float64, requires_grad=True)
    assert gradcheck(special.gamma, (x,))
    assert gradgradcheck(special.gamma, (x,))


# Heaviside

def test_heaviside_values() -> None:
    x = torch.tensor([-2.0, -0.0, 0.0, 3.0, -math.inf, math.inf, math.nan], dtype=torch.float64)
    assert special.heaviside(x).tolist()[:6] == [0.0, 0.5, 0.5, 1.0, 0.0, 1.0]
    assert math.isnan(special.heaviside(x)[6].item())
    assert special.heaviside(x, 1.0).tolist()[:4] == [0.0, 1.0, 1.0, 1.0]
    h0 = torch.tensor([[0.0], [0.25]], dtype=torch.float64)
    y = special.heaviside(x[:4], h0)
    assert y.shape == (2, 4) and y.tolist() == [[0.0, 0.0, 0.0, 1.0], [0.0, 0.25, 0.25, 1.0]]


def test_heaviside_gradient() -> None:
    x = torch.tensor([-1.0, 0.0, 1.0, math.inf, -math.inf], dtype=torch.float64, requires_grad=True)
    h0 = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    special.heaviside(x, h0).backward(torch.full((5,), math.inf, dtype=torch.float64))
    assert x.grad.tolist() == [0.0] * 5
    assert h0.grad.item() == math.inf  # only x = 0 contributes
    x.grad = None
    special.heaviside(x).sum().backward()
    assert x.grad.tolist() == [0.0] * 5


# Shapes, dtypes, devices

FUNCTIONS = {
    "lambertw": (special.lambertw, 0.5),
    "dilog": (special.dilog, -0.5),
    "gamma": (special.gamma, 2.5),
    "heaviside": (special.heaviside, 0.5),
}


@pytest.mark.parametrize("name", list(FUNCTIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (0,), (3, 4), (2, 0, 3)])
def test_shape_dtype_device(name: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    function, value = FUNCTIONS[name]
    x = torch.full(shape, value, dtype=dtype)
    y = function(x)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    if y.numel():
        expected = function(torch.tensor(value, dtype=torch.float64)).to(dtype)
        assert (y == expected).all()


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_integer_input_promotes_to_default_dtype(name: str) -> None:
    function, _ = FUNCTIONS[name]
    y = function(torch.tensor([1, 2]))
    assert y.dtype == torch.get_default_dtype()


def test_complex_input_rejected() -> None:
    with pytest.raises(TypeError, match="real"):
        special.lambertw(torch.zeros(2, dtype=torch.complex128))
