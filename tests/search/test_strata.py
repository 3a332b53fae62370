"""Stratified studies (``[study] stratify = "base"``): the study file's key, checked before anything
is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_helpers import assert_one_line_error, run_main

# --- the study file --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            '"lr"',
            "search.lr is a range; only a parameter searched with { choices = [...] } can be stratified",
        ),
        ('"dropout"', "search.dropout is fixed; only a parameter searched with { choices = [...] }"),
        ('"balance"', "search.balance is not set"),
        ('"nhead"', "nhead cannot be stratified: the heads on offer depend on d_model"),
        ('"bse"', "unknown [search] parameter 'bse'; did you mean 'base'?"),
        ("true", "expected a string, got bool True"),
    ],
)
def test_only_a_searched_categorical_can_be_stratified(
    tmp_path: Path, hpo: Any, capsys: pytest.CaptureFixture[str], value: str, problem: str
) -> None:
    path = hpo.write_study(tmp_path, hpo.study_toml("bad", study_extra=f"stratify = {value}"))
    code, _, err = run_main(["launch", path], tmp_path, capsys)
    assert code == 2
    assert_one_line_error(code, err, f"{path}: study.stratify: {problem}")
    assert not (tmp_path / "mlruns").exists()  # nothing written


# --- equal trials per base -------------------------------------------------------------------------


# --- sampling and pruning within a base --------------------------------------------------------------


# --- the report -------------------------------------------------------------------------------------
