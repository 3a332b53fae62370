"""`collatz-hpo`: parses arguments, calls the Python API, prints. Nothing else lives here.

Heavy libraries (torch, mlflow, optuna) are imported inside the command functions so that
`collatz-hpo --help` answers instantly, and each command imports only what it needs. One
module per group of commands: ``studies`` (launch, worker, status), ``servers`` (server, ui, dashboard),
``train``, ``models`` (export, predict, report); ``args`` and ``common`` hold what they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from search.cli import models, servers, studies, train
from search.cli.common import CliError

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collatz-hpo",
        description="Hyperparameter search and experiment tracking for transformers "
        "that learn the long Collatz step.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (studies, servers, train, models):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"collatz-hpo: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("collatz-hpo: interrupted", file=sys.stderr)
        return 130
