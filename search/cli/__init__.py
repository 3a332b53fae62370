"""`collatz-hpo`: parses arguments, calls the Python API, prints. Nothing else lives here.

Heavy libraries (torch, mlflow, optuna) are imported inside the command functions so that
`collatz-hpo --help` answers instantly, and each command imports only what it needs. One
module per group of commands: ``studies`` (launch, worker, status), ``cluster`` (submit, cancel: SLURM),
``servers`` (server, ui, dashboard), ``train``, ``models`` (export, predict, report); ``args`` and
``common`` hold what they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from search.cli import cluster, models, servers, studies, train
from search.cli.common import CliError, exit_code_of
from search.errors import EXIT_INTERRUPTED, one_line

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collatz-hpo",
        description="Hyperparameter search and experiment tracking for transformers "
        "that learn the long Collatz step.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (studies, cluster, servers, train, models):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Its user errors are reported here, once: ``collatz-hpo: error: <one line>``
    on stderr (after ``<command>: `` for a command declared ``prefixed``, see
    ``common.set_command``), exit ``exit_code``; Ctrl-C is exit 130. Anything else is a bug and
    keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        note = f": {args.on_interrupt}" if args.on_interrupt else ""
        print(f"collatz-hpo: interrupted{note}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = exit_code_of(exc, args.failures)
        if code is None:
            raise
        prefix = f"{args.command}: " if args.prefixed else ""
        print(f"collatz-hpo: error: {prefix}{one_line(exc)}", file=sys.stderr)
        return code
