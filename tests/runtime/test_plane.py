r"""The flow in two variables: the map of the region onto the plane and the autoregressive BPF."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from renorm.runtime._maps import TORCH
from renorm.runtime._plane import PlaneFlow, PlaneMap, problem_interval
from renorm.symbolic import load_spec, make_multi_problem

from ..conftest import EXAMPLES


def _problems():
    yield load_spec(EXAMPLES / "multi" / "emission_theta_z.toml")
    yield load_spec(EXAMPLES / "multi" / "angularity_pair.toml")
    # a region without a singular face under it (scaled), mirrored to the upper end, and a half-line box
    yield make_multi_problem(name="wedge", density="alpha/(1 - u)", x=["u", "v"], support=[["0", "1"], ["0", "2"]],
                             singular=["upper", "none"], region="v <= 1 + u")
    yield make_multi_problem(name="half", density="alpha*exp(-v)/u", x=["u", "v"], support=[["0", "1"], ["0", "oo"]], singular=["lower", "none"])


PROBLEMS = list(_problems())
KINDS = {"emission_theta_z": "box", "angularity_pair": "ratio", "wedge": "scaled", "half": "box"}


@pytest.fixture(scope="module", params=PROBLEMS, ids=lambda p: p.name)
def plane(request):
    problem = request.param
    return problem, PlaneMap.for_problem(problem, problem_interval(problem))


def _latent(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-4, 2.5, n), rng.uniform(-6, 6, n)


def test_the_map_is_a_bijection_onto_the_region(plane):
    problem, mapping = plane
    assert mapping.kind == KINDS[problem.name]
    y1, y2 = _latent()
    x1, x2, _ = mapping.from_latent(y1, y2)
    assert problem.contains(x1, x2).all()
    back = mapping.to_latent(x1, x2)
    assert np.allclose(back[0], y1, atol=1e-9) and np.allclose(back[1], y2, atol=1e-7)
    # the torch face (through the generated inner_interval) agrees with the NumPy one
    t1, t2, tj = mapping.from_latent(torch.tensor(y1), torch.tensor(y2), TORCH)
    n1, n2, nj = mapping.from_latent(y1, y2)
    assert np.allclose(t1.numpy(), n1, rtol=1e-14) and np.allclose(t2.numpy(), n2, rtol=1e-13) and np.allclose(tj.numpy(), nj, rtol=1e-12, atol=1e-12)


def test_the_log_jacobian_is_autograds(plane):
    problem, mapping = plane
    y1, y2 = _latent(12, seed=1)
    for a, b in zip(y1, y2):
        point = torch.tensor([a, b], dtype=torch.float64)
        jacobian = torch.autograd.functional.jacobian(lambda y: torch.stack(mapping.from_latent(y[0], y[1], TORCH)[:2]), point)
        _, _, log_jacobian = mapping.from_latent(point[0], point[1], TORCH)
        assert float(log_jacobian) == pytest.approx(math.log(abs(float(torch.linalg.det(jacobian)))), rel=1e-9, abs=1e-9)


def _flow(problem, mapping, seed=0) -> PlaneFlow:
    torch.manual_seed(seed)
    flow = PlaneFlow(mapping, (0.3, -0.2), (1.2, 0.9), problem.coupling_range).double()
    # move away from zuko's near-identity start so that the test sees a real density
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return flow


def test_the_closed_form_log_density_is_zukos(plane):
    problem, mapping = plane
    flow = _flow(problem, mapping)
    z = torch.randn(64, 2, dtype=torch.float64) * 3
    context = torch.rand(64, 1, dtype=torch.float64) * 2 - 1
    assert torch.allclose(flow._log_prob(z, context), flow.bpf(context).log_prob(z), rtol=1e-12, atol=1e-12)


def test_the_density_is_normalized_over_the_region(plane):
    # the density in x times the map's Jacobian is the latent density, pointwise (where x is a float64), and
    # the latent density integrates to 1: so does q over the region
    problem, mapping = plane
    flow = _flow(problem, mapping)
    t, w = np.polynomial.legendre.leggauss(8)
    edges = np.linspace(-10, 10, 29)
    nodes = (0.5 * (edges[:-1] + edges[1:])[:, None] + (10 / 28) * t[None, :]).ravel()
    weights = np.tile((10 / 28) * w, 28)
    z1, z2 = np.meshgrid(nodes, nodes, indexing="ij")
    y = torch.tensor(np.stack([0.3 + 1.2 * z1.ravel(), -0.2 + 0.9 * z2.ravel()], -1))
    x1, x2, log_jacobian = mapping.from_latent(y[:, 0], y[:, 1], TORCH)
    alphas = torch.tensor([0.05, 0.3], dtype=torch.float64)
    with torch.no_grad():
        latent = flow.log_prob_latent(y, alphas)
        log_q = flow.log_prob(x1, x2, alphas) + log_jacobian[:, None]
    # compared where x holds y to float64 (x rounds onto an end of the support far out in y)
    back = torch.stack(mapping.to_latent(x1, x2, TORCH), -1)
    resolved = torch.isfinite(log_q).all(1) & ((back - y).abs() < 1e-9 * (1 + y.abs())).all(1)
    # and where the density is not so steep in y that the round trip's 1e-9 shows (log q_y < -30)
    resolved &= (latent > -30).all(1)
    assert resolved.float().mean() > 0.2
    assert torch.allclose(log_q[resolved], latent[resolved], rtol=1e-9, atol=1e-6)
    cell = torch.tensor(np.outer(weights, weights).ravel() * 1.2 * 0.9)[:, None]
    mass = cell * latent.exp()
    assert torch.allclose(mass.sum(0), torch.ones(2, dtype=torch.float64), atol=1e-6)
    lost = ~torch.isfinite(log_q).all(1)  # where x rounded onto an end: log q cannot be evaluated at all
    if problem.singular[0] != "upper":
        assert float(mass[lost].sum(0).max()) < 1e-5
    else:
        # a singular face at x1 = 1: x1 = 1 - e^-e^y rounds onto it from y ~ 3.6 (issue 17's note: the distance
        # frame of one variable, which trains in 1 - x1, is not there in two yet)
        assert (x1[lost & (mass > 1e-12).any(1)] == 1.0).all()


def test_samples_lie_in_the_region_and_follow_the_density(plane):
    problem, mapping = plane
    flow = _flow(problem, mapping)
    x1, x2 = flow.sample(0.1, 4000, torch.Generator().manual_seed(3))
    # inside, or rounded onto a face that is not 0 (x1 = 1 - 1e-17 is 1.0 in float64)
    (a1, b1), _ = problem.support_floats
    inside = problem.contains(x1.numpy(), x2.numpy())
    assert inside.mean() > 0.99 and np.isin(x1.numpy()[~inside], [a1, b1]).all()
    # the latent mean of y1 against the density's, to 5 standard errors
    y1, _ = mapping.to_latent(x1[inside], x2[inside], TORCH)
    t, w = np.polynomial.legendre.leggauss(64)
    z = torch.tensor(12 * t)
    grid1, grid2 = torch.meshgrid(z, z, indexing="ij")
    y = torch.stack([0.3 + 1.2 * grid1.ravel(), -0.2 + 0.9 * grid2.ravel()], -1)
    with torch.no_grad():
        density = flow.log_prob_latent(y, torch.tensor([0.1], dtype=torch.float64))[:, 0].exp()
    cell = torch.tensor(np.outer(12 * w, 12 * w).ravel() * 1.2 * 0.9)
    mean = float((cell * density * y[:, 0]).sum() / (cell * density).sum())
    assert abs(float(y1.mean()) - mean) < 5 * float(y1.std()) / math.sqrt(y1.numel())


def test_describe_and_rebuild_give_the_same_density(plane):
    problem, mapping = plane
    flow = _flow(problem, mapping)
    again = PlaneFlow.rebuild(flow.describe(), problem_interval(problem)).double()
    again.load_state_dict(flow.state_dict())
    x1, x2, _ = mapping.from_latent(torch.tensor([0.1, 1.0]), torch.tensor([0.2, -1.0]), TORCH)
    alphas = torch.tensor([0.05, 0.2], dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(flow.log_prob(x1, x2, alphas), again.log_prob(x1, x2, alphas))
