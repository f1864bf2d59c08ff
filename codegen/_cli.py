r"""The ``renorm-codegen`` command: write (or check) the torch kernel module of a spec."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from renorm.symbolic import OneLineParser, RenormError, load_spec, one_line, write_atomic

from ._generate import generate

__all__: list[str] = []

PROG = "renorm-codegen"


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Generate the torch kernel module (p, log_p, p_coefficients, weight, q_exact, "
                    "loss_density) of a renorm-flows spec. Same spec, byte-identical output.")
    parser.add_argument("spec", metavar="SPEC", help="a spec file (.toml, or .py defining `problem`)")
    parser.add_argument("-o", "--output", metavar="OUT.py", help="write the module here (atomically) instead of to stdout")
    parser.add_argument("--check", action="store_true", help="do not write: exit 1 if OUT.py differs from what would be generated, 0 if it is up to date")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    r"""Runs ``renorm-codegen SPEC [-o OUT.py] [--check]``.

    Arguments:
        argv: The arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        0 on success (or an up-to-date ``--check``), 1 for a stale ``--check``, 2 for an error,
        reported as one line ``renorm-codegen: error: …`` on stderr with nothing written.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:  # --help, or a usage error already reported in one line
        return int(exit.code or 0)
    if args.check and not args.output:
        print(f"{PROG}: error: --check needs -o OUT.py (the file to compare)", file=sys.stderr)
        return 2
    try:
        source = generate(load_spec(args.spec), source=args.spec)
        if args.check:
            out = Path(args.output)
            if not out.is_file():
                print(one_line(f"{PROG}: {out} is missing; generate it with: {PROG} {args.spec} -o {out}"), file=sys.stderr)
                return 1
            if out.read_text(encoding="utf-8") != source:
                print(one_line(f"{PROG}: {out} is stale; regenerate it with: {PROG} {args.spec} -o {out}"), file=sys.stderr)
                return 1
            return 0
        if args.output:
            try:
                write_atomic(args.output, source)
            except OSError as error:
                print(f"{PROG}: error: cannot write {one_line(args.output)}: {one_line(error.strerror or error)}", file=sys.stderr)
                return 2
        else:
            sys.stdout.write(source)
    except RenormError as error:
        print(f"{PROG}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as error:
        # reading the spec or the file to check
        name = getattr(error, "filename", None) or args.output
        print(f"{PROG}: error: {one_line(name)}: {one_line(getattr(error, 'strerror', None) or error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
