"""Export a study's best trial: a self-contained model directory and a Model Registry version.

``export_trial`` takes the trial's best checkpoint from its MLflow run, re-evaluates it on the
held-out test split (rebuilt from the run's config), and writes, atomically::

    exports/<study>-trial-<n>/
        model.safetensors     weights (loading them runs no code)
        config.json           model + encoding + data range + test metrics + study/trial/run ids
        mlflow_model/         MLflow pyfunc model: DataFrame column ``n`` → column ``kappa``

It then logs that MLflow model to a run ``export-trial-<n>`` (nested under the trial's run),
registers it (default name ``collatz-transformer``), points the alias ``champion`` at the new
version and tags the version with the study, trial, run id and test exact match.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.model_io import (
    CONFIG_FILE,
    EXPORT_FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    ExportError,
    save_weights,
)
from search.storage import first_line

__all__ = ["ALIAS", "DEFAULT_MODEL_NAME", "ExportResult", "export_trial", "select_trial"]

DEFAULT_MODEL_NAME = "collatz-transformer"
ALIAS = "champion"
MLFLOW_MODEL_DIR = "mlflow_model"
RUN_ATTR = "mlflow_run_id"
Log = Callable[[str], None]


@dataclass
class ExportResult:
    directory: Path
    study: str
    trial: int
    run_id: str
    test: dict[str, Any]  # the fresh evaluation (scalars and per-class rates)
    recorded_exact_match: float | None  # what the study recorded for the trial
    model_name: str | None = None
    version: str | None = None
    export_run_id: str | None = None


def select_trial(study: optuna.Study, number: int | None = None) -> FrozenTrial:
    """The best trial, or trial ``number``; it must be COMPLETE (clear ExportError otherwise)."""
    trials = study.get_trials(deepcopy=False)
    if number is None:
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            states = ", ".join(f"{sum(t.state == s for t in trials)} {s.name.lower()}" for s in TrialState)
            raise ExportError(f"study '{study.study_name}' has no completed trial yet ({states})")
        return study.best_trial
    found = [t for t in trials if t.number == number]
    if not found:
        known = f"0..{len(trials) - 1}" if trials else "none"
        raise ExportError(f"study '{study.study_name}' has no trial {number} (trials: {known})")
    trial = found[0]
    if trial.state != TrialState.COMPLETE:
        raise ExportError(f"trial {number} is {trial.state.name}: only COMPLETE trials can be exported")
    return trial


def quiet_mlflow() -> None:
    """No progress bars or pickling advice from MLflow: our lines are the output."""
    import logging

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    logging.getLogger("mlflow").setLevel(max(logging.getLogger("mlflow").level, logging.WARNING))


def _download(client: Any, run_id: str, path: str, dst: str) -> Path:
    try:
        return Path(client.download_artifacts(run_id, path, dst))
    except Exception as exc:  # MLflow raises several types for a missing artifact
        raise ExportError(f"cannot get artifact {path} of run {run_id}: {first_line(exc)}") from None


def _test_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-able test metrics: the scalars plus exact match per k, k′ and (k, k′) class."""
    out: dict[str, Any] = {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    out["by_class"] = {f"{k},{kp}": v for (k, kp), v in metrics.get("by_class", {}).items()}
    out["by_k"] = {str(k): v for k, v in metrics.get("by_k", {}).items()}
    out["by_k_prime"] = {str(k): v for k, v in metrics.get("by_k_prime", {}).items()}
    return out


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / CONFIG_FILE).read_text()).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


@contextmanager
def _atomic_directory(out: Path) -> Iterator[Path]:
    """A temp folder next to ``out`` that becomes ``out`` (replacing an older export) on success."""
    if out.exists() and not (out.is_dir() and (_is_export(out) or not any(out.iterdir()))):
        raise ExportError(f"{out} exists and is not a collatz-hpo export; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        _permissions(tmp)
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _permissions(root: Path) -> None:
    """The modes a plain mkdir/open would give (mkdtemp and safetensors make them private)."""
    umask = os.umask(0)
    os.umask(umask)
    root.chmod(0o777 & ~umask)
    for path in root.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


@contextmanager
def _code_paths() -> Iterator[list[str]]:
    """``core/`` and the pyfunc modules of ``search/``, staged so they import under their names."""
    import core
    from search import model_io

    core_dir = Path(core.__file__).parent
    search_dir = Path(model_io.__file__).parent  # `search` may be a namespace package (no __file__)
    with tempfile.TemporaryDirectory(prefix="collatz-code-") as tmp:
        shutil.copytree(core_dir, Path(tmp, "core"), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        pkg = Path(tmp, "search")
        pkg.mkdir()
        (pkg / "__init__.py").write_text('"""What an exported collatz-hpo MLflow model needs."""\n')
        for name in ("model_io.py", "pyfunc.py"):
            shutil.copy(search_dir / name, pkg / name)
        yield [str(Path(tmp, "core")), str(pkg)]


def _pip_requirements() -> list[str]:
    import mlflow
    import numpy
    import pandas
    import safetensors
    import torch

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"numpy=={numpy.__version__}",
        f"pandas=={pandas.__version__}",
        f"safetensors=={safetensors.__version__}",
    ]


def _pyfunc_kwargs(weights: Path, config: Path, code_paths: list[str]) -> dict[str, Any]:
    from search import pyfunc

    return {
        "python_model": pyfunc.CollatzPyfunc(),
        "artifacts": {"weights": str(weights), "config": str(config)},
        "code_paths": code_paths,
        "signature": pyfunc.signature(),
        "input_example": pyfunc.input_example(),
        "pip_requirements": _pip_requirements(),
    }


def export_trial(
    study: optuna.Study,
    tracking_uri: str,
    out: str | Path | None = None,
    trial_number: int | None = None,
    register: str | None = DEFAULT_MODEL_NAME,
    log: Log = print,
) -> ExportResult:
    """Export the best (or the given) COMPLETE trial of ``study``; see the module docstring."""
    import torch
    from mlflow.tracking import MlflowClient

    from core import CheckpointError, CollatzTransformer, load_checkpoint
    from search.run import RunConfig, build_test_set, evaluate_test

    quiet_mlflow()
    trial = select_trial(study, trial_number)
    run_id = trial.user_attrs.get(RUN_ATTR)
    if not run_id:
        raise ExportError(f"trial {trial.number} has no MLflow run (user attr {RUN_ATTR!r} missing)")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    out = Path(out) if out is not None else Path("exports") / f"{study.study_name}-trial-{trial.number}"

    with tempfile.TemporaryDirectory(prefix="collatz-export-") as tmp:
        ckpt = _download(client, run_id, "checkpoints/best.pt", tmp)
        run_config_path = _download(client, run_id, "config.json", tmp)
        try:
            run_cfg = RunConfig.from_dict(json.loads(run_config_path.read_text())["run"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportError(f"config.json of run {run_id} is unusable: {first_line(exc)}") from None
        try:
            checkpoint = load_checkpoint(ckpt, "cpu")
            model = CollatzTransformer.from_config(checkpoint["model_config"])
            model.load_state_dict(checkpoint["model_state"])
        except (CheckpointError, TypeError, ValueError, RuntimeError) as exc:
            raise ExportError(f"trial {trial.number}: unusable checkpoint: {first_line(exc)}") from None
        test = build_test_set(run_cfg)
        if model.config.max_seq_length != test.max_length or model.config.vocab_size != test.vocab_size:
            raise ExportError(f"checkpoint of trial {trial.number} does not match its run config")
        log(f"re-evaluating trial {trial.number} (run {run_id}) on {len(test)} held-out test inputs")
        metrics = evaluate_test(model, test, torch.device("cpu"), run_cfg.eval_batch_size)
        recorded = trial.user_attrs.get("test_exact_match")
        if recorded is not None and abs(recorded - metrics["exact_match"]) > 1e-9:
            log(
                f"note: test exact match {metrics['exact_match']:.4f} differs from the "
                f"{recorded:.4f} recorded by the study"
            )
        study_cfg = study.user_attrs.get("config") or {}
        config = {
            "format": EXPORT_FORMAT,
            "format_version": FORMAT_VERSION,
            "model": model.config.to_dict(),
            "encoding": {
                "base": run_cfg.base,
                "vocab_size": run_cfg.base + 3,
                "tokens": {"pad": 0, "bos": 1, "eos": 2, "digit_offset": 3},
                "digit_order": "most significant first",
            },
            "max_length": test.max_length,
            "eval_batch_size": run_cfg.eval_batch_size,
            "data": {
                "range": list(run_cfg.data_range),
                "train_size": run_cfg.train_size,
                "val_size": run_cfg.val_size,
                "test_size": run_cfg.test_size,
                "seed": run_cfg.data_seed,
            },
            "test_metrics": _test_summary(metrics),
            "recorded_test_exact_match": recorded,
            "study": study.study_name,
            "study_metric": (study_cfg.get("study") or {}).get("metric"),
            "trial": trial.number,
            "trial_value": trial.value,
            "params": trial.user_attrs.get("params", trial.params),
            "run_id": run_id,
            "checkpoint_epoch": int(checkpoint.get("epoch", -1)),
            "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "weights": WEIGHTS_FILE,
        }
        import mlflow.pyfunc

        with _atomic_directory(out) as build, _code_paths() as code_paths:
            config["weights_sha256"] = save_weights(model, build / WEIGHTS_FILE)
            (build / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
            kwargs = _pyfunc_kwargs(build / WEIGHTS_FILE, build / CONFIG_FILE, code_paths)
            mlflow.pyfunc.save_model(str(build / MLFLOW_MODEL_DIR), **kwargs)
    log(f"exported trial {trial.number} to {out} (test exact match {metrics['exact_match']:.4f})")
    result = ExportResult(out, study.study_name, trial.number, run_id, config["test_metrics"], recorded)
    if register:
        _register(result, client, register, log)
    return result


def _register(result: ExportResult, client: Any, name: str, log: Log) -> None:
    """Log the export's MLflow model to a run ``export-trial-<n>``, register it, move the alias.

    Only ``client`` calls: MLflow's global tracking and registry URIs are left as they were.
    """
    from mlflow.entities import LoggedModelOutput, Metric
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    from search.tracking import ROLE_TAG

    source = client.get_run(result.run_id)
    run = client.create_run(
        source.info.experiment_id,
        run_name=f"export-trial-{result.trial}",
        tags={
            ROLE_TAG: "export",
            "mlflow.parentRunId": result.run_id,
            "optuna.study_name": result.study,
            "optuna.trial_number": str(result.trial),
            "source_run_id": result.run_id,
        },
    )
    export_run = run.info.run_id
    try:
        scalars = {f"test_{k}": v for k, v in result.test.items() if isinstance(v, int | float)}
        client.log_batch(export_run, metrics=[Metric(k, float(v), 0, 0) for k, v in scalars.items()])
        client.log_artifact(export_run, str(result.directory / CONFIG_FILE))
        model = client.create_logged_model(
            source.info.experiment_id,
            name="model",
            source_run_id=export_run,
            tags={"study": result.study, "trial": str(result.trial)},
            model_type="collatz-transformer",
        )
        client.log_model_artifacts(model.model_id, str(result.directory / MLFLOW_MODEL_DIR))
        client.finalize_logged_model(model.model_id, "READY")
        client.log_outputs(export_run, [LoggedModelOutput(model.model_id, 0)])
    except BaseException:
        client.set_terminated(export_run, status="FAILED")
        raise
    client.set_terminated(export_run, status="FINISHED")
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    tags = {
        "study": result.study,
        "trial": str(result.trial),
        "run_id": result.run_id,
        "export_run_id": export_run,
        "test_exact_match": f"{result.test['exact_match']:.6f}",
    }
    # The artifact location, not models:/<id>: MLflow's sqlite registry would resolve that through
    # the global tracking URI instead of this client's.
    version = client.create_model_version(
        name, model.artifact_location, run_id=export_run, tags=tags, model_id=model.model_id
    )
    client.set_registered_model_alias(name, ALIAS, version.version)
    result.model_name, result.version, result.export_run_id = name, str(version.version), export_run
    log(f"registered as {name} version {version.version}; alias '{ALIAS}' → models:/{name}@{ALIAS}")
