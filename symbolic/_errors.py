r"""Errors that are meant to be read by people: one line, what was wrong and where."""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["RenormError", "SpecError", "NotNormalizableError", "NoUniqueMinimizerError", "one_line", "OneLineParser"]


class RenormError(ValueError):
    r"""Base class of the errors the command line prints as one line and exit code 2."""


class SpecError(RenormError):
    r"""A spec file or a spec field is invalid (names the field and the offending text)."""


class NotNormalizableError(RenormError):
    r"""No normalized minimizer exists for the chosen :math:`f` and :math:`C`.

    Attributes:
        matched_order: The order through which the degenerate limit still matches
            :math:`p^N` (``None`` when unknown).
    """

    def __init__(self, message: str, matched_order: int | None = None):
        super().__init__(message)
        self.matched_order = matched_order


class NoUniqueMinimizerError(NotNormalizableError):
    r"""The loss has minimizers but not a unique one (the weight vanishes where probability is missing)."""


def one_line(text: str) -> str:
    r"""``text`` with every unprintable character (newline, tab, control) written as its escape.

    Messages name user input (file names may hold newlines), and the command line promises
    one line per error.
    """
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))


class OneLineParser(argparse.ArgumentParser):
    r"""The command lines' argparse: a usage error is one line naming the command (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
