"""Command line: ``python compare.py [SUBCOMMAND] [options]`` (or ``xorcheck``, the same).

With no subcommand it is the default run (``harness.commands.run``): every row trained
from the same initial weights, compared against the first row. Each subcommand is one
module of ``harness.commands`` with ``DESCRIPTION``, ``EPILOG``, ``add_arguments(parser)``
and ``main(args, parser) -> exit status``; this module only builds the parsers from them
and dispatches.

Exit status: 0 all rows agree, 1 some pair disagrees, 2 bad usage or unwritable output,
3 a row could not run (its worker died, its program failed or hung), 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> its module; None is the default run
COMMANDS = {
    None: "run",
    "bench": "bench",
    "sweep": "sweep",
    "grads": "grads",
    "replay": "replay",
    "forms": "forms",
    "lineage": "lineage",
    "atlas": "atlas",
    "init": "init",
    "explain": "explain",
    "audit": "audit",
    "power": "power",
    "versions": "versions",
    "compiled": "compiled",
}
SUBCOMMANDS = tuple(name for name in COMMANDS if name)
# an old name -> the subcommand it is now: kept for one release, with a notice
ALIASES = {"flavors": "forms"}


class Parser(argparse.ArgumentParser):
    """A parser whose usage errors are one line on stderr (the usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def command_module(name: str | None):
    return importlib.import_module(f"harness.commands.{COMMANDS[name]}")


def build_parser(name: str | None = None, prog: str = "compare.py") -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (None: the default run), from its own module."""
    module = command_module(name)
    epilog = module.EPILOG
    if name is None:
        epilog = "subcommands: " + ", ".join(f"{prog} {c} --help" for c in SUBCOMMANDS) + ". " + epilog
    parser = Parser(prog=prog if name is None else f"{prog} {name}", description=module.DESCRIPTION, epilog=epilog)
    module.add_arguments(parser)
    return parser


def main(argv=None, prog: str = "compare.py") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ALIASES:
        from harness.commands.ending import notice_renamed

        notice_renamed(f"{prog} {argv[0]}", f"{prog} {ALIASES[argv[0]]}")
        argv[0] = ALIASES[argv[0]]
    name = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(name, prog)
    args = parser.parse_args(argv[1:] if name else argv)
    return command_module(name).main(args, parser)


def run(prog: str = "compare.py") -> int:
    """The command line as a user runs it: ``main`` with Ctrl-C and SIGTERM ending the run
    and every process it started (``harness.engine.lifetime``)."""
    from harness.engine.lifetime import guarded

    return guarded(lambda: main(prog=prog))


def console() -> int:
    """The ``xorcheck`` console script: what ``python compare.py`` does."""
    return run(prog="xorcheck")


if __name__ == "__main__":
    sys.exit(run(prog="python -m harness.cli"))
