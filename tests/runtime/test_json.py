r"""Every command that reports numbers prints one JSON object that conforms to its schema."""

from __future__ import annotations

import json

import pytest

from renorm.runtime._cli import main

from .. import schema
from ..conftest import EXAMPLES

ANGULARITY = str(EXAMPLES / "angularity_lo.toml")
SMALL = ["--epochs", "6", "--refine", "1", "--x-points", "64", "--alpha-points", "4", "--window-points", "2"]


def _json(capsys, args, code=0):
    assert main([*args, "--json"]) == code
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def schemas():
    return schema.load()


def test_the_validator_rejects_what_the_schema_excludes(schemas):
    good = {"alpha": 0.1, "x": [0.5], "q": [None], "q_error": None}
    assert not schema.errors(good, "eval", schemas)
    assert schema.errors({**good, "extra": 1}, "eval", schemas) == ["eval: unexpected 'extra'"]
    assert schema.errors({"alpha": True, "x": [], "q": [], "q_error": None}, "eval", schemas)  # a boolean is not a number
    assert schema.errors({"alpha": 0.1, "x": ["0.5"], "q": [], "q_error": None}, "eval", schemas)
    assert schema.errors({"x": [], "q": [], "q_error": None}, "eval", schemas) == ["eval: missing 'alpha'"]
    with pytest.raises(ValueError, match="not checked"):
        schema.errors(1, "x", {"$defs": {"x": {"pattern": "a"}}})


def test_every_command_prints_its_schema(tmp_path, capsys, schemas):
    spec = str(EXAMPLES / "soft_collinear.toml")
    checks = {
        "expand": _json(capsys, ["expand", ANGULARITY, "--x", "0.1"]),
        "solve": _json(capsys, ["solve", ANGULARITY, "--alpha", "0.05", "0.3"]),
        "magic-c": _json(capsys, ["magic-c", spec, "--q", "2*alpha*CF/pi*log(1/x)/x*exp(-alpha*CF/pi*log(1/x)^2)", "--alpha", "0.1"]),
        "train": _json(capsys, ["train", ANGULARITY, "--out", str(tmp_path / "t"), *SMALL]),
    }
    run = str(tmp_path / "t")
    checks["eval"] = _json(capsys, ["eval", run, "--alpha", "0.1", "--x", "0.01", "0.2"])
    checks["sample"] = _json(capsys, ["sample", run, "--alpha", "0.1", "-n", "5"])
    sampled = _json(capsys, ["sample", run, "--alpha", "0.1", "-n", "5", "--out", str(tmp_path / "s.npy")])
    report = json.loads(capsys.readouterr().out) if main(["verify", run, "--json"]) in (0, 1) else None
    checks["verify"] = report
    checks["plot"] = _json(capsys, ["plot", run])
    whole = main(["run", ANGULARITY, "--out", str(tmp_path / "r"), *SMALL, "--json"])
    checks["run"] = json.loads(capsys.readouterr().out)
    for name, data in checks.items():
        assert not schema.errors(data, name, schemas), (name, schema.errors(data, name, schemas))
    assert not schema.errors(sampled, "sample", schemas) and sampled["samples"] is None and sampled["out"].endswith("s.npy")
    assert len(checks["sample"]["samples"]) == 5
    # report.json is the verify object, and the run's JSON carries it
    assert (whole == 0) == checks["run"]["report"]["passed"]
    assert json.loads((tmp_path / "r" / "report.json").read_text()) == checks["run"]["report"]
    # the same quantity has the same name: λ is lagrange_multiplier wherever it appears
    assert checks["solve"]["couplings"][0]["lagrange_multiplier"] == pytest.approx(checks["train"]["couplings"][0]["lagrange_multiplier"], rel=1e-12)
