"""Stratified studies run by real workers with a trial body that does not train: importable by name,
so that worker processes (spawned, not forked) can run it too."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from search import keys
from search.locations import Locations
from search.spec.space import suggest
from search.spec.study_file import StudyConfig, parse_study
from search.study.opening import OpenStudy, open_study
from search.study.workers import Worker
from search.trial.body import TrialEnv, TrialOutcome

#: what a trial of each base is worth: base 24 learns fast, base 2 slowly
VALUE = {2: 0.1, 16: 0.6, 24: 0.9, 32: 0.8}


def locations(folder: Path | str) -> Locations:
    """Both stores and the artifacts in ``folder`` (not in the directory the tests run in)."""
    return Locations(
        f"sqlite:///{folder}/optuna.db", f"sqlite:///{folder}/mlflow.db", f"{folder}/artifacts", None
    )


def open_in(folder: Path | str, cfg: StudyConfig, index: int = 0) -> OpenStudy:
    return open_study(cfg, locations(folder), index, log=lambda _m: None)


class Body:
    """Samples the trial's params as a real trial does, then completes it with its base's value;
    ``fail`` names trial numbers that FAIL instead (they are replaced), ``pause`` its seconds."""

    def __init__(self, fail: tuple[int, ...] = (), pause: tuple[float, float] = (0.0, 0.0), seed: int = 0):
        self.fail, self.pause, self.rng = set(fail), pause, random.Random(seed)

    def __call__(self, trial: optuna.Trial, env: TrialEnv, tags: Mapping[str, str]) -> TrialOutcome:
        params = suggest(trial, env.cfg.search)
        keys.set_trial_params(trial, params)
        time.sleep(self.rng.uniform(*self.pause))
        if trial.number in self.fail:
            return TrialOutcome(TrialState.FAIL, None, "RuntimeError: out of memory")
        return TrialOutcome(TrialState.COMPLETE, VALUE.get(params["base"], 0.5))


def worker_process(folder: str, study_file: dict[str, Any], index: int, ready: Any) -> None:
    """One worker process of a stratified study on ``folder``'s sqlite store (the target of a
    spawned ``multiprocessing.Process``); it starts asking once ``ready`` (a barrier) lets all go."""
    import torch  # what Worker.run loads first: not counted in the race

    torch.set_num_threads(1)
    opened = open_in(folder, parse_study(study_file), index)
    ready.wait(timeout=120)
    Worker(opened, index, log=lambda _m: None, trial_body=Body(pause=(0.01, 0.2), seed=index)).run()
