"""The ``evsim`` command line: one console script, one module per subcommand in evsim.commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from evsim.errors import EvsimError

# Each module defines ``register(subparsers)``, which adds its parser and sets ``func``.
COMMAND_MODULES = (
    "evsim.commands.info",
    "evsim.commands.train",
    "evsim.commands.eval",
    "evsim.commands.run",
    "evsim.commands.stream",
    "evsim.commands.bench",
    "evsim.commands.report",
    "evsim.commands.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evsim",
        description="Event-driven simulation of deep spiking neural networks.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
