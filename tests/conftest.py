r"""Shared fixtures: the example specs and a CLI runner."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SPECS = sorted(p for p in EXAMPLES.glob("*.toml")) + sorted(p for p in EXAMPLES.glob("*.py"))


@pytest.fixture(scope="session")
def angularity():
    from renorm.symbolic import load_spec

    return load_spec(EXAMPLES / "angularity_lo.toml")


@pytest.fixture(scope="session")
def soft_collinear():
    from renorm.symbolic import load_spec

    return load_spec(EXAMPLES / "soft_collinear.toml")


@pytest.fixture(scope="session")
def reduced_windowed_angularity(angularity, tmp_path_factory):
    r"""The angularity trained at the defaults (the window included) but for a 15-step refinement:
    the reduced (CI) form of both acceptance tests that train it, in test_runtime and in
    test_window, which trained the same flow twice (about 20 s each)."""
    from renorm.runtime import TrainConfig, train

    return train(angularity, tmp_path_factory.mktemp("windowed") / "run", TrainConfig(refine=15), progress=False)

