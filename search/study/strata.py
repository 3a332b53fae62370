"""Stratified studies (``[study] stratify = "base"``): every value of one searched categorical
parameter gets the same number of search trials, and each trial is sampled and pruned among the
trials of its own value only — so a table of the best trial per value is a fair comparison.

Without it, TPE spends its trials on the values that learn fastest, and a pruner stops a
slow-starting value (base 2's 30-digit sequences) against another value's better curves.

- **Equal trials** (``ask``): when a worker asks for a new search trial, under the study lock,
  the value with the fewest search trials so far (COMPLETE, PRUNED, RUNNING or WAITING; ties:
  the order of the choices) is enqueued as Optuna's fixed param
  (``study.enqueue_trial({"base": 24})``) and that trial is taken by its number, before the
  sampler samples the rest. The lock (an flock for sqlite, an advisory lock for PostgreSQL) makes
  "count, choose, take" one step for all workers and machines: the counts never differ by more
  than one (a failed trial's place aside, until its replacement, which goes to the same value),
  and a study of ``n_trials`` = k × (number of values) ends with exactly k per value. Queued
  trials (warm start, retries, grid points) are taken first, as they are, and count for their
  value. Storages without the lock (neither sqlite nor PostgreSQL) can race: each of W workers
  may choose on counts that miss the others' concurrent choices, so the counts may drift up to W
  apart; taking the enqueued trial by number (another worker may take it first: then the worker
  chooses again) keeps every new trial's value a chosen one, never one the sampler drew.
- **Sampling within the value** (``StratifiedSampler``): the study's sampler (TPE, GP, random) is
  given a view of the study that holds only the trials of the new trial's value, so TPE learns a
  recipe per base instead of steering every base towards the best base's recipe. Its startup
  trials are counted per value too (``search.study.samplers.make_sampler``).
- **Pruning within the value** (``StratifiedPruner``): the study's pruner (median, successive
  halving, hyperband) is given the same kind of view. The view is a real ``optuna.Study`` over a
  storage that filters ``get_all_trials`` (``StratumStorage``) and passes every other call
  through, so whatever a pruner reads — ``get_trials``, ``direction``, Hyperband's bracket study
  built from ``study._storage`` — sees one value, and what it writes (successive halving's rung
  values) lands on the real trial.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.study.leaders import claim

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy

    from search.spec.study_file import StudyConfig
    from search.study.opening import OpenStudy

__all__ = [
    "StratifiedPruner",
    "StratifiedSampler",
    "StratumStorage",
    "ask",
    "enqueue_stratum",
    "next_stratum",
    "strata",
    "stratum_of",
    "stratum_view",
]

#: The states of a trial that holds its value's place: done, running or queued (not FAIL).
PLACED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
_FIXED = "fixed_params"  # Optuna's system attr of an enqueued trial: the params it will take


def stratum_of(trial: FrozenTrial, name: str) -> Any:
    """The trial's value of ``name``: sampled, or fixed by the queue before it was sampled (None:
    neither yet)."""
    if name in trial.params:
        return trial.params[name]
    return trial.system_attrs.get(_FIXED, {}).get(name)


def next_stratum(trials: Sequence[FrozenTrial], name: str, choices: Sequence[Any]) -> Any:
    """The choice with the fewest search trials in ``PLACED`` states; ties: the first choice."""
    counts = dict.fromkeys(choices, 0)
    for t in keys.search_trials(trials):
        value = stratum_of(t, name)
        if t.state in PLACED and value in counts:
            counts[value] += 1
    return min(choices, key=lambda c: counts[c])


def strata(cfg: StudyConfig) -> tuple[Any, ...]:
    """The values of the stratified parameter, in the order ties go by (empty: not stratified)."""
    name = cfg.study.stratify
    return cfg.search.params()[name].values if name is not None else ()


def ask(opened: OpenStudy) -> optuna.Trial:
    """The worker's next search trial: ``study.ask()`` (a queued trial first), but a stratified
    study's new trial is enqueued with its value (``enqueue_stratum``) and taken by its number."""
    study, name = opened.study, opened.cfg.study.stratify
    while True:
        value = enqueue_stratum(study, opened.cfg)
        if value is None:
            return study.ask()
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        mine = [t for t in waiting if t.system_attrs.get(_FIXED) == {name: value}]
        trial = claim(opened, max(mine, key=lambda t: t.number)) if mine else None
        if trial is not None:
            return trial
        # taken by a worker that asked meanwhile (no study lock on this storage): choose again


def enqueue_stratum(study: optuna.Study, cfg: StudyConfig) -> Any:
    """Enqueue the next search trial with the stratified value that has the fewest trials (under
    the study lock, before the trial is taken: ``ask``); returns that value, or None when the
    study is not stratified or a queued trial is to be taken first."""
    name = cfg.study.stratify
    if name is None:
        return None
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return None
    value = next_stratum(trials, name, strata(cfg))
    study.enqueue_trial({name: value}, skip_if_exists=False)
    return value


class StratumStorage(BaseStorage):
    """A storage that shows only the trials whose ``name`` is ``value``; all else passes through."""

    def __init__(self, inner: BaseStorage, name: str, value: Any) -> None:
        self.inner, self.name, self.value = inner, name, value

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        trials = self.inner.get_all_trials(study_id, deepcopy, states)
        return [t for t in trials if stratum_of(t, self.name) == self.value]

    # --- everything else: the inner storage's
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self.inner.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self.inner.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.inner.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.inner.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self.inner.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self.inner.get_all_studies()

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self.inner.create_new_trial(study_id, template_trial)

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        self.inner.set_trial_param(trial_id, param_name, param_value_internal, distribution)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        return self.inner.set_trial_state_values(trial_id, state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self.inner.set_trial_intermediate_value(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.inner.set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.inner.set_trial_system_attr(trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self.inner.get_trial(trial_id)


def stratum_view(
    study: optuna.Study,
    name: str,
    trial: FrozenTrial,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    """``study`` as it would be if it held only the trials of ``trial``'s value of ``name``, with
    ``sampler`` and ``pruner`` (the inner ones); ``study`` itself while the trial has no value."""
    value = stratum_of(trial, name)
    if value is None:
        return study
    storage = StratumStorage(study._storage, name, value)
    return optuna.Study(study.study_name, storage, sampler=sampler, pruner=pruner)


class StratifiedPruner(optuna.pruners.BasePruner):
    """The study's pruner, comparing a trial only with the trials of its own value of ``name``."""

    def __init__(self, inner: optuna.pruners.BasePruner, name: str) -> None:
        self.inner, self.name = inner, name

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self.inner.prune(stratum_view(study, self.name, trial, study.sampler, self.inner), trial)


class StratifiedSampler(optuna.samplers.BaseSampler):
    """The study's sampler, learning from the trials of the new trial's value of ``name`` only.

    The view is made once per trial (as Optuna caches a study's trials once per ``ask``); with a
    stratified Hyperband pruner it is narrowed to the trial's bracket, as Optuna does for a plain
    one (``optuna.pruners._filter_study``: Optuna only sees Hyperband when it is the study's pruner).
    """

    def __init__(self, inner: optuna.samplers.BaseSampler, name: str) -> None:
        self.inner, self.name = inner, name
        self._view: tuple[int, optuna.Study] | None = None  # (trial id, its view)

    def _of(self, study: optuna.Study, trial: FrozenTrial) -> optuna.Study:
        if self._view is None or self._view[0] != trial._trial_id:
            pruner = study.pruner.inner if isinstance(study.pruner, StratifiedPruner) else study.pruner
            view = stratum_view(study, self.name, trial, self.inner, pruner)
            self._view = (trial._trial_id, optuna.pruners._filter_study(view, trial))
        return self._view[1]

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._view = None  # a new trial: the trials may have changed since the last one
        self.inner.before_trial(self._of(study, trial), trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.inner.infer_relative_search_space(self._of(study, trial), trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.inner.sample_relative(self._of(study, trial), trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.inner.sample_independent(self._of(study, trial), trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self.inner.after_trial(self._of(study, trial), trial, state, values)
        self._view = None
