r"""``renorm expand`` and ``renorm solve`` on targets in two variables; the commands that take one refuse them in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from renorm.codegen._cli import main as codegen_main
from renorm.runtime._cli import main
from renorm.symbolic import ExactMinimizer, MultiMinimizer, load_spec, marginal_problem

from .. import schema
from ..conftest import EXAMPLES

PAIR = str(EXAMPLES / "multi" / "angularity_pair.toml")
EMISSION = str(EXAMPLES / "multi" / "emission_theta_z.toml")


def _json(capsys, *args, code=0):
    assert main([*args, "--json"]) == code
    return json.loads(capsys.readouterr().out)


def test_solve_json_carries_both_coordinates_and_the_marginals(capsys):
    data = _json(capsys, "solve", PAIR, "--alpha", "0.118", "--x", "0.1,0.05", "0.01,0.001")
    assert not schema.errors(data, "solve-2d")
    assert data["variables"] == ["l1", "l2"] and data["x"] == [[0.1, 0.05], [0.01, 0.001]]
    row = data["couplings"][0]
    solution = MultiMinimizer(load_spec(PAIR)).solve(0.118)
    assert row["lagrange_multiplier"] == pytest.approx(solution.lagrange_multiplier, rel=1e-12)
    assert row["q"] == pytest.approx(solution.q(np.array([0.1, 0.01]), np.array([0.05, 0.001])).tolist(), rel=1e-12)
    assert data["marginal"]["x"] == [0.01, 0.1] and row["marginal_q"] == pytest.approx(solution.marginal(0, np.array([0.01, 0.1])).tolist(), rel=1e-9)
    # the 1D q* of the marginal target is a different function (README: report both)
    assert row["marginal_q_of_marginal_target"][0] == pytest.approx(19.224, rel=1e-3) and row["marginal_q"][0] == pytest.approx(23.974, rel=1e-3)
    # and in l2, over l1 in [l2, sqrt(l2)]
    assert {k: data["marginal_2"][k] for k in ("variable", "x", "reason")} == {"variable": "l2", "x": [0.001, 0.05], "reason": None}
    assert row["marginal_q_2"] == pytest.approx(solution.marginal(1, np.array([0.001, 0.05])).tolist(), rel=1e-9)
    reduced, _ = marginal_problem(load_spec(PAIR), 1)
    assert data["marginal_2"]["target"] == str(reduced.density)
    assert row["marginal_q_2_of_marginal_target"] == pytest.approx(ExactMinimizer(reduced).solve(0.118).q(np.array([0.001, 0.05])).tolist(), rel=1e-9)
    assert data["matched_order"]["order"] == 1


def test_solve_says_why_a_marginal_in_the_second_variable_is_missing(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(Path(PAIR).read_text().replace('region = "l1**2 <= l2 <= l1"', 'region = "l2 <= -E*l1*log(l1)"')
                    .replace('density = "alpha*CF/pi*(1 + (1 - l1**2/l2)**2)/(l1*l2)"', 'density = "(1 + alpha*(l1 - 1/2))"')
                    .replace('singular = ["lower", "lower"]', 'singular = "none"').replace('f = "log"', 'f = "linear"'))
    data = _json(capsys, "solve", str(spec), "--alpha", "0.1", "--x", "0.5,0.5")
    assert not schema.errors(data, "solve-2d")
    assert "none of the solutions SymPy found" in data["marginal_2"]["reason"] and data["couplings"][0]["marginal_q_2"] is None


def test_solve_text_says_which_variables_and_why_no_marginal(capsys):
    assert main(["solve", EMISSION, "--alpha", "0.118"]) == 0
    out = capsys.readouterr().out
    assert "variables (theta, z) as written" in out and "not available: the integral of p over z is not finite" in out
    assert "matched order: 1 of 1" in out


def test_expand_json(capsys):
    data = _json(capsys, "expand", PAIR, "--x", "0.1,0.05")
    assert not schema.errors(data, "expand-2d")
    p1 = 4 / (3 * np.pi) * (1 + (1 - 0.1**2 / 0.05) ** 2) / (0.1 * 0.05)
    assert data["coefficients"][0]["values"] == [0.0] and data["coefficients"][1]["values"][0] == pytest.approx(p1, rel=1e-13)


@pytest.mark.parametrize("args, message", [
    (["solve", PAIR, "--alpha", "0.1", "--x", "0.1,0.5"], "outside the open support box and the region l1**2 <= l2 <= l1"),
    (["solve", PAIR, "--alpha", "0.1", "--x", "0.1"], "takes l1,l2 pairs"),
    (["solve", str(EXAMPLES / "angularity_lo.toml"), "--alpha", "0.1", "--x", "0.1,0.2"], "single numbers for a target in one variable"),
    (["train", PAIR, "--out", "unused", "--alpha-floor", "0.001"], "alpha_floor: the perturbative window is not there in two variables yet"),
    (["magic-c", PAIR, "--q", "1"], "renorm magic-c takes a target in one variable"),
])
def test_what_is_not_supported_is_refused_in_one_line(capsys, tmp_path, args, message):
    args = [str(tmp_path / a) if a == "unused" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "unused").exists()


def test_codegen_writes_kernels_in_two_variables(capsys, tmp_path):
    out = tmp_path / "k.py"
    assert codegen_main([PAIR, "-o", str(out)]) == 0
    text = out.read_text()
    assert "def p(x1: Tensor, x2: Tensor, alpha: Tensor | float)" in text and "def inner_interval(x1: Tensor)" in text
    assert codegen_main([PAIR, "-o", str(out), "--check"]) == 0
