"""Seed replicates of a study's leaders (``[confirm]``), and the study's winner.

A search trial's value is one draw of its training seed, and the best of many trials is partly
the luckiest. ``[confirm]`` trains the ``top_k`` best COMPLETE search trials (the leaders) again
with ``seeds`` fresh training seeds each, at the search's full budget and on the same data split.
The winner is then the configuration whose replicates have the best mean: the leader's own value
is left out of that mean, since it was picked for being high; the replicates' seeds were not.

A replicate is a trial of the study, enqueued WAITING with its leader's params and marked by
user attrs (``keys.replicate_user_attrs``); it trains with seed ``study.seed`` + its own trial
number (``trial.config.run_config_for``), so each seed is fresh, and with ``data.seed`` (the same
split). It counts towards nothing (``keys.is_search``) and is never pruned. One rule gives both
retry and resume: a (leader, index) with no replicate COMPLETE, RUNNING or WAITING is enqueued
(again), so a failed replicate is run anew and a finished one is never redone.

The leaders are the best search trials as the study stands: search trials do not change once the
search is done, and replicates never enter the choice, so relaunching does not move them; only a
search that grows (a larger ``n_trials``) or another ``top_k`` brings new leaders, which then get
their replicates too.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.events import Log
from search.stats import SeedSpread, seed_spread

if TYPE_CHECKING:
    from search.study.opening import OpenStudy

__all__ = [
    "Configuration",
    "claim",
    "configurations",
    "confirm_summary",
    "enqueue_and_claim",
    "leaders",
    "missing_replicates",
    "next_replicate",
    "winner",
]

_PRESENT = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)  # a replicate not to enqueue again


@dataclass(frozen=True)
class Configuration:
    """A leader and the trials that trained its configuration again: its COMPLETE seed replicates
    and final runs."""

    leader: FrozenTrial
    replicates: tuple[FrozenTrial, ...]
    finals: tuple[FrozenTrial, ...]
    maximize: bool

    @property
    def values(self) -> list[float]:
        """The replicates' values (the leader's, chosen for being high, is not among them)."""
        return [float(t.value) for t in self.replicates if t.value is not None]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def spread(self) -> SeedSpread:
        """Mean, standard deviation and the 95 % interval of the mean over the replicates."""
        return seed_spread(self.values)

    def _best(self, trials: Iterable[FrozenTrial]) -> FrozenTrial:
        ranked = sorted(trials, key=lambda t: (_sign(self.maximize) * float(t.value or 0.0), t.number))
        return ranked[0]

    def best_seed(self) -> FrozenTrial:
        """The leader or replicate with the best value: the checkpoint a final run starts from."""
        return self._best((self.leader, *self.replicates))

    def best_member(self) -> FrozenTrial:
        """The best trial of the configuration, final runs included: what ``export`` picks."""
        return self._best((self.leader, *self.replicates, *self.finals))

    def describe(self) -> str:
        """``trial 4 (search 0.6500): mean 0.6200 ± 0.0100 over 3 seeds (mean in 0.5950–0.6450)``."""
        s = self.spread
        interval = f" (mean in {s.low:.4f}–{s.high:.4f})" if len(s.values) > 1 else ""
        return (
            f"trial {self.leader.number} (search {self.leader.value:.4f}): "
            f"mean {s.mean:.4f} ± {s.std:.4f} over {_seeds(len(s.values))}{interval}"
        )

    def announce(self) -> str:
        """``winner by mean of 3 seeds: trial 4 (mean 0.6200 ± 0.0100)``."""
        s = self.spread
        return (
            f"winner by mean of {_seeds(len(s.values))}: trial {self.leader.number} "
            f"(mean {s.mean:.4f} ± {s.std:.4f})"
        )


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _sign(maximize: bool) -> float:
    """Sort key factor: best first."""
    return -1.0 if maximize else 1.0


def leaders(trials: Iterable[FrozenTrial], top_k: int, maximize: bool) -> list[FrozenTrial]:
    """The ``top_k`` best COMPLETE search trials, best first (ties: the earlier trial)."""
    complete = [
        t for t in keys.search_trials(trials) if t.state == TrialState.COMPLETE and t.value is not None
    ]
    return sorted(complete, key=lambda t: (_sign(maximize) * float(t.value or 0.0), t.number))[:top_k]


def missing_replicates(
    trials: Iterable[FrozenTrial], chosen: Iterable[FrozenTrial], seeds: int
) -> list[tuple[FrozenTrial, int]]:
    """The (leader, index) pairs with no replicate COMPLETE, RUNNING or WAITING: to enqueue."""
    present = {
        (keys.replicate_of(t), keys.replicate_index(t))
        for t in trials
        if t.state in _PRESENT and keys.replicate_of(t) is not None
    }
    return [(lead, i) for lead in chosen for i in range(1, seeds + 1) if (lead.number, i) not in present]


def claim(opened: OpenStudy, frozen: FrozenTrial) -> optuna.Trial | None:
    """Take the WAITING trial ``frozen`` as ``study.ask()`` takes the first WAITING one (None: it is
    no longer WAITING). Asking by number keeps a worker from taking another queued trial instead
    (a grid point, a search trial's retry)."""
    try:
        if not opened.storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
            return None
    except optuna.exceptions.UpdateFinishedTrialError:
        return None
    return optuna.Trial(opened.study, frozen._trial_id)


def enqueue_and_claim(opened: OpenStudy, params: dict[str, Any], user_attrs: dict[str, Any]) -> optuna.Trial:
    """Enqueue a trial and take it at once (under the study lock): the final run."""
    opened.study.enqueue_trial(params, user_attrs=user_attrs)
    waiting = opened.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    mine = [t for t in waiting if all(t.user_attrs.get(k) == v for k, v in user_attrs.items())]
    trial = claim(opened, max(mine, key=lambda t: t.number))
    assert trial is not None, "a trial enqueued under the study lock was taken by another worker"
    return trial


def next_replicate(opened: OpenStudy, log: Log) -> tuple[optuna.Trial | None, int]:
    """Under the study lock, once the search is done: enqueue the missing replicates of the leaders
    and take the first WAITING one. Returns (the replicate taken, or None; replicates RUNNING
    elsewhere, which may still fail and need a rerun)."""
    confirm = opened.cfg.confirm
    assert confirm is not None
    study = opened.study
    trials = study.get_trials(deepcopy=False)
    chosen = leaders(trials, confirm.top_k, keys.maximized(study))
    missing = missing_replicates(trials, chosen, confirm.seeds)
    for lead, index in missing:
        study.enqueue_trial(lead.params, user_attrs=keys.replicate_user_attrs(lead, index))
    if missing:
        shown = ", ".join(sorted({str(lead.number) for lead, _ in missing}, key=int))
        log(f"confirm: {len(missing)} seed replicate(s) of trial(s) {shown} enqueued")
        trials = study.get_trials(deepcopy=False)
    replicas = [t for t in trials if keys.replicate_of(t) is not None]
    for frozen in sorted((t for t in replicas if t.state == TrialState.WAITING), key=lambda t: t.number):
        trial = claim(opened, frozen)
        if trial is not None:
            index, of = keys.replicate_index(frozen), keys.replicate_of(frozen)
            log(f"trial {trial.number}: seed replicate {index} of trial {of}")
            return trial, 0
    return None, sum(t.state == TrialState.RUNNING for t in replicas)


def configurations(trials: Iterable[FrozenTrial], maximize: bool) -> list[Configuration]:
    """The configurations that have COMPLETE seed replicates, best mean first (ties: earlier leader)."""
    trials = list(trials)
    by_number = {t.number: t for t in trials}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]

    replicates: dict[int, list[FrozenTrial]] = {}
    finals: dict[int | None, list[FrozenTrial]] = {}
    for t in complete:
        of = keys.replicate_of(t)
        if of is not None:
            replicates.setdefault(of, []).append(t)
        elif keys.final_seconds(t) is not None:
            finals.setdefault(_leader_of(by_number.get(keys.final_of(t))), []).append(t)
    found = [
        Configuration(by_number[n], tuple(reps), tuple(finals.get(n, ())), maximize)
        for n, reps in replicates.items()
        if n in by_number and by_number[n].state == TrialState.COMPLETE
    ]
    return sorted(found, key=lambda c: (_sign(maximize) * c.mean, c.leader.number))


def _leader_of(trial: FrozenTrial | None) -> int | None:
    """The search trial whose configuration ``trial`` trains: its own, or the one it replicates."""
    if trial is None:
        return None
    of = keys.replicate_of(trial)
    return trial.number if of is None else of


def winner(study: optuna.Study) -> Configuration | None:
    """The configuration with the best mean over its seed replicates; None while the study has
    none (then its best trial stands, as without ``[confirm]``)."""
    found = configurations(study.get_trials(deepcopy=False), keys.maximized(study))
    return found[0] if found else None


def confirm_summary(study: optuna.Study) -> list[str]:
    """One line per configuration with seed replicates (best mean first), then the winner; none
    when the study has no replicates."""
    found = configurations(study.get_trials(deepcopy=False), keys.maximized(study))
    if not found:
        return []
    return [f"confirm: {c.describe()}" for c in found] + [found[0].announce()]
