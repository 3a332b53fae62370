"""A study's trials as a table: one row per trial, shared by `status`, the parent run's CSV and the
report, and the figures each row's numbers are (what they measure, on how many inputs).

An accuracy is shown with its 95 % Wilson interval (``search.stats``): validation exact match is
measured on the study's ``val_size`` inputs, held-out exact match on its ``test_size``. The
objective column holds COMPLETE trials only; a PRUNED trial's row says where it was stopped and
what the pruner saw there (its own signal, un-negated), in columns of their own. pandas loads only
where a DataFrame is asked for (``status`` prints the rows: no pandas, scipy or MLflow on its path).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.spec.runconfig import reported_sign
from search.stats import Interval, overlap, wilson
from search.tracking.names import VAL_EXACT_MATCH, BestFigures

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Figures",
    "Leaders",
    "best_figures",
    "best_text",
    "leaders",
    "replicate_groups",
    "status_lines",
    "status_table",
    "study_figures",
    "trial_rows",
    "trials_table",
]


@dataclass(frozen=True)
class Figures:
    """What a study's numbers are: its objective, the pruner's signal and the inputs behind each
    accuracy (None: the study keeps no config to say, e.g. one made in a test)."""

    metric: str
    maximize: bool
    signal: str  # what the pruner saw: ``study.prune_on``, else the objective
    sign: float  # the pruner was told ``sign * signal`` (-1: a minimized signal, a maximized study)
    unit: str  # the step of the pruner's values (and of the learning curves): "epochs" or "samples"
    val_n: int | None
    test_n: int | None

    @property
    def exact_match_objective(self) -> bool:
        return self.metric == VAL_EXACT_MATCH

    def value_interval(self, trial: FrozenTrial) -> Interval | None:
        """The objective of a COMPLETE trial with its interval (exact-match objectives only)."""
        if trial.state != TrialState.COMPLETE or not self.exact_match_objective:
            return None
        return _interval(trial.value, self.val_n)

    def objective_text(self, value: float) -> str:
        """An objective value as printed: with its interval when it is an exact match, else as it
        is (a loss)."""
        interval = _interval(value, self.val_n) if self.exact_match_objective else None
        return str(interval) if interval is not None else f"{value:.4f}"

    def test_interval(self, trial: FrozenTrial) -> Interval | None:
        """The held-out (test) exact match with its interval."""
        return _interval(keys.test_exact_match(trial), self.test_n)

    def pruned_at(self, trial: FrozenTrial) -> tuple[int, float] | None:
        """Where a PRUNED trial stopped: (step, the signal there, un-negated)."""
        if trial.state != TrialState.PRUNED or not trial.intermediate_values:
            return None
        step = max(trial.intermediate_values)
        return step, self.sign * trial.intermediate_values[step]

    def step_text(self, step: float) -> str:
        """``epoch 3`` or ``300k samples``."""
        return f"epoch {step:g}" if self.unit == "epochs" else f"{readable(step)} samples"


def readable(number: float) -> str:
    """``300k``, ``1.2M``: a count of samples at a glance."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size:
            return f"{number / size:.3g}{suffix}"
    return f"{number:g}"


def _interval(rate: float | None, n: int | None) -> Interval | None:
    if rate is None or n is None or not math.isfinite(rate) or not 0.0 <= rate <= 1.0:
        return None
    return wilson(rate, n)


def study_figures(study: optuna.Study) -> Figures:
    """The study's :class:`Figures`, from the study file it was created from."""
    config = keys.study_config(study) or {}
    section, data = config.get("study") or {}, config.get("data") or {}
    metric = keys.study_metric(study, "value") or "value"
    signal = section.get("prune_on") or metric
    maximize = keys.maximized(study)
    unit = (section.get("pruner") or {}).get("unit", "epochs")
    return Figures(
        metric,
        maximize,
        signal,
        reported_sign(signal, maximize),
        unit,
        data.get("val_size"),
        data.get("test_size"),
    )


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """:func:`trial_rows` as a DataFrame (the parent run's and the report's ``trials.csv``)."""
    import pandas as pd

    return pd.DataFrame(trial_rows(study))


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One dict per trial: number, state, the objective (COMPLETE only) and its interval bounds,
    where a pruned trial stopped and its signal there, real hyperparameters, the training samples it
    saw itself (hours on machines of different speed compare by samples), held-out exact match and
    its bounds, duration, note."""
    fig = study_figures(study)
    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        value, test, pruned = fig.value_interval(t), fig.test_interval(t), fig.pruned_at(t)
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                "value": t.value if t.state == TrialState.COMPLETE else None,
                "value_low": value.low if value else None,
                "value_high": value.high if value else None,
                f"pruned_at_{fig.unit}": pruned[0] if pruned else None,
                f"pruned_{fig.signal}": pruned[1] if pruned else None,
                **keys.trial_params(t),
                "epochs": len(t.intermediate_values),
                "train_samples": keys.train_samples(t),
                "test_exact_match": keys.test_exact_match(t),
                "test_low": test.low if test else None,
                "test_high": test.high if test else None,
                "seconds": round(duration, 1) if duration is not None else None,
                "note": _note(t),
            }
        )
    return rows


def _note(t: FrozenTrial) -> str:
    of = keys.replicate_of(t)
    notes = [f"replicate of trial {of}"] if of is not None else []
    notes += [n for n in (keys.fail_reason(t), keys.stop_reason(t)) if n]
    return "; ".join(notes)


def status_table(study: optuna.Study) -> tuple[list[str], list[list[str]]]:
    """`status`'s header and cells: exact matches in percent with the interval's half-width."""
    fig = study_figures(study)
    percent = " %" if fig.exact_match_objective and fig.val_n else ""
    header = ["trial", "state", f"{fig.metric}{percent}", "pruned at", f"pruner's {fig.signal}"]
    trials = study.get_trials(deepcopy=False)
    names = list(dict.fromkeys(k for t in trials for k in keys.trial_params(t)))  # params may differ
    header += [*names, "epochs", "test exact match %", "seconds", "note"]
    rows = []
    for t in trials:
        value, pruned = fig.value_interval(t), fig.pruned_at(t)
        objective = value.short() if value else _cell(t.value if t.state == TrialState.COMPLETE else None)
        params = keys.trial_params(t)
        test = fig.test_interval(t)
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append(
            [str(t.number), t.state.name, objective]
            + ([fig.step_text(pruned[0]), f"{pruned[1]:.4g}"] if pruned else ["-", "-"])
            + [_cell(params.get(n)) for n in names]
            + [str(len(t.intermediate_values)), test.short() if test else _percent(keys.test_exact_match(t))]
            + [_cell(round(duration, 1) if duration is not None else None), _note(t)]
        )
    return header, rows


def _cell(value: object) -> str:
    """A table cell: floats to 4 significant digits, nothing for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.2f}"


@dataclass(frozen=True)
class Leaders:
    """The best trial and the trials the data cannot tell from it (their intervals overlap)."""

    figure: str  # what was compared: the objective, or the held-out exact match
    best: FrozenTrial
    best_interval: Interval
    tied: list[tuple[FrozenTrial, Interval]]


def leaders(study: optuna.Study, fig: Figures | None = None) -> Leaders | None:
    """The best trial and the COMPLETE trials whose interval overlaps its own: on the objective
    when it is an exact match, else on the held-out exact match. None without intervals."""
    fig = fig or study_figures(study)
    best = keys.best_trial(study)
    if best is None:
        return None
    on_objective = fig.value_interval(best) is not None
    of = fig.value_interval if on_objective else fig.test_interval
    mine = of(best)
    if mine is None:
        return None
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    ranked = sorted(complete, key=lambda t: t.value, reverse=fig.maximize)
    tied = [(t, i) for t in ranked if t.number != best.number and (i := of(t)) and overlap(i, mine)]
    return Leaders(fig.metric if on_objective else "held-out exact match", best, mine, tied)


def replicate_groups(trials: Sequence[FrozenTrial]) -> dict[int, list[FrozenTrial]]:
    """Configurations trained with several seeds: trial number → [that trial, its COMPLETE replicates]."""
    by_number = {t.number: t for t in trials}
    groups: dict[int, list[FrozenTrial]] = {}
    for t in trials:
        of = keys.replicate_of(t)
        if of is not None and of in by_number and t.state == TrialState.COMPLETE:
            groups.setdefault(of, [by_number[of]]).append(t)
    return groups


def status_lines(study: optuna.Study) -> list[str]:
    """What `status` says below the table: the best trial's figures with their intervals, the
    trials the data cannot tell from it, and each replicated configuration's mean ± std."""
    fig = study_figures(study)
    best = keys.best_trial(study)
    if best is None:
        return []
    figures = [f"{fig.metric} {i}" for i in [fig.value_interval(best)] if i]
    figures += [f"held-out exact match {i}" for i in [fig.test_interval(best)] if i]
    lines = [f"best trial {best.number}: " + "; ".join(figures)] if figures else []
    lead = leaders(study, fig)
    if lead is not None and lead.tied:
        shown = ", ".join(str(t.number) for t, _ in lead.tied[:8]) + (" ..." if len(lead.tied) > 8 else "")
        lines.append(
            f"{len(lead.tied)} trial(s) cannot be told apart from it "
            f"({lead.figure} intervals overlap): {shown}"
        )
    for number, group in replicate_groups(study.get_trials(deepcopy=False)).items():
        values = [v for t in group if (v := keys.test_exact_match(t)) is not None]
        if len(values) >= 2:
            mean, std = statistics.fmean(values), statistics.stdev(values)
            lines.append(
                f"trial {number} and {len(group) - 1} replicate(s): held-out exact match "
                f"{100 * mean:.2f} ±{100 * std:.2f} % (mean ± std over {len(values)} seeds)"
            )
    return lines


def best_text(study: optuna.Study) -> str | None:
    """``61.70 % (58.65–64.66, n=1,000) (trial 9), held-out 60.10 % (57.94–62.22, n=2,000)``: the
    best trial's objective (an exact match with its interval, a loss as it is) and its held-out
    figure; None before a trial completes."""
    best = keys.best_trial(study)
    if best is None:
        return None
    fig = study_figures(study)
    test = fig.test_interval(best)
    return f"{fig.objective_text(best.value)} (trial {best.number})" + (f", held-out {test}" if test else "")


def best_figures(study: optuna.Study) -> BestFigures | None:
    """The best trial's objective and held-out exact match with their intervals (parent run)."""
    best = keys.best_trial(study)
    if best is None:
        return None
    fig = study_figures(study)
    return BestFigures(fig.value_interval(best), fig.test_interval(best))
