r"""Torch runtime: special functions, the α-conditioned flow, training, certificates and verification."""

from . import special as special
from ._flow import ConditionalFlow as ConditionalFlow
from ._maps import MAPS as MAPS
from ._maps import SupportMap as SupportMap
from ._maps import default_map as default_map
from ._maps import register_map as register_map
from ._plot import plot_report as plot_report
from ._train import Run as Run
from ._train import TrainConfig as TrainConfig
from ._train import TrainingStatus as TrainingStatus
from ._train import load_run as load_run
from ._train import train as train
from ._verify import CertificateRow as CertificateRow
from ._verify import VerifyReport as VerifyReport
from ._verify import certificate as certificate
from ._verify import exact_log_density as exact_log_density
from ._verify import extract_coefficients as extract_coefficients
from ._verify import extractable_range as extractable_range
from ._verify import verify as verify

__all__ = [
    "special", "ConditionalFlow", "MAPS", "SupportMap", "default_map", "register_map", "plot_report",
    "Run", "TrainConfig", "TrainingStatus", "load_run", "train", "CertificateRow", "VerifyReport",
    "certificate", "exact_log_density", "extract_coefficients", "extractable_range", "verify",
]
