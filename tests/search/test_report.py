"""`collatz-hpo report`: trials table, best-trial summary, PNG plots, logged to the parent run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error, run_main
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState
from outage_helpers import drop_first_call

# ``exported_tiny`` (tests/search/conftest.py): studies/tiny.toml launched in its own store.
ExportedStudy = Any
PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = (
    "optimization_history.png",
    "param_importances.png",
    "exact_match_by_base.png",
    "learning_curves.png",
    "best_trial_classes.png",
)


@pytest.fixture(scope="module")
def report(exported_tiny: ExportedStudy, hpo: Any) -> tuple[Path, str]:
    """`collatz-hpo report studies/tiny.toml` run once (default folder reports/tiny)."""
    proc = hpo.check(hpo.run_cli(["report", "studies/tiny.toml"], exported_tiny.root))
    return exported_tiny.root / "reports" / "tiny", proc.stdout


def test_report_files_exist_and_are_not_empty(report: tuple[Path, str], exported_tiny: ExportedStudy) -> None:
    out, stdout = report
    for name in PLOTS:
        path = out / name
        assert path.is_file(), stdout
        assert path.stat().st_size > 1000
        assert path.read_bytes()[:8] == PNG
        assert name in stdout
    trials = exported_tiny.store.study("tiny").trials
    table = pd.read_csv(out / "trials.csv")
    assert list(table["trial"]) == [t.number for t in trials]
    assert list(table["state"]) == [t.state.name for t in trials]
    assert {"base", "d_model", "nhead", "num_layers", "lr", "test_exact_match"} <= set(table.columns)


def test_best_trial_summary(report: tuple[Path, str], exported_tiny: ExportedStudy) -> None:
    out, _ = report
    study = exported_tiny.store.study("tiny")
    best = study.best_trial
    summary = json.loads((out / "best_trial.json").read_text())
    assert summary["best_trial"] == best.number
    assert summary["best_value"] == best.value
    assert summary["params"] == best.user_attrs["params"]
    assert summary["test_exact_match"] == best.user_attrs["test_exact_match"]
    assert summary["mlflow_run_id"] == best.user_attrs["mlflow_run_id"]
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == len(study.trials)
    assert summary["test_exact_match_by_class"], "per-class test exact match of the best trial"
    assert set(summary["param_importances"]) == {"base", "d_model", "num_layers", "lr", "nhead"}
    markdown = (out / "summary.md").read_text()
    assert f"## Best trial: {best.number}" in markdown
    assert "| k | k′ | share | exact match |" in markdown


def test_report_files_are_artifacts_of_the_parent_run(
    report: tuple[Path, str], exported_tiny: ExportedStudy
) -> None:
    out, stdout = report
    parent = exported_tiny.store.study("tiny").user_attrs["mlflow_parent_run_id"]
    assert parent in stdout
    client = exported_tiny.store.client()
    listed = {Path(a.path).name: a.file_size for a in client.list_artifacts(parent, "report")}
    for path in out.iterdir():
        assert listed.get(path.name) == path.stat().st_size, (path.name, listed)


def test_class_curves_come_from_the_logged_histories(exported_tiny: ExportedStudy, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from search.report.study_report import _class_histories

    best = exported_tiny.store.study("tiny").best_trial
    client = MlflowClient(tracking_uri=exported_tiny.store.mlflow_url)
    curves = _class_histories(client, best.user_attrs["mlflow_run_id"])
    assert (1, 1) in curves
    epochs = len(best.intermediate_values)
    assert [step for step, _ in curves[(1, 1)]] == list(range(1, epochs + 1))


def test_report_rides_out_dropped_connections(
    exported_tiny: ExportedStudy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The report's reads (the best trial's run) and writes (its files) go through the retrying client."""
    from mlflow.tracking import MlflowClient

    from search.report.study_report import Report, log_report, write_report

    url = exported_tiny.store.mlflow_url
    reads = drop_first_call(monkeypatch, MlflowClient, "get_run")
    report = write_report(exported_tiny.store.study("tiny"), tmp_path / "r", url)
    assert len(reads) >= 2 and (tmp_path / "r" / "best_trial_classes.png") in report.files
    # logged to a parent run of its own: the shared study's report/ artifacts stay the CLI's
    client = exported_tiny.store.client()
    parent = client.create_run(client.create_experiment("report-outage")).info.run_id
    study = optuna.create_study(study_name="report-outage")
    study.set_user_attr("mlflow_parent_run_id", parent)
    writes = drop_first_call(monkeypatch, MlflowClient, "log_artifact")
    assert log_report(Report(tmp_path, [tmp_path / "r" / "summary.md"]), study, url) == parent
    assert len(writes) == 2
    assert [a.path for a in client.list_artifacts(parent, "report")] == ["report/summary.md"]


def _study(n_complete: int) -> optuna.Study:
    study = optuna.create_study(study_name="mem", direction="maximize")
    dists = {"base": CategoricalDistribution([16, 24]), "lr": FloatDistribution(1e-4, 1e-2, log=True)}
    for i in range(n_complete):
        params = {"base": [16, 24][i % 2], "lr": 10 ** -(2 + i % 3)}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=0.1 * (i + 1),
                intermediate_values={1: 0.05 * (i + 1), 2: 0.1 * (i + 1)},
                user_attrs={"params": params, "test_exact_match": 0.1 * i},
            )
        )
    study.add_trial(
        optuna.trial.create_trial(
            params={"base": 16, "lr": 1e-3},
            distributions=dists,
            state=TrialState.PRUNED,
            intermediate_values={1: 0.0},
        )
    )
    return study


def test_one_complete_trial_skips_importances_with_a_note(tmp_path: Path) -> None:
    from search.report.study_report import write_report

    report = write_report(_study(1), tmp_path / "r")
    names = {p.name for p in report.files}
    assert "param_importances.png" not in names
    assert {
        "trials.csv",
        "optimization_history.png",
        "learning_curves.png",
        "exact_match_by_base.png",
    } <= names
    assert any("parameter importances skipped" in n for n in report.notes)
    assert "parameter importances skipped" in (tmp_path / "r" / "summary.md").read_text()


def test_several_complete_trials_plot_importances(tmp_path: Path) -> None:
    from search.report.study_report import write_report

    report = write_report(_study(4), tmp_path / "r")
    assert (tmp_path / "r" / "param_importances.png").read_bytes()[:8] == PNG
    assert not [n for n in report.notes if "importances" in n]


# --- bad input ---------------------------------------------------------------------------------


def test_unknown_study(exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["report", "nosuch"], exported_tiny.root, capsys)
    assert_one_line_error(code, err, "no study named 'nosuch'")


def test_study_without_a_completed_trial(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    study = optuna.create_study(study_name="report-nothing-done", storage=exported_tiny.store.optuna_url)
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    code, _, err = run_main(["report", "report-nothing-done"], exported_tiny.root, capsys)
    assert_one_line_error(code, err, "no completed trial", "1 fail")
    assert not (exported_tiny.root / "reports" / "report-nothing-done").exists()
