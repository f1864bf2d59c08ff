r"""Hostile input: nothing from a spec, a file name or a run directory executes, hangs or crashes.

Every case runs the real command line in a fresh process, all of them concurrently (one per core),
each under a harness timeout: a case that hangs is killed and fails. The processes are forked from
a server that has imported SymPy once (see ``_forked``): 89 interpreters importing it took about
a minute of the suite. Each asserts its exit code,
exactly one line on stderr naming the problem, that no marker file was created by any payload,
and that nothing was written where the command was refused.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from . import _forked

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
#: What a payload would create: its presence anywhere in the case folder means code ran.
MARKER = "PWNED"
#: The harness's bound on one case, far above what any refusal takes (about 1-3 s each).
TIMEOUT = 120
TOUCH = f"import os; os.system('touch {MARKER}')"


def spec(density: str = "alpha*CF/pi/x*(2*log((1 - x)/x) + 3*x - 3/2)", *, name: str = '"h"', target: str = "", matching: str = "",
         constants: str = 'CF = "4/3"') -> str:
    r"""A TOML spec around the given fields (the angularity by default)."""
    return textwrap.dedent(f'''\
        name = {name}
        [constants]
        {constants}
        [target]
        support = ["0", "1/2"]
        {target}
        density = "{density}"
        [matching]
        f = "log"
        {matching}
        ''')


@dataclass
class Case:
    r"""One hostile input: the files to lay out, the command, and what it must answer."""

    files: dict[str, str | bytes]
    argv: list[str]
    message: str
    code: int = 2
    #: Paths (relative to the case folder) that must not exist afterwards.
    absent: tuple[str, ...] = ()
    #: A Python snippet run afterwards in the case folder (e.g. importing a generated file).
    after: str | None = None
    env: dict[str, str] = field(default_factory=dict)


NAME_PAYLOAD = "'a\"\"\"; " + TOUCH.replace("'", '\\"') + "; r\"\"\"'"
FILE_PAYLOAD = f"evil\n{TOUCH}\n#.toml"
SPEC_PY = f"{TOUCH}\nfrom renorm.symbolic import make_problem\nproblem = make_problem(name='p', density='alpha/x')\n"

CASES: dict[str, Case] = {
    # code execution through names written into generated source
    "name-codegen": Case({"s.toml": spec(name=NAME_PAYLOAD)}, ["renorm-codegen", "s.toml", "-o", "out.py"], "is not a usable name", absent=("out.py",)),
    "name-train": Case({"s.toml": spec(name=NAME_PAYLOAD)}, ["renorm", "train", "s.toml", "--out", "run"], "is not a usable name", absent=("run",)),
    "name-run": Case({"s.toml": spec(name=NAME_PAYLOAD)}, ["renorm", "run", "s.toml", "--out", "run"], "is not a usable name", absent=("run",)),
    "name-newline": Case({"s.toml": spec(name='"a\\n" \n')}, ["renorm", "train", "s.toml", "--out", "run"], "is not a usable name", absent=("run",)),
    "name-not-a-string": Case({"s.toml": spec(name="5")}, ["renorm", "expand", "s.toml"], "is not a usable name"),
    # a file name that would break out of the header comment: generated, escaped, imported safely
    "file-name": Case({FILE_PAYLOAD: spec()}, ["renorm-codegen", FILE_PAYLOAD, "-o", "out.py"], "", code=0,
                      after="import runpy, sys; sys.path.insert(0, '.'); runpy.run_path('out.py'); "
                            "lines = open('out.py').read().splitlines(); assert lines[0].startswith('# Generated') and lines[1].startswith('# Do not edit')"),
    # run directories are data
    "run-dir-spec-py": Case({"run/spec.py": SPEC_PY, "run/checkpoint.pt": b"\0"}, ["renorm", "verify", "run"], "no spec.toml in the run directory"),
    "run-dir-spec-py-eval": Case({"run/spec.py": SPEC_PY}, ["renorm", "eval", "run", "--alpha", "0.1", "--x", "0.1"], "pass the spec with --spec"),
    "run-dir-spec-py-plot": Case({"run/spec.py": SPEC_PY}, ["renorm", "plot", "run"], "no spec.toml"),
    "run-dir-spec-py-sample": Case({"run/spec.py": SPEC_PY}, ["renorm", "sample", "run", "--alpha", "0.1", "-n", "3"], "no spec.toml"),
    "run-dir-toml-payload": Case({"run/spec.toml": spec(name=NAME_PAYLOAD)}, ["renorm", "verify", "run"], "is not a usable name"),
    "run-dir-spec-is-code": Case({"run/spec.toml": SPEC_PY}, ["renorm", "verify", "run"], "not valid TOML"),
    "run-dir-spec-symlink-loop": Case({"run/.keep": ""}, ["renorm", "verify", "run"], "no spec.toml"),
    # inputs that used to hang
    "power-tower": Case({"s.toml": spec("alpha/x*10**10**10")}, ["renorm", "expand", "s.toml"], "exceeds the limit 1000"),
    "gamma-huge": Case({"s.toml": spec("alpha/x*gamma(10**8)")}, ["renorm", "expand", "s.toml"], "argument limit"),
    "zeta-huge": Case({"s.toml": spec("alpha/x*zeta(10**6)")}, ["renorm", "expand", "s.toml"], "argument limit"),
    "order-huge": Case({"s.toml": spec(target="order = 1000000")}, ["renorm", "expand", "s.toml"], "target.order: 1000000 exceeds the limit"),
    "spec-50MB": Case({"s.toml": spec("alpha/x" + "+0" * 25_000_000)}, ["renorm", "expand", "s.toml"], "larger than the limit"),
    "expression-long": Case({"s.toml": spec("alpha/x" + "+0" * 20_000)}, ["renorm", "expand", "s.toml"], "characters long, more than the limit"),
    "magic-c-power-tower": Case({"s.toml": spec()}, ["renorm", "magic-c", "s.toml", "--q", "x*10**10**10"], "exceeds the limit 1000"),
    "magic-c-import": Case({"s.toml": spec()}, ["renorm", "magic-c", "s.toml", "--q", "__import__('os').system('touch PWNED')"], "not allowed"),
    "pole-inside-solve": Case({"s.toml": spec("alpha/(x-1/4)")}, ["renorm", "solve", "s.toml", "--alpha", "0.1"], "non-integrable singularity at x = 0.25"),
    "pole-inside-expand": Case({"s.toml": spec("alpha/(x-1/4)**2")}, ["renorm", "expand", "s.toml"], "s.toml: target.density: the coefficient p^1"),
    "double-pole-inside": Case({"s.toml": spec("alpha/(x**2 - x/2 + 1/16)")}, ["renorm", "solve", "s.toml", "--alpha", "0.1"], "non-integrable singularity at x = 0.25"),
    "pole-at-regular-end": Case({"s.toml": spec("alpha/(1/2 - x)")}, ["renorm", "solve", "s.toml", "--alpha", "0.1"], "not integrable at the upper endpoint"),
    # inputs that used to end in a traceback
    "C-zero": Case({"s.toml": spec(matching='C = "0"')}, ["renorm", "solve", "s.toml", "--alpha", "0.1"], "vanishes identically"),
    "weight-division-by-zero": Case({"s.toml": spec(matching='weight = "1/(x-x)"')}, ["renorm", "solve", "s.toml", "--alpha", "0.1"], "undefined or infinite"),
    "exponent-huge": Case({"s.toml": spec("alpha*x**(10**9)")}, ["renorm", "expand", "s.toml"], "exceeds the limit 1000"),
    "polylog-3": Case({"s.toml": spec("alpha/x*log(1/x)*(1+polylog(3, x))")}, ["renorm", "expand", "s.toml"], "implemented for s = 1 and 2 only"),
    "zeta-of-x": Case({"s.toml": spec("alpha/x*zeta(x)")}, ["renorm", "expand", "s.toml"], "zeta takes a number"),
    "lambertw-branch": Case({"s.toml": spec("alpha/x*LambertW(-x/4, -1)")}, ["renorm", "expand", "s.toml"], "principal branch"),
    "sum-10k-terms": Case({"s.toml": spec("+".join(["alpha/x"] * 10_000))}, ["renorm", "expand", "s.toml"], "more than the limit"),
    "sum-2k-terms": Case({"s.toml": spec("+".join(["alpha*x"] * 2_100))}, ["renorm", "expand", "s.toml"], "more than 2000 terms"),
    "unary-minus-100k": Case({"s.toml": spec("alpha*" + "-" * 100_000 + "x")}, ["renorm", "expand", "s.toml"], "more than the limit"),
    "unary-minus-19k": Case({"s.toml": spec("alpha*" + "-" * 19_000 + "x")}, ["renorm", "expand", "s.toml"], "nested too deeply"),
    "power-chain-100k": Case({"s.toml": spec("alpha*" + "x**" * 100_000 + "x")}, ["renorm", "expand", "s.toml"], "more than the limit"),
    "power-chain-5k": Case({"s.toml": spec("alpha*" + "x**" * 5_000 + "x")}, ["renorm", "expand", "s.toml"], "nested too deeply"),
    "parentheses-9k": Case({"s.toml": spec("alpha*" + "(" * 9_000 + "x" + ")" * 9_000)}, ["renorm", "expand", "s.toml"], "cannot parse"),
    "nested-calls": Case({"s.toml": spec("alpha/x*" + "exp(" * 45 + "x" + ")" * 45)}, ["renorm", "expand", "s.toml"], "nested more than 40 levels"),
    "support-nested-100k": Case({"s.toml": spec().replace('support = ["0", "1/2"]', "support = " + "[" * 100_000 + "]" * 100_000)},
                                ["renorm", "expand", "s.toml"], "nested too deeply"),
    "integer-literal-huge": Case({"s.toml": spec("alpha/x*" + "9" * 5000)}, ["renorm", "expand", "s.toml"], "cannot parse"),
    "float-overflow": Case({"s.toml": spec("alpha/x*1e400")}, ["renorm", "expand", "s.toml"], "undefined or infinite"),
    "constant-beyond-float": Case({"s.toml": spec("alpha/x*exp(1000)")}, ["renorm", "expand", "s.toml"], "beyond the floating-point range"),
    "x-nan": Case({"s.toml": spec()}, ["renorm", "solve", "s.toml", "--alpha", "0.1", "--x", "nan"], "--x must be finite"),
    "x-inf": Case({"s.toml": spec()}, ["renorm", "expand", "s.toml", "--x", "inf"], "--x must be finite"),
    "constants-not-a-table": Case({"s.toml": spec().replace('[constants]\nCF = "4/3"\n', 'constants = 3\n').replace("CF", "4/3")},
                                  ["renorm", "expand", "s.toml"], "constants: expected a table"),
    "constant-name-dunder": Case({"s.toml": spec(constants='__class__ = "1"')}, ["renorm", "expand", "s.toml"], "not a usable constant name"),
    "variable-name-newline": Case({"s.toml": spec(target='x = "x\\n"')}, ["renorm", "expand", "s.toml"], "not a usable symbol name"),
    "spec-not-utf8": Case({"s.toml": b"name = \"h\"\n\xff\xfe\n"}, ["renorm", "expand", "s.toml"], "not UTF-8"),
    "spec-is-directory": Case({"d/.keep": ""}, ["renorm", "expand", "d"], "no such spec file"),
    "spec-missing-newline-name": Case({}, ["renorm", "expand", "no\nsuch.toml"], "no such spec file"),
    "piecewise-not-pairs": Case({"s.toml": spec("alpha/x*Piecewise(x, 1)")}, ["renorm", "expand", "s.toml"], "(value, condition) pairs"),
    "expansion-explodes": Case({"s.toml": spec("*".join(f"(1+alpha*x**{k})" for k in range(1, 21)), target="order = 6")},
                               ["renorm", "expand", "s.toml"], "more than 100000 terms"),
    "continued-fraction-order-6": Case({"s.toml": spec("alpha/(1+alpha/(1+alpha/(1+alpha/(1+alpha/(1+alpha/(1+alpha/(1+alpha*x)))))))", target="order = 6")},
                                       ["renorm", "expand", "s.toml"], "more than 100000 terms"),
    "coefficient-overflows": Case({"s.toml": spec("alpha*" + "exp(" * 19 + "x" + ")" * 19 + "/exp(exp(1))")}, ["renorm", "solve", "s.toml", "--alpha", "0.1"],
                                  "beyond the float64 range"),
    "coefficient-complex": Case({"s.toml": spec("alpha/x*sqrt(x - 1/4)")}, ["renorm", "solve", "s.toml", "--alpha", "0.1"], "undefined in real arithmetic"),
    "constant-named-Integer": Case({"s.toml": spec("alpha*Integer/x*log(1/x)", constants='Integer = "2"')}, ["renorm", "expand", "s.toml"], "", code=0),
    "density-identically-zero": Case({"s.toml": spec("alpha*(sin(x)**2 + cos(x)**2 - 1)/x")}, ["renorm", "solve", "s.toml", "--alpha", "0.1"],
                                     "its expansion vanishes through order 1"),
    "sample-too-many": Case({"s.toml": spec()}, ["renorm", "sample", "run", "--alpha", "0.1", "-n", "1000000000000"], "-n must be between 1 and"),
}


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def data_spec(line: str, support: str = '["0", "1/2"]') -> str:
    r"""A spec whose target is a data file (``line``, e.g. ``events = "e.npz"``)."""
    return f'name = "d"\n[target]\nsupport = {support}\n{line}\n[matching]\nf = "log"\n'


_X = np.geomspace(1e-4, 0.4, 400)
_W = 1e-3 / _X * 0.01
_GOOD = {"x": _X, "w1": _W}
_SOLVE = ["renorm", "solve", "s.toml", "--alpha", "0.1"]
_HEADER = "lo,hi,p1,p1_err\n"
_BINS = "".join(f"{float(lo)!r},{float(hi)!r},{float(1 / lo)!r},{float(0.01 / lo)!r}\n" for lo, hi in zip(np.geomspace(1e-4, 0.25, 12)[:-1], np.geomspace(1e-4, 0.25, 12)[1:]))

CASES.update({
    # numeric targets: every bad file is one line naming it and the problem, exit 2, nothing written
    "events-missing": Case({"s.toml": data_spec('events = "e.npz"')}, _SOLVE, "e.npz: no such data file"),
    "events-empty": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": b""}, _SOLVE, "e.npz: the file is empty"),
    "events-not-a-zip": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": b"x,w1\n0.1,1\n"}, _SOLVE, "not an .npz archive"),
    "events-csv-binary": Case({"s.toml": data_spec('events = "e.csv"'), "e.csv": b"\xff\xfe\x00\x01"}, _SOLVE, "not a text CSV file"),
    "events-wrong-extension": Case({"s.toml": data_spec('events = "e.txt"'), "e.txt": "x,w1\n0.1,1\n"}, _SOLVE, "events must be an .npz, .csv or .parquet file"),
    "events-no-x": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(y=_X, w1=_W)}, _SOLVE, "no column 'x' (the spec's variable)"),
    "events-no-weights": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=_X)}, _SOLVE, "no weight columns w0, w1"),
    "events-nan-weight": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=_X, w1=np.where(_X > 0.1, np.nan, _W))}, _SOLVE, "w1 = nan is not a finite number"),
    "events-inf-x": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=np.where(_X > 0.3, np.inf, _X), w1=_W)}, _SOLVE, "x = inf is not a finite number"),
    "events-outside": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=_X * 2, w1=_W)}, _SOLVE, "lies outside the support [0, 0.5]"),
    "events-2d": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=_X.reshape(20, 20), w1=_W.reshape(20, 20))}, _SOLVE, "must be one-dimensional"),
    "events-lengths": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=_X, w1=_W[:-1])}, _SOLVE, "the arrays differ in length"),
    "events-beyond-order": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=_X, w1=_W, w3=_W)}, _SOLVE, "weights w3 beyond the target's order 1"),
    "events-groups-decrease": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=_X, w1=_W, group=np.arange(400)[::-1])}, _SOLVE, "group ids must not decrease"),
    "events-too-few": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=_X[:150], w1=_W[:150])}, _SOLVE, "too few to bin"),
    "events-not-normalized": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": _npz(x=np.column_stack([_X, 0 * _X]).ravel(), w1=np.column_stack([_W, -2 * _W]).ravel(),
                                                                                                 group=np.repeat(np.arange(400), 2))}, _SOLVE,
                                  "but a normalized target needs the integral of p^1 to be 0"),
    "events-csv-short-row": Case({"s.toml": data_spec('events = "e.csv"'), "e.csv": "x,w1\n0.1,1\n0.2\n"}, _SOLVE, "line 3: 1 fields where the header has 2"),
    "events-codegen": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": b"junk"}, ["renorm-codegen", "s.toml", "-o", "out.py"], "not an .npz archive", absent=("out.py",)),
    "events-train": Case({"s.toml": data_spec('events = "e.npz"'), "e.npz": b"junk"}, ["renorm", "train", "s.toml", "--out", "run"], "not an .npz archive", absent=("run",)),
    "histogram-unsorted": Case({"s.toml": data_spec('histogram = "h.csv"'), "h.csv": _HEADER + "0.2,0.3,1,0.1\n0.1,0.2,1,0.1\n"}, _SOLVE, "are not sorted"),
    "histogram-overlap": Case({"s.toml": data_spec('histogram = "h.csv"'), "h.csv": _HEADER + "0.1,0.3,1,0.1\n0.2,0.4,1,0.1\n"}, _SOLVE, "overlap"),
    "histogram-negative-error": Case({"s.toml": data_spec('histogram = "h.csv"'), "h.csv": _HEADER + "0.1,0.2,1,-0.1\n"}, _SOLVE, "errors must be positive"),
    "histogram-no-error-column": Case({"s.toml": data_spec('histogram = "h.csv"'), "h.csv": "lo,hi,p1\n0.1,0.2,1\n"}, _SOLVE, "has no error column 'p1_err'"),
    "histogram-nan": Case({"s.toml": data_spec('histogram = "h.csv"'), "h.csv": _HEADER + "0.1,0.2,nan,0.1\n"}, _SOLVE, "nan is not finite"),
    "histogram-beyond-support": Case({"s.toml": data_spec('histogram = "h.csv"'), "h.csv": _HEADER + "0.1,0.7,1,0.1\n"}, _SOLVE, "beyond the support"),
    "histogram-too-few-bins": Case({"s.toml": data_spec('histogram = "h.csv"'), "h.csv": _HEADER + "0.1,0.2,1,0.1\n0.2,0.3,1,0.1\n"}, _SOLVE, "2 bins cannot fit"),
    "histogram-empty": Case({"s.toml": data_spec('histogram = "h.csv"'), "h.csv": ""}, _SOLVE, "h.csv: the file is empty"),
    "histogram-kink": Case({"s.toml": data_spec('histogram = "h.csv"'), "h.csv": _HEADER + "".join(
        f"{float(lo)!r},{float(hi)!r},{float(1 / lo if lo < 0.01 else 50.0 / lo)!r},{float(1e-4 / lo)!r}\n" for lo, hi in zip(np.geomspace(1e-4, 0.25, 40)[:-1], np.geomspace(1e-4, 0.25, 40)[1:]))},
        _SOLVE, "no fit of the form"),
    "histogram-and-events": Case({"s.toml": data_spec('histogram = "h.csv"\nevents = "e.npz"'), "h.csv": _HEADER + _BINS}, _SOLVE, "give events or a histogram, not both"),
    "histogram-half-line": Case({"s.toml": data_spec('histogram = "h.csv"', '["0", "oo"]'), "h.csv": _HEADER + _BINS}, _SOLVE, "infinite support is not supported yet"),
})


def _prepare(case_id: str, case: Case, root: Path) -> Path:
    folder = root / case_id
    folder.mkdir()
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if case_id == "run-dir-spec-symlink-loop":
        os.symlink("spec.toml", folder / "run" / "spec.toml")
    return folder


def _run(case_id: str, case: Case, folder: Path, cache: Path, streams: Path) -> tuple[subprocess.CompletedProcess | None, str | None]:
    env = {**os.environ, "RENORM_CACHE": str(cache), **case.env}
    program = {"renorm": "renorm.runtime._cli", "renorm-codegen": "renorm.codegen._cli"}[case.argv[0]]
    out, err = streams / f"{case_id}.out", streams / f"{case_id}.err"
    process = _forked.context().Process(target=_forked.run_module, args=(program, case.argv[1:], str(folder), env, str(out), str(err)))
    process.start()
    process.join(TIMEOUT)
    if process.exitcode is None:
        process.kill()
        process.join()
        return None, None
    result = subprocess.CompletedProcess(case.argv, process.exitcode, out.read_text(), err.read_text())
    after = None
    if case.after and result.returncode == case.code:
        check = subprocess.run([sys.executable, "-c", case.after], cwd=folder, capture_output=True, text=True, timeout=TIMEOUT, env=env)
        after = None if check.returncode == 0 else check.stderr
    return result, after


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp("hostile")
    cache, streams = root / ".cache", root / ".streams"
    streams.mkdir()
    folders = {case_id: _prepare(case_id, case, root) for case_id, case in CASES.items()}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {case_id: pool.submit(_run, case_id, case, folders[case_id], cache, streams) for case_id, case in CASES.items()}
        return {case_id: (folders[case_id], *future.result()) for case_id, future in futures.items()}


@pytest.mark.parametrize("case_id", list(CASES))
def test_hostile_input(outcomes, case_id: str):
    case = CASES[case_id]
    folder, result, after = outcomes[case_id]
    assert result is not None, f"{case_id}: still running after {TIMEOUT} s (killed)"
    markers = [p for p in folder.rglob(MARKER)] + list(Path.cwd().glob(MARKER))
    assert not markers, f"{case_id}: a payload ran and created {markers}"
    lines = result.stderr.strip().splitlines()
    if case.code == 0:
        assert result.returncode == 0, result.stderr
        assert after is None, after
        return
    assert result.returncode == case.code, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, f"expected one line on stderr, got: {result.stderr[-2000:]}"
    assert case.message in lines[0], lines[0]
    assert "Traceback" not in result.stderr and len(lines[0]) < 2000
    for path in case.absent:
        assert not (folder / path).exists(), f"{case_id}: {path} was written although the command was refused"
    leftovers = [p.name for p in folder.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
    assert not leftovers, f"half-written files: {leftovers}"


# the kernel cache: an entry is used only if its content is what its name says and it passes the check
def _cache_script(cache: Path) -> str:
    return textwrap.dedent(f'''
        import os, sys
        os.environ["RENORM_CACHE"] = {str(cache)!r}
        import torch
        from renorm.codegen import load
        from renorm.symbolic import load_spec
        kernels = load(load_spec({str(EXAMPLES / "angularity_lo.toml")!r}))
        value = float(kernels.p(torch.tensor([0.1], dtype=torch.float64), 0.1)[0])
        assert abs(value - 1.3558) < 1e-3, value
        print(kernels.__file__)
        ''')


@pytest.fixture(scope="module")
def pristine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r"""A cache holding the one entry a fresh process generates (each test tampers with a copy)."""
    cache = tmp_path_factory.mktemp("pristine") / "cache"
    subprocess.run([sys.executable, "-c", _cache_script(cache)], check=True, capture_output=True, timeout=TIMEOUT)
    return cache


@pytest.mark.parametrize("tamper", ["append-payload", "renamed-to-own-digest", "world-writable", "foreign-content"])
def test_cache_entries_are_verified_before_they_run(tmp_path: Path, tamper: str, pristine_cache: Path):
    cache = tmp_path / "cache"
    shutil.copytree(pristine_cache, cache)
    (entry,) = (cache / "codegen").glob("*.py")
    source = entry.read_text()
    payload = source + f"\nimport os\nos.system('touch {tmp_path / MARKER}')\n"
    if tamper == "append-payload":
        entry.write_text(payload)
    elif tamper == "renamed-to-own-digest":
        # its name now matches its content, but the module check refuses the import it holds
        entry.unlink()
        digest = hashlib.sha256(payload.encode()).hexdigest()[:32]
        entry = entry.with_name(f"{entry.name.split('.')[0]}.{digest}.py")
        entry.write_text(payload)
    elif tamper == "world-writable":
        # a module the check accepts, named by its own digest, with one constant changed: only
        # the permissions (anyone could have written it) keep it from being used
        (line,) = [line for line in source.splitlines() if line.startswith("K0 = ")]
        altered = source.replace(line, "K0 = 1.0")
        entry.unlink()
        entry = entry.with_name(f"{entry.name.split('.')[0]}.{hashlib.sha256(altered.encode()).hexdigest()[:32]}.py")
        entry.write_text(altered)
        entry.chmod(0o666)
    else:
        shutil.copy(EXAMPLES / "angularity_lo.toml", entry)
    result = subprocess.run([sys.executable, "-c", _cache_script(cache)], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / MARKER).exists(), "a tampered cache entry ran"
    used = Path(result.stdout.strip().splitlines()[-1])
    assert used.read_text() == source, "the module that ran is not the generated one"


# the module check: everything but a generated module is refused before it runs
INJECTIONS = {
    "import": ("import math\n", "import math\nimport os\n"),
    "from-import": ("import math\n", "import math\nfrom os import system\n"),
    "call-builtin": ("    alpha = torch.as_tensor(alpha", "    __import__('os')\n    alpha = torch.as_tensor(alpha"),
    "eval": ("    alpha = torch.as_tensor(alpha", "    eval(x)\n    alpha = torch.as_tensor(alpha"),
    "open": ("    alpha = torch.as_tensor(alpha", "    open(x)\n    alpha = torch.as_tensor(alpha"),
    "string-in-body": ("    alpha = torch.as_tensor(alpha", "    y = 'text'\n    alpha = torch.as_tensor(alpha"),
    "dunder-attribute": ("    alpha = torch.as_tensor(alpha", "    y = x.__class__\n    alpha = torch.as_tensor(alpha"),
    "torch-load": ("    alpha = torch.as_tensor(alpha", "    y = torch.load(x)\n    alpha = torch.as_tensor(alpha"),
    "tensor-method": ("    alpha = torch.as_tensor(alpha", "    y = x.numpy()\n    alpha = torch.as_tensor(alpha"),
    "extra-function": ("\n\ndef p(", "\n\ndef hook():\n    return 1\n\n\ndef p("),
    "decorator": ("\n\ndef p(", "\n\n@torch.no_grad()\ndef p("),
    "class": ("\n\ndef p(", "\n\nclass Hook:\n    pass\n\n\ndef p("),
    "second-docstring": ("import math\n", "import math\n'''not the docstring'''\n"),
    "constant-call": ("ORDER = 1\n", "ORDER = int(1)\n"),
    "string-constant": ("ORDER = 1\n", "ORDER = '1'\n"),
    "all-extra-name": ("    'p',\n", "    'p',\n    'os',\n"),
    "global-statement": ("    alpha = torch.as_tensor(alpha", "    global NAME\n    alpha = torch.as_tensor(alpha"),
    "lambda": ("    alpha = torch.as_tensor(alpha", "    y = (lambda: 1)()\n    alpha = torch.as_tensor(alpha"),
    "syntax-error": ("ORDER = 1\n", "ORDER = = 1\n"),
}


@pytest.fixture(scope="module")
def generated_source() -> str:
    from renorm.codegen import generate
    from renorm.symbolic import load_spec

    return generate(load_spec(EXAMPLES / "angularity_lo.toml"))


def test_generated_modules_pass_the_check(generated_source):
    from renorm.codegen._check import check_module

    check_module(generated_source)


@pytest.mark.parametrize("injection", sorted(INJECTIONS))
def test_module_check_refuses_injected_code(generated_source, injection):
    from renorm.codegen import CodegenError
    from renorm.codegen._check import check_module

    old, new = INJECTIONS[injection]
    assert old in generated_source
    with pytest.raises(CodegenError, match="refusing a generated module"):
        check_module(generated_source.replace(old, new, 1))


# run directories from Python specs: the problem is stored as TOML, or the spec must be given again
def test_problems_round_trip_through_toml(tmp_path):
    from renorm.symbolic import load_spec, make_problem, to_toml

    problems = [load_spec(p) for p in sorted(EXAMPLES.glob("*.toml"))]
    problems += [
        make_problem(name="custom-f", density="2*x + alpha*(1 - x)", f="sqrt(q)", support=("0", "1")),
        make_problem(name="weight", density="alpha/x*log(1/x)", weight="Heaviside(x - 1/10)/2", support=("0", "1")),
        make_problem(name="half-line", x="tau", density="alpha*exp(-tau)*(1 + tau)", support=("0", "oo"), singular="none"),
        make_problem(name="piecewise", density="Piecewise((alpha*sqrt(x - 1/5), x > 1/5), (alpha*log(x), True)) + 1 + alpha"),
        make_problem(name="settings", density="alpha/x*log(1/x)", training={"epochs": 3, "lr": 0.02, "hidden": [16, 16], "device": "cpu"}),
    ]
    for problem in problems:
        path = tmp_path / f"{problem.name}.toml"
        path.write_text(to_toml(problem))
        again = load_spec(path, python=False)
        assert again.sha256 == problem.sha256 and again.training == problem.training, problem.name


def test_run_directory_of_a_python_spec_is_data(tmp_path):
    from renorm.runtime import TrainConfig, load_run, train
    from renorm.symbolic import SpecError, load_spec

    (tmp_path / "spec.py").write_text(
        "from renorm.symbolic import make_problem\n"
        "problem = make_problem(name='py', density='alpha*4/(3*pi)/x*(2*log((1 - x)/x) + 3*x - 3/2)', support=('0', '1/2'))\n")
    problem = load_spec(tmp_path / "spec.py")
    run = train(problem, tmp_path / "run", TrainConfig(epochs=1, refine=0, x_points=64, alpha_points=4), progress=False)
    assert sorted(p.name for p in run.directory.iterdir()) == [".lock", "checkpoint.pt", "history.json", "spec.toml"]
    assert load_run(run.directory).problem.sha256 == problem.sha256
    with pytest.raises(SpecError, match="a Python spec is code"):
        load_spec(tmp_path / "spec.py", python=False)


def test_python_spec_that_toml_cannot_express_needs_the_spec_again(tmp_path):
    from renorm.runtime import TrainConfig, train
    from renorm.runtime._cli import main
    from renorm.symbolic import load_spec

    # a 40-digit coupling constant: TOML's reading of the printed number keeps 15 digits
    (tmp_path / "spec.py").write_text(
        "import sympy\nfrom renorm.symbolic import make_problem\n"
        "problem = make_problem(name='precise', density=sympy.Float('0.4244131815783875620503567023', 40)*sympy.Symbol('alpha', positive=True)"
        "/sympy.Symbol('x', positive=True)*(2*sympy.log((1 - sympy.Symbol('x', positive=True))/sympy.Symbol('x', positive=True)) + 3*sympy.Symbol('x', positive=True) - 1.5),"
        " support=('0', '1/2'))\n")
    problem = load_spec(tmp_path / "spec.py")
    run = train(problem, tmp_path / "run", TrainConfig(epochs=1, refine=0, x_points=64, alpha_points=4), progress=False)
    assert not (run.directory / "spec.toml").exists()
    assert main(["eval", str(run.directory), "--alpha", "0.1", "--x", "0.1"]) == 2
    assert main(["eval", str(run.directory), "--alpha", "0.1", "--x", "0.1", "--spec", str(tmp_path / "spec.py")]) == 0
