r"""A singular endpoint other than 0: everything runs in the distance to it, and gives the mirror's answers.

The reference is the same target written with its singular end at 0 (the soft-collinear
kernel on (0, 1)): shifted to (1, 2), mirrored to the upper end of (0, 1) or of (2, 3), the
trained flow, its verification and its plots must be those of the reference, because every
number lives in the distance to the endpoint.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
import torch

from renorm.runtime import TrainConfig, train
from renorm.runtime._checkpoint import digest
from renorm.runtime._plot import plot_report
from renorm.runtime._train import _build_flow, load_run
from renorm.runtime._verify import verify
from renorm.symbolic import RenormError, distance_frame, make_problem

SMALL = dict(epochs=8, refine=2, x_points=64, alpha_points=4, window_points=2)  # the window on, as by default, at little cost
KERNEL = "2*alpha*4/(3*pi)*log(1/({d}))/({d})"
#: support, singular end, the distance in terms of x, and how the frame labels it
CASES = {
    "reference": (("0", "1"), "lower", "x", "x"),
    "shifted": (("1", "2"), "lower", "x - 1", "x - 1"),
    "mirrored": (("0", "1"), "upper", "1 - x", "1 - x"),
    "mirrored-at-3": (("2", "3"), "upper", "3 - x", "3 - x"),
}


def _problem(case: str):
    support, singular, distance, _ = CASES[case]
    return make_problem(name=case, density=KERNEL.format(d=distance), support=support, singular=singular, order=1,
                        coupling_range=(0.05, 0.3))


@pytest.mark.parametrize("case", sorted(CASES))
def test_frame_is_the_reference_problem_in_the_distance(case):
    frame, reference = distance_frame(_problem(case)), _problem("reference")
    assert frame.label == CASES[case][3]
    assert frame.identity == (case == "reference")
    assert sp.simplify(frame.problem.density - reference.density.xreplace({reference.x: frame.problem.x})) == 0
    assert frame.problem.support_floats == (0.0, 1.0) and frame.problem.singular == "lower"
    x = np.array([0.3, 0.7]) + float(_problem(case).support[0])
    assert np.allclose(frame.x(frame.d(x)), x, rtol=0, atol=1e-15)


def test_regular_and_infinite_supports_are_their_own_frame():
    for problem in (make_problem(name="r", density="1 + alpha*x", support=("2", "3"), singular="none"),
                    make_problem(name="h", density="alpha/(x*(1 + x))", support=("0", "oo"))):
        assert distance_frame(problem).identity and distance_frame(problem).problem is problem


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("frames")
    return {case: train(_problem(case), base / case, TrainConfig(**SMALL), progress=False) for case in CASES}


@pytest.mark.parametrize("case", ["shifted", "mirrored", "mirrored-at-3"])
def test_trained_flow_and_verification_are_the_references(runs, case):
    run, reference = runs[case], runs["reference"]
    # the flow lives in the distance: the same weights, bit for bit, as the reference's
    assert run.step == reference.step
    state, expected = run.flow.state_dict(), reference.flow.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    report = verify(run.problem, run.log_density_distance, distance=True).to_json()
    expected_report = verify(reference.problem, reference.log_density).to_json()
    label = report.pop("variable")
    assert label == CASES[case][3] and expected_report.pop("variable") == "x"
    for check in report["checks"]:
        check["detail"] = check["detail"].replace(f"on {label} in", "on x in")
    assert report == expected_report
    # before: TV(q, q*) = nan and int q = 0.9999998, because x rounds onto the endpoint
    assert all(row["total_variation"] is not None for row in report["couplings"])
    assert all(abs(row["normalization"] - 1) < 1e-6 for row in report["couplings"])


@pytest.mark.parametrize("case", ["mirrored", "mirrored-at-3"])
def test_run_speaks_x_outside(runs, case):
    run = runs[case]
    a, b = run.problem.support_floats
    x = np.linspace(a, b, 9)[1:-1]
    assert np.array_equal(run.log_density(x, 0.118), run.log_density_distance(b - x, 0.118))
    samples = run.sample(0.118, 2000, seed=1)
    assert np.all((samples >= a) & (samples <= b))
    # the singular end carries the probability: the mirror's samples crowd against b
    assert np.median(samples) > a + 0.5 * (b - a)
    # a density given in x is composed with x(d): same answer where x resolves it
    composed = verify(run.problem, run.log_density)
    assert composed.variable == CASES[case][3] and composed.orders[0].extractable


def test_plots_of_a_mirrored_run(runs, tmp_path):
    run = runs["mirrored"]
    # the training plot marks the phases and draws the refinement's validation curve
    assert [h["phase"] for h in run.history] == ["main"] * SMALL["epochs"] + ["refine"] * (run.step - SMALL["epochs"])
    assert all("validation" in h for h in run.history if h["phase"] == "refine")
    paths = plot_report(run.problem, run.log_density_distance, tmp_path, history=run.history, distance=True)
    assert [p.name for p in paths] == ["densities.png", "coefficients.png", "training.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_explicit_map_names_an_end_of_x():
    config = TrainConfig(**SMALL, support_map="double_log_upper")
    assert _build_flow(_problem("mirrored"), config).support_map.name == "double_log_lower"
    assert _build_flow(_problem("reference"), config).support_map.name == "double_log_upper"


def _as_format(path, value: int) -> None:
    state = torch.load(path, weights_only=True)
    state["format"] = value
    state["checksum"] = digest(state)
    torch.save(state, path)


def test_format_2_checkpoints_read_only_where_x_resolved_the_endpoint(runs, tmp_path):
    import shutil

    for case, readable in (("reference", True), ("mirrored", False)):
        copy = tmp_path / case
        shutil.copytree(runs[case].directory, copy)
        _as_format(copy / "checkpoint.pt", 2)
        if readable:
            assert load_run(copy).step == runs[case].step
        else:
            with pytest.raises(RenormError, match="format 2 trained this problem in x"):
                load_run(copy)
