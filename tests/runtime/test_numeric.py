r"""Training on a numeric target: the flow against the formula's exact minimizer."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from renorm.runtime import TrainConfig, certificate, train
from renorm.runtime._train import Objective, _EventLoss
from renorm.symbolic import RenormError, load_spec, make_problem

from ..symbolic.test_data import ALPHAS, ANGULARITY_P1, GENERATOR, _spec, _write_events, _write_histogram

FULL = os.environ.get("RENORM_FULL") == "1"


@pytest.fixture(scope="module")
def emissions():
    return GENERATOR.emissions(1_000_000, 12.0, seed=1)


@pytest.fixture(scope="module")
def formula():
    return make_problem(name="formula", density=f"alpha*{ANGULARITY_P1}", support=("0", "1/2"), constants={"CF": "4/3"})


@pytest.mark.slow
@pytest.mark.parametrize("source", ["events", "histogram-20", "histogram-60"])
def test_a_flow_trained_on_events_is_close_to_the_formulas_minimizer(tmp_path, emissions, formula, source):
    r"""The acceptance: trained on the fit of 10^6 events, or of histograms of them at two binnings,
    the flow is within TV 5e-3 of the formula's q* at three couplings (CI: 15 refinement steps;
    ``RENORM_FULL=1``: the defaults)."""
    x, w = emissions
    if source == "events":
        _write_events(tmp_path / "events.npz", x, w)
        problem = load_spec(_spec(tmp_path, 'events = "events.npz"'))
    else:
        bins = int(source.split("-")[1])
        _write_histogram(tmp_path / "h.csv", np.geomspace(np.exp(-12), 0.5, bins + 1), x, w, 1_000_000)
        problem = load_spec(_spec(tmp_path, 'histogram = "h.csv"'))
    config = TrainConfig() if FULL else TrainConfig(refine=15, alpha_floor=0.0)  # the reduced form: the window has its own tests
    run = train(problem, tmp_path / "run", config, progress=False)
    rows = certificate(formula, run.log_density, list(ALPHAS))
    assert max(r.total_variation for r in rows) <= 5e-3, [r.total_variation for r in rows]
    # against its own (fitted) q*, in units of q*'s Monte Carlo error: measured at most 0.9 at the
    # defaults and 1.6 in the reduced form
    own = certificate(problem, run.log_density, list(ALPHAS))
    bound = 1.2 if FULL else 2.5
    assert all(r.median_mc_pull is not None and r.median_mc_pull < bound for r in own), [r.median_mc_pull for r in own]
    assert all(r.median_mc_pull is None for r in rows)


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
    # the order fitted from the data states its own error where it was compared; the formula's do not
    assert all(order["mc_error"] is None for order in verified["orders"])
    (p1,) = [order for order in with_data["orders"] if order["n"] == 1]
    assert p1["extractable"] and 0 < p1["mc_error"] < 0.2
    # eval gives the flow with the Monte Carlo band it inherits from q* (and none without the data)
    assert main(["eval", str(moved), "--alpha", "0.118", "--x", "0.01", "0.1", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert not schema.errors(plain, "eval") and plain["q_error"] is None
    assert main(["eval", str(moved), "--spec", str(EXAMPLES / "mc" / "angularity_histogram.toml"), "--alpha", "0.118", "--x", "0.01", "0.1", "--json"]) == 0
    banded = json.loads(capsys.readouterr().out)
    assert not schema.errors(banded, "eval") and banded["q"] == plain["q"]
    from renorm.symbolic import load_spec as load, solve as exact

    (star,) = exact(load(EXAMPLES / "mc" / "angularity_histogram.toml"), [0.118])
    assert np.allclose(banded["q_error"], star.q_error(np.array([0.01, 0.1])), rtol=1e-12)


def _linear_regular(tmp_path, data: bool):
    # p = 1 + 3α(x - 1/2) on (0, 1): normalized and positive, so for f = linear q* = p (λ = 0)
    target = 'events = "e.npz"' if data else 'density = "1 + 3*alpha*(x - 1/2)"'
    path = tmp_path / f"linear_{data}.toml"
    path.write_text(f'name = "linear"\n[target]\nsupport = ["0", "1"]\nsingular = "none"\norder = 1\n{target}\n[matching]\nf = "linear"\n')
    return load_spec(path)


def test_f_linear_trained_straight_from_events_matches_the_formula_path(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    n = 200_000
    x = rng.uniform(0.0, 1.0, n)
    np.savez(tmp_path / "e.npz", x=x, w0=np.full(n, 1.0 / n), w1=3 * (x - 0.5) / n)
    events, formula = _linear_regular(tmp_path, True), _linear_regular(tmp_path, False)
    small = dict(epochs=80, refine=0, x_points=64, alpha_points=4, checkpoint_every=100)
    from_events = train(events, tmp_path / "events", TrainConfig(mode="events", **small), progress=False)
    from_formula = train(formula, tmp_path / "formula", TrainConfig(mode="functional", **small), progress=False)
    distance = [max(r.total_variation for r in certificate(formula, run.log_density, list(ALPHAS))) for run in (from_events, from_formula)]
    # the same small budget on both paths: measured 2.6e-2 and 2.2e-2 (TV of p's own α-dependence: 0.1)
    assert distance[0] <= 4e-2 and distance[1] <= 4e-2 and abs(distance[0] - distance[1]) <= 2e-2, distance

    # the estimator itself, on one flow: the events' objective is the functional less the constant
    # ∫ w p² = (1 + 3α²/4)/2, which events cannot give; with all 160000 training events its Monte
    # Carlo error is about 1e-3
    monkeypatch.setattr(_EventLoss, "SAMPLE", 1 << 18)
    config = TrainConfig(mode="events", **small)
    flow = from_formula.flow.double()
    with torch.no_grad():
        on_events = Objective(events, flow, config, torch.float64, torch.device("cpu"))
        on_formula = Objective(formula, flow, TrainConfig(mode="functional", **{**small, "x_points": 1024}), torch.float64, torch.device("cpu"))
        constant = float((on_events.alpha_weight * 0.5 * (1 + 0.75 * on_events.alpha**2)).sum())
        assert float(on_events()) + constant == pytest.approx(float(on_formula()), abs=4e-3)


@pytest.mark.parametrize("density, f, singular, message", [
    ('events = "e.npz"', "log", "none", "mode events trains f = linear on a target given as events"),
    ('density = "1 + 3*alpha*(x - 1/2)"', "linear", "none", "has f = linear and no events"),
    ('events = "e.npz"', "linear", "upper", "mode events at a singular endpoint other than 0 is not supported yet"),
])
def test_mode_events_needs_f_linear_events_and_an_endpoint_at_zero(tmp_path, density, f, singular, message):
    n = 4000
    x = np.random.default_rng(4).uniform(0.0, 1.0, n)
    np.savez(tmp_path / "e.npz", x=x, w0=np.full(n, 1.0 / n), w1=3 * (x - 0.5) / n)
    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\n[target]\nsupport = ["0", "1"]\nsingular = "{singular}"\n{density}\n[matching]\nf = "{f}"\n')
    with pytest.raises(RenormError, match=message):
        train(load_spec(path), tmp_path / "run", TrainConfig(mode="events", epochs=1, refine=0, x_points=64, alpha_points=2), progress=False)
    assert not (tmp_path / "run").exists()
