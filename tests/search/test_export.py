"""`collatz-hpo export`: the export directory, a fresh re-evaluation, the Model Registry, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from cli_helpers import assert_one_line_error, run_main
from optuna.trial import TrialState
from outage_helpers import drop_first_call

# ``exported_tiny`` (tests/search/conftest.py): studies/tiny.toml launched in its own store and
# exported once with `collatz-hpo export tiny --out exports/best` (registered as version 1).
ExportedStudy = Any
MODEL = "collatz-n2^12"  # the task's name: odd n < 4096, the range of studies/tiny.toml
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _best(exported: ExportedStudy) -> optuna.trial.FrozenTrial:
    return exported.store.study("tiny").best_trial


def _config(exported: ExportedStudy) -> dict[str, Any]:
    return json.loads((exported.export_dir / "config.json").read_text())


# --- the export directory ----------------------------------------------------------------------


def test_export_writes_a_self_contained_directory(exported_tiny: ExportedStudy) -> None:
    d = exported_tiny.export_dir
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "mlflow_model", "model.safetensors"]
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")], "temp folders left behind"
    best = _best(exported_tiny)
    cfg = _config(exported_tiny)
    assert cfg["study"] == "tiny"
    assert cfg["trial"] == best.number
    assert cfg["run_id"] == best.user_attrs["mlflow_run_id"]
    assert cfg["data"]["range"] == [1, 4096]
    assert cfg["encoding"]["base"] == best.user_attrs["params"]["base"]
    assert cfg["model"]["vocab_size"] == cfg["encoding"]["base"] + 3
    assert cfg["max_length"] == cfg["model"]["max_seq_length"]
    assert cfg["model"]["d_model"] == best.user_attrs["params"]["d_model"]
    assert 0.0 <= cfg["test_metrics"]["exact_match"] <= 1.0
    assert cfg["test_metrics"]["num_samples"] == 64
    assert cfg["exported_at"].startswith("20")
    assert f"exported trial {best.number} to exports/best" in exported_tiny.proc.stdout

    from safetensors.torch import load_file

    state = load_file(str(d / "model.safetensors"))
    assert any(k.startswith("encoder.") for k in state)

    m = d / "mlflow_model"
    assert (m / "MLmodel").is_file()
    assert (m / "artifacts" / "model.safetensors").is_file()
    assert (m / "artifacts" / "config.json").is_file()
    assert (m / "code" / "core" / "model.py").is_file()
    assert (m / "code" / "search" / "pyfunc.py").is_file()
    assert (m / "code" / "search" / "models" / "loading.py").is_file()
    mlmodel = (m / "MLmodel").read_text()
    assert "python_function" in mlmodel and "signature" in mlmodel


def test_recorded_test_exact_match_equals_a_fresh_evaluation(exported_tiny: ExportedStudy) -> None:
    from search.models.loading import load_export
    from search.spec.runconfig import RunConfig
    from search.trial.training import build_data, build_test_set, evaluate_test

    cfg = _config(exported_tiny)
    best = _best(exported_tiny)
    client = exported_tiny.store.client()
    run_config = client.download_artifacts(cfg["run_id"], "config.json", str(exported_tiny.root / "dl"))
    run_cfg = RunConfig.from_dict(json.loads(Path(run_config).read_text())["run"])
    _, _, test = build_data(run_cfg)
    alone = build_test_set(run_cfg)  # what export evaluates on, built without the other splits
    assert np.array_equal(alone.values, test.values) and alone.max_length == test.max_length
    assert torch.equal(alone.input_ids, test.input_ids) and torch.equal(alone.target_ids, test.target_ids)
    model = load_export(exported_tiny.export_dir)
    fresh = evaluate_test(model.model, test, torch.device("cpu"), run_cfg.eval_batch_size)
    assert fresh["exact_match"] == cfg["test_metrics"]["exact_match"]
    assert fresh["token_accuracy"] == pytest.approx(cfg["test_metrics"]["token_accuracy"])
    # ... and equals what the study itself recorded for the trial.
    assert cfg["recorded_test_exact_match"] == best.user_attrs["test_exact_match"] == fresh["exact_match"]


def test_export_is_registered_with_alias_and_tags(exported_tiny: ExportedStudy) -> None:
    client = exported_tiny.store.client()
    cfg = _config(exported_tiny)
    version = client.get_model_version_by_alias(MODEL, "champion")
    assert int(version.version) == 1
    assert version.tags["study"] == "tiny"
    assert version.tags["trial"] == str(cfg["trial"])
    assert version.tags["run_id"] == cfg["run_id"]
    assert float(version.tags["test_exact_match"]) == pytest.approx(cfg["test_metrics"]["exact_match"])
    # the held-out figure with its interval and the split it was measured on
    interval = cfg["test_exact_match_interval"]
    assert interval["n"] == 64 and interval["low"] <= interval["estimate"] <= interval["high"]
    assert float(version.tags["test_exact_match_high"]) == pytest.approx(interval["high"], abs=1e-6)
    assert version.tags["test_size"] == "64"
    split = json.loads(version.tags["test_split"])
    assert split == {"range": [1, 4096], "train_size": 300, "val_size": 64, "test_size": 64, "seed": 0}
    assert "n=64" in version.description and "odd n < 2^12" in version.description
    assert "the first champion of collatz-n2^12" in exported_tiny.proc.stdout
    assert "n=64) on odd n < 2^12" in exported_tiny.proc.stdout  # the export's own line
    run = client.get_run(version.tags["export_run_id"])
    assert run.info.run_name == f"export-trial-{cfg['trial']}"
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == cfg["run_id"]
    assert run.info.experiment_id == client.get_experiment_by_name("tiny").experiment_id
    assert run.data.metrics["test_exact_match_low"] == pytest.approx(interval["low"])


def test_champion_stays_unless_beaten_or_promoted(exported_tiny: ExportedStudy, hpo: Any) -> None:
    """Through the CLI: a second export that does not beat the champion is registered, the alias
    stays and the output says why; --promote moves it."""
    root, name = exported_tiny.root, "alias-test"
    study = exported_tiny.store.study("tiny")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    other = next((t for t in complete if t.number != study.best_trial.number), complete[0])
    client = exported_tiny.store.client()

    hpo.check(hpo.run_cli(["export", "tiny", "--out", "exports/a", "--register", name], root))
    assert int(client.get_model_version_by_alias(name, "champion").version) == 1
    args = ["export", "tiny", "--trial", other.number, "--out", "exports/b", "--register", name]
    proc = hpo.check(hpo.run_cli(args, root))
    assert f"{name} version 2; alias 'champion' stays on version 1" in proc.stdout
    assert "does not beat" in proc.stdout and "--promote" in proc.stdout
    assert int(client.get_model_version_by_alias(name, "champion").version) == 1
    proc = hpo.check(hpo.run_cli([*args, "--promote"], root))
    assert f"{name} version 3; alias 'champion' moved by --promote" in proc.stdout
    champion = client.get_model_version_by_alias(name, "champion")
    assert int(champion.version) == 3
    assert champion.tags["trial"] == str(other.number)
    assert json.loads((root / "exports" / "b" / "config.json").read_text())["trial"] == other.number


def _variant(exported: ExportedStudy, tmp: Path, label: str, exact_match: float, **data: Any) -> Path:
    """A copy of the tiny export whose config.json claims another held-out figure or split."""
    import shutil

    d = tmp / label
    shutil.copytree(exported.export_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["test_metrics"]["exact_match"] = exact_match
    cfg["data"].update(data)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_champion_moves_only_on_a_better_figure_of_the_same_task(
    exported_tiny: ExportedStudy, tmp_path: Path
) -> None:
    from search.models.registry import register_export
    from search.tracking.client import ResilientClient

    url = exported_tiny.store.mlflow_url
    client = ResilientClient(url, registry_uri=url)
    run_id, name, said = _config(exported_tiny)["run_id"], "champion-rule", []

    def register(directory: Path, promote: bool = False) -> Any:
        return register_export(client, directory, run_id, "tiny", 0, name, said.append, promote)

    def champion() -> int:
        return int(client.get_model_version_by_alias(name, "champion").version)

    first = register(_variant(exported_tiny, tmp_path, "v1", 0.5))  # 50 % of 64: 37.9–62.1 %
    assert first.champion and champion() == 1
    within = register(_variant(exported_tiny, tmp_path, "v2", 0.6))  # better, but inside the interval
    assert not within.champion and champion() == 1
    assert "does not beat" in within.reason and "same held-out split" in within.reason
    better = register(_variant(exported_tiny, tmp_path, "v3", 0.9))
    assert better.champion and champion() == 3, better.reason
    assert "beats version 1's 50.00 %" in better.reason
    # another task (inputs odd n < 2^16): never compared, however good, unless promoted
    other_task = _variant(exported_tiny, tmp_path, "v4", 1.0, range=[1, 65536])
    refused = register(other_task)
    assert not refused.champion and champion() == 3
    assert "odd n < 2^16" in refused.reason and "another task" in refused.reason
    forced = register(other_task, promote=True)
    assert forced.champion and champion() == 5
    assert all(line.startswith(f"registered as {name} version ") for line in said)


def test_a_champion_of_another_split_is_reevaluated_on_the_new_one(
    exported_tiny: ExportedStudy, tmp_path: Path
) -> None:
    """Same range, another cut of it (seed 1): both models are measured on the new split's held-out
    inputs the champion never trained on; neither beats the other by chance (same weights)."""
    from search.models.registry import register_export
    from search.tracking.client import ResilientClient

    url = exported_tiny.store.mlflow_url
    client = ResilientClient(url, registry_uri=url)
    run_id, name = _config(exported_tiny)["run_id"], "champion-resplit"
    register_export(client, exported_tiny.export_dir, run_id, "tiny", 0, name, print)
    resplit = _variant(exported_tiny, tmp_path, "seed1", 1.0, seed=1)  # its claim is not taken at its word
    verdict = register_export(client, resplit, run_id, "tiny", 0, name, print)
    assert not verdict.champion, verdict.reason
    assert "never trained on (re-evaluated)" in verdict.reason


def test_a_legacy_champion_is_judged_by_its_config(exported_tiny: ExportedStudy, tmp_path: Path) -> None:
    """A version registered without the held-out tags (an older export): its config.json says."""
    import tarfile

    from search.models.registry import register_export
    from search.tracking.client import ResilientClient

    with tarfile.open(FIXTURES / "pyfunc_v0_1.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    url = exported_tiny.store.mlflow_url
    raw = exported_tiny.store.client()
    run = raw.create_run(raw.get_experiment_by_name("tiny").experiment_id)
    raw.log_artifacts(run.info.run_id, str(tmp_path / "pyfunc_v0_1"), "model")
    raw.create_registered_model("legacy-champion")
    old = raw.create_model_version(
        "legacy-champion", f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    raw.set_registered_model_alias("legacy-champion", "champion", old.version)
    client = ResilientClient(url, registry_uri=url)
    run_id = _config(exported_tiny)["run_id"]
    new = _variant(exported_tiny, tmp_path, "good", 0.9)  # the legacy model scored 0/64 on this split
    verdict = register_export(client, new, run_id, "tiny", 0, "legacy-champion", print)
    assert verdict.champion, verdict.reason
    assert "beats version 1's 0.00 % (0.00–5.66, n=64) on the same held-out split" in verdict.reason


def test_export_without_registering(exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]) -> None:
    before = len(exported_tiny.store.client().search_model_versions(f"name='{MODEL}'"))
    code, out, err = run_main(
        ["export", "tiny", "--out", "exports/plain", "--no-register"], exported_tiny.root, capsys
    )
    assert code == 0, err
    assert (exported_tiny.root / "exports" / "plain" / "model.safetensors").is_file()
    assert "registered" not in out
    assert len(exported_tiny.store.client().search_model_versions(f"name='{MODEL}'")) == before


def test_a_failed_export_leaves_nothing_behind(
    exported_tiny: ExportedStudy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    from search.models.export import export_trial

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(mlflow.pyfunc, "save_model", boom)
    study = exported_tiny.store.study("tiny")
    out = tmp_path / "exports" / "x"
    with pytest.raises(OSError, match="disk full"):
        export_trial(study, exported_tiny.store.mlflow_url, out=out, register=None, log=lambda m: None)
    assert list((tmp_path / "exports").iterdir()) == []


def test_export_rides_out_dropped_connections(
    exported_tiny: ExportedStudy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every MLflow call of an export goes through the retrying client: a checkpoint download cut
    off is tried again, and a model version whose answer was lost is not registered twice."""
    from mlflow.tracking import MlflowClient

    from search.models.export import export_trial

    downloads = drop_first_call(monkeypatch, MlflowClient, "download_artifacts")
    versions = drop_first_call(monkeypatch, MlflowClient, "create_model_version", answer_lost=True)
    models = drop_first_call(monkeypatch, MlflowClient, "create_logged_model", answer_lost=True)
    study = exported_tiny.store.study("tiny")
    out = tmp_path / "flaky"
    url = exported_tiny.store.mlflow_url
    result = export_trial(study, url, out=out, register="flaky-model", log=lambda m: None)
    assert len(downloads) == 3  # the checkpoint twice, then the run's config.json
    assert len(versions) == len(models) == 1  # made once: found after the lost answer
    assert (out / "model.safetensors").is_file()
    found = exported_tiny.store.client().search_model_versions("name = 'flaky-model'")
    assert [str(v.version) for v in found] == [result.version]
    assert found[0].tags["export_run_id"] == result.export_run_id
    experiment = exported_tiny.store.client().get_run(result.export_run_id).info.experiment_id
    logged = exported_tiny.store.client().search_logged_models([experiment])
    ours = [m.artifact_location for m in logged if m.source_run_id == result.export_run_id]
    assert ours == [found[0].source]


def test_a_registered_model_resolves_across_a_dropped_connection(
    exported_tiny: ExportedStudy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    from search.locations import resolve_locations
    from search.models.registry import resolve_model

    aliases = drop_first_call(monkeypatch, MlflowClient, "get_model_version_by_alias")
    downloads = drop_first_call(monkeypatch, mlflow.artifacts, "download_artifacts")
    locations = resolve_locations(None, exported_tiny.store.mlflow_url)
    path = resolve_model(f"models:/{MODEL}@champion", locations, str(tmp_path))
    assert len(aliases) == 2 and len(downloads) == 2
    assert (path / "MLmodel").is_file()


# --- bad input ---------------------------------------------------------------------------------


def test_unknown_study(exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["export", "nosuch"], exported_tiny.root, capsys)
    assert_one_line_error(code, err, "no study named 'nosuch'", "tiny")


def test_no_store_at_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["export", "tiny"], tmp_path, capsys)
    assert_one_line_error(code, err, "no study named 'tiny'")
    assert not (tmp_path / "mlruns").exists()


def test_study_without_a_completed_trial(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    study = optuna.create_study(study_name="nothing-done", storage=exported_tiny.store.optuna_url)
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, intermediate_values={1: 0.1}))
    code, _, err = run_main(["export", "nothing-done"], exported_tiny.root, capsys)
    assert_one_line_error(code, err, "no completed trial", "1 pruned")


def test_trial_that_is_not_complete_or_does_not_exist(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    trials = exported_tiny.store.study("tiny").trials
    code, _, err = run_main(["export", "tiny", "--trial", "99"], exported_tiny.root, capsys)
    assert_one_line_error(code, err, "no trial 99")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    if pruned:
        code, _, err = run_main(["export", "tiny", "--trial", pruned[0].number], exported_tiny.root, capsys)
        assert_one_line_error(code, err, f"trial {pruned[0].number} is PRUNED")


def _study_with_run(exported: ExportedStudy, name: str, checkpoint: bytes | None) -> None:
    """A study whose one COMPLETE trial points at a run with the real config but ``checkpoint``."""
    client = exported.store.client()
    source = _config(exported)["run_id"]
    exp = client.create_experiment(name)
    run = client.create_run(exp, run_name="trial-0")
    run_id = run.info.run_id
    tmp = exported.root / "dl" / name
    tmp.mkdir(parents=True)
    client.log_artifact(run_id, client.download_artifacts(source, "config.json", str(tmp)))
    if checkpoint is not None:
        (tmp / "checkpoints").mkdir()
        (tmp / "checkpoints" / "best.pt").write_bytes(checkpoint)
        client.log_artifact(run_id, str(tmp / "checkpoints" / "best.pt"), "checkpoints")
    client.set_terminated(run_id)
    study = optuna.create_study(study_name=name, storage=exported.store.optuna_url, direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"mlflow_run_id": run_id}))


@pytest.mark.parametrize(
    ("checkpoint", "needle"),
    [
        (None, "cannot get artifact checkpoints/best.pt"),
        (b"PK\x03\x04 not a checkpoint", "unusable checkpoint"),
    ],
    ids=["missing", "corrupted"],
)
def test_missing_or_corrupted_checkpoint(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str], checkpoint: bytes | None, needle: str
) -> None:
    name = f"broken-{'missing' if checkpoint is None else 'corrupted'}"
    _study_with_run(exported_tiny, name, checkpoint)
    code, _, err = run_main(["export", name, "--out", f"exports/{name}"], exported_tiny.root, capsys)
    assert_one_line_error(code, err, needle)
    assert not (exported_tiny.root / "exports" / name).exists()


def test_out_that_is_not_an_export_is_not_overwritten(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = exported_tiny.root / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    code, _, err = run_main(
        ["export", "tiny", "--out", "precious", "--no-register"], exported_tiny.root, capsys
    )
    assert_one_line_error(code, err, "is not a collatz-hpo export")
    assert [p.name for p in keep.iterdir()] == ["notes.txt"]


def test_the_champion_rule_in_words() -> None:
    """``champion.judge`` alone: each verdict is one line that says why."""
    from search.models.champion import HeldOut, judge
    from search.stats import wilson

    split = {"range": [1, 65536], "train_size": 24_000, "val_size": 1000, "test_size": 2000, "seed": 0}
    new = HeldOut(wilson(0.70, 2000), split)
    old = HeldOut(wilson(0.64, 2000), split)
    assert judge(new, old, "4").promote
    assert not judge(old, new, "4").promote
    nothing = judge(new, None, "4")
    assert not nothing.promote and "no held-out figure" in nothing.reason
    other_cut = HeldOut(wilson(0.10, 2000), {**split, "seed": 1})
    refused = judge(new, other_cut, "4", "it trained on every one of this split's 2,000 held-out inputs")
    assert not refused.promote and "trained on every one" in refused.reason
    fresh = judge(new, other_cut, "4", (wilson(0.70, 1500), wilson(0.60, 1500)))
    assert fresh.promote and "on the 1,500 inputs of this split it never trained on" in fresh.reason
    assert "\n" not in "".join(v.reason for v in (nothing, refused, fresh))
    assert new.describe() == (
        "held-out exact match 70.00 % (67.95–71.97, n=2,000) on the held-out split of odd n < 2^16 "
        "(train/val/test 24,000/1,000/2,000, seed 0)"
    )
