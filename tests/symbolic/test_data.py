r"""Numeric targets: Monte Carlo events and histograms against the formula path, error propagation, bad input."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from renorm.symbolic import ExactMinimizer, SpecError, load_spec, make_problem, matched_order, solve, to_toml
from renorm.symbolic import _data

from ..conftest import EXAMPLES

ALPHAS = (0.05, 0.118, 0.3)
CF = 4.0 / 3.0
ANGULARITY_P1 = "CF/pi/x*(2*log((1 - x)/x) + 3*x - 3/2)"


def _generator():
    spec = importlib.util.spec_from_file_location("angularity_events", EXAMPLES / "mc" / "angularity_events.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


@pytest.fixture(scope="module")
def emissions():
    return GENERATOR.emissions(1_000_000, 12.0, seed=1)


def _write_events(path, x, w, grouped=True):
    if grouped:
        events = {"x": np.column_stack([x, np.zeros_like(x)]).ravel(), "w1": np.column_stack([w, -w]).ravel(), "group": np.repeat(np.arange(x.size), 2)}
    else:
        events = {"x": x, "w1": w}
    if path.suffix == ".parquet":
        import pyarrow
        import pyarrow.parquet

        pyarrow.parquet.write_table(pyarrow.table(events), path, row_group_size=5000)
    elif path.suffix == ".csv":
        names = list(events)
        np.savetxt(path, np.column_stack([events[n] for n in names]), delimiter=",", header=",".join(names), comments="", fmt="%.17g")
    else:
        np.savez(path, **events)
    return path


def _write_histogram(path, edges, x, w, events):
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
    sums = np.bincount(index, weights=w, minlength=edges.size - 1)
    squares = np.bincount(index, weights=w**2, minlength=edges.size - 1)
    width = np.diff(edges)
    error = np.sqrt(squares - sums**2 / events) / width
    np.savetxt(path, np.column_stack([edges[:-1], edges[1:], sums / width, error]), delimiter=",", header="lo,hi,p1,p1_err", comments="", fmt="%.17g")
    return path


def _spec(tmp_path, target: str, name: str = "numeric", support=("0", "1/2"), singular="lower", order=1, f="log"):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[constants]\nCF = "4/3"\na = "CF/pi"\n[target]\nsupport = ["{support[0]}", "{support[1]}"]\n'
                    f'singular = "{singular}"\norder = {order}\n{target}\n[matching]\nf = "{f}"\nC = "1"\n[train]\nalpha_range = [0.05, 0.3]\n')
    return path


@pytest.fixture(scope="module")
def formula():
    return make_problem(name="formula", density=f"alpha*{ANGULARITY_P1}", support=("0", "1/2"), constants={"CF": "4/3"})


def _agrees_with_formula(problem, formula, relative=0.01, pulls=3.0):
    r"""λ within ``relative`` and within ``pulls`` of its stated error; q* within the band on the bulk."""
    exact = {s.alpha: s for s in solve(formula, ALPHAS)}
    for s in solve(problem, ALPHAS):
        reference = exact[s.alpha]
        error = s.lagrange_multiplier_error
        assert error is not None and 0 < error < 0.05 * s.lagrange_multiplier
        deviation = abs(s.lagrange_multiplier - reference.lagrange_multiplier)
        assert deviation <= relative * reference.lagrange_multiplier, (s.alpha, s.lagrange_multiplier, reference.lagrange_multiplier)
        assert deviation <= pulls * error, (s.alpha, deviation / error)
        x = np.geomspace(1e-3, 0.4, 25)
        band = s.q_error(x)
        assert np.all(np.abs(s.q(x) - reference.q(x)) <= pulls * band + 1e-9 * reference.q(x)), (s.alpha, (s.q(x) - reference.q(x)) / band)
    order = matched_order(problem)
    assert order.order == 1


def test_generator_reproduces_the_formula(emissions):
    # the example's events, binned, against the talk's formula integrated per bin by mpmath
    x, w = emissions
    edges = np.geomspace(math.exp(-12), 0.5, 31)
    index = np.searchsorted(edges, x, side="right") - 1
    sums = np.bincount(index, weights=w, minlength=30)
    errors = np.sqrt(np.bincount(index, weights=w**2, minlength=30) - sums**2 / 1e6)
    f = lambda t: CF / mp.pi / t * (2 * mp.log((1 - t) / t) + 3 * t - 1.5)
    pulls = np.array([float((sums[i] - mp.quad(f, [edges[i], edges[i + 1]])) / errors[i]) for i in range(30)])
    assert np.sqrt(np.mean(pulls**2)) < 1.5 and np.abs(pulls).max() < 4.5


def test_events_match_the_formula_path(tmp_path, emissions, formula):
    x, w = emissions
    _write_events(tmp_path / "events.npz", x, w)
    problem = load_spec(_spec(tmp_path, 'events = "events.npz"'))
    (source,) = problem.data
    assert source.kind == "events" and source.events == x.size and len(source.sha256) == 64
    (fit,) = source.fits
    assert fit.n == 1 and fit.logs == 1 and 0.6 < fit.chi2_per_ndf < 1.6
    _agrees_with_formula(problem, formula)


@pytest.mark.parametrize("bins", [20, 60])
def test_histograms_at_two_binnings_match_the_formula_path(tmp_path, emissions, formula, bins):
    x, w = emissions
    _write_histogram(tmp_path / "h.csv", np.geomspace(math.exp(-12), 0.5, bins + 1), x, w, 1_000_000)
    problem = load_spec(_spec(tmp_path, 'histogram = "h.csv"'))
    _agrees_with_formula(problem, formula)


def test_the_committed_example_histogram(formula):
    problem = load_spec(EXAMPLES / "mc" / "angularity_histogram.toml")
    _agrees_with_formula(problem, formula)


def test_csv_npz_parquet_events_and_chunked_reading_agree(tmp_path, emissions, monkeypatch):
    x, w = emissions[0][:40_000], emissions[1][:40_000] * 25
    whole = _data.read_events(_write_events(tmp_path / "e.npz", x, w), "x", (0.0, 0.5), "lower", 1)
    text = _data.read_events(_write_events(tmp_path / "e.csv", x, w), "x", (0.0, 0.5), "lower", 1)
    columnar = _data.read_events(_write_events(tmp_path / "e.parquet", x, w), "x", (0.0, 0.5), "lower", 1)
    monkeypatch.setattr(_data, "CHUNK", 999)  # groups straddle chunk boundaries
    chunked = _data.read_events(tmp_path / "e.npz", "x", (0.0, 0.5), "lower", 1)
    chunked_columnar = _data.read_events(tmp_path / "e.parquet", "x", (0.0, 0.5), "lower", 1)
    for other in (text, columnar, chunked, chunked_columnar):
        assert np.array_equal(other.lo, whole.lo) and np.array_equal(other.counts, whole.counts)
        assert np.allclose(other.values[1], whole.values[1], rtol=1e-12) and np.allclose(other.errors[1], whole.errors[1], rtol=1e-12)
    # counter-events cancel within their group: the totals are exact, the bins keep the real weights' spread
    assert whole.totals[1][1] == pytest.approx(0.0, abs=1e-12) and whole.endpoint[1][0] == pytest.approx(-w.sum(), rel=1e-12)
    ungrouped = _data.read_events(_write_events(tmp_path / "u.npz", x, w, grouped=False), "x", (0.0, 0.5), "lower", 1)
    assert np.allclose(ungrouped.values[1], whole.values[1], rtol=1e-12)
    # per bin, the same variable with and without its (endpoint) counter-event, up to the 1/N term
    assert np.allclose(ungrouped.errors[1], whole.errors[1], rtol=2e-2)


def test_error_propagation_matches_finite_differences(tmp_path, emissions):
    # an independent check of the linearization: move the fit coefficients along a direction,
    # rebuild the target as a formula, solve again
    x, w = emissions
    _write_histogram(tmp_path / "h.csv", np.geomspace(math.exp(-12), 0.5, 41), x, w, 1_000_000)
    problem = load_spec(_spec(tmp_path, 'histogram = "h.csv"'))
    (fit,) = problem.data[0].fits
    uncertainty = ExactMinimizer(problem).uncertainty
    rng = np.random.default_rng(5)
    alpha = 0.118
    solution = solve(problem, [alpha])[0]
    lam = solution.lagrange_multiplier
    gradient = uncertainty.gradient(alpha, lam)
    points = np.array([0.003, 0.05, 0.2])
    for _ in range(3):
        # a tenth of a standard deviation: at a whole one, λ's curvature alone moves the slope by 0.5%
        direction = 0.1 * rng.multivariate_normal(np.zeros(fit.coefficients.size), fit.covariance)
        moved = []
        for sign in (+1, -1):
            shifted = dataclasses.replace(fit, coefficients=fit.coefficients + sign * direction)
            other = make_problem(name="moved", density=problem.coupling * shifted.expression(problem.x), x=problem.x, support=("0", "1/2"))
            moved.append(solve(other, [alpha])[0])
        slope = (moved[0].lagrange_multiplier - moved[1].lagrange_multiplier) / 2
        assert slope == pytest.approx(gradient @ direction, rel=2e-3, abs=1e-4 * abs(slope))
        dq = (moved[0].q(points) - moved[1].q(points)) / 2
        dp, dl = uncertainty.derivatives(points, alpha, lam)
        linear = dp * alpha * (fit.columns(points) @ direction) + dl * (gradient @ direction)
        assert np.allclose(dq, linear, rtol=5e-3, atol=1e-6 * np.abs(solution.q(points)).max())


def test_mixed_formula_and_histogram_reproduce_the_nlo_formula(tmp_path):
    # soft_collinear_nlo: O(α) as a formula, O(α²) as a histogram of its exact bin averages with
    # 0.5% Gaussian errors (seeded), against the pure formula
    a = 4 / 3 / math.pi
    edges = np.geomspace(1e-6, 1.0, 41)
    p2 = lambda t: -2 * a**2 * mp.log(1 / t) ** 3 / t
    averages = np.array([float(mp.quad(p2, [edges[i], edges[i + 1]]) / (edges[i + 1] - edges[i])) for i in range(40)])
    errors = 0.005 * np.abs(averages)
    noisy = averages + errors * np.random.default_rng(2).standard_normal(40)
    np.savetxt(tmp_path / "p2.csv", np.column_stack([edges[:-1], edges[1:], noisy, errors]), delimiter=",", header="lo,hi,p2,p2_err", comments="", fmt="%.17g")
    mixed = load_spec(_spec(tmp_path, 'density = "2*alpha*a*log(1/x)/x"\nhistogram = "p2.csv"', support=("0", "1"), order=2))
    pure = load_spec(EXAMPLES / "soft_collinear_nlo.toml")
    assert mixed.data[0].fits[0].logs == 3
    for s, r in zip(solve(mixed, ALPHAS), solve(pure, ALPHAS)):
        assert abs(s.lagrange_multiplier - r.lagrange_multiplier) <= 3 * s.lagrange_multiplier_error + 1e-12, (s.alpha, s.lagrange_multiplier, r.lagrange_multiplier)
    assert matched_order(mixed).order == matched_order(pure).order


@pytest.mark.parametrize("case", ["upper", "shifted", "regular"])
def test_other_endpoints_and_a_regular_support(tmp_path, case):
    # the mirror image (singular upper), a singular lower end at a = 1, and a regular p^0 + α p^1 on
    # (0, 1): events drawn from the formula's own coefficients, each against its formula
    rng = np.random.default_rng(11)
    n = 400_000
    if case == "regular":
        support, singular, formula = ("0", "1"), "none", "1 + alpha*(x - 1/2)*3"
        x = rng.uniform(0.0, 1.0, n)
        events = {"x": x, "w0": np.full(n, 1.0 / n), "w1": 3 * (x - 0.5) / n}
    else:
        u = rng.uniform(-14.0, 0.0, n)  # log of the distance, uniform
        d = np.exp(u)
        w = 2 * CF / math.pi * np.log(1 / d) / d * d * 14.0 / n
        keep = d < 1.0
        d, w = d[keep], w[keep]
        if case == "upper":
            support, singular, formula, x = ("0", "1"), "upper", "2*alpha*CF/pi*log(1/(1 - x))/(1 - x)", 1.0 - d
        else:
            support, singular, formula, x = ("1", "2"), "lower", "2*alpha*CF/pi*log(1/(x - 1))/(x - 1)", 1.0 + d
        end = float(support[1] if case == "upper" else support[0])
        events = {"x": np.column_stack([x, np.full_like(x, end)]).ravel(), "w1": np.column_stack([w, -w]).ravel(), "group": np.repeat(np.arange(x.size), 2)}
    np.savez(tmp_path / "e.npz", **events)
    problem = load_spec(_spec(tmp_path, 'events = "e.npz"', support=support, singular=singular))
    reference = make_problem(name="reference", density=formula, support=support, singular=singular, constants={"CF": "4/3"})
    exact = solve(reference, ALPHAS)
    for s, r in zip(solve(problem, ALPHAS), exact):
        error = s.lagrange_multiplier_error
        deviation = abs(s.lagrange_multiplier - r.lagrange_multiplier)
        assert deviation <= 4 * error + 1e-10, (case, s.alpha, s.lagrange_multiplier, r.lagrange_multiplier, error)
        x = np.asarray(problem.interior_points(16))[4:-2]
        assert np.all(np.abs(s.q(x) - r.q(x)) <= 4 * s.q_error(x) + 1e-6 * np.abs(r.q(x))), case
    assert matched_order(problem).order == matched_order(reference).order


def test_the_run_spec_holds_the_fitted_density(tmp_path, emissions):
    x, w = emissions
    _write_histogram(tmp_path / "h.csv", np.geomspace(math.exp(-12), 0.5, 31), x, w, 1_000_000)
    problem = load_spec(_spec(tmp_path, 'histogram = "h.csv"'))
    text = to_toml(problem)
    assert "histogram" not in text.split("# density fitted from", 1)[1].split("\n", 1)[1]
    again = tmp_path / "again.toml"
    again.write_text(text)
    stored = load_spec(again)
    assert stored.sha256 == problem.sha256 and not stored.data
    # a changed data file changes the problem (a run's checkpoint is then refused for it)
    table = np.loadtxt(tmp_path / "h.csv", delimiter=",", skiprows=1)
    table[3, 2] *= 1.001
    np.savetxt(tmp_path / "h.csv", table, delimiter=",", header="lo,hi,p1,p1_err", comments="", fmt="%.17g")
    assert load_spec(_spec(tmp_path, 'histogram = "h.csv"')).sha256 != problem.sha256


def test_a_formula_order_given_twice_is_refused(tmp_path, emissions):
    x, w = emissions
    _write_histogram(tmp_path / "h.csv", np.geomspace(math.exp(-12), 0.5, 31), x, w, 1_000_000)
    with pytest.raises(SpecError, match="order 1 is given both by the density formula and by the histogram file"):
        load_spec(_spec(tmp_path, f'density = "alpha*{ANGULARITY_P1}"\nhistogram = "h.csv"'))


def test_the_fitted_expression_is_the_fit(tmp_path, emissions):
    x, w = emissions
    _write_histogram(tmp_path / "h.csv", np.geomspace(math.exp(-12), 0.5, 31), x, w, 1_000_000)
    problem = load_spec(_spec(tmp_path, 'histogram = "h.csv"'))
    (fit,) = problem.data[0].fits
    f = sp.lambdify(problem.x, problem.density.subs(problem.coupling, 1), "mpmath")
    points = np.geomspace(1e-30, 0.49, 40)
    assert np.allclose([float(f(mp.mpf(v))) for v in points], fit(points), rtol=1e-12)



def _yoda(kind: str, name: str, lo: np.ndarray, hi: np.ndarray, average: np.ndarray, error: np.ndarray) -> str:
    width = hi - lo
    sumw, sumw2 = (average * width).tolist(), ((error * width) ** 2).tolist()
    lo, hi, average, error = lo.tolist(), hi.tolist(), average.tolist(), error.tolist()
    if kind == "YODA_HISTO1D_V2":
        rows = "\n".join(f"{a!r}\t{b!r}\t{w!r}\t{w2!r}\t0\t0\t10" for a, b, w, w2 in zip(lo, hi, sumw, sumw2))
        body = (f"Path: {name}\nType: Histo1D\n---\n# ID\t ID\t sumw\t sumw2\t sumwx\t sumwx2\t numEntries\n"
                f"Total   \tTotal   \t{sum(sumw)!r}\t{sum(sumw2)!r}\t0\t0\t10\nUnderflow\tUnderflow\t0\t0\t0\t0\t0\n"
                f"Overflow\tOverflow\t0\t0\t0\t0\t0\n# xlow\t xhigh\t sumw\t sumw2\t sumwx\t sumwx2\t numEntries\n{rows}\n")
    elif kind == "YODA_HISTO1D_V3":
        edges = ", ".join(repr(float(v)) for v in [*lo, hi[-1]])
        rows = "\n".join(f"{w!r}\t{w2!r}\t0\t0\t10" for w, w2 in zip(sumw, sumw2))
        body = f"Path: {name}\nType: Histo1D\n---\nEdges(A1): [{edges}]\n# sumW\tsumW2\tsumW(A1)\tsumW2(A1)\tnumEntries\n0\t0\t0\t0\t0\n{rows}\n0\t0\t0\t0\t0\n"
    else:
        rows = "\n".join(f"{(a + b) / 2!r}\t{(b - a) / 2!r}\t{(b - a) / 2!r}\t{v!r}\t{e!r}\t{e!r}" for a, b, v, e in zip(lo, hi, average, error))
        body = f"Path: {name}\nType: Scatter2D\n---\n# xval\t xerr-\t xerr+\t yval\t yerr-\t yerr+\n{rows}\n"
    return f"BEGIN {kind} {name}\n{body}END {kind}\n"


@pytest.mark.parametrize("kind", ["YODA_HISTO1D_V2", "YODA_HISTO1D_V3", "YODA_SCATTER2D_V2"])
def test_yoda_histograms_read_as_the_csv(tmp_path, kind):
    csv = _data.read_histogram(EXAMPLES / "mc" / "angularity_histogram.csv", (0.0, 0.5))
    text = _yoda(kind, "/MC/angularity/p1", csv.lo, csv.hi, csv.values[1], csv.errors[1])
    (tmp_path / "h.yoda").write_text("# written by a test\n" + text)
    yoda = _data.read_histogram(tmp_path / "h.yoda", (0.0, 0.5))
    assert np.allclose(yoda.lo, csv.lo, rtol=1e-14) and np.allclose(yoda.hi, csv.hi, rtol=1e-14)
    assert np.allclose(yoda.values[1], csv.values[1], rtol=1e-12) and np.allclose(yoda.errors[1], csv.errors[1], rtol=1e-12)
    problem = load_spec(_spec(tmp_path, 'histogram = "h.yoda"'))
    reference = load_spec(EXAMPLES / "mc" / "angularity_histogram.toml")
    (s,), (r,) = solve(problem, [0.118]), solve(reference, [0.118])
    assert s.lagrange_multiplier == pytest.approx(r.lagrange_multiplier, rel=1e-9)


@pytest.mark.parametrize("text, message", [
    ("nothing here\n", "no YODA objects"),
    (_yoda("YODA_HISTO1D_V2", "/MC/angularity", np.array([0.1]), np.array([0.2]), np.array([1.0]), np.array([0.1])), "must end in /p<n>"),
    (_yoda("YODA_HISTO1D_V2", "/MC/p1", np.array([0.1]), np.array([0.2]), np.array([1.0]), np.array([0.1])) * 2, "two objects hold p1"),
    (_yoda("YODA_HISTO1D_V2", "/MC/p1", np.array([0.1]), np.array([0.2]), np.array([1.0]), np.array([0.1]))
     + _yoda("YODA_HISTO1D_V2", "/MC/p2", np.array([0.1]), np.array([0.3]), np.array([1.0]), np.array([0.1])), "bins differ"),
    ("BEGIN YODA_PROFILE1D_V2 /MC/p1\nPath: /MC/p1\n---\nEND YODA_PROFILE1D_V2\n", "is not read"),
    (_yoda("YODA_HISTO1D_V2", "/MC/p1", np.array([0.1]), np.array([0.2]), np.array([1.0]), np.array([0.0])), "errors must be positive"),
    (_yoda("YODA_HISTO1D_V2", "/MC/p1", np.array([0.1]), np.array([0.2]), np.array([1.0]), np.array([0.1])).replace("0.1\t0.2", "0.1\tabc"), "not a row of numbers"),
])
def test_bad_yoda_is_refused_in_one_line(tmp_path, text, message):
    (tmp_path / "h.yoda").write_text(text)
    with pytest.raises(SpecError, match=message) as error:
        _data.read_histogram(tmp_path / "h.yoda", (0.0, 0.5))
    assert "\n" not in str(error.value) and "h.yoda" in str(error.value)


def test_a_fit_that_would_need_a_high_degree_stays_exportable():
    # a wiggly regular p^1 with small errors asks for a high Chebyshev degree, and its powers of d
    # cancel: the fit stops where its expression still equals it to 1e-9 (measured: sin 6x to 1e-3
    # at degree 7 and sin 12x to 1e-4 at 13 survive; sin 20x to 1e-5 would need more than 9)
    edges = np.linspace(0.0, 1.0, 81)
    lo, hi = edges[:-1], edges[1:]
    from renorm.symbolic import fit_order

    def histogram(k: float, error: float):
        average = (np.cos(k * lo) - np.cos(k * hi)) / k / (hi - lo) - (1 - np.cos(k)) / k
        return _data.Histogram(lo, hi, {1: average}, {1: np.full(80, error)}, "wiggle", "")

    fit = fit_order(histogram(6.0, 1e-3), 1, (0.0, 1.0), "none")
    assert 6 <= fit.degree <= 12 and fit.chi2_per_ndf < 2
    x = sp.Symbol("x", positive=True)
    points = np.linspace(0.001, 0.999, 200)
    values = sp.lambdify(x, fit.expression(x))(points)
    assert np.max(np.abs(values - fit(points))) <= 1e-8 * np.max(np.abs(fit(points)))
    with pytest.raises(SpecError, match="higher degrees would not survive as a formula"):
        fit_order(histogram(20.0, 1e-5), 1, (0.0, 1.0), "none")


def test_a_regular_histogram_that_contradicts_normalization_is_refused():
    # on a regular support the fit is held to the integral of p^n = delta_n0, but only after the
    # bins agree with it: 3% too much probability in p^0, with 0.1% errors, is refused
    edges = np.linspace(0.0, 1.0, 41)
    histogram = _data.Histogram(edges[:-1], edges[1:], {0: np.full(40, 1.03)}, {0: np.full(40, 1e-3)}, "h.csv", "")
    from renorm.symbolic import fit_order

    with pytest.raises(SpecError, match=r"p0: the bins integrate to 1.03 .* but a normalized target needs 1"):
        fit_order(histogram, 0, (0.0, 1.0), "none")
    fine = _data.Histogram(edges[:-1], edges[1:], {0: np.full(40, 1.0005)}, {0: np.full(40, 1e-3)}, "h.csv", "")
    assert fit_order(fine, 0, (0.0, 1.0), "none").degree == 0


def test_bad_parquet_is_refused_in_one_line(tmp_path, monkeypatch):
    import pyarrow
    import pyarrow.parquet

    (tmp_path / "text.parquet").write_text("x,w1\n0.1,1\n")
    pyarrow.parquet.write_table(pyarrow.table({"x": ["a", "b"], "w1": [1.0, 2.0]}), tmp_path / "strings.parquet")
    pyarrow.parquet.write_table(pyarrow.table({"x": [0.1, None], "w1": [1.0, 2.0]}), tmp_path / "missing.parquet")
    for name, message in (("text", "not a readable Parquet file"), ("strings", "column 'x' holds string, not numbers"),
                          ("missing", "column 'x' has missing values")):
        with pytest.raises(SpecError, match=message) as error:
            _data.read_events(tmp_path / f"{name}.parquet", "x", (0.0, 0.5), "lower", 1)
        assert "\n" not in str(error.value)
    # without pyarrow the reader says what to install
    monkeypatch.setitem(__import__("sys").modules, "pyarrow.parquet", None)
    with pytest.raises(SpecError, match=r"needs pyarrow \(pip install 'renorm-flows\[parquet\]'\)"):
        _data.read_events(tmp_path / "strings.parquet", "x", (0.0, 0.5), "lower", 1)


def test_events_with_two_orders_reproduce_the_nlo_formula(tmp_path):
    # soft_collinear_nlo entirely from events: w1 and w2 per event (log x uniform on (-16, 0)),
    # each with its counter-event at x = 0; the fit of p^2 carries log^3 and the O(α²) matching holds
    a = 4 / 3 / math.pi
    n = 400_000
    u = np.random.default_rng(7).uniform(-16.0, 0.0, n)
    x = np.exp(u)
    L = -u
    w1, w2 = 2 * a * L * 16.0 / n, -2 * a**2 * L**3 * 16.0 / n  # p^n(x) x du / density
    events = {"x": np.column_stack([x, 0 * x]).ravel(), "w1": np.column_stack([w1, -w1]).ravel(),
              "w2": np.column_stack([w2, -w2]).ravel(), "group": np.repeat(np.arange(n), 2)}
    np.savez(tmp_path / "e.npz", **events)
    problem = load_spec(_spec(tmp_path, 'events = "e.npz"', support=("0", "1"), order=2))
    assert [f.logs for f in problem.data[0].fits] == [1, 3]
    pure = load_spec(EXAMPLES / "soft_collinear_nlo.toml")
    for s, r in zip(solve(problem, ALPHAS), solve(pure, ALPHAS)):
        assert abs(s.lagrange_multiplier - r.lagrange_multiplier) <= 3 * s.lagrange_multiplier_error, (s.alpha, s.lagrange_multiplier, r.lagrange_multiplier)
    assert matched_order(problem).order == matched_order(pure).order == 2


def test_an_oversized_histogram_is_refused_before_it_is_read(tmp_path, monkeypatch):
    (tmp_path / "h.csv").write_text("lo,hi,p1,p1_err\n" + "0.1,0.2,1,0.1\n" * 100)
    monkeypatch.setattr(_data, "HISTOGRAM_BYTES", 1000)
    with pytest.raises(SpecError, match="h.csv: a histogram file larger than") as error:
        _data.read_histogram(tmp_path / "h.csv", (0.0, 0.5))
    assert "\n" not in str(error.value)
