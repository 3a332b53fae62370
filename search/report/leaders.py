"""Can the data tell the leaders apart? The trials whose intervals overlap the best one's, each
also compared with it by a paired test on the same held-out inputs (exact McNemar) where both runs
kept their predictions; and the spread over seeds of each configuration trained more than once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial

from search import keys
from search.stats import mcnemar, seed_spread
from search.study.table import Figures, Leaders

__all__ = ["Paired", "leaders_markdown", "paired_tests", "replicates_markdown"]

MAX_PAIRED = 5  # paired tests against the best: the closest leaders only (two downloads each)
ALPHA = 0.05


@dataclass(frozen=True)
class Paired:
    """The best trial against another on the same held-out inputs."""

    trial: int
    only_best: int  # inputs only the best got right
    only_other: int
    p: float

    @property
    def differs(self) -> bool:
        return self.p < ALPHA


Correct = Mapping[str, bool]  # held-out input n → answered right


def paired_tests(lead: Leaders, correct_of: Callable[[FrozenTrial], Correct | None]) -> list[Paired]:
    """McNemar's test of the best trial against each of the first ``MAX_PAIRED`` tied leaders
    whose predictions cover the same inputs."""
    best = correct_of(lead.best)
    if best is None:
        return []
    out = []
    for trial, _ in lead.tied[:MAX_PAIRED]:
        other = correct_of(trial)
        if other is None or other.keys() != best.keys():
            continue
        only_best = sum(best[n] and not other[n] for n in best)
        only_other = sum(other[n] and not best[n] for n in best)
        out.append(Paired(trial.number, only_best, only_other, mcnemar(only_best, only_other)))
    return out


def leaders_markdown(lead: Leaders | None, paired: Sequence[Paired]) -> list[str]:
    """summary.md's answer to "is the best trial really the best?"."""
    lines = ["", "## Is the best trial the best?", ""]
    if lead is None:
        return lines + ["No interval to compare the trials with (no exact-match figure recorded)."]
    b = lead.best
    if not lead.tied:
        return lines + [
            f"Yes, as far as the data can tell: trial {b.number}'s {lead.figure} {lead.best_interval} "
            "lies apart from every other complete trial's interval."
        ]
    by_trial = {p.trial: p for p in paired}
    lines.append(_verdict(lead, by_trial))
    lines += [
        "",
        f"| trial | {lead.figure} (95 % interval) | paired test vs. trial {b.number} |",
        "|---|---|---|",
    ]
    lines.append(f"| {b.number} (best) | {lead.best_interval} | |")
    for t, interval in lead.tied:
        lines.append(f"| {t.number} | {interval} | {_paired_cell(by_trial.get(t.number))} |")
    return lines


def _verdict(lead: Leaders, by_trial: Mapping[int, Paired]) -> str:
    """Whether the best trial stands apart: the overlapping trials that the paired test (``by_trial``,
    empty without predictions) does not separate from it tie with it; a separated one may also be
    the better one on held-out inputs."""
    b = lead.best
    same = [t for t, _ in lead.tied if not (t.number in by_trial and by_trial[t.number].differs)]
    if same:
        tested = ", and the paired test on the same held-out inputs finds no difference" if by_trial else ""
        return (
            f"The data cannot name a single winner: {len(same)} trial(s) are indistinguishable from trial "
            f"{b.number} (their {lead.figure} intervals overlap its {lead.best_interval}{tested})."
        )
    better = [n for n, p in by_trial.items() if p.only_other > p.only_best]
    if better:
        return (
            f"The held-out inputs disagree with the {lead.figure}: the paired test finds trial(s) "
            f"{', '.join(map(str, sorted(better)))} right more often than trial {b.number}."
        )
    return (
        f"Yes, on the held-out inputs: the {lead.figure} intervals of {len(lead.tied)} trial(s) overlap "
        f"trial {b.number}'s {lead.best_interval}, but the paired test on the same held-out inputs "
        f"finds trial {b.number} right more often than each of them."
    )


def _paired_cell(p: Paired | None) -> str:
    if p is None:
        return "-"
    verdict = "differs" if p.differs else "indistinguishable"
    return f"{verdict} (p={p.p:.3g}; {p.only_best} right only by the best, {p.only_other} only by this)"


def replicates_markdown(groups: Mapping[int, list[FrozenTrial]], fig: Figures) -> list[str]:
    """summary.md's seed replicates: each replicated configuration's mean ± std and the interval
    of its mean (Student t), on the held-out exact match and on the objective."""
    if not groups:
        return []
    lines = ["", "## Seed replicates", "", "| configuration | seeds | held-out exact match | objective |"]
    lines.append("|---|---|---|---|")
    for number, group in sorted(groups.items()):
        tests = [v for t in group if (v := keys.test_exact_match(t)) is not None]
        values = [t.value for t in group if t.value is not None]
        test = str(seed_spread(tests, bounds=(0.0, 1.0))) if tests else "-"
        objective = _spread(values, fig) if values else "-"
        lines.append(f"| trial {number} | {len(group)} | {test} | {objective} |")
    return lines


def _spread(values: list[float], fig: Figures) -> str:
    if fig.exact_match_objective:
        return str(seed_spread(values, bounds=(0.0, 1.0)))
    s = seed_spread(values)
    return f"{s.mean:.4g} ±{s.std:.2g} (mean in {s.low:.4g}–{s.high:.4g})"
