"""Helpers for tests that run the CLI in this process (importable: pytest's pythonpath has tests/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search.cli import main


def run_main(args: list[object], cwd: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``collatz-hpo ARGS`` in this process (fast: torch, MLflow and Optuna are already loaded)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = main([str(a) for a in args])
    finally:
        os.chdir(old)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """A user error: non-zero exit, one ``collatz-hpo: error:`` line naming every needle."""
    assert code != 0
    assert err.startswith("collatz-hpo: error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
