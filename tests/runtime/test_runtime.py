r"""The conditional flow, support maps, training, checkpoints and the run commands."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal

import numpy as np
import pytest
import torch

from renorm.runtime import TORCH, ConditionalFlow, TrainConfig, certificate, load_run, train, verify
from renorm.runtime._checkpoint import Interrupted
from renorm.runtime._cli import main
from renorm.runtime._flow import parameter_count
from renorm.runtime._maps import training_range
from renorm.runtime._train import Objective, _build_flow
from renorm.symbolic import MAPS, ExactMinimizer, RenormError

from .. import schema
from ..conftest import EXAMPLES

ANGULARITY = EXAMPLES / "angularity_lo.toml"
FULL = os.environ.get("RENORM_FULL") == "1"
SMALL = dict(epochs=4, refine=0, x_points=64, alpha_points=4, checkpoint_every=2, alpha_floor=0.0)  # the window has its own tests


@pytest.mark.parametrize("name", sorted(MAPS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_maps_torch_face_inverts_matches_autograd_and_the_numpy_face(name, dtype):
    support = {"log_lower": (0.0, math.inf), "log_upper": (-math.inf, 1.0)}.get(name, (0.0, 0.5))
    support_map = MAPS[name](*support)
    # in float32 b - (b - a) e^{-e^3} rounds onto b
    end = 3.0 if dtype == torch.float64 else 2.0
    y = torch.linspace(-end, end, 41, dtype=dtype, requires_grad=True)
    x = support_map.from_latent(y, TORCH)
    assert x.dtype == dtype
    tolerance = 1e-10 if dtype == torch.float64 else 2e-5
    assert torch.allclose(support_map.to_latent(x, TORCH), y, atol=tolerance)
    (slope,) = torch.autograd.grad(x.sum(), y)
    assert torch.allclose(support_map.log_jacobian(y, TORCH), torch.log(slope.abs()), atol=tolerance)
    assert torch.allclose(support_map.jacobian(y, TORCH), slope.abs(), rtol=tolerance)
    # one definition: the torch face computes what the NumPy face does, to rounding (which
    # exp(-e^y) amplifies by e^y = 20 at y = 3, and b - e^y turns absolute near y = log b)
    u = y.detach().double().numpy()
    for method in ("from_latent", "log_jacobian", "jacobian"):
        reference = getattr(support_map, method)(u)
        assert np.allclose(getattr(support_map, method)(y.detach(), TORCH).double().numpy(), reference, rtol=100 * torch.finfo(dtype).eps, atol=100 * torch.finfo(dtype).eps), method
    # the training range ends on the closed support in the training dtype (x may round onto an endpoint there)
    lo, hi = training_range(support_map, dtype)
    ends = support_map.from_latent(torch.tensor([lo, hi], dtype=dtype), TORCH)
    assert lo < hi and bool(((ends >= support_map.a) & (ends <= support_map.b)).all()), (lo, hi, ends)
    assert bool(torch.isfinite(support_map.log_jacobian(torch.tensor([lo, hi], dtype=dtype), TORCH)).all())


def test_a_map_that_does_not_cover_the_line_is_refused(tmp_path, capsys):
    # log_lower reaches b = 1/2 at y = log(1/2): the flow would put probability beyond the support
    assert main(["train", str(ANGULARITY), "--out", str(tmp_path / "run"), "--support-map", "log_lower", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "renorm: error: support map log_lower does not map the real line onto the support (0, 0.5): use auto or one that does"
    assert not (tmp_path / "run").exists()


def test_default_network_is_the_seeds(angularity):
    flow = _build_flow(angularity, TrainConfig())
    assert parameter_count(flow) == 8405


def density(flow: ConditionalFlow, alpha: float, log: bool = False):
    r"""q(x|α) (or log q) of a flow as a NumPy function of any-shaped x."""
    def fn(x):
        x = np.asarray(x, dtype=float)
        with torch.no_grad():
            value = flow.log_prob(torch.as_tensor(x.ravel()), torch.tensor([alpha], dtype=torch.float64))[:, 0].numpy()
        return (value if log else np.exp(value)).reshape(x.shape)
    return fn


@pytest.fixture(scope="module")
def flow(angularity):
    torch.manual_seed(3)
    return _build_flow(angularity, TrainConfig()).double()


def test_closed_form_bernstein_matches_zuko(flow):
    # random weights make every transform non-trivial; z spans the Bernstein window and beyond
    torch.manual_seed(5)
    moved = copy.deepcopy(flow)
    with torch.no_grad():
        for parameter in moved.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    z = torch.linspace(-7, 7, 281, dtype=torch.float64)[:, None]
    context = moved.context(torch.tensor([0.05, 0.11, 0.3], dtype=torch.float64))
    ours, reference = moved._log_prob(z, context), moved._log_prob_reference(z, context)
    assert torch.allclose(ours, reference, rtol=1e-13, atol=1e-12)
    grads = [torch.autograd.grad(value.sum(), list(moved.parameters())) for value in (ours, reference)]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)
    # paired points and contexts, as the Taylor-operator loss uses them
    paired = moved._log_prob(z[:3, 0], context)
    assert torch.allclose(paired, reference[:3].diagonal(), rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.05, 0.118, 0.3])
def test_flow_is_normalized(angularity, flow, alpha):
    minimizer = ExactMinimizer(angularity)
    assert minimizer.integral(density(flow, alpha)) == pytest.approx(1.0, abs=1e-6)


def test_samples_follow_the_density(angularity, flow):
    # Kolmogorov–Smirnov against the flow's own CDF from quadrature; 99.9% critical value
    samples = flow.sample(0.118, 4000, torch.Generator().manual_seed(0)).numpy()
    assert np.all((samples > 0) & (samples < 0.5))
    minimizer = ExactMinimizer(angularity)
    q = density(flow, 0.118)
    points = np.quantile(samples, np.linspace(0.05, 0.95, 10))
    cdf = np.array([minimizer.integral(lambda x, t=t: q(x) * (x < t)) for t in points])
    empirical = np.array([(samples < t).mean() for t in points])
    assert np.max(np.abs(cdf - empirical)) < 1.95 / math.sqrt(samples.size)


def test_functional_objective_is_finite_in_float32(angularity, flow):
    # in float32 x rounds onto x = 1/2, where the angularity's p vanishes, unless the kernel runs in float64
    config = TrainConfig(mode="functional", x_points=64, alpha_points=4)
    single = copy.deepcopy(flow).float()
    objective = Objective(angularity, single, config, torch.float32, torch.device("cpu"))
    y, weight, alpha, _ = objective.grid()
    with torch.no_grad():
        log_q = single.log_prob_latent(y, alpha)
        value = objective.functional(log_q, y, weight, alpha)
        reference = Objective(angularity, flow, config, torch.float64, torch.device("cpu")).functional(log_q.double(), y.double(), weight.double(), alpha.double())
    assert value.dtype == torch.float32 and torch.allclose(value.double(), reference, rtol=1e-6, atol=0)


def test_gradients_reach_every_parameter(angularity):
    config = TrainConfig(mode="functional", x_points=64, alpha_points=4)
    flow = _build_flow(angularity, config).double()
    Objective(angularity, flow, config, torch.float64, torch.device("cpu"))().backward()
    for name, parameter in flow.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name


def test_functional_objective_equals_reference_loss(angularity, flow):
    # the generated kernel integrated in the latent variable vs the NumPy functional in u = log x
    config = TrainConfig(mode="functional", x_points=512, alpha_points=1)
    objective = Objective(angularity, flow, config, torch.float64, torch.device("cpu"))
    y, weight, _, _ = objective.grid()
    alpha = torch.tensor([0.2], dtype=torch.float64)
    with torch.no_grad():
        value = float(objective.functional(flow.log_prob_latent(y, alpha), y, weight, alpha)[0])
    reference = ExactMinimizer(angularity).loss(0.2, log_q=density(flow, 0.2, log=True))
    assert value == pytest.approx(reference, rel=1e-6)


@pytest.mark.parametrize("sampling, refine, stop", [("quadrature", 0, 3), ("monte-carlo", 0, 3), ("quadrature", 3, 3), ("quadrature", 3, 6)])
def test_checkpoint_round_trip_and_resume(angularity, tmp_path, sampling, refine, stop):
    # stopped in the Adam phase or inside the L-BFGS refinement: resuming is bitwise the same
    config = TrainConfig(**{**SMALL, "refine": refine}, sampling=sampling)
    straight = train(angularity, tmp_path / "a", config, progress=False)
    assert straight.step == config.epochs + refine

    def interrupt(status):
        if status.step == stop:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: training stops after this step, with a checkpoint

    with pytest.raises(Interrupted):
        train(angularity, tmp_path / "b", config, progress=False, callback=interrupt)
    assert load_run(tmp_path / "b").step == stop
    resumed = train(angularity, tmp_path / "b", config, resume=True, progress=False)
    for p, q in zip(straight.flow.parameters(), resumed.flow.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    loaded = load_run(tmp_path / "a")
    x = np.array([1e-4, 0.01, 0.3])
    np.testing.assert_allclose(loaded.log_density(x, 0.1), straight.log_density(x, 0.1), rtol=1e-14)
    assert (tmp_path / "a" / "spec.toml").is_file() and not list((tmp_path / "a").glob(".tmp-*"))


def test_checkpoint_of_another_spec_is_refused(angularity, soft_collinear, tmp_path):
    train(angularity, tmp_path, TrainConfig(**{**SMALL, "epochs": 1}), progress=False)
    with pytest.raises(RenormError, match="belongs to another spec"):
        load_run(tmp_path, soft_collinear)


def test_nan_stops_training_and_keeps_last_checkpoint(angularity, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = Objective.__call__

    def poisoned(self):
        calls["n"] += 1
        value = original(self)
        return value * float("nan") if calls["n"] > 3 else value

    monkeypatch.setattr(Objective, "__call__", poisoned)
    with pytest.raises(RenormError, match=r"diverged at step 4.*step 2\) is kept"):
        train(angularity, tmp_path, TrainConfig(**SMALL), progress=False)
    assert load_run(tmp_path).step == 2
    # a fresh run over an earlier one's directory is refused, or replaces it with force
    with pytest.raises(RenormError, match=r"already holds a run: continue it with --resume, or replace it with --force"):
        train(angularity, tmp_path, TrainConfig(**SMALL), progress=False)
    assert load_run(tmp_path).step == 2
    with pytest.raises(RenormError, match=r"diverged at step 1: .*this run wrote no checkpoint"):
        train(angularity, tmp_path, TrainConfig(**SMALL), progress=False, force=True)


def test_taylor_loss_is_opt_in_and_needs_linear_context(angularity, tmp_path):
    with pytest.raises(RenormError, match="needs --context linear"):
        train(angularity, tmp_path, TrainConfig(**SMALL, taylor_weight=1.0), progress=False)
    run = train(angularity, tmp_path, TrainConfig(**SMALL, taylor_weight=1e-3, context="linear", mode="functional"), progress=False)
    assert all(math.isfinite(h["loss"]) for h in run.history)


def test_bad_config_is_one_clear_error(angularity, tmp_path):
    with pytest.raises(RenormError, match="optimizer must be adam or lbfgs"):
        train(angularity, tmp_path, TrainConfig(optimizer="sgd"), progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    r"""A short CLI training run shared by the command tests."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", str(ANGULARITY), "--out", str(out), "--epochs", "20", "--refine", "2", "--json"]) == 0
    return out


def test_cli_eval_sample_verify_plot(trained, capsys):
    capsys.readouterr()
    assert main(["eval", str(trained), "--alpha", "0.1", "--x", "0.01", "0.2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert not schema.errors(data, "eval") and len(data["q"]) == 2
    np.testing.assert_allclose(data["q"], np.exp(load_run(trained).log_density(np.array([0.01, 0.2]), 0.1)), rtol=1e-14)

    target = trained / "s.npy"
    assert main(["sample", str(trained), "--alpha", "0.1", "-n", "100", "--out", str(target)]) == 0
    samples = np.load(target)
    assert samples.shape == (100,) and np.all((samples > 0) & (samples < 0.5))
    assert "wrote 100 samples" in capsys.readouterr().out

    code = main(["verify", str(trained), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and (code == 0) == report["passed"]
    assert not schema.errors(report, "verify")

    assert main(["plot", str(trained)]) == 0
    for name in ("densities.png", "coefficients.png", "training.png"):
        assert (trained / name).stat().st_size > 1000


@pytest.mark.parametrize("name", sorted(path.stem for path in EXAMPLES.glob("*.toml")))
def test_every_example_runs_through_renorm_run(name, tmp_path, capsys):
    # a small budget: the pipeline end to end (codegen, solve, train, verify, plot), not its accuracy
    code = main(["run", str(EXAMPLES / f"{name}.toml"), "--out", str(tmp_path), "--epochs", "10", "--refine", "1",
                 "--x-points", "64", "--alpha-points", "4", "--window-points", "2"])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert (code == 0) == report["passed"] and code in (0, 1)
    assert "[5/5] plots" in out and "TV(q, q*)" in out
    assert not schema.errors(report, "verify")
    assert all(abs(row["normalization"] - 1) < 1e-3 for row in report["couplings"])
    for artifact in ("kernels.py", "checkpoint.pt", "densities.png", "coefficients.png", "training.png"):
        assert (tmp_path / artifact).stat().st_size > 0


@pytest.mark.parametrize("args, message", [
    (["eval", "no-such-dir", "--alpha", "0.1", "--x", "0.1"], "no such run directory"),
    (["sample", "no-such-dir", "--alpha", "0.1", "-n", "0"], "-n must be between 1 and"),
    (["train", str(ANGULARITY), "--out", "x", "--optimizer", "lbfgs", "--sampling", "monte-carlo"], "lbfgs needs"),
    (["train", str(ANGULARITY), "--out", "x", "--sampling", "monte-carlo"], "refinement needs deterministic quadrature"),
])
def test_cli_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_help_states_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split("options:")[1].split())
    defaults = TrainConfig()
    for option, value in (("epochs", defaults.epochs), ("refine", defaults.refine), ("seed", defaults.seed),
                          ("checkpoint-every", defaults.checkpoint_every), ("checkpoint-seconds", defaults.checkpoint_seconds),
                          ("threads", defaults.threads), ("lr", defaults.lr), ("taylor-weight", defaults.taylor_weight)):
        stated = re.search(rf"--{option} \S+ .*?\(default (?:at most )?([0-9.]+)", text)
        assert stated and float(stated.group(1)) == value, option
    for option, value in (("optimizer", defaults.optimizer), ("sampling", defaults.sampling), ("device", defaults.device), ("dtype", defaults.dtype)):
        assert re.search(rf"--{option} \S+ .*?default {value}\b", text), option
    from renorm.runtime._cli import _parser

    (commands,) = [a for a in _parser()._actions if a.dest == "command"]
    for name, command in commands.choices.items():
        # every option and positional argument of every command explains itself
        bare = [a.dest for a in command._actions if not a.help]
        assert not bare, (name, bare)


@pytest.mark.slow
def test_acceptance_on_the_angularity(angularity, tmp_path, request):
    r"""Issues 4, 5 and 18 at the defaults: TV ≤ 1.5e-3 and median relative error ≤ 0.3% at three
    couplings, and the verification across the bulk from the perturbative window passing.

    The window is the default since issue 18; its check passed on all five vector code paths of
    README "Reproducibility", where the old 2% check of q¹ over the physical range failed on two.
    The TV bound is the windowed runs' measured spread (README: one run of seven reached 1.2e-3).

    In CI this runs in a reduced form (15 refinement steps, 21 s on a slow machine; bound 5e-3);
    ``RENORM_FULL=1`` runs the defaults (149 s there, with the verification).
    """
    run = train(angularity, tmp_path, TrainConfig(), progress=False) if FULL else request.getfixturevalue("reduced_windowed_angularity")
    rows = certificate(angularity, run.log_density, [0.05, 0.118, 0.3])
    bound = 1.5e-3 if FULL else 5e-3
    assert run.couplings == pytest.approx((1e-3, 0.3))
    assert max(r.total_variation for r in rows) <= bound, [r.total_variation for r in rows]
    if FULL:
        assert max(r.median_relative_error for r in rows) <= 3e-3
        report = verify(angularity, run.log_density, couplings=run.couplings)
        assert report.passed, [c.detail for c in report.checks if not c.passed]


def test_refinement_stops_on_a_failed_step_and_keeps_the_best_flow(angularity, tmp_path, monkeypatch):
    config = TrainConfig(**{**SMALL, "refine": 3})
    calls = {"n": 0}
    original = Objective.__call__

    def poisoned(self):
        calls["n"] += 1
        value = original(self)
        return value * float("nan") if calls["n"] > config.epochs else value

    monkeypatch.setattr(Objective, "__call__", poisoned)
    run = train(angularity, tmp_path, config, progress=False)
    assert run.step == config.epochs
    assert all(torch.isfinite(p).all() for p in run.flow.parameters())
    assert np.isfinite(run.log_density(np.array([0.01, 0.2]), 0.1)).all()


def test_distillation_objective_vanishes_only_at_the_target(angularity, flow):
    # the generalized KL is zero node by node at q = q* and positive elsewhere, also on a grid
    objective = Objective(angularity, flow, TrainConfig(x_points=64, alpha_points=4), torch.float64, torch.device("cpu"))
    y, weight, alpha, _ = objective.grid()
    target = objective.target
    exact = objective._per_alpha(target, y, weight, alpha, target)
    assert torch.equal(exact, torch.zeros_like(exact))
    shifted = objective._per_alpha(target + 1e-3 * torch.sin(7 * y)[:, None], y, weight, alpha, target)
    assert (shifted > 0).all()
    assert objective.validation() > 0


def test_distillation_objective_resolves_small_deviations_in_float32(angularity, flow):
    # near the optimum the KL is O(q* d^2); float32 must still see it, not rounding noise
    single = copy.deepcopy(flow).float()  # Module.float() converts in place: keep the shared fixture float64
    objective = Objective(angularity, single, TrainConfig(x_points=64, alpha_points=4, alpha_floor=0.0), torch.float32, torch.device("cpu"))
    y, weight, alpha, _ = objective.grid()
    target = objective.target
    d = 1e-3 * torch.sin(7 * y)[:, None]
    value = objective._per_alpha(target + d, y, weight, alpha, target).double()
    # the plain form q* log(q*/q) - q* + q, which float64 resolves
    log_q, target64 = (target + d).double(), target.double()
    present = torch.isfinite(target64)
    safe = torch.where(present, target64, 0.0)
    plain = torch.where(present, torch.exp(safe) * (safe - log_q - 1.0) + torch.exp(log_q), 0.0)
    reference = (weight.double()[:, None] * plain).sum(0)
    assert torch.allclose(value, reference, rtol=1e-3, atol=0)


def test_training_does_not_depend_on_the_machines_thread_count(angularity, tmp_path):
    # training runs at TrainConfig.threads whatever the process had: the same weights bit for bit
    previous = torch.get_num_threads()
    weights = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            run = train(angularity, tmp_path / str(count), TrainConfig(**{**SMALL, "refine": 2}), progress=False)
            assert torch.get_num_threads() == count  # restored afterwards
            weights.append(run.flow.state_dict())
    finally:
        torch.set_num_threads(previous)
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_spec_train_table_holds_every_training_setting(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(ANGULARITY.read_text().replace("[train]", "[train]\nepochs = 3\nrefine = 0\nlr = 0.02\nseed = 4\nhidden = [16, 16]"))
    assert main(["train", str(spec), "--out", str(tmp_path / "a"), "--seed", "5"]) == 0  # a flag overrides the table
    run = load_run(tmp_path / "a")
    assert (run.step, run.config.lr, run.config.seed, run.config.hidden) == (3, 0.02, 5, (16, 16))
    spec.write_text(ANGULARITY.read_text().replace("[train]", "[train]\ncolour = 3"))
    assert main(["train", str(spec), "--out", str(tmp_path / "b")]) == 2
    assert "spec.toml: train: unknown setting 'colour'" in capsys.readouterr().err
