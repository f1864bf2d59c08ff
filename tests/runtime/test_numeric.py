r"""Training on a numeric target: the flow against the formula's exact minimizer."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from renorm.runtime import TrainConfig, certificate, train
from renorm.symbolic import load_spec, make_problem

from ..symbolic.test_data import ALPHAS, ANGULARITY_P1, GENERATOR, _spec, _write_events

FULL = os.environ.get("RENORM_FULL") == "1"


@pytest.fixture(scope="module")
def emissions():
    return GENERATOR.emissions(1_000_000, 12.0, seed=1)


@pytest.fixture(scope="module")
def formula():
    return make_problem(name="formula", density=f"alpha*{ANGULARITY_P1}", support=("0", "1/2"), constants={"CF": "4/3"})


@pytest.mark.slow
def test_a_flow_trained_on_events_is_close_to_the_formulas_minimizer(tmp_path, emissions, formula):
    r"""The acceptance: trained on the fit of 10^6 events, the flow is within TV 5e-3 of the
    formula's q* at three couplings (CI: 15 refinement steps; ``RENORM_FULL=1``: the defaults)."""
    x, w = emissions
    _write_events(tmp_path / "events.npz", x, w)
    problem = load_spec(_spec(tmp_path, 'events = "events.npz"'))
    config = TrainConfig() if FULL else TrainConfig(refine=15)
    run = train(problem, tmp_path / "run", config, progress=False)
    rows = certificate(formula, run.log_density, list(ALPHAS))
    assert max(r.total_variation for r in rows) <= 5e-3, [r.total_variation for r in rows]


def test_renorm_run_on_a_histogram_and_a_run_directory_that_needs_no_data_file(tmp_path, capsys):
    from renorm.runtime._cli import main

    from .. import schema
    from ..conftest import EXAMPLES

    run = tmp_path / "run"
    code = main(["run", str(EXAMPLES / "mc" / "angularity_histogram.toml"), "--out", str(run), "--epochs", "10", "--refine", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and not schema.errors(report, "run")
    stored = (run / "spec.toml").read_text()
    assert "density fitted from histogram" in stored and 'histogram = "' not in stored
    # the run directory alone, moved away from the data file, still verifies with the MC errors
    moved = tmp_path / "elsewhere"
    shutil.copytree(run, moved)
    assert main(["verify", str(moved), "--json"]) in (0, 1)
    verified = json.loads(capsys.readouterr().out)
    assert not schema.errors(verified, "verify")
    # the stored spec holds the fitted density only: the errors stay with the original spec
    assert all(row["lagrange_multiplier_error"] is None for row in verified["couplings"])
    assert main(["verify", str(moved), "--spec", str(EXAMPLES / "mc" / "angularity_histogram.toml"), "--json"]) in (0, 1)
    with_data = json.loads(capsys.readouterr().out)
    assert all(0 < row["lagrange_multiplier_error"] < 0.01 * row["lagrange_multiplier"] for row in with_data["couplings"])
