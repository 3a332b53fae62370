"""A study's trials as a table (pandas), shared by `status` and the parent run's CSV, and the
study report of `collatz-hpo report`: the table, a best-trial summary and PNG plots."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.errors import CollatzHpoError
from search.study.table import trials_table
from search.tracking import names

__all__ = ["Report", "ReportError", "log_report", "write_report"]


# --- the study report (`collatz-hpo report`) ----------------------------------------------------

MAX_CLASSES = 12  # the most frequent (k, k′) classes are shown (share 2^-(k+k′))


class ReportError(CollatzHpoError, ValueError):
    """A study that cannot be reported (no completed trial)."""


@dataclass
class Report:
    directory: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parent_run_id: str | None = None


def _class_histories(client: Any, run_id: str) -> dict[tuple[int, int], list[tuple[int, float]]]:
    """Validation exact match per (k, k′) class and epoch, from the run's MLflow metric histories."""
    run = client.get_run(run_id)
    classes = []
    for key in run.data.metrics:
        found = names.parse_class_metric(key, names.VAL_EXACT_MATCH)
        if found is not None:
            classes.append((*found, key))
    classes.sort(key=lambda c: (c[0] + c[1], c[0]))
    out = {}
    for k, kp, key in classes[:MAX_CLASSES]:
        history = client.get_metric_history(run_id, key)
        out[(k, kp)] = sorted((m.step, m.value) for m in history)
    return out


def write_report(study: optuna.Study, out_dir: str | Path, tracking_uri: str | None = None) -> Report:
    """Trials table, best-trial summary and PNG plots of ``study`` in ``out_dir``.

    With ``tracking_uri``, the best trial's per-(k, k′) class curves come from its MLflow run.
    Plots that cannot be drawn (importances with < 2 complete trials, ...) are skipped with a note.
    """
    try:
        best = keys.require_completed(study)
    except keys.NoCompletedTrialError as exc:
        raise ReportError(str(exc)) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    trials_table(study).to_csv(out / "trials.csv", index=False)
    report.files.append(out / "trials.csv")
    importances = _study_plots(study, report)
    final_classes = _best_trial_classes(best, tracking_uri, report, study.study_name)
    summary = _summary(study, best, final_classes, importances, report.notes)
    (out / "best_trial.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    report.files.append(out / "best_trial.json")
    (out / "summary.md").write_text(_markdown(summary, report))  # lists the files written before it
    report.files.append(out / "summary.md")
    return report


def _study_plots(study: optuna.Study, report: Report) -> dict[str, float]:
    """The plots of the whole study (optimization history, importances, exact match by base,
    learning curves); returns the parameter importances."""
    from search.report import plots

    trials = study.get_trials(deepcopy=False)
    name, metric = study.study_name, keys.study_metric(study, "value")
    maximize = keys.maximized(study)
    path = report.directory / "optimization_history.png"
    report.files.append(
        plots.optimization_history(trials, metric, maximize, path, f"{name}: optimization history")
    )
    importances = _importances(study, report)
    _exact_match_by_base(trials, report, name)
    path = report.directory / "learning_curves.png"
    report.files.append(plots.learning_curves(trials, metric, path, f"{name}: {metric} per epoch"))
    return importances


def _summary(
    study: optuna.Study,
    best: FrozenTrial,
    final_classes: dict[tuple[int, int], float],
    importances: dict[str, float],
    notes: list[str],
) -> dict[str, Any]:
    """``best_trial.json``: the study and its best trial at a glance."""
    maximize = keys.maximized(study)
    classes = sorted(final_classes.items(), key=lambda c: (sum(c[0]), c[0]))[:MAX_CLASSES]
    return {
        "study": study.study_name,
        "metric": keys.study_metric(study, "value"),
        "direction": "maximize" if maximize else "minimize",
        "trials": keys.state_counts(study.get_trials(deepcopy=False)),
        "best_trial": best.number,
        "best_value": best.value,
        "params": keys.trial_params(best),
        "test_exact_match": keys.test_exact_match(best),
        "epochs": len(best.intermediate_values),
        "stop_reason": keys.stop_reason(best),
        "mlflow_run_id": keys.run_id(best),
        "test_exact_match_by_class": {names.class_key(k, kp): v for (k, kp), v in classes},
        "param_importances": importances,
        "notes": notes,
    }


def _complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE]


def _importances(study: optuna.Study, report: Report) -> dict[str, float]:
    """fANOVA parameter importances and their plot (skipped with a note when they cannot be had)."""
    from search.report import plots

    complete = _complete(study.get_trials(deepcopy=False))
    if len(complete) < 2:
        report.notes.append(f"parameter importances skipped: {len(complete)} complete trial (needs 2)")
        return {}
    importances: dict[str, float] = {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        report.notes.append(f"parameter importances skipped: {exc}")
    if importances:
        path = report.directory / "param_importances.png"
        title = f"{study.study_name}: parameter importances"
        report.files.append(plots.param_importances(importances, path, title))
    elif not report.notes:
        report.notes.append("parameter importances skipped: no parameter varies among complete trials")
    return importances


def _exact_match_by_base(trials: list[FrozenTrial], report: Report, name: str) -> None:
    from search.report import plots

    points = []
    for t in _complete(trials):
        base = keys.trial_params(t).get("base")
        em = keys.test_exact_match(t)
        if base is not None and plots.finite(em):
            points.append((int(base), float(em)))
    if points:
        path = report.directory / "exact_match_by_base.png"
        report.files.append(plots.exact_match_by_base(points, path, f"{name}: test exact match by base"))
    else:
        report.notes.append("exact match by base skipped: no complete trial recorded a test exact match")


def _best_trial_classes(
    best: FrozenTrial, tracking_uri: str | None, report: Report, name: str
) -> dict[tuple[int, int], float]:
    """The best trial's per-class validation curves (plotted) and final test exact match per class."""
    from search.report import plots

    run_id = keys.run_id(best)
    if tracking_uri is None or run_id is None:
        report.notes.append("per-class curves skipped: no MLflow run of the best trial")
        return {}
    from search.tracking.client import COMMAND_WINDOW, ResilientClient

    client = ResilientClient(tracking_uri, COMMAND_WINDOW)
    curves = _class_histories(client, run_id)
    final: dict[tuple[int, int], float] = {}
    for key, value in client.get_run(run_id).data.metrics.items():
        found = names.parse_class_metric(key, names.TEST_EXACT_MATCH)
        if found is not None:
            final[found] = value
    if curves:
        path = report.directory / "best_trial_classes.png"
        title = f"{name}: trial {best.number}, validation exact match per (k, k′) class"
        report.files.append(plots.class_curves(curves, path, title))
    else:
        pattern = names.class_metric(names.VAL_EXACT_MATCH, "*", "*")
        report.notes.append(f"per-class curves skipped: run {run_id} has no {pattern} metrics")
    return final


def _markdown(s: dict[str, Any], report: Report) -> str:
    t = s["trials"]
    lines = [
        f"# Study `{s['study']}`",
        "",
        f"{t['complete']} complete, {t['pruned']} pruned, {t['fail']} failed trials; "
        f"objective `{s['metric']}` ({s['direction']}).",
        "",
        f"## Best trial: {s['best_trial']}",
        "",
        "| | |",
        "|---|---|",
        f"| {s['metric']} | {s['best_value']:.4f} |",
    ]
    if s["test_exact_match"] is not None:
        lines.append(f"| test exact match | {s['test_exact_match']:.4f} |")
    lines += [
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in s["params"].items()
    ]
    lines += [f"| epochs | {s['epochs']} |", f"| MLflow run | `{s['mlflow_run_id']}` |"]
    if s["stop_reason"]:
        lines.append(f"| stopped | {s['stop_reason']} |")
    if s["test_exact_match_by_class"]:
        lines += [
            "",
            "Test exact match per (k, k′) class:",
            "",
            "| k | k′ | share | exact match |",
            "|---|---|---|---|",
        ]
        for key, v in s["test_exact_match_by_class"].items():
            k, kp = names.parse_class_key(key)
            lines.append(f"| {k} | {kp} | {2.0 ** -(k + kp):.2%} | {v:.3f} |")
    if s["param_importances"]:
        lines += [
            "",
            "Parameter importances (fANOVA): "
            + ", ".join(f"{k} {v:.2f}" for k, v in s["param_importances"].items()),
        ]
    lines += ["", "## Files", ""]
    lines += [f"- `{p.name}`" for p in report.files] + ["- `summary.md`"]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def log_report(report: Report, study: optuna.Study, tracking_uri: str) -> str | None:
    """Log the report's files under ``report/`` of the study's parent run; returns its id."""
    from search.tracking.client import COMMAND_WINDOW, ResilientClient

    run_id = keys.parent_run_id(study)
    if run_id is None:
        report.notes.append("not logged to MLflow: the study has no parent run")
        return None
    client = ResilientClient(tracking_uri, COMMAND_WINDOW)
    for path in report.files:
        client.log_artifact(run_id, str(path), "report")
    report.parent_run_id = run_id
    return run_id
