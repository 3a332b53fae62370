"""`collatz-hpo predict` and `mlflow models serve`: round trip to the study's own test predictions."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import assert_one_line_error, run_main
from server_helpers import free_port, stop_session, wait_until_ok

# ``exported_tiny`` (tests/search/conftest.py): studies/tiny.toml launched in its own store and
# exported once with `collatz-hpo export tiny --out exports/best` (registered as version 1).
ExportedStudy = Any


@pytest.fixture(scope="module")
def study_predictions(exported_tiny: ExportedStudy) -> list[dict[str, str]]:
    """The exported trial's `test_predictions.csv`: what the model answered in the study."""
    run_id = json.loads((exported_tiny.export_dir / "config.json").read_text())["run_id"]
    dst = exported_tiny.root / "dl" / "predictions"
    dst.mkdir(parents=True, exist_ok=True)
    path = exported_tiny.store.client().download_artifacts(run_id, "test_predictions.csv", str(dst))
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 64
    return rows


def test_round_trip_equals_the_study_final_evaluation(
    exported_tiny: ExportedStudy, study_predictions: list[dict[str, str]], hpo: Any
) -> None:
    root = exported_tiny.root
    (root / "test_inputs.txt").write_text("\n".join(r["n"] for r in study_predictions) + "\n")
    proc = hpo.check(hpo.run_cli(["predict", "exports/best", "--file", "test_inputs.txt", "--json"], root))
    rows = json.loads(proc.stdout)
    assert [r["n"] for r in rows] == [int(r["n"]) for r in study_predictions]
    for ours, theirs in zip(rows, study_predictions, strict=True):
        expected = int(theirs["predicted"]) if theirs["predicted"] else None
        assert ours["predicted"] == expected, (ours, theirs)
        assert ours["kappa"] == int(theirs["kappa"])
        assert ours["correct"] == (theirs["correct"] == "1")
    config = json.loads((exported_tiny.export_dir / "config.json").read_text())
    right = sum(r["correct"] for r in rows)
    assert right / len(rows) == config["test_metrics"]["exact_match"]


def test_table_output_and_known_values(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    from search.models.loading import load_export

    code, out, err = run_main(["predict", "exports/best", "27", "97", "1", "7"], exported_tiny.root, capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split() == ["n", "predicted", "κ", "true", "κ", "right", "trained", "range"]
    predicted = load_export(exported_tiny.export_dir).predict([27, 97, 1, 7])
    truth = {27: 31, 97: 73, 1: 1, 7: 13}
    for line, n, p in zip(lines[1:5], (27, 97, 1, 7), predicted, strict=True):
        cells = line.split()
        assert cells[0] == str(n) and cells[2] == str(truth[n])
        assert cells[1] == (str(p) if p is not None else "?")
        assert cells[3] == ("yes" if p == truth[n] else "no")
        assert cells[4] == "inside"
    right = sum(p == truth[n] for n, p in zip((27, 97, 1, 7), predicted, strict=True))
    assert lines[-1].startswith(f"{right}/4 right")
    # the last line names the model's own held-out figure, with its interval and its input range
    config = json.loads((exported_tiny.export_dir / "config.json").read_text())
    assert "trained on odd n < 2^12" in lines[-1]
    assert f"held-out exact match {100 * config['test_metrics']['exact_match']:.2f} % (" in lines[-1]
    assert "n=64)" in lines[-1]


def test_inputs_outside_the_training_range_are_flagged(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tiny model learned odd n < 4096: it still answers 4097 and 1000001, flagged, exit 0."""
    code, out, err = run_main(
        ["predict", "exports/best", "27", "4097", "1000001"], exported_tiny.root, capsys
    )
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [line.split()[-1] for line in lines[1:4]] == ["inside", "OUTSIDE", "OUTSIDE"]
    assert "2 outside the trained range" in lines[-1]
    code, out, err = run_main(
        ["predict", "exports/best", "4095", "4097", "--json"], exported_tiny.root, capsys
    )
    assert code == 0, err
    assert [r["in_training_range"] for r in json.loads(out)] == [True, False]


def test_reads_integers_from_stdin(exported_tiny: ExportedStudy, hpo: Any) -> None:
    proc = subprocess.run(
        [*hpo.CLI, "predict", "exports/best", "--json"],
        input="27, 97  # two inputs\n\n9\n",
        cwd=exported_tiny.root,
        env=hpo.cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    hpo.check(proc)
    assert [r["n"] for r in json.loads(proc.stdout)] == [27, 97, 9]
    assert [r["kappa"] for r in json.loads(proc.stdout)] == [31, 73, 7]


def test_registered_champion_predicts_like_the_export(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    values = ["27", "97", "1", "3", "9", "4095"]
    code, out, err = run_main(["predict", "exports/best", *values, "--json"], exported_tiny.root, capsys)
    assert code == 0, err
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    for model in (
        "models:/collatz-n2^12@champion",  # the task's name: odd n < 2^12
        "models:/collatz-n2^12/1",
        "exports/best/mlflow_model",
    ):
        code, out2, err = run_main(["predict", model, *values, "--json"], exported_tiny.root, capsys)
        assert code == 0, err
        assert json.loads(out2) == json.loads(out), model
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before  # no global state changed
    code, _, err = run_main(["predict", "models:/no-such-model@champion", "27"], exported_tiny.root, capsys)
    assert_one_line_error(code, err, "no-such-model")


def test_loading_and_predicting_imports_neither_optuna_nor_the_database(exported_tiny: ExportedStudy) -> None:
    code = (
        "import sys\n"
        "from search.models.loading import load_export\n"
        f"print(load_export({str(exported_tiny.export_dir)!r}).predict([27, 97]))\n"
        "from search.cli import main\n"
        f"main(['predict', {str(exported_tiny.export_dir)!r}, '27', '--json'])\n"
        # sympy: torch imports it on the first key_padding_mask check (~0.4 s); decoding avoids it
        "heavy = ('optuna', 'mlflow', 'sqlalchemy', 'sympy', 'search.study.opening',\n"
        "         'search.study.storage', 'search.keys')\n"
        "bad = sorted(m for m in heavy if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert '"n": 27' in proc.stdout


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("10", "10 is even"),
        ("0", "0 is not an odd positive integer"),
        ("-3", "-3 is negative"),
        ("abc", "'abc' is not an integer"),
        ("2.5", "'2.5' is not an integer"),
        ("1e3", "'1e3' is not an integer"),
    ],
)
def test_bad_inputs_are_named(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str], value: str, needle: str
) -> None:
    code, out, err = run_main(["predict", "exports/best", "27", value], exported_tiny.root, capsys)
    assert_one_line_error(code, err, needle)
    assert out == ""


def test_input_too_long_names_value_and_limit(
    exported_tiny: ExportedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = json.loads((exported_tiny.export_dir / "config.json").read_text())
    base, limit = cfg["encoding"]["base"], cfg["max_length"]
    largest = base ** (limit - 1) - 1  # odd for even bases: the longest input that still fits
    code, _, err = run_main(["predict", "exports/best", str(largest)], exported_tiny.root, capsys)
    assert code == 0, err
    too_long = largest + 2
    code, _, err = run_main(["predict", "exports/best", str(too_long)], exported_tiny.root, capsys)
    assert_one_line_error(code, err, str(too_long), f"max length is {limit}", str(largest))


def test_bad_input_in_a_subprocess_is_one_line(exported_tiny: ExportedStudy, hpo: Any) -> None:
    proc = hpo.run_cli(["predict", "exports/best", "27", "28"], exported_tiny.root, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, "28 is even")
    proc = hpo.run_cli(["predict", "exports/best", "--file", "nope.txt"], exported_tiny.root, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, "nope.txt")


def _broken_copy(exported: ExportedStudy, tmp_path: Path, how: str) -> Path:
    d = tmp_path / "export"
    shutil.copytree(exported.export_dir, d)
    weights, config = d / "model.safetensors", d / "config.json"
    if how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "flipped byte":
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "truncated weights, no checksum":
        cfg = json.loads(config.read_text())
        del cfg["weights_sha256"]
        config.write_text(json.dumps(cfg))
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "config not json":
        config.write_text('{"format": "collatz-hpo-export", "model": {')
    elif how == "config of something else":
        config.write_text('{"hello": "world"}')
    elif how == "no weights":
        weights.unlink()
    elif how == "no config":
        config.unlink()
    return d


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("truncated weights", "checksum"),
        ("flipped byte", "checksum"),
        ("truncated weights, no checksum", "cannot read weights"),
        ("config not json", "not valid JSON"),
        ("config of something else", "not a collatz-hpo export config"),
        ("no weights", "model.safetensors is missing"),
        ("no config", "config.json is missing"),
    ],
)
def test_corrupted_export(
    exported_tiny: ExportedStudy, tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, needle: str
) -> None:
    d = _broken_copy(exported_tiny, tmp_path, how)
    code, _, err = run_main(["predict", d, "27"], tmp_path, capsys)
    assert_one_line_error(code, err, needle)


def test_missing_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["predict", "exports/none", "27"], tmp_path, capsys)
    assert_one_line_error(code, err, "no export at exports/none")


# --- mlflow models serve -----------------------------------------------------------------------


def _post(url: str, payload: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_mlflow_models_serve_answers_with_kappa(exported_tiny: ExportedStudy, hpo: Any) -> None:
    from search.models.loading import load_export

    port = free_port()
    bin_dir = str(Path(sys.executable).parent)  # the scoring server runs `uvicorn` from PATH
    env = {**hpo.cli_env(), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    model_dir = exported_tiny.export_dir / "mlflow_model"
    log_path = exported_tiny.root / "serve.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(
        [
            os.path.join(bin_dir, "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=exported_tiny.root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{base_url}/ping", server, 60, log_path, "the scoring server")
        status, body = _post(
            f"{base_url}/invocations", {"dataframe_split": {"columns": ["n"], "data": [[27], [97]]}}
        )
        assert status == 200, body
        served = [row["kappa"] for row in body["predictions"]]
        assert served == load_export(exported_tiny.export_dir).predict([27, 97])
        status, body = _post(
            f"{base_url}/invocations", {"dataframe_split": {"columns": ["n"], "data": [["27"], [10]]}}
        )
        assert status == 400
        assert "10 is even" in body["message"]
    finally:
        stop_session(server)  # the server and its uvicorn worker share the session started for them
        log.close()
