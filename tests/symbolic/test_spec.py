r"""Spec loading: every field validated, strings parsed in a closed namespace."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import sympy as sp

from renorm.symbolic import SpecError, load_spec, make_problem

from ..conftest import EXAMPLES, SPECS

GOOD = textwrap.dedent('''
    name = "t"
    [constants]
    CF = "4/3"
    [target]
    support = ["0", "1/2"]
    order = 1
    density = "alpha*CF/pi/x*(2*log((1 - x)/x) + 3*x - 3/2)"
    [matching]
    f = "log"
''')


def write(tmp_path, text: str):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_examples_load(spec):
    problem = load_spec(spec)
    assert problem.coupling in problem.density.free_symbols
    assert len(problem.sha256) == 64


def test_angularity_fields(angularity):
    x, a = angularity.x, angularity.coupling
    expected = a * sp.Rational(4, 3) / sp.pi / x * (2 * sp.log((1 - x) / x) + 3 * x - sp.Rational(3, 2))
    assert sp.simplify(angularity.density - expected) == 0
    assert angularity.support == (0, sp.Rational(1, 2))
    assert angularity.weight == sp.Rational(1, 2)
    assert angularity.f_kind == "log" and angularity.order == 1


def test_hash_ignores_comments_but_not_content(tmp_path):
    one = load_spec(write(tmp_path, GOOD)).sha256
    two = load_spec(write(tmp_path, "# a comment\n" + GOOD)).sha256
    three = load_spec(write(tmp_path, GOOD.replace("3*x", "4*x"))).sha256
    assert one == two != three


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('density = "alpha', 'density = "alpha*foo', "unknown name 'foo'"),
        ('2*log(', '2*mystery(', "unknown function 'mystery'"),
        ('*(2*log', '*(2*+*log', "cannot parse"),
        ('density = "alpha', 'density = "__import__(\'os\').system(\'echo hacked\')+alpha', "attribute access is not allowed"),
        ('density = "alpha', 'density = "__import__(\'os\')+alpha', "unknown function '__import__'"),
        ('density = "alpha', 'density = "x.__class__+alpha', "attribute access is not allowed"),
        ('density = "alpha', 'density = "(lambda: 1)()+alpha', "calling an expression is not allowed"),
        ('density = "alpha', 'density = "\'text\'+alpha', "only numbers"),
        ('["0", "1/2"]', '["1/2", "0"]', "reversed support"),
        ('["0", "1/2"]', '["1", "1"]', "empty or reversed support"),
        ('order = 1', 'order = -1', "target.order"),
        ('f = "log"', 'f = "sin(q)"', "not strictly monotone"),
        ('f = "log"', 'f = "q*x"', "unknown name 'x'"),
        ('f = "log"', 'f = "log"\nC = "1"\nweight = "1"', "either C or weight"),
        ('f = "log"', 'f = "log"\nweight = "-1"', "must be real, finite and >= 0"),
        ('order = 1', 'order = 1\ncolour = 3', "target.colour: unknown key"),
        ('density = "alpha*CF/pi/x*(2*log((1 - x)/x) + 3*x - 3/2)"', 'density = "CF/x"', "does not depend on the coupling"),
        ('singular', 'singular', ""),
    ],
)
def test_bad_specs_name_field_and_text(tmp_path, old, new, message):
    text = GOOD.replace(old, new) if old != "singular" else GOOD.replace('order = 1', 'order = 1\nsingular = "middle"')
    assert text != GOOD
    with pytest.raises(SpecError) as error:
        load_spec(write(tmp_path, text))
    line = str(error.value)
    assert "\n" not in line and str(tmp_path) in line
    assert (message or "target.singular") in line


def test_injection_never_runs(tmp_path):
    marker = tmp_path / "hacked"
    text = GOOD.replace('density = "alpha', f'density = "__import__(\'pathlib\').Path(\'{marker}\').touch() or alpha')
    with pytest.raises(SpecError):
        load_spec(write(tmp_path, text))
    assert not marker.exists()


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.toml")


def test_python_spec(tmp_path):
    path = tmp_path / "spec.py"
    path.write_text(textwrap.dedent('''
        import sympy as sp
        from renorm.symbolic import make_problem
        x, alpha = sp.symbols("x alpha")
        problem = make_problem(name="py", density=2*alpha*sp.log(1/x)/x, support=(0, 1), f="linear")
    '''))
    problem = load_spec(path)
    assert problem.f_kind == "linear" and problem.x.is_positive
    # the user's plain symbol was replaced by the problem's positive one
    assert problem.density.free_symbols == {problem.x, problem.coupling}


def test_python_spec_without_problem(tmp_path):
    path = tmp_path / "spec.py"
    path.write_text("value = 1\n")
    with pytest.raises(SpecError, match="must define `problem"):
        load_spec(path)


def test_caret_is_power_and_constants_chain():
    problem = make_problem(name="c", density="alpha*a^2/x", constants={"CF": "4/3", "a": "CF/pi"}, support=(0, 1))
    assert sp.simplify(problem.density - problem.coupling * sp.Rational(16, 9) / sp.pi**2 / problem.x) == 0


def test_infinite_support_and_singular_check():
    problem = make_problem(name="exp", density="exp(-x/alpha)/alpha", support=("0", "oo"), singular="none")
    assert problem.support[1] == sp.oo
    with pytest.raises(SpecError, match="endpoint is infinite"):
        make_problem(name="bad", density="exp(-x)*alpha", support=("0", "oo"), singular="upper")


@pytest.mark.parametrize("args, message", [
    (["solve", "missing.toml", "--alpha", "0.1"], "no such spec file"),
    (["solve", str(EXAMPLES / "angularity_lo.toml"), "--alpha", "-1"], "--alpha must be positive"),
    (["solve", str(EXAMPLES / "angularity_lo.toml"), "--alpha", "0.1", "--x", "2"], "outside the open support"),
    (["solve", str(EXAMPLES / "angularity_lo.toml")], "--alpha"),
    (["magic-c", str(EXAMPLES / "angularity_lo.toml"), "--q", "foo"], "unknown name 'foo'"),
])
def test_cli_errors_are_one_line(args, message):
    result = subprocess.run([sys.executable, "-m", "renorm.runtime._cli", *args], capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
