"""What runs one asked trial, as its worker sees it: what it is given (``TrialEnv``), what it
returns (``TrialOutcome``) and its type (``TrialBody``: ``run_trial``, or a load test's light one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import optuna
from optuna.trial import TrialState

from search.events import Log
from search.spec.study_file import StudyConfig
from search.trial.training import Splits

if TYPE_CHECKING:  # MLflow loads where a trial runs
    from search.tracking.runs import StudyTracker

__all__ = ["INTERRUPTED", "DataCache", "TrialBody", "TrialEnv", "TrialOutcome", "interrupted_outcome"]

INTERRUPTED = "interrupted"  # the fail reason of a trial stopped by Ctrl-C or SIGTERM

#: A worker's datasets by base: its trials of one base share them.
DataCache = dict[int, Splits]


@dataclass
class TrialOutcome:
    """How one trial ended, and what it cost (the worker adds this up; Optuna is told the state).

    ``interrupted``: Ctrl-C or SIGTERM stopped it; the worker records it, then stops.
    """

    state: TrialState
    value: float | None
    reason: str | None = None
    compute_seconds: float = 0.0  # inside training, validation and test evaluation
    train_steps: int = 0
    train_samples: int = 0
    interrupted: bool = False


def interrupted_outcome() -> TrialOutcome:
    """The outcome of a trial an interrupt stopped: FAIL, "interrupted"."""
    return TrialOutcome(TrialState.FAIL, None, INTERRUPTED, interrupted=True)


@dataclass(frozen=True)
class TrialEnv:
    """What a trial runs with besides itself, given by its worker.

    ``deadline``: the wall clock (``time.time()``) at which a search trial still training stops,
    PRUNED (the study's timeout with ``timeout_stops_trials``); None: it trains to its end.
    """

    study: optuna.Study
    cfg: StudyConfig
    tracker: StudyTracker
    log: Log
    data_cache: DataCache
    deadline: float | None = None


class TrialBody(Protocol):
    """Runs one asked trial to its end (its MLflow run closed) and says how it ended; the worker
    records that end in Optuna (fail reason, state). ``tags`` go on the trial's MLflow run."""

    def __call__(self, trial: optuna.Trial, env: TrialEnv, tags: Mapping[str, str]) -> TrialOutcome: ...
