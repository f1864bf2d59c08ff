r"""Elementwise special functions that torch lacks, written for generated code."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

import torch
from torch import Tensor

__all__ = ["lambertw", "dilog", "polylog", "heaviside", "gamma"]


def _bernoulli(n: int) -> list[Fraction]:
    r"""Bernoulli numbers :math:`B_0, \dots, B_n` (convention :math:`B_1 = -1/2`), exactly.

    Arguments:
        n: The largest index.

    Returns:
        The list :math:`[B_0, \dots, B_n]`.
    """

    numbers = [Fraction(1)]
    for m in range(1, n + 1):
        numbers.append(-sum(math.comb(m + 1, k) * numbers[k] for k in range(m)) / (m + 1))
    return numbers


def _lambertw_branch_coefficients(n: int) -> list[Fraction]:
    r"""Coefficients :math:`a_1, \dots, a_n` of :math:`W_0(z) = -1 + \sum_k a_k p^k`, exactly.

    With :math:`p = \sqrt{2 (e z + 1)}` and :math:`v = 1 + W`, the equation
    :math:`W e^W = z` reads :math:`(1 - v) e^v = 1 - p^2 / 2`. Differentiating in
    :math:`p` and eliminating :math:`e^v` gives :math:`v v' (1 - p^2 / 2) = p (1 - v)`,
    whose power series solution with :math:`a_1 = 1` (the principal branch) is
    determined order by order.

    Arguments:
        n: The number of coefficients.

    Returns:
        The list :math:`[a_0 = 0, a_1, \dots, a_n]`.
    """

    a = [Fraction(0), Fraction(1)]
    # b[k] is the coefficient of p^k in v v'.
    b = [Fraction(0), Fraction(1)]
    for k in range(2, n + 1):
        mixed = sum((k + 1 - i) * a[i] * a[k + 1 - i] for i in range(2, k))
        a.append((b[k - 2] / 2 - a[k - 1] - mixed) / (k + 1))
        b.append((k + 1) * a[k] + mixed)
    return a


def _horner(coefficients: list[float], x: Tensor) -> Tensor:
    r"""Evaluates :math:`\sum_k c_k x^k` for :math:`c = [c_0, c_1, \dots]`.

    Arguments:
        coefficients: The coefficients :math:`c_k`, lowest order first.
        x: The argument, with shape :math:`(*)`.

    Returns:
        The polynomial, with shape :math:`(*)`.
    """

    result = torch.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        result = result * x + c
    return result


def _real_input(name: str, x: Tensor) -> Tensor:
    r"""Checks that :math:`x` is real and promotes integer tensors like torch.special does.

    Arguments:
        name: The calling function, for the error message.
        x: The input tensor, with shape :math:`(*)`.

    Returns:
        :math:`x` as a floating point tensor, with shape :math:`(*)`.
    """

    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"{name}: only real tensors are supported, got {x.dtype}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


# lambertw, dilog and gamma compute in float64 and round once to the input dtype: this
# makes float32 (and lower) results correct to within a fraction of their ulp, at the
# price of float64 arithmetic, which CUDA supports natively.

# 1/e as an unevaluated sum of two doubles, from the alternating series of exp(-1)
# summed exactly in rationals (the tail after 40 terms is below 1e-47).
_INV_E = sum(Fraction((-1) ** k, math.factorial(k)) for k in range(40))
_INV_E_HI = float(_INV_E)
_INV_E_LO = float(_INV_E - Fraction(_INV_E_HI))

# Twenty terms of the branch point series truncate at a relative 1e-17 for p < 1/4,
# where it is the result; beyond, up to p = 0.8 (z = -1/4), it is only the initial
# guess and its error of at most 1e-6 is removed by the iterations.
_LAMBERTW_BRANCH = [float(c) for c in _lambertw_branch_coefficients(20)[1:]]
_LAMBERTW_BRANCH_P = 0.25
_LAMBERTW_BRANCH_GUESS_Z = -0.25

# The Taylor series at 0 has radius 1/e; for |z| < 1e-3 the eighth order term leaves
# a relative (e |z|)^8 < 1e-20. Fritsch's iteration would also be accurate there, but
# the series keeps W(z) = z - z^2 + ... exact in form down to subnormal z.
_LAMBERTW_TAYLOR = [float(Fraction((-k) ** (k - 1), math.factorial(k))) for k in range(1, 9)]
_LAMBERTW_TAYLOR_Z = 1e-3

# Winitzki's guess is within 2.3% of W for z >= -1/4 and the series guess within 1e-6
# below; Fritsch's iteration is of fourth order, so two steps reach the rounding
# level (measured: one step leaves 1e-7).
_LAMBERTW_ITERATIONS = 2


def _lambertw_forward(z: Tensor) -> Tensor:
    r"""Principal branch :math:`W_0(z)` without autograd bookkeeping.

    Arguments:
        z: The argument, with shape :math:`(*)`.

    Returns:
        :math:`W_0(z)` in the dtype of :math:`z`, with shape :math:`(*)`.
    """

    x = z.to(torch.float64)

    # z + hi is exact (Sterbenz) wherever it cancels, so d = z + 1/e keeps its full
    # relative accuracy right down to the branch point: there is no cancellation
    # region, only the conditioning of W itself.
    d = (x + _INV_E_HI) + _INV_E_LO
    # Two units in the last place of 1/e in the input dtype: -1/e rounded or computed
    # as -exp(-1) may land just below the branch point and must still give -1.
    tolerance = 0.5 * torch.finfo(z.dtype).eps
    p = torch.sqrt((2.0 * math.e) * torch.clamp(d, min=0.0))
    branch = p * _horner(_LAMBERTW_BRANCH, p) - 1.0

    log1p_x = torch.log1p(x)
    winitzki = log1p_x * (1.0 - torch.log1p(log1p_x) / (2.0 + log1p_x))
    w = torch.where(x < _LAMBERTW_BRANCH_GUESS_Z, branch, winitzki)

    # Fritsch, Shafer and Crowley (1973): Halley-like steps on log(w) + w = log(z),
    # which never forms exp(w) and so cannot overflow for z up to the float64 maximum.
    for _ in range(_LAMBERTW_ITERATIONS):
        residual = torch.log(x / w) - w
        one_w = 1.0 + w
        q = 2.0 * one_w * (one_w + residual * (2.0 / 3.0))
        w = w * (1.0 + residual / one_w * (q - residual) / (q - 2.0 * residual))

    taylor = x * _horner(_LAMBERTW_TAYLOR, x)
    w = torch.where(p < _LAMBERTW_BRANCH_P, branch, w)
    w = torch.where(x.abs() < _LAMBERTW_TAYLOR_Z, taylor, w)
    w = torch.where(x == math.inf, x, w)
    w = torch.where(d < -tolerance, math.nan, w)
    return w.to(z.dtype)


def _lambertw_derivative(z: Tensor, w: Tensor) -> Tensor:
    r"""Derivative :math:`W'(z)`, written with differentiable torch operations.

    Arguments:
        z: The argument, with shape :math:`(*)`.
        w: The value :math:`W_0(z)`, with shape :math:`(*)`.

    Returns:
        :math:`W'(z)`, with shape :math:`(*)`.
    """

    # exp(-W)/(1+W) is exact at z = 0 (no 0/0), but exp amplifies the rounding of W by
    # |W|, which costs digits for large z; there W/(z (1+W)) is as accurate as W.
    large = (w > 1.0) & torch.isfinite(z)
    # The unused branch of a where still receives a zero gradient, and 0 * nan = nan:
    # feeding it a harmless z keeps double backward free of NaN.
    z_large = torch.where(large, z, torch.ones_like(z))
    return torch.where(large, w / (z_large * (1.0 + w)), torch.exp(-w) / (1.0 + w))


def _with_derivative(name: str, forward: Callable[[Tensor], Tensor], derivative: Callable[[Tensor, Tensor], Tensor]) -> type:
    r"""An autograd function computing ``forward`` with backward ``grad * derivative(x, value)``.

    ``derivative`` is written with differentiable torch operations on the saved input and
    output, so the backward pass is itself differentiable (second derivatives, vmap).
    """

    class _Function(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x: Tensor) -> Tensor:
            return forward(x)

        @staticmethod
        def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple[Tensor], output: Tensor) -> None:
            ctx.save_for_backward(inputs[0], output)

        @staticmethod
        def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
            x, value = ctx.saved_tensors
            return grad * derivative(x, value)

    _Function.__name__ = _Function.__qualname__ = name
    return _Function


_LambertW = _with_derivative("_LambertW", _lambertw_forward, _lambertw_derivative)


def lambertw(z: Tensor) -> Tensor:
    r"""Principal branch :math:`W_0` of the Lambert W function, :math:`W e^W = z`, :math:`W \geq -1`.

    Defined for real :math:`z \geq -1/e`, where :math:`W_0(-1/e) = -1`,
    :math:`W_0(0) = 0` and :math:`W_0(z) \sim \log z - \log \log z` as
    :math:`z \to \infty`. Inputs less than two units in the last place of
    :math:`1/e` below :math:`-1/e`, that is :math:`z \in [-1/e - \epsilon/2, -1/e)`
    with :math:`\epsilon` the machine epsilon of the input dtype, are what :math:`-1/e`
    rounds to and give :math:`-1`; smaller :math:`z` give NaN, :math:`+\infty` gives
    :math:`+\infty`.

    The result is accurate to a few float64 ulps everywhere, the branch point
    included: near :math:`-1/e` the series in :math:`p = \sqrt{2(ez + 1)}` is used with
    :math:`ez + 1 = e (z + 1/e)` and :math:`1/e` carried in two doubles, so the
    distance to the branch point is formed without cancellation. (The function is
    ill-conditioned there, :math:`W' \sim 1/p`, but that concerns errors already in
    :math:`z`, not the evaluation.) Elsewhere, a Winitzki or series initial guess is
    refined by a fixed number of Fritsch iterations, and :math:`|z| < 10^{-3}` uses
    the Taylor series. No data-dependent control flow is involved.

    The gradient is :math:`W'(z) = e^{-W} / (1 + W) = W / (z (1 + W))`, which is 1 at
    :math:`z = 0` and :math:`+\infty` at :math:`z = -1/e`; it is written with
    differentiable operations, so higher derivatives work too.

    Arguments:
        z: The argument, with shape :math:`(*)`. Integer tensors are promoted to the
            default dtype.

    Returns:
        :math:`W_0(z)`, with shape :math:`(*)`, in the dtype and on the device of
        :math:`z`.
    """

    return _LambertW.apply(_real_input("lambertw", z))


# Li2(y) = sum_n B_n u^(n+1)/(n+1)! with u = -log(1 - y) (Bernoulli numbers, B_1 = -1/2):
# after the odd B_n vanish, the even ones give a series in u^2 of ratio (u/2pi)^2.
# For |y| <= 1/2, |u| <= log 2 and eight terms truncate at a relative 4e-19 (seven
# would leave 4e-17, six 6e-15).
# B_0 to B_18, for this series and Stirling's below.
_BERNOULLI = _bernoulli(18)
_DILOG_SERIES = [float(_BERNOULLI[2 * k] / math.factorial(2 * k + 1)) for k in range(1, 9)]
_PI2_6 = math.pi**2 / 6
# Li2(x) = sum_k x^k / k^2: for |x| < 1e-3 seven terms leave a relative 2e-23. The
# Bernoulli series would be as accurate, but through log1p, which some backends flush
# to zero for subnormal arguments.
_DILOG_TAYLOR = [1.0 / (k + 1) ** 2 for k in range(7)]
_DILOG_TAYLOR_X = 1e-3


def _dilog_forward(x: Tensor) -> Tensor:
    r"""Dilogarithm :math:`\mathrm{Li}_2(x)` without autograd bookkeeping.

    Arguments:
        x: The argument, with shape :math:`(*)`.

    Returns:
        :math:`\mathrm{Li}_2(x)` in the dtype of :math:`x`, with shape :math:`(*)`.
    """

    t = x.to(torch.float64)
    # Each identity maps its range into |y| <= 1/2, and its terms cancel by at most a
    # factor of about three: in the reflection near x = 1/2, and in the inversion,
    # whose two products of logarithms add up to half of either.
    below = t < -1.0  # Li2(t) = -pi^2/6 - log(-t) log(1-t) + log(1-t)^2/2 + Li2(1/(1-t))
    landen = (t >= -1.0) & (t < -0.5)  # Li2(t) = -Li2(t/(t-1)) - log(1-t)^2/2
    reflect = t > 0.5  # Li2(t) = pi^2/6 - log(t) log(1-t) - Li2(1-t)
    y = torch.where(below, 1.0 / (1.0 - t), torch.where(landen, t / (t - 1.0), torch.where(reflect, 1.0 - t, t)))

    u = -torch.log1p(-y)
    u2 = u * u
    series = u - 0.25 * u2 + u * u2 * _horner(_DILOG_SERIES, u2)

    log1m = torch.log1p(-t)
    # log(t) log(1-t) -> 0 as t -> 1, but evaluates as 0 * inf at t = 1.
    at_one = t == 1.0
    log_t = torch.log(torch.where(reflect & ~at_one, t, 1.0))
    log1m_finite = torch.where(at_one, 0.0, log1m)
    log_neg = torch.log(torch.where(below, -t, 1.0))

    result = torch.where(
        below,
        (0.5 * log1m * log1m - log_neg * log1m - _PI2_6) + series,
        torch.where(
            landen,
            -series - 0.5 * log1m * log1m,
            torch.where(reflect, (_PI2_6 - log_t * log1m_finite) - series, series),
        ),
    )
    result = torch.where(t.abs() < _DILOG_TAYLOR_X, t * _horner(_DILOG_TAYLOR, t), result)
    result = torch.where(t == -math.inf, t, result)
    result = torch.where(t > 1.0, math.nan, result)
    return result.to(x.dtype)


# -log(1-x)/x = sum_k x^k/(k+1): for |x| < 1e-3 six terms leave 1e-19 and, unlike
# a where(x == 0, 1, ...), keep the second derivative right at x = 0.
_DILOG_DERIVATIVE_SERIES = [1.0 / (k + 1) for k in range(6)]
_DILOG_DERIVATIVE_SERIES_X = 1e-3


def _dilog_derivative(x: Tensor) -> Tensor:
    r"""Derivative :math:`-\log(1 - x) / x`, written with differentiable torch operations.

    Arguments:
        x: The argument, with shape :math:`(*)`.

    Returns:
        The derivative, with shape :math:`(*)`.
    """

    small = x.abs() < _DILOG_DERIVATIVE_SERIES_X
    # A harmless argument in the unused branch keeps 0/0 out of the backward pass.
    x_safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, _horner(_DILOG_DERIVATIVE_SERIES, x), -torch.log1p(-x_safe) / x_safe)


_Dilog = _with_derivative("_Dilog", _dilog_forward, lambda x, value: _dilog_derivative(x))


def dilog(x: Tensor) -> Tensor:
    r"""Dilogarithm :math:`\mathrm{Li}_2(x) = -\int_0^x \frac{\log(1 - t)}{t} \, dt`.

    Defined for real :math:`x \leq 1`, with :math:`\mathrm{Li}_2(1) = \pi^2/6` and
    :math:`\mathrm{Li}_2(x) \sim x` at 0; :math:`x > 1` gives NaN and
    :math:`-\infty` gives :math:`-\infty`. The inversion, Landen and reflection
    identities map :math:`x` into :math:`|y| \leq 1/2`, where the Bernoulli series in
    :math:`u = -\log(1 - y)` is summed to a fixed order; the result is accurate to a
    few float64 ulps.

    The gradient is :math:`-\log(1 - x) / x`, equal to 1 at :math:`x = 0` and
    :math:`+\infty` at :math:`x = 1`, and is itself differentiable.

    Arguments:
        x: The argument, with shape :math:`(*)`. Integer tensors are promoted to the
            default dtype.

    Returns:
        :math:`\mathrm{Li}_2(x)`, with shape :math:`(*)`, in the dtype and on the
        device of :math:`x`.
    """

    return _Dilog.apply(_real_input("dilog", x))


def polylog(s: int, x: Tensor) -> Tensor:
    r"""Polylogarithm :math:`\mathrm{Li}_s(x)` for :math:`s \in \{1, 2\}`.

    :math:`\mathrm{Li}_1(x) = -\log(1 - x)` and :math:`\mathrm{Li}_2` is
    :func:`dilog`; both are defined for real :math:`x \leq 1` and give NaN above.

    Arguments:
        s: The order, 1 or 2 (any number equal to these, such as a SymPy integer).
        x: The argument, with shape :math:`(*)`.

    Returns:
        :math:`\mathrm{Li}_s(x)`, with shape :math:`(*)`, in the dtype and on the device
        of :math:`x`.

    Raises:
        ValueError: For any other order :math:`s`.
    """

    if s == 1:
        return -torch.log1p(-_real_input("polylog", x))
    if s == 2:
        return dilog(x)
    raise ValueError(f"polylog: only the orders s = 1 and s = 2 are available, got s = {s}")


class _Step(torch.autograd.Function):
    r"""The step :math:`[x > 0]` (NaN at NaN) with a zero, never NaN, gradient."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return torch.where(torch.isnan(x), x, (x > 0).to(x.dtype))

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple[Tensor], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        # Not grad * 0, which is NaN wherever the incoming gradient is infinite.
        return torch.zeros_like(grad)


def heaviside(x: Tensor, value_at_zero: float | Tensor = 0.5) -> Tensor:
    r"""Heaviside step function :math:`H(x)` with :math:`H(0) = H_0`.

    :math:`H(x) = 0` for :math:`x < 0`, :math:`H_0` for :math:`x = 0` (either sign of
    zero) and 1 for :math:`x > 0`; NaN stays NaN. This is SymPy's
    ``Heaviside(x, H0)``, whose default is :math:`H_0 = 1/2`.

    The gradient with respect to :math:`x` is zero everywhere (the distributional
    part at 0 is dropped), and with respect to a tensor :math:`H_0` it is
    :math:`[x = 0]`.

    Arguments:
        x: The argument, with shape :math:`(*)`. Integer tensors are promoted to the
            default dtype.
        value_at_zero: The value :math:`H_0`, a number or a tensor broadcastable with
            :math:`x`; it is cast to the dtype and device of :math:`x`.

    Returns:
        :math:`H(x)`, with the broadcast shape of :math:`x` and :math:`H_0`, in the dtype
        and on the device of :math:`x`.
    """

    x = _real_input("heaviside", x)
    if isinstance(value_at_zero, Tensor):
        value_at_zero = value_at_zero.to(dtype=x.dtype, device=x.device)
    return torch.where(x == 0, value_at_zero, _Step.apply(x))


# 1/Gamma(1 + t) = sum_k c_k t^k, an entire function; for |t| <= 1/2 the 22 terms
# below truncate at 5e-21. Generated with mpmath.taylor(mpmath.rgamma, 1, 21) at
# 40 digits; tests/runtime/test_special.py checks them.
_RGAMMA_SERIES = [
    1.0,
    0.5772156649015329,
    -0.6558780715202539,
    -0.04200263503409524,
    0.16653861138229148,
    -0.04219773455554433,
    -0.009621971527876973,
    0.0072189432466631,
    -0.0011651675918590652,
    -0.00021524167411495098,
    0.0001280502823881162,
    -2.013485478078824e-05,
    -1.2504934821426706e-06,
    1.133027231981696e-06,
    -2.056338416977607e-07,
    6.116095104481416e-09,
    5.002007644469223e-09,
    -1.18127457048702e-09,
    1.0434267116911005e-10,
    7.782263439905071e-12,
    -3.696805618642206e-12,
    5.100370287454476e-13,
]

# Stirling's series log Gamma(y) - [(y - 1/2) log y - y + log(2 pi)/2]
# = sum_k B_2k / (2k (2k - 1) y^(2k - 1)); nine terms truncate at 2e-19 for y >= 10.
_STIRLING_SERIES = [float(_BERNOULLI[2 * k] / (2 * k * (2 * k - 1))) for k in range(1, 10)]
_STIRLING_Y = 10.0
# Beyond Gamma(171.62...) the float64 result is infinite anyway; clamping keeps the
# intermediate powers finite enough that inf * 0 never occurs.
_STIRLING_CLAMP = 200.0
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _gamma_positive(y: Tensor) -> Tensor:
    r"""Gamma function for float64 :math:`y \geq -1/2`.

    Arguments:
        y: The argument, with shape :math:`(*)`.

    Returns:
        :math:`\Gamma(y)`, with shape :math:`(*)`.
    """

    # Below 10: y = m + t with integer m and |t| <= 1/2, then Gamma(y) is 1/series(t)
    # times (t+1)...(t+m-1), or divided by t when m = 0. Every t + j is exact in
    # floating point (it is a float of the same grid as y, no larger), so the only
    # rounding is that of the at most nine products.
    m = torch.floor(y + 0.5)
    t = y - m
    gamma_1_t = 1.0 / _horner(_RGAMMA_SERIES, t)
    product = torch.ones_like(y)
    for j in range(1, int(_STIRLING_Y)):
        product = product * torch.where(m - 1.0 >= j, t + j, 1.0)
    small = torch.where(m == 0.0, gamma_1_t / t, gamma_1_t * product)

    # Above: exp(lgamma) would multiply the rounding of log Gamma (~700 at most) into
    # the result; y^(y/2 - 1/4) is a single power, good to about an ulp, of exact inputs.
    yc = torch.clamp(y, _STIRLING_Y, _STIRLING_CLAMP)
    w = 1.0 / yc
    correction = torch.exp(w * _horner(_STIRLING_SERIES, w * w))
    half_power = torch.pow(yc, 0.5 * yc - 0.25)
    large = (_SQRT_2PI * half_power) * (half_power * torch.exp(-yc)) * correction

    return torch.where(y < _STIRLING_Y, small, large)


def _gamma_forward(x: Tensor) -> Tensor:
    r"""Gamma function without autograd bookkeeping.

    Arguments:
        x: The argument, with shape :math:`(*)`.

    Returns:
        :math:`\Gamma(x)` in the dtype of :math:`x`, with shape :math:`(*)`.
    """

    t = x.to(torch.float64)
    reflect = t < -0.5
    gamma_abs = _gamma_positive(torch.where(reflect, -t, t))

    # Reflection with -x rather than 1 - x, which is exact:
    # Gamma(x) = -pi / (x sin(pi x) Gamma(-x)). sin(pi x) = (-1)^n sin(pi (x - n)) with
    # n = round(x) keeps the relative accuracy of the sine near the poles.
    n = torch.round(t)
    r = t - n
    sin_pi = torch.sin(math.pi * r) * torch.where(torch.remainder(n, 2.0) == 1.0, -1.0, 1.0)
    # Dividing in two steps keeps |x sin(pi x) Gamma(-x)| from overflowing before the
    # result (of order 1e-308 near x = -171) underflows.
    reflected = (-math.pi / (t * sin_pi)) / gamma_abs

    result = torch.where(reflect, reflected, gamma_abs)
    result = torch.where(reflect & (r == 0.0), math.nan, result)
    return result.to(x.dtype)


_Gamma = _with_derivative("_Gamma", _gamma_forward, lambda x, value: value * torch.digamma(x))


def gamma(x: Tensor) -> Tensor:
    r"""Gamma function :math:`\Gamma(x)` for real :math:`x`.

    Poles follow C's ``tgamma``: :math:`\Gamma(\pm 0) = \pm\infty` and
    :math:`\Gamma(-n) = \mathrm{NaN}` for integers :math:`n \geq 1` (the two sides
    of those poles have opposite infinite limits); every float64 below
    :math:`-2^{52}` is an integer and gives NaN, as does :math:`-\infty`, while
    :math:`+\infty` gives :math:`+\infty`. :math:`\Gamma(x)` overflows to
    :math:`+\infty` for :math:`x > 171.62` and underflows, through subnormals and
    with their reduced precision, for :math:`x < -171.6` away from the poles.

    The result is accurate to a few float64 ulps: :math:`\exp(\log|\Gamma(x)|)` would
    lose up to :math:`|\log \Gamma(x)|` ulps (about 700), so :math:`|x| < 10` uses
    exact shifts to :math:`1 + t`, :math:`|t| \leq 1/2`, and the Taylor series of
    :math:`1/\Gamma(1 + t)`, larger :math:`x` Stirling's series with the power
    :math:`x^{x - 1/2}` formed as a square, and :math:`x < -1/2` the reflection formula.

    The gradient is :math:`\Gamma(x) \psi(x)` (through ``torch.digamma``) and is
    itself differentiable.

    Arguments:
        x: The argument, with shape :math:`(*)`. Integer tensors are promoted to the
            default dtype.

    Returns:
        :math:`\Gamma(x)`, with shape :math:`(*)`, in the dtype and on the device of
        :math:`x`.
    """

    return _Gamma.apply(_real_input("gamma", x))
