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

from core.metrics import ERROR_KINDS

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
    # the samples each trial trained on itself, to compare runs by samples: tiny.toml's 300 a epoch
    assert list(table["train_samples"]) == [300 * e for e in table["epochs"]]


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
    # where the errors are: every class with its count and interval (the tiny model fails them all)
    assert "### Held-out exact match per (k, k′) class" in markdown
    assert summary["classes"] and sum(c["inputs"] for c in summary["classes"]) == 64
    assert all(c["low"] <= c["estimate"] <= c["high"] for c in summary["classes"])
    assert "## Is the best trial the best?" in markdown
    assert f"| held-out exact match | {100 * best.user_attrs['test_exact_match']:.2f} % (" in markdown
    assert f"| training samples seen | {summary['train_samples']:,} |" in markdown
    assert summary["train_samples"] == best.user_attrs["train_samples"] > 0


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


# --- intervals, where the errors are, leaders, what the plots say --------------------------------

# (k, k′) → (held-out inputs, right): two failing classes, two solved, one too small to list
CLASSES = {(1, 1): (300, 300), (1, 2): (150, 140), (2, 1): (150, 150), (3, 1): (40, 30), (5, 3): (3, 1)}
TEST_N = sum(n for n, _ in CLASSES.values())


def _figures_study(run_id: str | None = None) -> optuna.Study:
    """A study like cpu_hour: exact-match objective on 2,000 validation inputs, the pruner on
    val_loss (negated) per training samples, one pruned trial and a seed replicate."""
    study = optuna.create_study(study_name="figures", direction="maximize")
    study.set_user_attr(
        "config",
        {
            "study": {"metric": "val_exact_match", "prune_on": "val_loss", "pruner": {"unit": "samples"}},
            "data": {"range": [1, 1 << 20], "val_size": 2000, "test_size": TEST_N},
        },
    )
    dist = {"lr": FloatDistribution(1e-4, 1e-2, log=True)}
    curve = {100_000: -1.2, 300_000: -0.4}
    done = [
        (0.97, 0.95, run_id, None),
        (0.968, 0.94, None, None),
        (0.90, 0.88, None, None),
        (0.965, 0.93, None, 0),
    ]
    for value, test, run, replicate in done:
        attrs: dict[str, Any] = {"params": {"lr": 1e-3}, "test_exact_match": test}
        attrs.update({"mlflow_run_id": run} if run else {})
        attrs.update({"replicate_of": replicate} if replicate is not None else {})
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 1e-3},
                distributions=dist,
                value=value,
                intermediate_values=curve,
                user_attrs=attrs,
            )
        )
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 1e-2},
            distributions=dist,
            state=TrialState.PRUNED,
            intermediate_values={100_000: -1.25, 300_000: -0.7596},
        )
    )
    return study


def _new_run(exported_tiny: ExportedStudy, experiment: str) -> tuple[Any, str]:
    """A fresh MLflow run in the shared store: (client, run id)."""
    client = exported_tiny.store.client()
    return client, client.create_run(client.create_experiment(experiment)).info.run_id


def _predictions_csv(tmp_path: Path, rows: list[list[Any]]) -> Path:
    """``rows`` as a trial's test_predictions.csv (the columns the trial writes)."""
    import csv

    path = tmp_path / "test_predictions.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["n", "kappa", "predicted", "correct", "k", "k_prime"])
        writer.writerows(rows)
    return path


def _run_with_predictions(exported_tiny: ExportedStudy, tmp_path: Path) -> tuple[str, str]:
    """An MLflow run (in the shared store) with test_predictions.csv and per-class metrics."""

    client, run_id = _new_run(exported_tiny, f"report-classes-{tmp_path.name}")
    rows, n = [], 1
    for (k, kp), (count, right) in CLASSES.items():
        for i in range(count):
            rows.append([n, 1, 1, int(i < right), k, kp])
            n += 2
    client.log_artifact(run_id, str(_predictions_csv(tmp_path, rows)))
    for (k, kp), (count, right) in CLASSES.items():
        client.log_metric(run_id, f"test_exact_match_k{k}_kp{kp}", right / count)
        for epoch in (1, 2, 3):
            client.log_metric(
                run_id, f"val_exact_match_k{k}_kp{kp}", min(1.0, epoch * right / count / 3), step=epoch
            )
    client.set_terminated(run_id)
    return run_id, exported_tiny.store.mlflow_url


def test_class_table_lists_failing_classes_first_with_counts_and_intervals(
    exported_tiny: ExportedStudy, tmp_path: Path
) -> None:
    from search.report.study_report import write_report
    from search.stats import wilson

    run_id, url = _run_with_predictions(exported_tiny, tmp_path)
    report = write_report(_figures_study(run_id), tmp_path / "r", url)
    markdown = (tmp_path / "r" / "summary.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and " | **fails** |" in line]
    assert rows == [
        f"| 3 | 1 | 40 | 30 | {wilson(30 / 40, 40)} | **fails** |",  # the worst first
        f"| 1 | 2 | 150 | 140 | {wilson(140 / 150, 150)} | **fails** |",
    ]
    solved = markdown.index("| 1 | 1 | 300 | 300 |")
    assert markdown.index("| 3 | 1 | 40 |") < markdown.index("| 1 | 2 | 150 |") < solved
    assert "| 2 | 1 | 150 | 150 |" in markdown
    small = "1 classes with fewer than 20 held-out inputs are not listed (3 inputs, 2 wrong)"
    assert f"{small}: errors in (5, 3) 1/3" in markdown
    summary = json.loads((tmp_path / "r" / "best_trial.json").read_text())
    assert {(c["k"], c["k_prime"]): (c["inputs"], c["right"]) for c in summary["classes"]} == CLASSES
    assert (tmp_path / "r" / "best_trial_classes.png") in report.files


def test_plots_name_what_they_plot(
    exported_tiny: ExportedStudy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Learning curves: the pruner's val_loss un-negated per training sample; optimization history:
    complete trials' exact match with interval bars, the pruned one left out with a note; class
    curves: the failing classes, not the most frequent."""
    from search.report import plots
    from search.report.study_report import write_report

    drawn: dict[str, Any] = {}
    real_save = plots._save
    monkeypatch.setattr(
        plots, "_save", lambda fig, path: drawn.setdefault(path.name, fig) and real_save(fig, path)
    )
    run_id, url = _run_with_predictions(exported_tiny, tmp_path)
    report = write_report(_figures_study(run_id), tmp_path / "r", url)
    curves = drawn["learning_curves.png"].axes[0]
    assert curves.get_ylabel() == "val_loss" and curves.get_xlabel() == "training samples seen"
    assert "val_loss per training samples seen" in curves.get_title()
    assert {y for line in curves.get_lines() for y in line.get_ydata()} == {1.2, 0.4, 1.25, 0.7596}
    history = drawn["optimization_history.png"].axes[0]
    assert history.get_ylabel() == "val_exact_match (bars: 95 % interval)"
    assert any("1 pruned trial(s) not shown: the pruner saw val_loss" in t.get_text() for t in history.texts)
    assert any("pruned trial(s) left out" in n for n in report.notes)
    classes = drawn["best_trial_classes.png"].axes[0]
    labels = [t.get_text() for t in classes.get_legend().get_texts()]
    assert [label.split(" (")[0] for label in labels] == ["k=1, k′=2", "k=3, k′=1", "k=5, k′=3"]
    assert "held-out 30/40" in labels[1]


@pytest.mark.parametrize(
    ("only_best", "only_other", "verdict"),
    [
        (108, 38, "Yes, on the held-out inputs: the val_exact_match intervals of 1 trial(s) overlap"),
        (38, 108, "disagree with the val_exact_match: the paired test finds trial(s) 0 right more often"),
        (50, 45, "The data cannot name a single winner: 1 trial(s) are indistinguishable from trial 1"),
    ],
)
def test_paired_test_verdict_follows_its_direction(only_best: int, only_other: int, verdict: str) -> None:
    # overlapping intervals, then the paired test on the held-out inputs: apart in favour of the
    # best, apart in favour of the other, or not apart (cpu_hour_long's two trials: 108 against 38)
    from search.report.leaders import Paired, leaders_markdown
    from search.stats import mcnemar, wilson
    from search.study.table import Leaders

    study = optuna.create_study(direction="maximize")
    for value in (0.969, 0.973):
        study.add_trial(optuna.trial.create_trial(value=value))
    other, best = study.trials
    lead = Leaders("val_exact_match", best, wilson(0.973, 2000), [(other, wilson(0.969, 2000))])
    paired = Paired(0, only_best, only_other, mcnemar(only_best, only_other))
    text = "\n".join(leaders_markdown(lead, [paired]))
    assert verdict in text, text
    assert ("differs" in text) == paired.differs


def test_report_says_which_leaders_cannot_be_told_apart(tmp_path: Path) -> None:
    from search.report.study_report import write_report
    from search.stats import wilson

    write_report(_figures_study(), tmp_path / "r")
    markdown = (tmp_path / "r" / "summary.md").read_text()
    # 97.0 % vs 96.8 % and 96.5 % on 2,000 validation inputs overlap; 90 % does not
    assert "The data cannot name a single winner: 2 trial(s) are indistinguishable from trial 0" in markdown
    assert f"| 1 | {wilson(0.968, 2000)} | - |" in markdown
    assert "\n| 2 | " not in markdown
    assert f"| val_exact_match | {wilson(0.97, 2000)} |" in markdown
    summary = json.loads((tmp_path / "r" / "best_trial.json").read_text())
    assert summary["best_value_interval"]["n"] == 2000
    assert summary["test_exact_match_interval"]["n"] == TEST_N
    # the seed replicate of trial 0: mean ± std over 2 seeds
    assert (
        "## Seed replicates" in markdown
        and "| trial 0 | 2 | 94.00 ±1.41 % over 2 seeds (mean in 81.29–100.00;" in markdown
    )


# --- why the failing classes fail: wrong answers by kind ------------------------------------------

# (k, k′) → inputs and the kinds of its wrong answers, each built below from κ(n) and checked with
# core's error_kind: (2, 1) holds n = 27 answered 62 = 2·κ(27), the paper's κ·2^l error
TAXONOMY = {
    (1, 1): (30, []),
    (1, 2): (25, ["wrong_k_prime"] * 3 + ["undecodable"] * 2),
    (2, 1): (24, ["wrong_k_prime", "wrong_k", "wrong_k", "other"]),
    (3, 1): (22, ["wrong_k_prime", "undecodable"]),
    (5, 1): (3, ["other"]),  # too small to be listed: only in the whole set's line
}


def _wrong_answer(n: int, kind: str) -> str:
    """A wrong prediction of ``kind`` for n, as test_predictions.csv holds it ("" undecodable)."""
    from core.collatz import long_step, loop_lengths
    from core.metrics import error_kind

    kappa, (k, _) = long_step(n), loop_lengths(n)
    made = {
        "wrong_k_prime": 2 * kappa,  # one halving too few
        "wrong_k": 3 * ((n + 1) >> (k - 1)) - 1 if k > 1 else None,  # stopped one (3x+1)/2 step early
        "other": kappa + 2,
        "undecodable": None,
    }[kind]
    assert error_kind(n, made) == kind, (n, made)  # the real classifier agrees with the intent
    return "" if made is None else str(made)


def _taxonomy_run(exported_tiny: ExportedStudy, tmp_path: Path, predictions: bool = True) -> tuple[str, str]:
    """A run with test_predictions.csv of real inputs of each TAXONOMY class (n = 27 first, then
    odd n from 10,001 on) and per-class test metrics; without the CSV when ``predictions`` is False."""

    from core.collatz import long_step, loop_lengths

    inputs: dict[tuple[int, int], list[int]] = {c: [27] if c == (2, 1) else [] for c in TAXONOMY}
    n = 10_001
    while any(len(inputs[c]) < count for c, (count, _) in TAXONOMY.items()):
        c = loop_lengths(n)
        if c in inputs and len(inputs[c]) < TAXONOMY[c][0]:
            inputs[c].append(n)
        n += 2
    client, run_id = _new_run(exported_tiny, f"report-kinds-{tmp_path.name}")
    rows = []
    for (k, kp), (count, wrong) in TAXONOMY.items():
        for i, n in enumerate(inputs[k, kp]):
            answer = _wrong_answer(n, wrong[i]) if i < len(wrong) else str(long_step(n))
            rows.append([n, long_step(n), answer, int(i >= len(wrong)), k, kp])
        client.log_metric(run_id, f"test_exact_match_k{k}_kp{kp}", 1 - len(wrong) / count)
    if predictions:
        client.log_artifact(run_id, str(_predictions_csv(tmp_path, rows)))
    client.set_terminated(run_id)
    return run_id, exported_tiny.store.mlflow_url


def _kinds_by_class(records: list[dict[str, Any]]) -> dict[tuple[int, int], dict[str, int]]:
    return {(r["k"], r["k_prime"]): {kind: r[kind] for kind in ERROR_KINDS} for r in records}


def test_failing_classes_wrong_answers_by_kind(exported_tiny: ExportedStudy, tmp_path: Path) -> None:
    from search.report.study_report import write_report

    run_id, url = _taxonomy_run(exported_tiny, tmp_path)
    write_report(_figures_study(run_id), tmp_path / "r", url)
    markdown = (tmp_path / "r" / "summary.md").read_text()
    head = "### Why the failing classes fail: wrong answers by kind"
    assert markdown.index("### Held-out exact match per (k, k′) class") < markdown.index(head)
    section = markdown[markdown.index(head) :].split("\n\n")
    assert "- **wrong k′ (κ·2^l)**: the right arithmetic with a wrong number of halvings" in section[1]
    assert section[3].splitlines() == [
        "| k | k′ | wrong | wrong k′ (κ·2^l) | wrong k | wrong digits | undecodable |",
        "|---|---|---|---|---|---|---|",
        "| 1 | 2 | 5 | 3 | 0 | 0 | 2 |",  # failing classes in the table's order: 80 %, 83 %, 91 %
        "| 2 | 1 | 4 | 1 | 2 | 1 | 0 |",
        "| 3 | 1 | 2 | 1 | 0 | 0 | 1 |",
        "| all | all | 12 | 5 (41.7 %) | 2 (16.7 %) | 2 (16.7 %) | 3 (25.0 %) |",
    ]
    expected = {c: {kind: wrong.count(kind) for kind in ERROR_KINDS} for c, (_, wrong) in TAXONOMY.items()}
    csv_rows = pd.read_csv(tmp_path / "r" / "best_trial_classes.csv").to_dict("records")
    assert {(r["k"], r["k_prime"]): {kind: r[kind] for kind in ERROR_KINDS} for r in csv_rows} == expected
    summary = json.loads((tmp_path / "r" / "best_trial.json").read_text())
    assert {
        (c["k"], c["k_prime"]): {kind: c[kind] for kind in ERROR_KINDS} for c in summary["classes"]
    } == expected
    counts = {"wrong_k_prime": 5, "wrong_k": 2, "other": 2, "undecodable": 3}
    assert summary["error_kinds"] == {
        "errors": 12,
        "counts": counts,
        "shares": {kind: c / 12 for kind, c in counts.items()},
    }


def test_a_run_without_predictions_says_so_in_one_line(exported_tiny: ExportedStudy, tmp_path: Path) -> None:
    """An old run (per-class metrics, no test_predictions.csv): one line instead of the kinds."""
    from search.report.study_report import write_report

    run_id, url = _taxonomy_run(exported_tiny, tmp_path, predictions=False)
    write_report(_figures_study(run_id), tmp_path / "r", url)
    markdown = (tmp_path / "r" / "summary.md").read_text()
    assert "| 3 | 1 | ≈" in markdown  # the class table, estimated from the metrics
    assert "wrong answers by kind" not in markdown and "| wrong k′" not in markdown
    note = [line for line in markdown.splitlines() if line.startswith("Kinds of error not known")]
    assert note == [
        "Kinds of error not known: the best trial's run kept no test_predictions.csv "
        "(an older run), so its wrong answers cannot be read."
    ]
    summary = json.loads((tmp_path / "r" / "best_trial.json").read_text())
    assert summary["error_kinds"] is None
    assert summary["classes"] and all(c[kind] is None for c in summary["classes"] for kind in ERROR_KINDS)
    table = pd.read_csv(tmp_path / "r" / "best_trial_classes.csv")
    assert table[list(ERROR_KINDS)].isna().all().all()
