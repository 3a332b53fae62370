"""Stratified studies (``[study] stratify = "base"``): every base gets the same number of search
trials, each sampled and pruned among its own base's trials only, and the report's table of the
best trial per base shows what each base was given. Real Optuna studies throughout: the worker's
ask path on sqlite (in this process and in two worker processes), in-memory studies for the
pruners and the sampler, a hand-made study for the report."""

from __future__ import annotations

import json
import multiprocessing as mp
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pytest
from cli_helpers import assert_one_line_error, run_main
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from strata_helpers import Body, locations, open_in, worker_process

from search import keys
from search.spec.space import suggest
from search.spec.study_file import Categorical, StudyConfig, load_study, parse_study
from search.stats import wilson
from search.study.leaders import claim
from search.study.samplers import make_pruner, make_sampler
from search.study.strata import StratifiedPruner, StratifiedSampler, enqueue_stratum, stratum_of
from search.study.workers import Worker
from search.tracking import names

STUDIES = Path(__file__).resolve().parents[2] / "studies"
STRATIFY = 'stratify = "base"'


def _cfg(hpo: Any, n_trials: int = 12, extra: str = STRATIFY, **kw: Any) -> StudyConfig:
    return parse_study(tomllib.loads(hpo.study_toml("strata", n_trials=n_trials, study_extra=extra, **kw)))


def _counted_bases(trials: list[FrozenTrial]) -> Counter[int]:
    return Counter(t.params["base"] for t in trials if t.state in keys.COUNTED)


# --- the study file --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            '"lr"',
            "search.lr is a range; only a parameter searched with { choices = [...] } can be stratified",
        ),
        ('"dropout"', "search.dropout is fixed; only a parameter searched with { choices = [...] }"),
        ('"balance"', "search.balance is not set"),
        ('"nhead"', "nhead cannot be stratified: the heads on offer depend on d_model"),
        ('"bse"', "unknown [search] parameter 'bse'; did you mean 'base'?"),
        ("true", "expected a string, got bool True"),
    ],
)
def test_only_a_searched_categorical_can_be_stratified(
    tmp_path: Path, hpo: Any, capsys: pytest.CaptureFixture[str], value: str, problem: str
) -> None:
    path = hpo.write_study(tmp_path, hpo.study_toml("bad", study_extra=f"stratify = {value}"))
    code, _, err = run_main(["launch", path], tmp_path, capsys)
    assert code == 2
    assert_one_line_error(code, err, f"{path}: study.stratify: {problem}")
    assert not (tmp_path / "mlruns").exists()  # nothing written


def test_bases_study_is_stratified_over_the_papers_bases() -> None:
    cfg = load_study(STUDIES / "bases.toml")
    sweep = load_study(STUDIES / "base_sweep.toml")
    assert cfg.study.stratify == "base"
    assert cfg.search.base == Categorical((2, 3, 11, 16, 24, 32))
    assert cfg.study.n_trials % len(cfg.search.base.values) == 0  # equal trials per base, exactly
    assert cfg.data == sweep.data  # odd n < 2^30, the same splits as the base sweep
    assert cfg.study.pruner.type == "successive_halving" and cfg.study.pruner.unit == "samples"
    assert {"lr", "batch_size", "weight_decay", "balance"} <= set(cfg.search.searched())
    assert cfg.training.threads == 1  # two 1-thread workers on 2 cores
    assert isinstance(make_pruner(cfg), StratifiedPruner)
    assert make_sampler(cfg).inner._n_startup_trials == cfg.study.n_trials // 6 // 3  # a third of one base's


# --- equal trials per base -------------------------------------------------------------------------


def test_each_base_gets_the_same_number_of_trials(tmp_path: Path, hpo: Any) -> None:
    opened = open_in(tmp_path, _cfg(hpo, n_trials=12))
    Worker(opened, log=lambda _m: None, trial_body=Body(fail=(4,))).run()
    trials = opened.study.get_trials()
    assert _counted_bases(trials) == {16: 4, 24: 4, 32: 4}
    # ties go by the order of the choices; a failed trial is replaced in its own base
    assert [t.params["base"] for t in trials[:6]] == [16, 24, 32, 16, 24, 24]
    assert trials[4].state == TrialState.FAIL and trials[5].state == TrialState.COMPLETE


def test_two_worker_processes_on_sqlite_split_the_trials_evenly(tmp_path: Path, hpo: Any) -> None:
    """Under the study lock "count, choose the base, ask" is one step: exactly equal counts."""
    cfg = _cfg(hpo, n_trials=12)
    open_in(tmp_path, cfg)  # both stores exist before the workers start, as with `launch`
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(2)
    procs = [
        ctx.Process(target=worker_process, args=(str(tmp_path), cfg.to_dict(), i, ready)) for i in (0, 1)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
        assert p.exitcode == 0
    trials = open_in(tmp_path, cfg).study.get_trials()
    assert _counted_bases(trials) == {16: 4, 24: 4, 32: 4} and len(trials) == 12
    assert len({t.user_attrs[keys.WORKER_ATTR]["pid"] for t in trials}) == 2  # both workers ran trials


def test_a_trial_taken_by_another_worker_is_chosen_again(
    tmp_path: Path, hpo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a storage without the study lock another worker may take the trial just enqueued: the
    worker then chooses again, so no new trial runs with a base the sampler drew."""
    from search.study import strata

    opened = open_in(tmp_path, _cfg(hpo))
    other = optuna.load_study(study_name=opened.study.study_name, storage=opened.storage)
    taken: list[optuna.Trial] = []

    def racing(o: Any, frozen: FrozenTrial) -> optuna.Trial | None:
        if not taken:
            taken.append(other.ask())  # the other worker's plain ask takes the queued trial first
        return claim(o, frozen)

    monkeypatch.setattr(strata, "claim", racing)
    mine = strata.ask(opened)
    assert (taken[0].number, mine.number) == (0, 1)
    assert [stratum_of(t, "base") for t in opened.study.get_trials()] == [16, 24]


# --- sampling and pruning within a base --------------------------------------------------------------


class Spy(optuna.samplers.RandomSampler):
    """A sampler that records, for each sampled parameter, the bases of the trials it was shown."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.shown: list[tuple[int, set[int]]] = []

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, name: str, dist: Any) -> Any:
        bases = {stratum_of(t, "base") for t in study.get_trials(deepcopy=False)}
        self.shown.append((stratum_of(trial, "base"), bases))
        return super().sample_independent(study, trial, name, dist)


def test_the_sampler_learns_from_its_own_base_only(hpo: Any) -> None:
    cfg = _cfg(hpo, n_trials=9)
    spy = Spy()
    study = optuna.create_study(direction="maximize", sampler=StratifiedSampler(spy, "base"))
    for _ in range(9):
        assert enqueue_stratum(study, cfg) is not None
        trial = study.ask()
        params = suggest(trial, cfg.search)
        study.tell(trial, params["lr"])
    assert [t.params["base"] for t in study.trials] == [16, 24, 32] * 3
    assert spy.shown and all(bases == {base} for base, bases in spy.shown)


PRUNERS = {
    "median": 'type = "median"\nn_startup_trials = 1\nn_warmup_steps = 0',
    "successive_halving": 'type = "successive_halving"\nmin_resource = 1\nreduction_factor = 2',
    # max_resource = epochs = 2 < min_resource x reduction_factor: one bracket, so the trials compete
    "hyperband": 'type = "hyperband"\nmin_resource = 1\nreduction_factor = 3',
}


def _trial(study: optuna.Study, cfg: StudyConfig, base: int, value: float) -> TrialState:
    """A search trial of ``base`` reporting ``value`` at epochs 1 and 2, pruned if the pruner says so."""
    study.enqueue_trial({"base": base})
    trial = study.ask()
    suggest(trial, cfg.search)
    for step in (1, 2):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED
    study.tell(trial, value)
    return TrialState.COMPLETE


@pytest.mark.parametrize("pruner", list(PRUNERS))
def test_a_slow_base_is_pruned_only_against_its_own_trials(hpo: Any, pruner: str) -> None:
    """Base 24's trials report far better values than base 2's: a base-2 trial better than base 2's
    earlier ones survives when stratified, and is pruned by base 24's values when not."""
    ends = {}
    for extra in (STRATIFY, ""):
        cfg = _cfg(hpo, extra=extra, pruner=PRUNERS[pruner], base="{ choices = [2, 24] }", epochs=2)
        study = optuna.create_study(direction="maximize", sampler=make_sampler(cfg), pruner=make_pruner(cfg))
        for base, value in [(24, 0.9), (24, 0.85), (24, 0.8), (2, 0.05), (2, 0.08)]:
            _trial(study, cfg, base, value)
        ends[extra] = (_trial(study, cfg, 2, 0.1), _trial(study, cfg, 24, 0.5))
    # stratified: base 2's trial survives; base 24's weak trial is still pruned by its own base
    assert ends[STRATIFY] == (TrialState.COMPLETE, TrialState.PRUNED)
    assert ends[""] == (TrialState.PRUNED, TrialState.PRUNED)


# --- the report -------------------------------------------------------------------------------------


def _bases_study(stratify: bool = True) -> optuna.Study:
    """Base 24: two complete trials and a pruned one; base 2: one complete, one pruned, one failed;
    base 32: one pruned. Exact match on 2,000 validation and 5,000 held-out inputs."""
    study = optuna.create_study(study_name="bases", direction="maximize")
    section = {"metric": "val_exact_match", **({"stratify": "base"} if stratify else {})}
    search = {"base": {"choices": [2, 24, 32]}, "lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    study.set_user_attr(
        "config", {"study": section, "data": {"val_size": 2000, "test_size": 5000}, "search": search}
    )
    dists = {"base": CategoricalDistribution([2, 24, 32]), "lr": FloatDistribution(1e-4, 1e-2, log=True)}
    rows = [
        (24, TrialState.COMPLETE, 0.95, 0.94, 300_000),
        (24, TrialState.COMPLETE, 0.90, 0.91, 300_000),
        (24, TrialState.PRUNED, None, None, 100_000),
        (2, TrialState.COMPLETE, 0.02, 0.01, 300_000),
        (2, TrialState.PRUNED, None, None, 100_000),
        (2, TrialState.FAIL, None, None, 50_000),
        (32, TrialState.PRUNED, None, None, 100_000),
    ]
    for base, state, value, test, samples in rows:
        params = {"base": base, "lr": 1e-3}
        attrs: dict[str, Any] = {
            "params": params,
            "train_samples": samples,
            "compute_seconds": samples / 1000,
        }
        attrs.update({"test_exact_match": test} if test is not None else {})
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                params=params,
                distributions=dists,
                value=value,
                user_attrs=attrs,
                intermediate_values={1: value or 0.0},
            )
        )
    return study


def test_report_shows_the_best_trial_per_base_and_its_budget(tmp_path: Path) -> None:
    from search.report.study_report import write_report

    write_report(_bases_study(), tmp_path / "r")
    markdown = (tmp_path / "r" / "summary.md").read_text()
    section = markdown.split("## Best trial per base\n")[1].split("\n## ")[0]
    assert "each `base` was given the same number of search trials and pruned among its own" in section
    # in the order of the study file's choices; the best of each base with both intervals
    rows = [line for line in section.splitlines() if line.startswith(("| 2 |", "| 24 |", "| 32 |"))]
    assert rows == [
        f"| 2 | 3 | {wilson(0.02, 2000)} | {wilson(0.01, 5000)} | 2 (1 + 1) | 1 | 450k | 7.5 |",
        f"| 24 | 0 | {wilson(0.95, 2000)} | {wilson(0.94, 5000)} | 3 (2 + 1) | 0 | 700k | 11.7 |",
        "| 32 | - | - | - | 1 (0 + 1) | 0 | 100k | 1.7 |",
    ]
    by = json.loads((tmp_path / "r" / "best_trial.json").read_text())["by_stratum"]
    assert by["param"] == "base" and [s["value"] for s in by["strata"]] == [2, 24, 32]
    top = by["strata"][1]
    assert top["best_trial"] == 0 and top["samples"] == 700_000 and top["trials"] == 3
    assert top["test_exact_match_interval"] == wilson(0.94, 5000).as_dict()
    # against the paper: its figure and the plateau reached; no MLflow run, so no classes
    against = markdown.split("## Against the paper's table of bases\n")[1]
    assert "| 24 | 94.0 % (93.3–94.6) | 99.7 % | 92 % | (no per-class figures) | 0.0 % |" in against
    assert "| 2 | 1.0 % (0.8–1.3) | ≥ ~88 % (every even base) | below the first |" in against
    assert "| 32 |" not in against  # no completed trial: nothing to compare
    assert "Only even or only odd bases" in against


def test_report_of_an_unstratified_study_of_bases_says_so(tmp_path: Path) -> None:
    from search.report.study_report import write_report

    write_report(_bases_study(stratify=False), tmp_path / "r")
    markdown = (tmp_path / "r" / "summary.md").read_text()
    assert "## Best trial per base" in markdown
    assert "the study was not stratified: the `base` values had the budgets shown" in markdown


def test_a_real_stratified_study_records_each_bases_samples(tmp_path: Path, hpo: Any) -> None:
    """Two real (tiny) trials, one per base: each records the training samples it saw, which the
    report adds up per base."""
    from search.report.study_report import write_report

    cfg = _cfg(hpo, n_trials=2, base="{ choices = [16, 24] }", epochs=2, pruner='type = "none"')
    opened = open_in(tmp_path, cfg)
    opened.ensure_parent_run()
    Worker(opened, log=lambda _m: None).run()
    trials = opened.study.get_trials()
    assert [(t.params["base"], t.state) for t in trials] == [
        (16, TrialState.COMPLETE),
        (24, TrialState.COMPLETE),
    ]
    epoch = cfg.data.train_size  # no samples_per_epoch: an epoch is a full pass
    assert [keys.train_samples(t) for t in trials] == [2 * epoch, 2 * epoch]
    write_report(opened.study, tmp_path / "r", locations(tmp_path).tracking_uri)
    summary = json.loads((tmp_path / "r" / "best_trial.json").read_text())
    assert [(s["value"], s["trials"], s["samples"]) for s in summary["by_stratum"]["strata"]] == [
        (16, 1, 2 * epoch),
        (24, 1, 2 * epoch),
    ]
    # each base's classes come from its own run's held-out per-class metrics
    client = mlflow.MlflowClient(locations(tmp_path).tracking_uri)
    for row, trial in zip(summary["against_paper"], trials, strict=True):
        logged = client.get_run(keys.run_id(trial)).data.metrics
        learned = [[k, kp] for (k, kp) in _classes_at(logged, 0.9)]
        assert row["base"] == trial.params["base"] and sorted(row["learned_classes"]) == learned


def _classes_at(metrics: dict[str, float], level: float) -> list[tuple[int, int]]:
    found = [(names.parse_class_metric(k, names.TEST_EXACT_MATCH), v) for k, v in metrics.items()]
    return sorted(c for c, v in found if c is not None and v >= level)


def test_plateaus_classes_and_the_even_odd_order() -> None:
    from search.report import paper

    assert paper.plateau(0.10) is None and paper.plateau(0.246) == 0.25 and paper.plateau(0.80) == 0.71
    assert paper.plateau(0.999) == 0.997
    row = paper.BaseRow(3, 0.40, 0.38, 0.42, {(1, 1): 0.99, (1, 2): 0.5, (2, 1): 0.95, (3, 3): 0.9})
    assert row.learned == [(1, 1), (2, 1), (3, 3)]
    assert row.learned_share == pytest.approx(0.25 + 0.125 + 2**-6)
    even = paper.BaseRow(2, 0.60, 0.58, 0.62, {})
    assert paper.ordering([even, row]).startswith("Every even base is above every odd base")
    close = paper.BaseRow(16, 0.43, 0.41, 0.45, {})
    mixed = paper.ordering([even, close, row])
    assert mixed.startswith("Not every even base") and "base 16" in mixed
    unlearned = paper.BaseRow(11, 0.0, 0.0, 0.001, {(1, 1): 0.3, (1, 2): 0.1})
    table = "\n".join(paper.markdown([unlearned]))
    assert "| 11 | 0.0 % (0.0–0.1) | 37 % | below the first | none (best: (1,1) 30 %) | 0.0 % |" in table
