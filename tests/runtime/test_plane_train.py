r"""Training the flow in two variables: the objective, the run directory, the certificate and the commands."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from renorm.runtime import TrainConfig, load_run, train
from renorm.runtime._cli import main
from renorm.runtime._plane_train import PlaneCertificate, PlaneObjective, PlaneRun, _latent_spans, _solutions, build_plane_flow, plane_certificate
from renorm.symbolic import RenormError, load_spec

from .. import schema
from ..conftest import EXAMPLES

EMISSION = EXAMPLES / "multi" / "emission_theta_z.toml"
SMALL = ["--epochs", "30", "--refine", "4", "--plane-points", "32", "--plane-couplings", "3"]


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    out = tmp_path_factory.mktemp("plane") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", str(EMISSION), "--out", str(out), *SMALL, "--json"]) == 0
    return out, json.loads(printed.getvalue())


@pytest.fixture
def trained(training):
    return training[0]


#: A smooth normalized target on the unit square (lambda = 0, q* = p): its solves take milliseconds.
TILTED = """name = "tilted_box"

[target]
x = ["x1", "x2"]
support = [["0", "1"], ["0", "1"]]
singular = "none"
order = 1
density = "2*x1*(1 + alpha*(x2 - 1/2))"
"""


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    r"""``renorm run --json`` in two variables: kernels, q*, a short training, verification and plots."""
    root = tmp_path_factory.mktemp("tilted")
    (root / "tilted.toml").write_text(TILTED)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["run", str(root / "tilted.toml"), "--out", str(root / "run"), *SMALL, "--json"])
    return root / "run", code, json.loads(printed.getvalue())


def test_train_json_is_the_certificate(training):
    data = training[1]
    assert not schema.errors(data, "train-2d")
    assert [row["alpha"] for row in data["couplings"]] == [0.05, 0.118, 0.3]


def test_run_verifies_and_plots_and_a_short_training_fails_at_order_one(running):
    out, code, data = running
    assert not schema.errors(data, "run-2d"), schema.errors(data, "run-2d")
    report = data["report"]
    q0, q1 = report["orders"]
    # 34 steps bring the flow within TV ~2e-3 of q* = p, and q^0 within 2%; q^1, fitted at degree N
    # (q* = p is linear in alpha), is still off by several percent (measured 6.8e-2; 6.3e-3 at the
    # defaults, which pass), and verification says so
    assert max(row["total_variation"] for row in report["couplings"]) < 1e-2
    assert q0["extractable"] and q1["extractable"] and q0["coverage"] == q1["coverage"] == pytest.approx(1.0)
    assert q0["median_relative_deviation"] < 0.02 < q1["median_relative_deviation"] and q1["bias"] < 1e-12
    assert q0["degrees"] == q1["degrees"] == [1, 1]
    assert code == 1 and report["passed"] is False
    # the marginal in x2, 1 + alpha (x2 - 1/2), is checked too and carries the same error in alpha
    second = report["marginal_2"]["orders"]
    assert report["marginal_2"]["variable"] == "x2" and all(o["extractable"] for o in second)
    assert second[1]["median_relative_deviation"] > 0.02 and second[1]["degrees"] == [1, 1]
    assert [c["name"] for c in report["checks"] if c["ran"] and not c["passed"]] == ["q^1 vs p^1", "marginal q^1 vs int p^1 dx1"]
    assert any("the integral of p over x2, '2*x1', does not depend on alpha" in note for note in report["notes"])
    assert json.loads((out / "report.json").read_text()) == report
    assert sorted(Path(p).name for p in data["plots"]) == ["densities.png", "marginals.png", "training.png"]
    assert all(Path(p).stat().st_size > 10_000 for p in data["plots"])


def test_verify_and_plot_of_a_run_in_two_variables(running, capsys):
    out, _, data = running
    assert main(["verify", str(out)]) == 1
    text = capsys.readouterr().out
    assert text.startswith("verification: FAILED") and "checks: q^0 vs p^0: passed, q^1 vs p^1: FAILED" in text
    q1 = data["report"]["orders"][1]
    assert f"q^1 vs p^1 (scale p^n): median {q1['median_relative_deviation']:.3e}" in text
    assert main(["plot", str(out), "--json"]) == 0
    assert not schema.errors(json.loads(capsys.readouterr().out), "plot")


def test_the_objective_is_a_divergence_that_training_lowers(trained, capsys):
    problem = load_spec(EMISSION)
    config = TrainConfig(plane_points=32, plane_couplings=3)
    values = []
    for seed in range(2):
        torch.manual_seed(seed)
        flow = build_plane_flow(problem, config).double()
        objective = PlaneObjective(problem, flow, config, torch.float64, torch.device("cpu"))
        values.append(float(objective().detach()))
        assert values[-1] > 0 and objective.validation() > 0
    run = load_run(trained)
    again = PlaneObjective(problem, run.flow, config, torch.float64, torch.device("cpu"))
    assert 0 < float(again().detach()) < 0.2 * min(values)


def test_the_run_is_certified_against_q_star(training):
    trained, data = training
    run = load_run(trained)
    assert isinstance(run, PlaneRun) and 30 < run.step <= 34
    rows = [PlaneCertificate(**row) for row in data["couplings"]]
    assert [row.alpha for row in rows] == [0.05, 0.118, 0.3]
    torch.manual_seed(0)
    untrained = PlaneRun(run.problem, build_plane_flow(run.problem, run.config).double(), run.config, 0)
    before = plane_certificate(untrained)
    for row, start in zip(rows, before):
        # 34 steps on a coarse grid: far from the README's recipe, but five times closer than the start
        assert row.total_variation < 0.2 * start.total_variation
        # the certificate's grid reaches q*'s 1e-9 tails (it missed 3e-5 of q* while the spans came from q*'s own nodes)
        assert abs(row.normalization - 1) < 1e-3 and abs(row.resolution) < 1e-8


def _tail_masses(solution, axis: int, inner: float, end: float, singular: bool) -> float:
    r"""The probability of q* between ``inner`` and the support's ``end`` in variable ``axis``: its
    marginal (adaptive quadrature over the other variable) integrated by SciPy, in log x toward a
    singular face at 0."""
    from scipy.integrate import quad

    marginal = lambda x: float(solution.marginal(axis, np.array([x]))[0])
    if singular and end == 0.0:
        return quad(lambda u: marginal(math.exp(u)) * math.exp(u), -740.0, math.log(inner), limit=400, epsabs=1e-16)[0]
    lo, hi = sorted((inner, end))
    return quad(marginal, lo, hi, limit=400, epsabs=1e-16)[0]


@pytest.mark.parametrize("name,axes", [("emission_theta_z", (0, 1)), ("angularity_pair", (0,))])
def test_the_latent_spans_leave_out_what_they_say(name, axes):
    # the training grid ends where q* leaves 1e-9 on each side: checked in x, where the latent
    # coordinate is a function of one variable (not the angularity pair's second, whose map depends
    # on both), by the marginal of q* against an independent adaptive quadrature. The spans once came
    # from q*'s nested-quadrature nodes and left 2.6e-4 of the emission below y1 = -5 (at θ -> 1).
    problem = load_spec(EXAMPLES / "multi" / f"{name}.toml")
    plane_map = build_plane_flow(problem, TrainConfig()).plane_map
    spans = _latent_spans(problem, plane_map, 1e-9)
    solutions = _solutions(problem, problem.coupling_range)
    for k in axes:
        one = plane_map.first if k == 0 else plane_map.second
        ends = one.from_latent(np.array(spans[k]))  # the x at each end of the latent span (the map may reverse)
        (a, b) = problem.support_floats[k]
        for inner, end in ((min(ends), a), (max(ends), b)):
            masses = [_tail_masses(s, k, float(inner), end, problem.singular[k] == "lower") for s in solutions]
            assert 1e-10 < max(masses) < 2e-9, (name, k, inner, masses)


@pytest.mark.parametrize("name", ["emission_theta_z", "angularity_pair"])
def test_the_training_grid_integrates_q_star_at_every_coupling(name):
    # Gauss–Legendre of order 8 on panels that follow q*'s mass (measured: 2.8e-4 and 2.9e-4 on the
    # training grids, 5e-6 and 3e-5 on the checking grids; order 4 on as many nodes: 1e-2 at the
    # smallest coupling, which the flow would learn as q*'s normalization)
    problem = load_spec(EXAMPLES / "multi" / f"{name}.toml")
    config = TrainConfig()
    flow = build_plane_flow(problem, config).double()
    objective = PlaneObjective(problem, flow, config, torch.float64, torch.device("cpu"))
    side = config.plane_points
    assert objective.training["y"].shape[0] == side ** 2 and objective.checking["y"].shape[0] == (side + 8) ** 2  # a half panel more at each end
    for grid in (objective.training, objective.checking):
        assert torch.allclose(grid["mass"].sum(0), torch.ones(config.plane_couplings, dtype=torch.float64), rtol=0, atol=1e-3)
    for edges, (lo, hi) in zip(objective.edges, _latent_spans(problem, flow.plane_map, 1e-9)):
        widths = np.diff(edges)
        assert edges[0] < lo and hi < edges[-1] and (widths > 0).all()
        assert widths.max() > 4 * widths.min()  # denser where q* has its mass than in the tails


def test_eval_and_sample_speak_pairs(trained, capsys):
    assert main(["eval", str(trained), "--alpha", "0.1", "--x", "0.1,0.2", "0.01,0.9", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert not schema.errors(data, "eval-2d")
    run = load_run(trained)
    expected = np.exp(run.log_density(np.array([[0.1, 0.2], [0.01, 0.9]]), 0.1))
    assert data["x"] == [[0.1, 0.2], [0.01, 0.9]] and data["q"] == pytest.approx(expected.tolist(), rel=1e-12)
    assert main(["sample", str(trained), "--alpha", "0.1", "-n", "6", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert not schema.errors(data, "sample-2d")
    samples = np.array(data["samples"])
    assert samples.shape == (6, 2) and run.problem.contains(samples[:, 0], samples[:, 1]).all()


@pytest.mark.parametrize("args, message", [
    (["eval", "--alpha", "0.5", "--x", "0.1,0.2"], "outside the couplings this flow was trained on"),
    (["eval", "--alpha", "0.1", "--x", "0.1"], "takes theta,z pairs"),
])
def test_what_a_two_dimensional_run_does_not_do_is_refused_in_one_line(trained, capsys, args, message):
    assert main([args[0], str(trained), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_settings_of_one_variable_are_refused_before_anything_is_written(tmp_path):
    problem = load_spec(EMISSION)
    for config, message in [(TrainConfig(alpha_floor=1e-3), "alpha_floor"), (TrainConfig(mode="functional"), "distillation"),
                            (TrainConfig(optimizer="lbfgs"), "Adam on the deterministic grid")]:
        with pytest.raises(RenormError, match=message):
            train(problem, tmp_path / "no", config)
    assert not (tmp_path / "no").exists()


def test_resume_continues_a_run_and_another_spec_is_refused(tmp_path):
    problem = load_spec(EMISSION)
    config = TrainConfig(epochs=6, refine=0, plane_points=32, plane_couplings=2)
    train(problem, tmp_path / "r", config, progress=False)
    again = train(problem, tmp_path / "r", TrainConfig(epochs=9, refine=0, plane_points=32, plane_couplings=2), resume=True, progress=False)
    assert again.step == 9
    with pytest.raises(RenormError, match="another spec"):
        load_run(tmp_path / "r", load_spec(EXAMPLES / "angularity_lo.toml"))


def test_a_run_of_a_problem_built_in_python_stores_it_as_toml(tmp_path):
    from renorm.symbolic import load_spec, make_multi_problem

    problem = make_multi_problem(name="built", x=["x1", "x2"], singular="none", density="c*x1*(1 + alpha*(x2 - 1/2))", constants={"c": "2"}, f="linear")
    out = tmp_path / "run"
    train(problem, out, TrainConfig(epochs=2, refine=0, plane_points=16, plane_couplings=2), progress=False)
    # the run directory holds data only, and reads back without the spec
    assert load_spec(out / "spec.toml").sha256 == problem.sha256
    assert load_run(out).problem.sha256 == problem.sha256
