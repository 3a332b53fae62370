"""Seed replicates of the leaders (``[confirm]``, `collatz-hpo confirm`): real trials with fresh
seeds that do not count towards n_trials, retried when they fail and never redone; the mean over
the replicates decides the winner, and the final run and `export` follow it. In process with a
trial body that does not train (values from the tables below), then end to end: a launch with two
worker processes, and workers plus the `confirm` command on PostgreSQL."""

from __future__ import annotations

import json
import statistics
import time
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from pg_helpers import throwaway_database

from search import keys
from search.locations import Locations
from search.models.export import select_trial
from search.spec.space import suggest
from search.spec.study_file import ConfigError, ConfirmSection, StudyConfig, parse_study
from search.study.final import run_final
from search.study.leaders import winner
from search.study.opening import OpenStudy, open_study
from search.study.workers import Worker
from search.trial.body import TrialEnv, TrialOutcome
from search.trial.config import config_of

CONFIRM = "\n[confirm]\ntop_k = 2\nseeds = 2\n"
FINAL = '\n[final]\nseconds = 2\nepochs = 2\nthreads = 1\ninit = "best_trial"\n'

# Search trials 0..3: trial 0 is the best single trial, but trial 1's configuration has the best
# mean over its replicates (leader, index).
SEARCH = {0: 0.90, 1: 0.80, 2: 0.50, 3: 0.40}
REPLICATES = {(0, 1): 0.60, (0, 2): 0.62, (0, 3): 0.61, (1, 1): 0.79, (1, 2): 0.81, (1, 3): 0.80}
FINAL_VALUE = 0.95


def _cfg(hpo: Any, extra: str = CONFIRM) -> StudyConfig:
    return parse_study(tomllib.loads(hpo.study_toml("c", n_trials=4) + extra))


def _open(tmp_path: Path, cfg: StudyConfig) -> OpenStudy:
    locations = Locations(f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db", None, None)
    return open_study(cfg, locations, 0, log=lambda _m: None)


class Body:
    """A trial body that does not train: its value from the tables above, and on the trial the
    seed its RunConfig trains with. The replicates named in ``fail_once`` fail their first run."""

    def __init__(self, fail_once: Iterable[tuple[int, int]] = ()) -> None:
        self.fail_once = set(fail_once)
        self.ran: list[int] = []

    def __call__(self, trial: optuna.Trial, env: TrialEnv, tags: Mapping[str, str]) -> TrialOutcome:
        params = suggest(trial, env.cfg.search)
        keys.set_trial_params(trial, params)
        trial.set_user_attr("seed", config_of(env.cfg, trial, params).seed)
        self.ran.append(trial.number)
        of = keys.replicate_of(trial)
        if of is None:
            value = FINAL_VALUE if keys.final_seconds(trial) is not None else SEARCH[trial.number]
            return TrialOutcome(TrialState.COMPLETE, value)
        key = (of, keys.replicate_index(trial))
        if key in self.fail_once:
            self.fail_once.discard(key)
            return TrialOutcome(TrialState.FAIL, None, "RuntimeError: out of memory")
        return TrialOutcome(TrialState.COMPLETE, REPLICATES[key])


def _replicates(trials: Iterable[FrozenTrial], state: TrialState | None = None) -> dict[tuple[int, int], Any]:
    return {
        (keys.replicate_of(t), keys.replicate_index(t)): t
        for t in trials
        if keys.replicate_of(t) is not None and (state is None or t.state == state)
    }


def test_confirm_section_is_checked(hpo: Any) -> None:
    assert _cfg(hpo, "\n[confirm]\n").confirm == ConfirmSection(top_k=3, seeds=3)
    assert _cfg(hpo, "").confirm is None  # opt-in
    with pytest.raises(ConfigError, match=r"confirm\.top_k"):
        _cfg(hpo, "\n[confirm]\ntop_k = 0\n")
    with pytest.raises(ConfigError, match=r"confirm\.seed: unknown key 'seed'; did you mean 'seeds'"):
        _cfg(hpo, "\n[confirm]\nseed = 2\n")


def test_replicates_are_trials_with_fresh_seeds_outside_n_trials(tmp_path: Path, hpo: Any) -> None:
    cfg = _cfg(hpo)
    opened = _open(tmp_path, cfg)
    lines: list[str] = []
    Worker(opened, log=lines.append, trial_body=Body()).run()
    trials = opened.study.get_trials()
    assert [t.number for t in keys.search_trials(trials)] == [0, 1, 2, 3]
    assert keys.counted(opened.search_counts()) == cfg.study.n_trials == 4
    done = _replicates(trials, TrialState.COMPLETE)
    assert sorted(done) == [(0, 1), (0, 2), (1, 1), (1, 2)] and len(trials) == 8  # the 2 leaders x 2 seeds
    for (of, _), t in done.items():
        assert keys.trial_params(t) == keys.trial_params(trials[of])
        assert t.intermediate_values == {}  # not a search trial: nothing for the pruner to compare
    # each trial trains with seed study.seed + its own number: every replicate a fresh seed
    assert [t.user_attrs["seed"] for t in trials] == [cfg.study.seed + t.number for t in trials]
    assert f"trial {done[(0, 1)].number}: seed replicate 1 of trial 0" in lines


def test_a_failed_replicate_is_retried_and_a_relaunch_redoes_none(tmp_path: Path, hpo: Any) -> None:
    cfg = _cfg(hpo)
    Worker(_open(tmp_path, cfg), log=lambda _m: None, trial_body=Body(fail_once=[(0, 1)])).run()
    study = _open(tmp_path, cfg).study
    assert list(_replicates(study.get_trials(), TrialState.FAIL)) == [(0, 1)]
    assert sorted(_replicates(study.get_trials(), TrialState.COMPLETE)) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert len(study.get_trials()) == 9
    # relaunched: every replicate is done, none runs again
    body = Body()
    Worker(_open(tmp_path, cfg), log=lambda _m: None, trial_body=body).run()
    assert body.ran == [] and len(study.get_trials()) == 9
    # [confirm] may change between launches: one more seed runs the new replicates only
    more = cfg.model_copy(update={"confirm": ConfirmSection(top_k=2, seeds=3)})
    Worker(_open(tmp_path, more), log=lambda _m: None, trial_body=body).run()
    assert body.ran == [9, 10] and sorted(_replicates(study.get_trials(), TrialState.COMPLETE))[-1] == (1, 3)


def test_the_mean_decides_the_winner_and_the_final_run_and_export_follow_it(tmp_path: Path, hpo: Any) -> None:
    opened = _open(tmp_path, _cfg(hpo, CONFIRM + FINAL))
    worker = Worker(opened, log=lambda _m: None, trial_body=Body())
    worker.run()
    study = opened.study
    assert keys.best_trial(study).number == 0  # the best single trial ...
    won = winner(study)
    assert won is not None and won.leader.number == 1  # ... is not the best mean
    assert won.mean == pytest.approx(0.80) and won.values == [0.79, 0.81]
    best_seed = _replicates(study.get_trials())[(1, 2)]
    lines: list[str] = []
    assert select_trial(study, log=lines.append).number == best_seed.number
    announced = "winner by mean of 2 seeds: trial 1 (mean 0.8000 ± 0.0141)"
    assert lines == [f"{announced}: exporting its best member, trial {best_seed.number}"]
    # a queued replicate is not mistaken for the final run (which is taken by number)
    stray = study.get_trials()[2]
    study.enqueue_trial(stray.params, user_attrs=keys.replicate_user_attrs(stray, 1))
    worker.log = lines.append
    run_final(worker, time.time())
    (final,) = [t for t in study.get_trials() if keys.final_seconds(t) is not None]
    assert final.state == TrialState.COMPLETE and keys.final_of(final) == best_seed.number
    assert f"final run: the {announced}, from its best seed, trial {best_seed.number} (0.8100)" in lines
    assert study.get_trials()[-2].state == TrialState.WAITING  # the stray replicate, still queued
    assert keys.counted(opened.search_counts()) == 4  # the final run does not count either
    # export: the winner's best member, its final run included
    assert select_trial(study).number == final.number


# --- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory: pytest.TempPathFactory, hpo: Any) -> tuple[Path, Any]:
    """A tiny study with [confirm] and [final], launched with two worker processes."""
    root = tmp_path_factory.mktemp("confirm")
    text = hpo.study_toml("conf", n_trials=4, epochs=2, pruner='type = "none"')
    hpo.write_study(root, text + CONFIRM + FINAL, "conf.toml")
    return root, hpo.check(hpo.run_cli(["launch", "conf.toml", "--workers", "2"], root))


def _kinds(trials: list[FrozenTrial]) -> tuple[list[FrozenTrial], list[FrozenTrial], list[FrozenTrial]]:
    search = [t for t in trials if "replicate_of" not in t.user_attrs and "final" not in t.user_attrs]
    replicates = [t for t in trials if "replicate_of" in t.user_attrs]
    return search, replicates, [t for t in trials if "final" in t.user_attrs]


def _winner(trials: list[FrozenTrial], replicates: list[FrozenTrial]) -> tuple[int, float]:
    """(leader, mean) of the best mean over the replicates, read from the trials themselves."""
    means = {
        of: statistics.fmean(t.value for t in replicates if t.user_attrs["replicate_of"] == of)
        for of in {t.user_attrs["replicate_of"] for t in replicates}
    }
    best = max(means, key=lambda of: (means[of], -of))
    return best, means[best]


def test_a_launch_runs_the_replicates_then_the_final_run_of_the_winner(
    confirmed: tuple[Path, Any], hpo: Any
) -> None:
    root, proc = confirmed
    store = hpo.Store(root)
    trials = store.study("conf").trials
    search, replicates, finals = _kinds(trials)
    assert (len(search), len(replicates), len(finals)) == (4, 4, 1), proc.stdout
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in search) == 4
    complete = [t for t in search if t.state == TrialState.COMPLETE]
    leaders = sorted(complete, key=lambda t: (-t.value, t.number))[:2]
    assert sorted((t.user_attrs["replicate_of"], t.user_attrs["replicate_index"]) for t in replicates) == [
        (n, i) for n in sorted(t.number for t in leaders) for i in (1, 2)
    ]
    seeds = set()
    for t in replicates:
        leader = trials[t.user_attrs["replicate_of"]]
        assert t.state == TrialState.COMPLETE and t.user_attrs["params"] == leader.user_attrs["params"]
        run, leader_run = store.run_of(t), store.run_of(leader)
        assert run.data.tags["collatz_hpo.replicate_of"] == str(leader.number)
        assert int(run.data.params["seed"]) == t.number  # study.seed 0 + its own number: fresh
        assert run.data.params["data_seed"] == leader_run.data.params["data_seed"]  # the same split
        assert run.data.params["epochs"] == leader_run.data.params["epochs"]  # the search's budget
        seeds.add(run.data.params["seed"])
    assert len(seeds) == 4
    best, mean = _winner(trials, replicates)
    best_seed = max(
        [trials[best], *(t for t in replicates if t.user_attrs["replicate_of"] == best)],
        key=lambda t: (t.value, -t.number),
    )
    assert f"winner by mean of 2 seeds: trial {best} (mean {mean:.4f}" in proc.stdout
    assert f"final run: the winner by mean of 2 seeds: trial {best}" in proc.stdout
    assert finals[0].user_attrs["final_of"] == best_seed.number
    assert "seed replicate 2 of trial" in proc.stdout


def test_a_relaunch_redoes_no_replicate_and_export_follows_the_winner(
    confirmed: tuple[Path, Any], hpo: Any
) -> None:
    root, _ = confirmed
    store = hpo.Store(root)
    before = len(store.study("conf").trials)
    hpo.check(hpo.run_cli(["launch", "conf.toml"], root))
    trials = store.study("conf").trials
    assert len(trials) == before
    _, replicates, finals = _kinds(trials)
    best, _ = _winner(trials, replicates)
    members = [trials[best], *(t for t in replicates if t.user_attrs["replicate_of"] == best), *finals]
    expected = max(members, key=lambda t: (t.value, -t.number)).number
    proc = hpo.check(hpo.run_cli(["export", "conf", "--no-register", "--out", "exports/conf"], root))
    assert f"exporting its best member, trial {expected}" in proc.stdout
    assert json.loads((root / "exports" / "conf" / "config.json").read_text())["trial"] == expected


def test_workers_on_postgresql_run_the_replicates_and_confirm_adds_seeds(tmp_path: Path, hpo: Any) -> None:
    text = hpo.study_toml(
        "pgc",
        n_trials=3,
        epochs=1,
        pruner='type = "none"',
        study_extra="heartbeat_interval = 2\ngrace_period = 20",  # beats a loaded CI machine keeps
    )
    hpo.write_study(tmp_path, text + "\n[confirm]\ntop_k = 2\nseeds = 1\n", "pgc.toml")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with throwaway_database() as url:
        stores = ["--storage", url, "--tracking-uri", tracking]
        workers = [
            hpo.Background(["worker", "pgc.toml", "--worker-index", i, *stores], tmp_path) for i in (0, 1)
        ]
        for w in workers:
            assert w.wait(timeout=600) == 0, w.output
        study = optuna.load_study(study_name="pgc", storage=url)
        search, replicates, _ = _kinds(study.trials)
        assert len(search) == 3 and all(t.state == TrialState.COMPLETE for t in study.trials)
        assert sorted(t.user_attrs["replicate_index"] for t in replicates) == [1, 1]
        # on the existing study: one more seed each, by two worker processes
        proc = hpo.check(hpo.run_cli(["confirm", "pgc", "--seeds", "2", "--workers", "2", *stores], tmp_path))
        trials = optuna.load_study(study_name="pgc", storage=url).trials
        _, replicates, _ = _kinds(trials)
        assert len(trials) == 7 and all(t.state == TrialState.COMPLETE for t in trials)
        assert sorted(t.user_attrs["replicate_index"] for t in replicates) == [1, 1, 2, 2]
        best, mean = _winner(trials, replicates)
        assert f"winner by mean of 2 seeds: trial {best} (mean {mean:.4f}" in proc.stdout
        assert proc.stdout.count("confirm: trial ") == 2
