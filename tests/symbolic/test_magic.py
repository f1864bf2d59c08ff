r"""Magic kernels: sign-definiteness, the round trip and the KL identity of the talk."""

from __future__ import annotations

import pytest
import sympy as sp

from renorm.symbolic import RenormError, magic_c, make_problem, parse_target

LL = "2*alpha*CF/pi*log(1/x)/x*exp(-alpha*CF/pi*log(1/x)**2)"


@pytest.fixture(scope="module")
def magic(soft_collinear):
    return magic_c(soft_collinear, parse_target(soft_collinear, LL))


def test_log_kernel_is_q_over_two_log_ratio(magic, soft_collinear):
    q, p = magic.target, soft_collinear.density
    assert sp.simplify(magic.weight - q / (2 * sp.log(p / q))) == 0
    assert magic.lagrange_multiplier == 1


@pytest.mark.parametrize("alpha", [0.05, 0.118, 0.3])
def test_round_trip_and_kl_identity(magic, alpha):
    check = magic.check(alpha)
    # minimizing with C_q gives back q, with λ = 1 (the convention that fixed C's constant)
    assert check.max_relative_error < 1e-8
    assert check.lagrange_multiplier == pytest.approx(1.0, rel=1e-10)
    assert check.normalization == pytest.approx(1.0, abs=1e-12)
    # log(q/p) = -(αCF/π) log²x and, for the Rayleigh-distributed L = log(1/x),
    # E_q[log² x] = π/(α CF): so D = ∫ q log(q/p) = -1 and L[q] = -D/2 = 1/2 exactly
    assert check.kl_divergence == pytest.approx(-1.0, rel=1e-10)
    assert check.loss == pytest.approx(0.5, rel=1e-10)


def test_crossing_target_cannot_be_reached(soft_collinear):
    # a uniform q on (0, 1) lies below p at small x and above it near x = 1
    with pytest.raises(RenormError, match="cannot be reached"):
        magic_c(soft_collinear, parse_target(soft_collinear, "1 + 0*alpha"))


def test_linear_magic_kernel_round_trip():
    # f = linear: C_q² = p - q; q = 2x on (0, 1) sits below p = 3x + α everywhere
    problem = make_problem(name="lin", density="3*x + alpha", support=(0, 1), f="linear", singular="none")
    magic = magic_c(problem, parse_target(problem, "2*x"))
    assert sp.simplify(magic.C_squared - (problem.density - 2 * problem.x)) == 0
    check = magic.check(0.1)
    assert check.max_relative_error < 1e-8 and check.kl_divergence is None


def test_negative_target_is_refused(soft_collinear):
    with pytest.raises(RenormError, match="negative or not finite"):
        magic_c(soft_collinear, parse_target(soft_collinear, "x - 1/2"))


def test_unnormalized_target_is_refused(soft_collinear):
    # half of the LL distribution: (f(q) - f(p)) f'(q) keeps its sign, but no minimizer is unnormalized
    with pytest.raises(RenormError, match=r"--q is not normalized: its integral over the support is 0.5 at alpha=0.05"):
        magic_c(soft_collinear, parse_target(soft_collinear, f"({LL})/2"))


@pytest.mark.parametrize("alpha", [0.05, 0.3])
def test_magic_kernel_on_a_half_line_where_q_underflows(alpha):
    # q = e^-tau underflows at large tau: the sign check must skip what float64 cannot resolve
    import mpmath

    problem = make_problem(name="toy", x="tau", density="exp(-tau)*(1 + alpha*(1 + tau/10))", support=("0", "oo"), singular="none")
    check = magic_c(problem, parse_target(problem, "exp(-tau)")).check(alpha)
    with mpmath.workdps(30):
        kl = -mpmath.quad(lambda t: mpmath.exp(-t) * mpmath.log(1 + alpha * (1 + t / 10)), [0, mpmath.inf])
    assert check.kl_divergence == pytest.approx(float(kl), rel=1e-10)
    assert check.loss == pytest.approx(-check.lagrange_multiplier * float(kl) / 2, rel=1e-10)
    assert check.max_relative_error < 1e-10 and check.lagrange_multiplier == pytest.approx(1.0, rel=1e-10)


def test_log_target_above_p_is_refused():
    # p = α(1 + x) holds 0.15 at α = 0.1; q = 1 lies above it everywhere: λ = -1 with f = log has no minimizer
    problem = make_problem(name="short", density="alpha*(1 + x)", support=(0, 1), singular="none", coupling_range=(0.05, 0.3))
    with pytest.raises(RenormError, match="lies above p wherever they differ"):
        magic_c(problem, parse_target(problem, "1 + 0*alpha"))


def test_linear_target_above_p_round_trips_with_negative_lambda():
    # f = linear: the loss is convex, and λ = -1 gives a true minimizer q = p + C² (C² = q - p)
    problem = make_problem(name="lin-up", density="alpha*(1 + x)", support=(0, 1), f="linear", singular="none", coupling_range=(0.05, 0.3))
    magic = magic_c(problem, parse_target(problem, "1 + 0*alpha"))
    check = magic.check(0.1)
    assert magic.lagrange_multiplier == -1 and check.lagrange_multiplier == pytest.approx(-1.0, rel=1e-8)
    assert check.max_relative_error < 1e-8
