r"""SymPy → torch code generation: a readable kernel module per matching problem (DESIGN §3)."""

from ._errors import CodegenError as CodegenError
from ._generate import generate as generate
from ._load import cache_dir as cache_dir
from ._load import compile_loss as compile_loss
from ._load import load as load
from ._printer import TorchPrinter as TorchPrinter

__all__ = ["CodegenError", "generate", "load", "compile_loss", "cache_dir", "TorchPrinter"]
