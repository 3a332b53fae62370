"""The study report of `collatz-hpo report`: the trials table, a best-trial summary with every
accuracy's 95 % interval, the best trial per base (per value of a stratified parameter) with the
budget each had, where the best trial's errors are (per class) and of what kind, whether the
leaders can be told apart, the seed replicates, and PNG plots that name what they plot."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.errors import CollatzHpoError
from search.report import classes, error_kinds, paper, strata
from search.report.leaders import leaders_markdown, paired_tests, replicates_markdown
from search.stats import Interval
from search.study.table import Figures, leaders, replicate_groups, study_figures, trials_table
from search.tracking import names

__all__ = ["Report", "ReportError", "log_report", "write_report"]


# --- the study report (`collatz-hpo report`) ----------------------------------------------------


class ReportError(CollatzHpoError, ValueError):
    """A study that cannot be reported (no completed trial)."""


@dataclass
class Report:
    directory: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parent_run_id: str | None = None


def _class_histories(
    client: Any, run_id: str, wanted: Collection[tuple[int, int]] | None = None
) -> dict[tuple[int, int], list[tuple[int, float]]]:
    """Validation exact match per (k, k′) class and epoch, from the run's MLflow metric histories
    (of the ``wanted`` classes; all by default)."""
    run = client.get_run(run_id)
    out = {}
    for key in run.data.metrics:
        found = names.parse_class_metric(key, names.VAL_EXACT_MATCH)
        if found is not None and (wanted is None or found in wanted):
            out[found] = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
    return out


def write_report(study: optuna.Study, out_dir: str | Path, tracking_uri: str | None = None) -> Report:
    """Trials table, best-trial summary and PNG plots of ``study`` in ``out_dir``.

    With ``tracking_uri``, the best trial's per-class held-out table and validation curves come
    from its MLflow run, and the leaders are compared pairwise on their held-out predictions.
    Plots that cannot be drawn (importances with < 2 complete trials, ...) are skipped with a note.
    """
    try:
        best = keys.require_completed(study)
    except keys.NoCompletedTrialError as exc:
        raise ReportError(str(exc)) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report, fig = Report(out), study_figures(study)
    trials_table(study).to_csv(out / "trials.csv", index=False)
    report.files.append(out / "trials.csv")
    importances = _study_plots(study, fig, report)
    client = None
    if tracking_uri is not None:
        from search.tracking.client import COMMAND_WINDOW, ResilientClient

        client = ResilientClient(tracking_uri, COMMAND_WINDOW)
    table = _best_trial_classes(best, fig, client, report, study.study_name)
    lead = leaders(study, fig)
    paired = paired_tests(lead, _correct_of(client)) if lead is not None and client is not None else []
    summary = _summary(study, fig, best, table, importances, report.notes)
    sections = _markdown(summary, report) + _by_stratum(study, fig, summary, client)
    (out / "best_trial.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    report.files.append(out / "best_trial.json")
    sections += classes.markdown(table) + error_kinds.markdown(table) if table is not None else []
    sections += leaders_markdown(lead, paired)
    sections += replicates_markdown(replicate_groups(study.get_trials(deepcopy=False)), fig)
    sections += _files(report)
    (out / "summary.md").write_text("\n".join(sections) + "\n")  # lists the files written before it
    report.files.append(out / "summary.md")
    return report


def _by_stratum(study: optuna.Study, fig: Figures, summary: dict[str, Any], client: Any) -> list[str]:
    """The best trial per value of the stratified parameter (or per base): summary.md's section,
    and ``by_stratum`` in the summary (None: no such parameter); per base, against the paper."""
    found = strata.stratified_param(study)
    summary["by_stratum"] = None
    if found is None:
        return []
    name, stratified = found
    groups = strata.by_stratum(study, name, fig.maximize)
    summary["by_stratum"] = strata.to_json(name, groups, fig)
    lines = strata.markdown(name, groups, fig, stratified)
    if name != "base":
        return lines
    rows = [row for g in groups if (row := _paper_row(g, fig, client)) is not None]
    summary["against_paper"] = paper.to_json(rows)
    return lines + paper.markdown(rows)


def _paper_row(group: strata.Stratum, fig: Figures, client: Any) -> paper.BaseRow | None:
    """A base's best trial with its held-out figures per class (from its MLflow run, if any)."""
    test = fig.test_interval(group.best) if group.best is not None else None
    if test is None:
        return None
    run_id = keys.run_id(group.best)
    metrics = client.get_run(run_id).data.metrics if client is not None and run_id else {}
    by_class = {
        found: value
        for key, value in metrics.items()
        if (found := names.parse_class_metric(key, names.TEST_EXACT_MATCH)) is not None
    }
    return paper.BaseRow(int(group.value), test.estimate, test.low, test.high, by_class)


def _correct_of(client: Any) -> Callable[[FrozenTrial], dict[str, bool] | None]:
    """A trial's held-out answers (input → right), from its run's predictions."""

    def correct(trial: FrozenTrial) -> dict[str, bool] | None:
        run_id = keys.run_id(trial)
        rows = classes.read_predictions(client, run_id) if run_id else None
        return {r["n"]: r["correct"] == "1" for r in rows} if rows is not None else None

    return correct


def _study_plots(study: optuna.Study, fig: Figures, report: Report) -> dict[str, float]:
    """The plots of the whole study (optimization history, importances, exact match by base,
    learning curves); returns the parameter importances."""
    from search.report import plots

    trials = study.get_trials(deepcopy=False)
    name = study.study_name
    path = report.directory / "optimization_history.png"
    title = f"{name}: {fig.metric} per trial"
    report.files.append(plots.optimization_history(trials, fig, path, title))
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    if pruned and fig.signal != fig.metric:
        report.notes.append(
            f"optimization history: {pruned} pruned trial(s) left out (the pruner saw {fig.signal}, "
            f"not {fig.metric}; see learning_curves.png)"
        )
    importances = _importances(study, report)
    _exact_match_by_base(trials, fig, report, name)
    path = report.directory / "learning_curves.png"
    step = "epoch" if fig.unit == "epochs" else "training samples seen"
    title = f"{name}: {fig.signal} per {step} (what the pruner saw)"
    report.files.append(plots.learning_curves(trials, fig, path, title))
    return importances


def _summary(
    study: optuna.Study,
    fig: Figures,
    best: FrozenTrial,
    table: classes.ClassTable | None,
    importances: dict[str, float],
    notes: list[str],
) -> dict[str, Any]:
    """``best_trial.json``: the study and its best trial at a glance, figures with intervals."""
    value, test = fig.value_interval(best), fig.test_interval(best)
    by_class = (
        {names.class_key(r.k, r.kp): r.right / r.count for r in (table.rows + table.small)} if table else {}
    )
    return {
        "study": study.study_name,
        "metric": fig.metric,
        "direction": "maximize" if fig.maximize else "minimize",
        "trials": keys.state_counts(study.get_trials(deepcopy=False)),
        "best_trial": best.number,
        "best_value": best.value,
        "best_value_interval": value.as_dict() if value else None,
        "params": keys.trial_params(best),
        "test_exact_match": keys.test_exact_match(best),
        "test_exact_match_interval": test.as_dict() if test else None,
        "epochs": len(best.intermediate_values),
        "train_samples": keys.train_samples(best),
        "stop_reason": keys.stop_reason(best),
        "mlflow_run_id": keys.run_id(best),
        "test_exact_match_by_class": by_class,
        "classes": table.to_json() if table else [],
        "error_kinds": error_kinds.to_json(table) if table else None,
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


def _exact_match_by_base(trials: list[FrozenTrial], fig: Figures, report: Report, name: str) -> None:
    from search.report import plots

    points = []
    for t in _complete(trials):
        base, em = keys.trial_params(t).get("base"), keys.test_exact_match(t)
        if base is not None and em is not None and math.isfinite(em):
            points.append((int(base), float(em), fig.test_interval(t)))
    if points:
        path = report.directory / "exact_match_by_base.png"
        report.files.append(plots.exact_match_by_base(points, path, f"{name}: held-out exact match by base"))
    else:
        report.notes.append("exact match by base skipped: no complete trial recorded a test exact match")


def _best_trial_classes(
    best: FrozenTrial, fig: Figures, client: Any, report: Report, name: str
) -> classes.ClassTable | None:
    """The best trial's held-out exact match per class (table, CSV) and the validation curves
    of the classes it fails (plot)."""
    from search.report import plots

    run_id = keys.run_id(best)
    if client is None or run_id is None:
        report.notes.append("per-class results skipped: no MLflow run of the best trial")
        return None
    metrics = client.get_run(run_id).data.metrics
    table = classes.class_table(classes.read_predictions(client, run_id), metrics, fig.test_n)
    if table is not None:
        report.files.append(classes.save(table, report.directory / "best_trial_classes.csv"))
    available = [c for key in metrics if (c := names.parse_class_metric(key, names.VAL_EXACT_MATCH))]
    wanted = classes.plotted_classes(table, available)
    curves = _class_histories(client, run_id, set(wanted))
    if curves:
        failing = table is not None and bool(table.failing)
        which = "the classes it fails on the held-out set" if failing else "all solved: the most frequent"
        title = f"{name}: trial {best.number}, validation exact match per (k, k′) class\n({which})"
        there = {(r.k, r.kp): f"{r.right}/{r.count}" for r in table.rows + table.small} if table else {}
        path = report.directory / "best_trial_classes.png"
        report.files.append(plots.class_curves(curves, path, title, there))
        missing = len(table.failing) - len(curves) if failing and table is not None else 0
        if missing > 0:
            report.notes.append(
                f"per-class curves: {missing} failing class(es) have no validation curve (too few inputs)"
            )
    else:
        pattern = names.class_metric(names.VAL_EXACT_MATCH, "*", "*")
        report.notes.append(f"per-class curves skipped: run {run_id} has no {pattern} metrics")
    return table


def _markdown(s: dict[str, Any], report: Report) -> list[str]:
    """summary.md's head: the study and its best trial, figures with their 95 % intervals."""
    t = s["trials"]
    lines = [
        f"# Study `{s['study']}`",
        "",
        f"{t['complete']} complete, {t['pruned']} pruned, {t['fail']} failed trials; "
        f"objective `{s['metric']}` ({s['direction']}). Intervals are 95 % Wilson intervals on the "
        'inputs each figure was measured on (docs/results.md, "How sure is this?").',
        "",
        f"## Best trial: {s['best_trial']}",
        "",
        "| | |",
        "|---|---|",
        f"| {s['metric']} | {_figure(s['best_value'], s['best_value_interval'])} |",
    ]
    if s["test_exact_match"] is not None:
        lines.append(
            f"| held-out exact match | {_figure(s['test_exact_match'], s['test_exact_match_interval'])} |"
        )
    lines += [
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in s["params"].items()
    ]
    lines.append(f"| epochs | {s['epochs']} |")
    if s["train_samples"] is not None:
        lines.append(f"| training samples seen | {s['train_samples']:,} |")
    lines.append(f"| MLflow run | `{s['mlflow_run_id']}` |")
    if s["stop_reason"]:
        lines.append(f"| stopped | {s['stop_reason']} |")
    if s["param_importances"]:
        lines += [
            "",
            "Parameter importances (fANOVA): "
            + ", ".join(f"{k} {v:.2f}" for k, v in s["param_importances"].items()),
        ]
    return lines


def _figure(value: float, interval: dict[str, Any] | None) -> str:
    if interval is None:
        return f"{value:.4f}"
    return str(Interval(**interval))


def _files(report: Report) -> list[str]:
    lines = ["", "## Files", ""]
    lines += [f"- `{p.name}`" for p in report.files] + ["- `summary.md`"]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return lines


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
