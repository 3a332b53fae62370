"""Recipe levers in studies: per-step schedules, class balance, searchable weight decay, pruning on
another signal and in samples, warm start, the final run, and `train --params/--from-trial`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from search.cli import build_parser
from search.cli.train import run_config_of
from search.spec.runconfig import RunConfig
from search.spec.study_file import parse_study

FinishedStudy = Any

RECIPE_TRAINING = 'scheduler = "warmup_cosine"\nwarmup = 0.2\nlr_floor = 0.1\nlabel_smoothing = 0.1\n'
RECIPE_SEARCH = (
    "balance = { low = 0.0, high = 0.5 }\nweight_decay = { choices = [0.0, 0.01] }\n"
    "ema_decay = { choices = [0.0, 0.9] }\n"
)


def _recipe_study(hpo: Any, name: str, final: str = "", **kwargs: Any) -> str:
    text = hpo.study_toml(name, **kwargs)
    text = text.replace("[training]\n", "[training]\n" + RECIPE_TRAINING) + RECIPE_SEARCH
    return text + (f"\n[final]\n{final}\n" if final else "")


def _config_json(store: Any, trial: Any, dst: Path) -> dict:
    path = store.client().download_artifacts(trial.user_attrs["mlflow_run_id"], "config.json", str(dst))
    return json.loads(Path(path).read_text())


# --- one study with every lever, a final run, resumed by a launch of the next version ---------------


@pytest.fixture(scope="module")
def recipe_study(tmp_path_factory: pytest.TempPathFactory, hpo: Any) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("recipe")
    text = _recipe_study(
        hpo,
        "recipe",
        final='seconds = 2\nepochs = 2\nthreads = 1\ninit = "best_trial"',
        metric="val_exact_match",
        study_extra='prune_on = "val_loss"',
        pruner='type = "median"\nunit = "samples"\nn_startup_trials = 1\nn_warmup_steps = 0',
    )
    hpo.write_study(root, text, "recipe.toml")
    proc = hpo.check(hpo.run_cli(["launch", "recipe.toml"], root))
    return root, proc


def test_levers_reach_each_trial_run_config(recipe_study: tuple[Path, Any], hpo: Any, tmp_path: Path) -> None:
    root, _ = recipe_study
    store = hpo.Store(root)
    for t in store.study("recipe").trials:
        run = _config_json(store, t, tmp_path / str(t.number))["run"]
        params = t.user_attrs["params"]
        assert 0.0 <= params["balance"] <= 0.5 and params["weight_decay"] in (0.0, 0.01)
        assert (run["balance"], run["weight_decay"]) == (params["balance"], params["weight_decay"])
        assert (run["scheduler"], run["warmup"], run["lr_floor"]) == ("warmup_cosine", 0.2, 0.1)
        assert run["ema_decay"] == params["ema_decay"] in (0.0, 0.9) and run["label_smoothing"] == 0.1
        # an averaged run also logs its trained weights' exact match, the average's gain beside it
        logged = store.client().get_run(t.user_attrs["mlflow_run_id"]).data.metrics
        assert ("raw_val_exact_match" in logged) == (params["ema_decay"] > 0)
    assert {t.user_attrs["params"]["ema_decay"] for t in store.study("recipe").trials} == {0.0, 0.9}


def test_pruner_sees_negated_val_loss_in_samples_objective_stays_exact_match(
    recipe_study: tuple[Path, Any], hpo: Any
) -> None:
    root, _ = recipe_study
    store = hpo.Store(root)
    client = store.client()
    search = [t for t in store.study("recipe").trials if "final" not in t.user_attrs]
    assert len(search) == 4
    for t in search:
        run_id = t.user_attrs["mlflow_run_id"]
        loss = {m.step: m.value for m in client.get_metric_history(run_id, "val_loss")}
        exact = {m.step: m.value for m in client.get_metric_history(run_id, "val_exact_match")}
        # step = samples seen: 300 training inputs per epoch
        assert sorted(t.intermediate_values) == [300 * e for e in sorted(loss)]
        for epoch, value in loss.items():
            assert t.intermediate_values[300 * epoch] == pytest.approx(-value)
        if t.state == TrialState.COMPLETE:
            assert t.value == pytest.approx(max(exact.values()))


def test_final_run_trains_the_best_configuration_once(
    recipe_study: tuple[Path, Any], hpo: Any, tmp_path: Path
) -> None:
    root, proc = recipe_study
    store = hpo.Store(root)
    study = store.study("recipe")
    finals = [t for t in study.trials if "final" in t.user_attrs]
    assert len(finals) == 1 and len(study.trials) == 5, proc.stdout
    final = finals[0]
    of = study.trials[final.user_attrs["final_of"]]
    assert final.state == TrialState.COMPLETE and final.number == 4
    assert final.user_attrs["params"] == of.user_attrs["params"]
    run = store.run_of(final)
    assert run.data.tags["collatz_hpo.final"] == str(of.number)
    config = _config_json(store, final, tmp_path)["run"]
    assert (config["time_budget"], config["threads"], config["epochs"]) == (2, 1, 2)
    assert config["early_stopping_patience"] is None
    assert "final run: the configuration of trial" in proc.stdout
    # [final] init = "best_trial": it starts from the best search trial's best checkpoint
    uri = f"runs:/{of.user_attrs['mlflow_run_id']}/checkpoints/best.pt"
    assert final.user_attrs["final_init_from"] == uri and config["init_from"] == uri
    assert run.data.params["init_from"] == uri
    assert f"from its best checkpoint ({uri})" in proc.stdout
    assert "Downloading artifacts" not in proc.stdout + proc.stderr  # MLflow's progress bar stays off


def test_train_from_a_final_trial_fetches_its_starting_checkpoint(
    recipe_study: tuple[Path, Any], hpo: Any
) -> None:
    root, _ = recipe_study
    args = ["train", "--from-trial", "recipe:4", "--seconds", "1", "--epochs", "1", "--json"]
    proc = hpo.check(hpo.run_cli([*args, "--checkpoint-dir", "ck"], root))
    assert json.loads(proc.stdout)["samples_seen"] > 0
    assert "Downloading artifacts" not in proc.stderr  # the checkpoint fetch draws no progress bar
    bad = hpo.run_cli([*args, "--init-from", "runs:/0123456789abcdef/checkpoints/best.pt"], root)
    assert bad.returncode == 2 and "--init-from runs:/0123456789abcdef" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_relaunch_runs_no_second_final(recipe_study: tuple[Path, Any], hpo: Any) -> None:
    root, _ = recipe_study
    hpo.check(hpo.run_cli(["launch", "recipe.toml"], root))
    assert len(hpo.Store(root).study("recipe").trials) == 5


def test_a_study_saved_by_the_previous_version_resumes(tmp_path: Path, hpo: Any) -> None:
    hpo.write_study(tmp_path, hpo.study_toml("old", n_trials=1, epochs=1), "old.toml")
    hpo.check(hpo.run_cli(["launch", "old.toml"], tmp_path))
    store = hpo.Store(tmp_path)
    saved = store.study("old").user_attrs["config"]
    for section, key in [("study", "prune_on"), ("study", "warm_start"), ("training", "warmup")]:
        saved[section].pop(key)  # keys the previous version did not write
    for key in ("lr_floor", "balance"):
        saved["training"].pop(key)
    saved["study"]["pruner"].pop("unit")
    saved.pop("final")
    optuna.load_study(study_name="old", storage=store.optuna_url).set_user_attr("config", saved)
    proc = hpo.run_cli(["launch", "old.toml", "--n-trials", "2"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(store.study("old").trials) == 2


def test_a_training_time_budget_ends_each_trial_on_time_with_its_schedule(tmp_path: Path, hpo: Any) -> None:
    # [training] seconds: every trial stops after its budget (not after its 10,000 epochs), COMPLETE,
    # and its warmup-cosine is planned over those seconds, so the rate has fallen by the end
    text = hpo.study_toml("timed", n_trials=2, epochs=10_000, pruner='type = "none"', lr="3e-3")
    text = text.replace("[training]\n", '[training]\nseconds = 2\nscheduler = "warmup_cosine"\n')
    hpo.write_study(tmp_path, text, "timed.toml")
    hpo.check(hpo.run_cli(["launch", "timed.toml"], tmp_path))
    store = hpo.Store(tmp_path)
    trials = store.study("timed").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        assert _config_json(store, t, tmp_path / str(t.number))["run"]["time_budget"] == 2
        lrs = [m.value for m in store.client().get_metric_history(t.user_attrs["mlflow_run_id"], "lr")]
        assert 1 <= len(lrs) < 10_000 and lrs[-1] < 0.5 * 3e-3, lrs


# --- train --params / --from-trial -----------------------------------------------------------------------


def test_train_params_and_from_trial_reproduce_a_trial_run_config(
    tiny_study: FinishedStudy, tmp_path: Path
) -> None:
    study = tiny_study.store.study(tiny_study.name)
    for t in study.trials:
        config_path = tmp_path / f"config-{t.number}.json"
        config = _config_json(tiny_study.store, t, tmp_path / str(t.number))
        config_path.write_text(json.dumps(config))
        expected = RunConfig.from_dict(config["run"])
        via_file = run_config_of(build_parser().parse_args(["train", "--params", str(config_path)]))
        args = [
            "train",
            "--from-trial",
            f"{tiny_study.name}:{t.number}",
            "--storage",
            tiny_study.store.optuna_url,
        ]
        via_trial = run_config_of(build_parser().parse_args(args))
        assert via_file == expected == via_trial, t.number
    args = ["train", "--from-trial", "tiny:best", "--storage", tiny_study.store.optuna_url, "--seconds", "60"]
    best = run_config_of(build_parser().parse_args(args))
    assert best.lr == study.best_trial.user_attrs["params"]["lr"] and best.time_budget == 60  # flags win


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"d_modell": 64}', "unknown run setting 'd_modell'"),
        ("[1, 2]", "expected a mapping"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_params_file_is_one_line(
    content: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_helpers import assert_one_line_error, run_main

    (tmp_path / "p.json").write_text(content)
    code, _, err = run_main(["train", "--params", "p.json"], tmp_path, capsys)
    assert code == 2
    assert_one_line_error(code, err, "train:", needle)


# --- warm start ---------------------------------------------------------------------------------------


def _source_study(url: str) -> None:
    src = optuna.create_study(study_name="src", storage=url, direction="maximize")
    dists = {"lr": optuna.distributions.FloatDistribution(1e-6, 1.0, log=True)}
    rows = [  # (value, real params)
        (0.9, {"base": 16, "d_model": 32, "nhead": 4, "num_layers": 2, "lr": 1e-3}),
        (0.8, {"base": 16, "d_model": 32, "nhead": 4, "num_layers": 2, "lr": 1e-5}),  # lr outside
        (0.7, {"base": 16, "d_model": 64, "nhead": 4, "num_layers": 1, "lr": 1e-3}),  # d_model outside
        (0.6, {"base": 24, "d_model": 16, "nhead": 8, "num_layers": 1, "lr": 2e-3}),  # nhead outside
        (0.5, {"base": 32, "d_model": 16, "nhead": 2, "num_layers": 1, "lr": 3e-3, "dropout": 0.3}),
        (0.1, {"base": 24, "d_model": 32, "nhead": 2, "num_layers": 1, "lr": 3e-3}),  # not in the top 5
    ]
    for value, params in rows:
        src.add_trial(
            optuna.trial.create_trial(
                params={"lr": params["lr"]}, distributions=dists, value=value, user_attrs={"params": params}
            )
        )


def test_warm_start_enqueues_exactly_the_transferable_params(tmp_path: Path, hpo: Any) -> None:
    from search.study.opening import create_or_load

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    _source_study(url)
    data = tomllib.loads(hpo.study_toml("new", study_extra='warm_start = { study = "src", top_k = 5 }'))
    cfg = parse_study(data)
    lines: list[str] = []
    study = create_or_load(cfg, optuna.storages.RDBStorage(url), log=lines.append)
    waiting = study.get_trials(states=(TrialState.WAITING,))
    # d_model 16 and 32 admit heads {2, 4} here: one Optuna name "nhead"; dropout is fixed here
    assert [t.system_attrs["fixed_params"] for t in waiting] == [
        {"base": 16, "d_model": 32, "num_layers": 2, "lr": 1e-3, "nhead": 4},
        {"base": 32, "d_model": 16, "num_layers": 1, "lr": 3e-3, "nhead": 2},
    ]
    assert [t.user_attrs["warm_start_from"] for t in waiting] == ["src:0", "src:4"]
    text = "\n".join(lines)
    assert "trial 1 of 'src' skipped: lr = 1e-05 is outside" in text
    assert "trial 2 of 'src' skipped: d_model = 64 is outside" in text
    assert "trial 3 of 'src' skipped: nhead = 8" in text
    assert "enqueued 2 of the 5 best trials of 'src'" in text
    first = study.ask()  # the study runs them first
    assert first.number == waiting[0].number
    assert create_or_load(cfg, optuna.storages.RDBStorage(url), log=lines.append)  # once: no second enqueue
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1


def test_warm_start_from_a_missing_study_is_one_line(tmp_path: Path, hpo: Any) -> None:
    hpo.write_study(tmp_path, hpo.study_toml("w"), "w.toml")
    proc = hpo.run_cli(["launch", "w.toml", "--warm-start-from", "nosuch"], tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no study named 'nosuch'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# --- class balance ----------------------------------------------------------------------------------


def test_balance_changes_the_training_draws_only() -> None:
    import numpy as np

    from search.trial.training import build_batches, build_data

    plain = RunConfig(
        data_range=(1, 4096), train_size=1500, val_size=200, test_size=200, samples_per_epoch=None
    )
    balanced = plain.replace(balance=1.0, samples_per_epoch=60_000)
    natural, flat = build_data(plain), build_data(balanced)
    for a, b in zip(natural, flat, strict=True):  # the same splits, disjoint by value
        assert np.array_equal(a.values, b.values)
    train, val, test = flat
    assert not set(train.values.tolist()) & (set(val.values.tolist()) | set(test.values.tolist()))

    def shares(cfg: RunConfig) -> np.ndarray:
        """Share of each (k, k′) class among one epoch's training draws."""
        order = build_batches(cfg, train)._epoch_order().numpy()
        classes = np.unique(train.k * 64 + train.k_prime, return_inverse=True)[1]
        return np.bincount(classes[order], minlength=classes.max() + 1) / len(order)

    # uniform draws follow the classes' natural shares; balanced ones give each the same share
    natural_share = np.bincount(np.unique(train.k * 64 + train.k_prime, return_inverse=True)[1]) / len(train)
    assert shares(plain) == pytest.approx(natural_share)  # a permutation: each row once
    assert shares(balanced) == pytest.approx(np.full(len(natural_share), 1 / len(natural_share)), abs=0.003)
