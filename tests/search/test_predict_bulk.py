"""`collatz-hpo predict --file` / stdin: a bad line is reported with its number, the others predicted."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from cli_helpers import run_main

# ``exported_tiny`` (tests/search/conftest.py): studies/tiny.toml launched and exported to exports/best.
ExportedStudy = Any


def _too_long(exported: ExportedStudy) -> int:
    """The smallest odd input whose digits + EOS do not fit the model's max length."""
    cfg = json.loads((exported.export_dir / "config.json").read_text())
    smallest = cfg["encoding"]["base"] ** (cfg["max_length"] - 1)  # one digit more than fits
    return smallest + 1 if smallest % 2 == 0 else smallest


def _lines(exported: ExportedStudy) -> str:
    return f"27\n97 abc  # two on one line\n\n28\n{_too_long(exported)}\n9\n"


def test_file_with_bad_lines_in_the_middle(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    from search.models.loading import load_export

    (exported_tiny.root / "bulk.txt").write_text(_lines(exported_tiny))
    code, out, err = run_main(["predict", "exports/best", "--file", "bulk.txt"], exported_tiny.root, capsys)
    assert code == 1
    assert err.splitlines() == [
        "collatz-hpo: predict: line 2: 'abc' is not an integer",
        "collatz-hpo: predict: line 4: 28 is even: κ is defined for odd n >= 1",
        err.splitlines()[2],
    ]
    assert err.splitlines()[2].startswith(
        f"collatz-hpo: predict: line 5: {_too_long(exported_tiny)} is too long"
    )
    rows = [line.split() for line in out.splitlines()[1:-1]]
    predicted = load_export(exported_tiny.export_dir).predict([27, 97, 9])
    assert [r[0] for r in rows] == ["27", "97", "abc", "28", str(_too_long(exported_tiny)), "9"]
    assert [r[3] for r in rows if r[3] == "error"] == ["error"] * 3
    good = [r for r in rows if r[3] != "error"]
    assert [r[1] for r in good] == [str(p) if p is not None else "?" for p in predicted]
    right = sum(p == k for p, k in zip(predicted, (31, 73, 7), strict=True))
    assert out.splitlines()[-1].startswith(f"{right}/3 right, 3 failed")


def test_stdin_json_marks_the_failed_rows(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(_lines(exported_tiny)))
    code, out, err = run_main(["predict", "exports/best", "--json"], exported_tiny.root, capsys)
    assert code == 1 and len(err.splitlines()) == 3
    rows = json.loads(out)
    assert [(r["line"], "error" in r) for r in rows] == [
        (1, False),
        (2, False),
        (2, True),
        (4, True),
        (5, True),
        (6, False),
    ]
    assert [r["kappa"] for r in rows if "error" not in r] == [31, 73, 7]
    assert {r["n"]: r["error"] for r in rows if "error" in r}["abc"] == "'abc' is not an integer"
    assert all(r["predicted"] is None and r["correct"] is False for r in rows if "error" in r)


def test_a_clean_file_exits_0(exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]) -> None:
    (exported_tiny.root / "clean.txt").write_text("27\n97\n")
    code, out, err = run_main(
        ["predict", "exports/best", "--file", "clean.txt", "--json"], exported_tiny.root, capsys
    )
    assert code == 0 and err == ""
    assert [(r["n"], r["line"]) for r in json.loads(out)] == [(27, 1), (97, 2)]
