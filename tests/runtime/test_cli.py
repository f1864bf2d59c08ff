r"""``renorm expand / solve / magic-c``: the JSON fields of DESIGN §6 and their numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from renorm.runtime._cli import main
from renorm.symbolic import ExactMinimizer, make_problem, solve

from .. import schema
from ..conftest import EXAMPLES

ANGULARITY = str(EXAMPLES / "angularity_lo.toml")


def run_json(capsys, *args):
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_solve_json(capsys, angularity):
    data = run_json(capsys, "solve", ANGULARITY, "--alpha", "0.05", "0.3", "--x", "0.01", "0.2")
    assert not schema.errors(data, "solve")
    assert data["matched_order"]["order"] == 1 and data["matched_order"]["of"] == 1 and data["x"] == [0.01, 0.2]
    rows = data["couplings"]
    reference = solve(angularity, [0.05, 0.3])
    for row, ref in zip(rows, reference):
        assert row["lagrange_multiplier"] == pytest.approx(ref.lagrange_multiplier, rel=1e-12)
        assert row["normalization"] == pytest.approx(1, abs=1e-12) and row["error"] is None
        np.testing.assert_allclose(row["q"], ref.q(np.array([0.01, 0.2])), rtol=1e-14)
        np.testing.assert_allclose(row["p"], ExactMinimizer(angularity).p(np.array([0.01, 0.2]), ref.alpha), rtol=1e-14)


def test_expand_json(capsys):
    data = run_json(capsys, "expand", ANGULARITY, "--x", "0.1")
    assert data["order"] == 1
    assert not schema.errors(data, "expand") and len(data["coefficients"]) == 2
    zero, one = data["coefficients"]
    assert zero["delta"] == "1" and zero["regular"] == "0"
    # (4/3)/π/x (2 log((1-x)/x) + 3x - 3/2) at x = 0.1
    expected = 4 / 3 / np.pi / 0.1 * (2 * np.log(9) + 0.3 - 1.5)
    assert one["values"][0] == pytest.approx(expected, rel=1e-14) and one["delta"] == "0" and one["plus"] == one["regular"]


def test_magic_json(capsys):
    q = "2*alpha*CF/pi*log(1/x)/x*exp(-alpha*CF/pi*log(1/x)**2)"
    data = run_json(capsys, "magic-c", str(EXAMPLES / "soft_collinear.toml"), "--q", q, "--alpha", "0.2")
    assert not schema.errors(data, "magic-c")
    (check,) = data["couplings"]
    assert check["loss"] == pytest.approx(0.5, rel=1e-10) and check["kl_divergence"] == pytest.approx(-1, rel=1e-10)


def test_text_output_states_matched_order(capsys):
    assert main(["solve", ANGULARITY, "--alpha", "0.118"]) == 0
    assert "matched order: 1 of 1" in capsys.readouterr().out


def test_not_normalizable_is_one_line(capsys):
    assert main(["solve", str(EXAMPLES / "refused" / "angularity_lo_linear.toml"), "--alpha", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no normalized minimizer" in err[0] and "matched order 0" in err[0]


def test_no_matched_order_is_said_not_numbered(tmp_path, capsys):
    # p < 0 everywhere with f = linear: q* tends to a constant in the bulk, not to p^0 = δ(x)
    spec = tmp_path / "negative.toml"
    spec.write_text('name = "negative"\n[target]\nsupport = ["0", "1"]\ndensity = "-alpha/x*log(1/x)"\n[matching]\nf = "linear"\n')
    data = run_json(capsys, "solve", str(spec), "--alpha", "0.1")
    assert data["matched_order"]["order"] is None and data["matched_order"]["text"].startswith("none: ")
    assert main(["solve", str(spec), "--alpha", "0.1"]) == 0
    assert "matched order: none: q* - p^N does not vanish as alpha -> 0" in capsys.readouterr().out


def test_version_and_a_target_that_starts_with_a_minus(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("renorm-flows ")
    q = "-2*alpha*CF/pi*log(x)/x*exp(-alpha*CF/pi*log(1/x)**2)"  # the LL distribution, written with -log x
    data = run_json(capsys, "magic-c", str(EXAMPLES / "soft_collinear.toml"), "--q", q, "--alpha", "0.2")
    assert data["couplings"][0]["kl_divergence"] == pytest.approx(-1, rel=1e-10)


def test_solve_keeps_the_couplings_where_a_minimizer_exists(tmp_path, capsys):
    # the soft-collinear p with the weight cut below x = 0.01: ∫_{0.01}^1 p = 2αC_F/π log²(100)/2,
    # 0.45 at α = 0.05 (< 1: no unique minimizer), above 1 at 0.118 and 0.3
    spec = tmp_path / "cut.toml"
    spec.write_text('name = "cut"\n[target]\nsupport = ["0", "1"]\ndensity = "2*alpha*4/(3*pi)*log(1/x)/x"\n'
                    '[matching]\nweight = "Heaviside(x - 1/100)/2"\n')
    assert main(["solve", str(spec), "--alpha", "0.3", "0.05", "0.118", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert not schema.errors(data, "solve")
    rows = data["couplings"]
    assert [r["alpha"] for r in rows] == [0.05, 0.118, 0.3]
    assert rows[0]["lagrange_multiplier"] is None and "integrates to 0.45 < 1" in rows[0]["error"]
    assert 4 * 0.05 / (3 * np.pi) * np.log(100) ** 2 == pytest.approx(0.45, abs=5e-3)
    for row, ref in zip(rows[1:], solve(make_problem(name="cut", density="2*alpha*4/(3*pi)*log(1/x)/x", support=("0", "1"),
                                                     weight="Heaviside(x - 1/100)/2"), [0.118, 0.3])):
        assert row["lagrange_multiplier"] == pytest.approx(ref.lagrange_multiplier, rel=1e-12) and row["normalization"] == pytest.approx(1, abs=1e-12)
    assert main(["solve", str(spec), "--alpha", "0.05", "0.3"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[0] == "0.05" and "no unique minimizer" in out[2] and out[3].split()[0] == "0.3"
    assert main(["solve", str(spec), "--alpha", "0.05"]) == 2
    assert "no unique minimizer" in capsys.readouterr().err
