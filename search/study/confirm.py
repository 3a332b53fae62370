"""`confirm` on an existing study: the seed replicates of its leaders (``study.leaders``), run by
this process or by N worker processes, then each configuration's mean and the winner.

The study runs with the study file saved in it, its search taken as done (``n_trials`` = the
search trials counted so far, no timeout) and ``[confirm]`` from the flags, the study file, the
saved one, or the defaults, in that order. Finished replicates are not redone, failed ones are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from search import keys
from search.errors import StudyError
from search.events import Log
from search.locations import Locations
from search.spec.study_file import ConfirmSection, StudyConfig, parse_study
from search.study.leaders import confirm_summary
from search.study.opening import OpenStudy, load_existing_study, open_to_run, recover
from search.study.processes import run_processes
from search.study.progress import StudyProgress
from search.study.workers import Worker

__all__ = ["ConfirmResult", "confirm", "confirm_config"]


@dataclass
class ConfirmResult:
    study_name: str
    lines: list[str] = field(default_factory=list)  # each configuration's mean, then the winner
    interrupted: bool = False
    exit_code: int = 0


def confirm_config(
    study: optuna.Study, top_k: int | None, seeds: int | None, section: ConfirmSection | None = None
) -> StudyConfig:
    """The study's saved study file, its search done as it stands, with ``[confirm]`` from
    ``top_k``/``seeds``, else ``section`` (a study file's), else the saved one, else the defaults."""
    name = study.study_name
    saved = keys.study_config(study)
    if saved is None:
        raise StudyError(f"study '{name}' was not made by collatz-hpo (no study config)")
    search = keys.search_trials(study.get_trials(deepcopy=False))
    if not any(t.state == TrialState.COMPLETE for t in search):
        raise StudyError(f"study '{name}' has no COMPLETE search trial to confirm")
    done = keys.counted(keys.state_counts(search))
    cfg = parse_study(saved, source=f"study '{name}'")
    base = section or cfg.confirm or ConfirmSection()
    data = cfg.to_dict()
    data["study"].update(n_trials=done, timeout=None)
    data["confirm"] = {"top_k": top_k or base.top_k, "seeds": seeds or base.seeds}
    return parse_study(data, source=f"study '{name}'")


def confirm(
    name: str,
    locations: Locations,
    top_k: int | None = None,
    seeds: int | None = None,
    workers: int = 1,
    log: Log = print,
    section: ConfirmSection | None = None,
) -> ConfirmResult:
    """Run the missing seed replicates of study ``name``'s leaders; see the module docstring."""
    cfg = confirm_config(load_existing_study(name, locations), top_k, seeds, section)
    assert cfg.confirm is not None
    opened = open_to_run(cfg, locations, log)
    log(
        f"study '{name}': seed replicates of the {cfg.confirm.top_k} best of {cfg.study.n_trials} "
        f"search trials, {cfg.confirm.seeds} fresh seed(s) each; {workers} worker(s)"
    )
    interrupted, failed = False, 0
    try:
        if workers == 1:
            Worker(opened, 0, None, log).run()
        else:
            progress = StudyProgress.of(opened.study, cfg.study.n_trials, workers=workers, out=log)
            with progress:
                _, failed = run_processes(opened, workers, None, progress)
    except KeyboardInterrupt:  # the workers recorded their trials
        interrupted = True
    except StudyError as exc:
        log(f"error: {exc}")
        failed = 1
    _finish(opened, log, "KILLED" if interrupted else ("FAILED" if failed else "FINISHED"))
    lines = confirm_summary(opened.study) or ["no seed replicate has completed yet"]
    return ConfirmResult(name, lines, interrupted, 130 if interrupted else (1 if failed else 0))


def _finish(opened: OpenStudy, log: Log, status: str) -> None:
    """Read the study afresh (worker processes changed it), close what dead workers left, update
    and close the parent run."""
    opened.study = optuna.load_study(study_name=opened.cfg.study.name, storage=opened.storage)
    recover(opened, log)
    opened.update_parent()
    opened.finish_parent(status)
