"""What every command shares: how its errors are reported, store flags, studies and stores."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from search.errors import EXIT_FAILURE, EXIT_USAGE, CollatzHpoError

if TYPE_CHECKING:
    from search.locations import Locations
    from search.spec.study_file import StudyConfig

__all__ = [
    "STORE_FAILURES",
    "CliError",
    "add_connect_timeout",
    "add_store_flags",
    "check_reachable",
    "exec_command",
    "exit_code_of",
    "existing_study",
    "format_table",
    "load_config",
    "locations_of",
    "say",
    "set_command",
    "study_name",
]

# MLflow's and the disk's errors, by name (matching them imports nothing): a command that declares
# them reports them as one line, exit 1 (the input was fine, writing or reading the store failed)
STORE_FAILURES = ("mlflow.exceptions.MlflowException", "builtins.OSError")


class CliError(CollatzHpoError):
    """A user error the CLI finds itself (a flag, an input file): one line, exit ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def set_command(
    p: argparse.ArgumentParser,
    func: Callable[[argparse.Namespace], int],
    *,
    prefixed: bool = False,
    failures: Sequence[str] = (),
    on_interrupt: str | None = None,
) -> None:
    """``p`` runs ``func``, and how ``main`` reports what it raises (commands catch nothing):
    ``prefixed`` error lines start with the command's name (``export: ...``); ``failures`` are the
    dotted names of third-party exceptions that are this command's user errors (exit 1), e.g.
    ``STORE_FAILURES``; ``on_interrupt`` follows ``interrupted`` on Ctrl-C."""
    p.set_defaults(func=func, prefixed=prefixed, failures=tuple(failures), on_interrupt=on_interrupt)


def exit_code_of(exc: BaseException, failures: Sequence[str] = ()) -> int | None:
    """The exit code of a user error (a ``CollatzHpoError``, or one of the declared ``failures``
    or a subclass); None for anything else: a bug, which keeps its traceback."""
    if isinstance(exc, CollatzHpoError):
        return exc.exit_code
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__}
    return EXIT_FAILURE if names.intersection(failures) else None


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
    from search.locations import CONNECT_TIMEOUT

    p.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=CONNECT_TIMEOUT,
        metavar="S",
        help="seconds a storage or tracking server has to answer before the command gives up "
        f"(default: {CONNECT_TIMEOUT:g})",
    )


def check_reachable(locations: Locations, args: argparse.Namespace, tracking: bool = True) -> None:
    """Stop with one line (``ServiceUnreachable``, exit 2) unless the storage (and tracking server)
    answer: before anything is written."""
    from search.study.services import check_services

    check_services(locations, args.connect_timeout, tracking=tracking)


def load_config(path: str, **overrides: Any) -> StudyConfig:
    """The validated study file (a ``ConfigError`` is a one-line error of ``main``, exit 2)."""
    from search.spec.study_file import load_study

    return load_study(path, **overrides)


def locations_of(args: argparse.Namespace) -> Locations:
    from search.locations import resolve_locations

    return resolve_locations(getattr(args, "storage", None), args.tracking_uri)


def study_name(text: str) -> str:
    """STUDY arguments are a study name or a study file."""
    return load_config(text).study.name if text.endswith(".toml") else text


def existing_study(args: argparse.Namespace, tracking: bool = True) -> tuple[Any, Locations]:
    """(study, locations) of STUDY (a name or a study file); one-line error when there is none or
    its storage (or, with ``tracking``, its tracking server) does not answer."""
    name = study_name(args.study)
    locations = locations_of(args)
    check_reachable(locations, args, tracking)
    from search.study.opening import load_existing_study

    return load_existing_study(name, locations), locations


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
