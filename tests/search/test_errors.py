"""One error hierarchy: every error of the platform is a ``CollatzHpoError``, which ``main`` reports
once, as one line with the error's exit code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_main

import search
from search.cli import common, models, studies
from search.errors import EXIT_FAILURE, EXIT_USAGE, CollatzHpoError, one_line
from search.locations import first_line

SKIP = {"search.cli.__main__"}  # runs the CLI when imported


def _error_classes() -> dict[str, type[BaseException]]:
    """Every exception class a module of ``search`` defines, by dotted name (private ones, which
    never leave their module, aside)."""
    found = {}
    for info in pkgutil.walk_packages(search.__path__, "search."):
        if info.name in SKIP:
            continue
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, BaseException) and not name.startswith("_"):
                found[f"{info.name}.{name}"] = cls
    return found


def test_every_error_of_the_platform_is_a_collatz_hpo_error() -> None:
    classes = _error_classes()
    assert {"search.models.loading.ExportError", "search.cli.common.CliError"} <= classes.keys()
    assert len(classes) >= 13, sorted(classes)
    strays = sorted(name for name, cls in classes.items() if not issubclass(cls, CollatzHpoError))
    assert strays == []


@pytest.mark.parametrize(
    ("name", "builtin", "code"),
    [
        ("search.models.loading.ExportError", ValueError, EXIT_FAILURE),
        ("search.models.loading.InputError", ValueError, EXIT_USAGE),
        ("search.models.registry.ModelUriError", ValueError, EXIT_USAGE),
        ("search.report.study_report.ReportError", ValueError, EXIT_USAGE),
        ("search.trial.training.InitFromError", ValueError, EXIT_USAGE),
        ("search.keys.NoCompletedTrialError", ValueError, EXIT_USAGE),
        ("search.locations.LocationError", ValueError, EXIT_USAGE),
        ("search.spec.study_file.ConfigError", ValueError, EXIT_USAGE),
        ("search.study.services.ServiceUnreachable", RuntimeError, EXIT_USAGE),
        ("search.study.storage.StorageUnavailable", RuntimeError, EXIT_USAGE),
        ("search.tracking.client.TrackingUnavailable", RuntimeError, EXIT_USAGE),
        ("search.study.slurm_jobs.SlurmOptionError", ValueError, EXIT_USAGE),
        ("search.study.slurm_jobs.SlurmError", RuntimeError, EXIT_USAGE),
    ],
)
def test_errors_keep_their_builtin_base_and_the_cli_exit_code(name: str, builtin: type, code: int) -> None:
    module, _, cls_name = name.rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    assert issubclass(cls, CollatzHpoError) and issubclass(cls, builtin)
    assert cls.exit_code == code


def test_one_line_joins_lines_masks_passwords_and_names_a_silent_error() -> None:
    err = ValueError("cannot connect to postgresql://alice:s3cr3t@db/x:\n\n\tIs the server running?  \n")
    assert one_line(err) == "cannot connect to postgresql://alice:***@db/x: Is the server running?"
    assert one_line(KeyError()) == "KeyError"
    assert one_line("a  b\nc") == "a  b c"  # spaces inside a line (a quoted input) are kept
    assert first_line is one_line


class _Broken(CollatzHpoError):
    exit_code = 7


def _raising(exc: BaseException) -> Any:
    def command(args: Any) -> int:
        raise exc

    return command


def test_main_reports_a_collatz_hpo_error_once_as_one_line_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(studies, "_cmd_status", _raising(_Broken("it broke\nat postgresql://u:pw@h/db")))
    code, out, err = run_main(["status", "x"], tmp_path, capsys)
    assert (code, out) == (7, "")
    assert err == "collatz-hpo: error: it broke at postgresql://u:***@h/db\n"


def test_a_prefixed_command_names_itself_and_maps_its_declared_failures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(models, "_cmd_export", _raising(OSError("disk full")))
    code, _, err = run_main(["export", "x"], tmp_path, capsys)
    assert (code, err) == (EXIT_FAILURE, "collatz-hpo: error: export: disk full\n")
    assert common.exit_code_of(FileNotFoundError("x"), common.STORE_FAILURES) == EXIT_FAILURE  # subclass
    # an undeclared third-party error is a bug: it keeps its traceback
    monkeypatch.setattr(studies, "_cmd_status", _raising(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        run_main(["status", "x"], tmp_path, capsys)


def test_ctrl_c_is_exit_130_with_the_command_s_note(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(studies, "_cmd_status", _raising(KeyboardInterrupt()))
    assert run_main(["status", "x"], tmp_path, capsys) == (130, "", "collatz-hpo: interrupted\n")
    monkeypatch.setattr(studies, "_cmd_worker", _raising(KeyboardInterrupt()))
    code, _, err = run_main(["worker", "x.toml"], tmp_path, capsys)
    assert (code, err) == (
        130,
        "collatz-hpo: interrupted: the running trial is recorded as FAIL (interrupted)\n",
    )


def test_the_connect_timeout_default_is_the_services_default() -> None:
    from search.cli import build_parser
    from search.locations import CONNECT_TIMEOUT
    from search.study.services import check_services

    assert build_parser().parse_args(["status", "x"]).connect_timeout == CONNECT_TIMEOUT
    assert inspect.signature(check_services).parameters["timeout"].default == CONNECT_TIMEOUT
