"""Models exported and registered by earlier versions still load and predict the same.

The fixture (tests/fixtures/README.md) is an MLflow model written by `collatz-hpo export` before
`search/` was split into its present modules, with what that code predicted.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def legacy_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("legacy")
    with tarfile.open(FIXTURES / "pyfunc_v0_1.tar.gz") as tar:
        tar.extractall(root, filter="data")
    expected = json.loads((FIXTURES / "pyfunc_v0_1_expected.json").read_text())
    return root / "pyfunc_v0_1", expected


def test_legacy_pyfunc_loads_in_a_process_running_the_new_code(legacy_model: tuple[Path, dict]) -> None:
    import mlflow.pyfunc
    import pandas as pd

    import search.pyfunc

    directory, expected = legacy_model
    model = mlflow.pyfunc.load_model(str(directory))
    # the pickled class resolves to this process's search.pyfunc, not to the model's old copy
    assert type(model.unwrap_python_model()) is search.pyfunc.CollatzPyfunc
    out = model.predict(pd.DataFrame({"n": expected["inputs"]}))
    assert out["kappa"].tolist() == expected["kappa"]


def test_legacy_model_predicts_from_its_directory(
    legacy_model: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory, expected = legacy_model
    code, out, err = run_main(["predict", directory, *expected["inputs"], "--json"], tmp_path, capsys)
    assert code == 0, err
    assert [r["predicted"] for r in json.loads(out)] == expected["kappa"]


def test_legacy_model_registered_predicts_through_models_uri(
    legacy_model: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow.tracking import MlflowClient

    directory, expected = legacy_model
    url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    exp = client.create_experiment("legacy", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp)
    client.log_artifacts(run.info.run_id, str(directory), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("legacy")
    version = client.create_model_version("legacy", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("legacy", "champion", version.version)
    args = ["predict", "models:/legacy@champion", *expected["inputs"], "--json", "--tracking-uri", url]
    code, out, err = run_main(args, tmp_path, capsys)
    assert code == 0, err
    assert [r["predicted"] for r in json.loads(out)] == expected["kappa"]
    code, _, err = run_main(["predict", "models:/legacy", "27", "--tracking-uri", url], tmp_path, capsys)
    assert code == 2
    assert_one_line_error(code, err, "expected models:/NAME@ALIAS or models:/NAME/VERSION")
