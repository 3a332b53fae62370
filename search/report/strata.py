"""The report's table of the best trial per value of the stratified parameter (``[study]
stratify``; for a study that searched several bases without it, per base): what the paper's
table of bases is, by search, with each value's budget beside its figure so a reader sees that
the comparison was fair (or by how much it was not)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.study.strata import stratum_of
from search.study.table import Figures, readable

__all__ = ["Stratum", "by_stratum", "markdown", "stratified_param", "to_json"]


@dataclass(frozen=True)
class Stratum:
    """One value's search trials: how many, what they cost, and the best of them."""

    value: Any
    trials: list[FrozenTrial]  # the search trials with this value, every state
    best: FrozenTrial | None  # the best COMPLETE one (None: none completed)

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)

    @property
    def counted(self) -> int:
        """COMPLETE + PRUNED: what the stratified study made equal."""
        return self.count(TrialState.COMPLETE) + self.count(TrialState.PRUNED)

    @property
    def samples(self) -> int | None:
        """Training samples over every trial of the value (None: some trial did not record them)."""
        recorded = [keys.train_samples(t) for t in self.trials if t.state != TrialState.WAITING]
        return None if any(s is None for s in recorded) else sum(s or 0 for s in recorded)

    @property
    def compute_seconds(self) -> float:
        return sum(keys.compute_seconds(t) for t in self.trials)


def stratified_param(study: optuna.Study) -> tuple[str, bool] | None:
    """(the study's stratified parameter, True); else ("base", False) when its search trials tried
    several bases; else None."""
    config = keys.study_config(study) or {}
    name = (config.get("study") or {}).get("stratify")
    if name is not None:
        return name, True
    bases = {keys.trial_params(t).get("base") for t in keys.search_trials(study.get_trials(deepcopy=False))}
    return ("base", False) if len(bases - {None}) > 1 else None


def by_stratum(study: optuna.Study, name: str, maximize: bool) -> list[Stratum]:
    """The search trials grouped by their value of ``name``: the study file's choices in order
    (values no trial took included), then any other value a trial took."""
    trials = keys.search_trials(study.get_trials(deepcopy=False))
    config = keys.study_config(study) or {}
    spec = (config.get("search") or {}).get(name)
    values = list(spec["choices"]) if isinstance(spec, dict) and "choices" in spec else []
    values += sorted({v for t in trials if (v := _value(t, name)) not in values and v is not None}, key=str)
    out = []
    for value in values:
        mine = [t for t in trials if _value(t, name) == value]
        complete = [t for t in mine if t.state == TrialState.COMPLETE and t.value is not None]
        best = (max if maximize else min)(complete, key=lambda t: t.value) if complete else None
        out.append(Stratum(value, mine, best))
    return out


def _value(trial: FrozenTrial, name: str) -> Any:
    """The trial's value of ``name``, also for one that failed before sampling it (None: none)."""
    value = keys.trial_params(trial).get(name)
    return stratum_of(trial, name) if value is None else value


def markdown(name: str, strata: Sequence[Stratum], fig: Figures, stratified: bool) -> list[str]:
    """summary.md's section: one row per value, best trial with its figures and the value's budget."""
    how = (
        f"each `{name}` was given the same number of search trials and pruned among its own"
        if stratified
        else f"the study was not stratified: the `{name}` values had the budgets shown"
    )
    lines = [
        "",
        f"## Best trial per {name}",
        "",
        f"{how}. Held-out exact match with its 95 % Wilson interval; samples and compute over every "
        f"search trial of the {name} (failed ones included).",
        "",
        f"| {name} | best trial | {fig.metric} | held-out exact match | trials (complete + pruned) "
        "| failed | samples | compute minutes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in strata:
        best, figures = s.best, ["-", "-", "-"]
        if best is not None:
            test, em = fig.test_interval(best), keys.test_exact_match(best)
            figures = [
                str(best.number),
                fig.objective_text(best.value),
                str(test) if test else ("-" if em is None else f"{em:.4f}"),
            ]
        samples = "-" if s.samples is None else readable(s.samples)
        lines.append(
            f"| {s.value} | {' | '.join(figures)} | {s.counted} ({s.count(TrialState.COMPLETE)} + "
            f"{s.count(TrialState.PRUNED)}) | {s.count(TrialState.FAIL)} | {samples} | "
            f"{s.compute_seconds / 60:.1f} |"
        )
    return lines


def to_json(name: str, strata: Sequence[Stratum], fig: Figures) -> dict[str, Any]:
    """``best_trial.json``'s ``by_stratum``: the same table, with the intervals' bounds."""
    rows = []
    for s in strata:
        best = s.best
        test = fig.test_interval(best) if best is not None else None
        rows.append(
            {
                "value": s.value,
                "best_trial": best.number if best is not None else None,
                "best_value": best.value if best is not None else None,
                "test_exact_match": keys.test_exact_match(best) if best is not None else None,
                "test_exact_match_interval": test.as_dict() if test else None,
                "trials": s.counted,
                "complete": s.count(TrialState.COMPLETE),
                "pruned": s.count(TrialState.PRUNED),
                "failed": s.count(TrialState.FAIL),
                "samples": s.samples,
                "compute_seconds": round(s.compute_seconds, 1),
            }
        )
    return {"param": name, "strata": rows}
