"""What every command shares: the one-line user error, store flags, studies and stores."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from search.errors import one_line

if TYPE_CHECKING:
    from search.locations import Locations
    from search.spec.study_file import StudyConfig

__all__ = [
    "EXIT_USAGE",
    "CliError",
    "add_connect_timeout",
    "add_store_flags",
    "check_reachable",
    "exec_command",
    "format_table",
    "existing_study",
    "load_config",
    "locations_of",
    "one_line",
    "say",
    "study_name",
]

EXIT_USAGE = 2


class CliError(Exception):
    """A user error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def say(msg: str) -> None:
    """A progress line, flushed at once (logs and pipes see it while the command runs)."""
    print(msg, flush=True)


def add_store_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage", help="Optuna storage URL (default: $OPTUNA_STORAGE or sqlite:///mlruns/optuna.db)"
    )
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db)",
    )
    add_connect_timeout(p)


def add_connect_timeout(p: argparse.ArgumentParser) -> None:
    from search.cli.args import positive_float

    p.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="seconds a storage or tracking server has to answer before the command gives up (default: 5)",
    )


def check_reachable(locations: Locations, args: argparse.Namespace, tracking: bool = True) -> None:
    """Stop with one line (exit 2) unless the storage (and tracking server) answer: before anything
    is written."""
    from search.study.services import ServiceUnreachable, check_services

    try:
        check_services(locations, getattr(args, "connect_timeout", 5.0), tracking=tracking)
    except ServiceUnreachable as exc:
        raise CliError(str(exc)) from None


def load_config(path: str, **overrides: Any) -> StudyConfig:
    from search.spec.study_file import ConfigError, load_study

    try:
        return load_study(path, **overrides)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def locations_of(args: argparse.Namespace) -> Locations:
    from search.locations import resolve_locations

    try:
        return resolve_locations(getattr(args, "storage", None), args.tracking_uri)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def study_name(text: str) -> str:
    """STUDY arguments are a study name or a study file."""
    return load_config(text).study.name if text.endswith(".toml") else text


def existing_study(args: argparse.Namespace, tracking: bool = True) -> tuple[Any, Locations]:
    """(study, locations) of STUDY (a name or a study file); one-line error when there is none or
    its storage (or, with ``tracking``, its tracking server) does not answer."""
    name = study_name(args.study)
    locations = locations_of(args)
    check_reachable(locations, args, tracking)
    from search.errors import StudyError
    from search.study.opening import load_existing_study

    try:
        return load_existing_study(name, locations), locations
    except StudyError as exc:
        raise CliError(str(exc)) from None


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[str] = ()) -> list[str]:
    """The header and the rows as lines of columns two spaces apart, right-aligned but for the
    columns named in ``left`` (text)."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(header)]
    align = [str.ljust if h in left else str.rjust for h in header]
    lines = [
        "  ".join(a(cell, w) for cell, w, a in zip(row, widths, align, strict=True))
        for row in (header, *rows)
    ]
    return [line.rstrip() for line in lines]


def exec_command(cmd: list[str]) -> int:
    """Become ``cmd`` (an absolute path is run as is, a bare name is looked up on PATH)."""
    os.execvp(cmd[0], cmd)
    return 0
