r"""Torch runtime: special functions, the α-conditioned flow, training, certificates and verification.

The names below are imported on first use, so that ``import renorm.runtime`` (and the symbolic
commands of ``renorm``, which live here) do not load torch, zuko and matplotlib until they are
needed.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each public name and the private module that defines it.
_EXPORTS = {
    "special": ".special",
    "ConditionalFlow": "._flow", "PlaneFlow": "._plane", "PlaneMap": "._plane",
    "PlaneRun": "._plane_train", "PlaneCertificate": "._plane_train", "plane_certificate": "._plane_train",
    "density_certificate": "._plane_train", "PlaneLogDensity": "._plane_train",
    "verify_plane": "._plane_verify", "PlaneVerifyReport": "._plane_verify", "PlaneOrderDeviation": "._plane_verify",
    "plot_plane_report": "._plane_plot",
    "TORCH": "._maps",
    "plot_report": "._plot",
    "Run": "._train", "Interrupted": "._checkpoint", "TrainConfig": "._config", "TrainingStatus": "._config", "auto_floor": "._config", "load_run": "._train", "train": "._train",
    "CertificateRow": "._verify", "VerifyReport": "._verify", "OrderDeviation": "._verify", "Check": "._verify", "LogDensity": "._verify", "certificate": "._verify",
    "exact_log_density": "._verify", "extract_coefficients": "._verify", "extractable_range": "._verify", "verify": "._verify",
    "SmallCouplingFit": "._verify", "small_coupling_fit": "._verify",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name], __name__)
    value = module if name == "special" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
