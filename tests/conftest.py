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
