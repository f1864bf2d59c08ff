r"""Verification in two variables: densities with known coefficients, against the angularity pair's p^n and its marginal."""

from __future__ import annotations

import os

import numpy as np
import pytest

from renorm.runtime._plane import PlaneMap, problem_interval
from renorm.runtime._plane_train import _solutions
from renorm.runtime._plane_verify import marginal_rule, verify_plane
from renorm.runtime._verify import chebyshev_nodes
from renorm.symbolic import RenormError, load_spec

from .. import schema
from ..conftest import EXAMPLES

FULL = os.environ.get("RENORM_FULL") == "1"
#: Couplings of the fit: the default 12 with RENORM_FULL=1, else 6 (a degree-3 fit needs 4), to keep the solves of q* few.
NODES = 12 if FULL else 6


@pytest.fixture(scope="module")
def pair():
    problem = load_spec(EXAMPLES / "multi" / "angularity_pair.toml")
    # the couplings verify_plane solves q* at, in the same tuples: the densities below reuse them
    solved = {s.alpha: s for alphas in (tuple(float(a) for a in chebyshev_nodes(problem, NODES)), (0.05, 0.118, 0.3))
              for s in _solutions(problem, alphas)}
    return problem, solved


def density(solved, factor=lambda x: 1.0):
    r""":math:`\log(q^*(x|\alpha) \cdot \mathrm{factor}(x))` at pairs."""
    def log_density(x, alpha):
        s = solved[alpha]
        return np.log(s.q(x[:, 0], x[:, 1]) * factor(x))
    return log_density


def wiggle(size):
    return lambda x: 1 + size * np.sin(5 * np.log(x[:, 0]))


def test_q_star_passes_with_the_fit_bias_as_its_deviation(pair):
    problem, solved = pair
    report = verify_plane(problem, density(solved), nodes=NODES)
    assert report.passed and not schema.errors(report.to_json(), "verify-2d")
    for order in report.orders + report.marginal_orders + report.second_marginal_orders:
        assert order.extractable and order.median_relative_deviation == pytest.approx(order.bias, rel=0.1, abs=1e-6)
        # the marginal in l2 is checked on fewer of its points (measured 12% and 7%): at small l2 its l1
        # interval [l2, sqrt(l2)] reaches the corner, where q* is not p
        assert order.median_relative_deviation < 5e-3 and (0.2 if order.target != "int p^n dl1" else 0.05) < order.coverage <= 0.6
        # q* is not p across the bulk: the fit's degree, chosen per point, lies between N and N + 2
        assert problem.order <= order.degrees[0] <= order.degrees[1] <= problem.order + 2
    q1 = report.orders[1]
    # the checked points lie where q* is within 5% of alpha p^1: away from the corner (small l1)
    assert q1.box[0][0] > 0.1 and report.orders[0].scale == "alpha_max^(1-n) p^1"
    assert report.marginal_orders[1].resolution < 1e-6
    for row in report.certificate:
        assert row.total_variation < 1e-12 and abs(row.normalization - 1) < 1e-3
    assert [o.target for o in report.second_marginal_orders] == ["int p^n dl1"] * 2
    assert not any("marginal" in note for note in report.notes)


@pytest.mark.parametrize("size, passes", [(0.005, True), (0.04, False)])
def test_an_error_constant_in_alpha_moves_q1_by_itself(pair, size, passes):
    # q = q* (1 + e(x)) has q^1 = p^1 (1 + e): the median of |e| = size |sin| over the checked points is about 0.7 size
    problem, solved = pair
    report = verify_plane(problem, density(solved, wiggle(size)), nodes=NODES)
    q1 = report.orders[1]
    assert 0.4 * size < q1.median_relative_deviation < size + 2 * q1.bias
    assert report.passed is passes
    assert next(c for c in report.checks if c.name == "q^1 vs p^1").passed is passes


def test_a_density_off_by_a_factor_fails_q1_and_its_normalization(pair):
    problem, solved = pair
    report = verify_plane(problem, density(solved, lambda x: 1.5), nodes=NODES)
    assert not report.passed
    assert report.orders[1].median_relative_deviation == pytest.approx(0.5, abs=0.01)
    assert report.marginal_orders[1].median_relative_deviation == pytest.approx(0.5, abs=0.01)
    assert report.second_marginal_orders[1].median_relative_deviation == pytest.approx(0.5, abs=0.01)
    failed = {c.name for c in report.checks if c.ran and not c.passed}
    assert {"q^1 vs p^1", "marginal q^1 vs int p^1 dl2", "marginal q^1 vs int p^1 dl1", "normalization"} <= failed


@pytest.mark.parametrize("name", ["angularity_pair", "emission_ll"] + (["emission_theta_z"] if FULL else []))
def test_the_marginal_rule_matches_the_adaptive_marginal_of_q_star(name):
    # a region with a ratio map, and a box with a normalized target (and the emission's box with RENORM_FULL=1);
    # down to 1e-4 of l1 (theta), where q* bends over
    problem = load_spec(EXAMPLES / "multi" / f"{name}.toml")
    plane_map = PlaneMap.for_problem(problem, problem_interval(problem))
    x1 = np.geomspace(1e-4, 0.9, 9)
    s = _solutions(problem, (0.118,))[0]
    rule = marginal_rule(problem, plane_map, x1)(lambda x, a: np.log(s.q(x[:, 0], x[:, 1])), 0.118)
    assert rule == pytest.approx(s.marginal(0, x1), rel=1e-4)


def test_nothing_extractable_is_never_a_pass(pair):
    # as for the emission in (theta, z) on [0.05, 0.3]: q* is nowhere within the threshold of p at every coupling
    problem, solved = pair
    report = verify_plane(problem, density(solved), threshold=1e-9, nodes=NODES)
    assert not report.passed and not any(o.extractable for o in report.orders + report.marginal_orders + report.second_marginal_orders)
    assert next(c for c in report.checks if c.name.startswith("distance to q*")).passed
    assert any("no order of the density was compared with p^n" in note for note in report.notes)


def test_too_few_couplings_are_refused(pair):
    with pytest.raises(RenormError, match="at least 4 couplings, got 3"):
        verify_plane(pair[0], density(pair[1]), nodes=3)
