"""The ``evsim`` command line: one console script, one module per subcommand in evsim.cli."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# before numba starts: its default OpenMP threading layer fights torch's threads in one process
# (the trainer's recurrence kernels beside torch's convolutions; issue 27). A user's choice stands.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from evsim.errors import EvsimError  # noqa: E402

# Optional dependencies and the extra that installs each: a missing one is one line naming it.
EXTRAS = {"torch": "train", "matplotlib": "plot", "tonic": "data", "aedat": "data", "scipy": "data",
          "dv_processing": "live"}

# Each module defines ``register(subparsers)``, which adds its parser and sets ``func``.
COMMAND_MODULES = (
    "evsim.cli.info",
    "evsim.cli.train",
    "evsim.cli.eval",
    "evsim.cli.convert",
    "evsim.cli.run",
    "evsim.cli.stream",
    "evsim.cli.serve",
    "evsim.cli.bench",
    "evsim.cli.report",
    "evsim.cli.demo",
    "evsim.cli.nir",
)


class Parser(argparse.ArgumentParser):
    """Every evsim parser, subcommands included: options are never abbreviated, since a prefix
    can name another option (``--mode`` would be read as ``--model``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "allow_abbrev": False})

    # a description may be a function, called only when --help prints it: building the parser
    # of every command then imports nothing that only one command's help needs
    @property
    def description(self):
        return self._description() if callable(self._description) else self._description

    @description.setter
    def description(self, value) -> None:
        self._description = value

    def error(self, message: str):
        # one line, like every other evsim error (argparse would print the whole usage first)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="evsim",
        description="Event-driven simulation of deep spiking neural networks.",
    )
    import evsim

    parser.add_argument("--version", action="version", version=f"evsim {evsim.__version__}",
                        help="print evsim's version and exit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the subcommand's parser, which knows its options, not by evsim's
        hint = " (--threads sets threads; only `evsim stream` has --workers: processes)" if "--workers" in extra else ""
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    try:
        return int(args.func(args) or 0)
    except EvsimError as exc:
        print(f"evsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in EXTRAS:
            raise
        print(f"evsim {args.command}: error: this needs {root}, which is not installed: "
              f"pip install 'evsim[{EXTRAS[root]}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # a command may say what it kept (evsim train: its checkpoint)
        print(f"evsim {args.command}: interrupted" + (f"; {exc}" if str(exc) else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `evsim info FILE | head`: the reader left, nothing is wrong
        # point stdout at /dev/null so that the interpreter's final flush cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


if __name__ == "__main__":
    sys.exit(main())
