"""The ``evsim`` command line: one console script, one module per subcommand in evsim.cli."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from evsim.errors import EvsimError

# Each module defines ``register(subparsers)``, which adds its parser and sets ``func``.
COMMAND_MODULES = (
    "evsim.cli.info",
    "evsim.cli.train",
    "evsim.cli.eval",
    "evsim.cli.run",
    "evsim.cli.stream",
    "evsim.cli.bench",
    "evsim.cli.report",
    "evsim.cli.demo",
)


class Parser(argparse.ArgumentParser):
    """Every evsim parser, subcommands included: options are never abbreviated, since a prefix
    can name another option (``--mode`` would be read as ``--model``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="evsim",
        description="Event-driven simulation of deep spiking neural networks.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EvsimError as exc:
        print(f"evsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"evsim {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `evsim info FILE | head`: the reader left, nothing is wrong
        # point stdout at /dev/null so that the interpreter's final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
