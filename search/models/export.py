"""Export a study's best trial: a self-contained model directory and a Model Registry version.

``export_trial`` takes the trial's best checkpoint from its MLflow run, re-evaluates it on the
held-out test split (rebuilt from the run's config), and writes, atomically::

    exports/<study>-trial-<n>/
        model.safetensors     weights (loading them runs no code)
        config.json           model + encoding + data range + test metrics + study/trial/run ids
        mlflow_model/         MLflow pyfunc model: DataFrame column ``n`` → column ``kappa``

It then (``search.models.registry``) logs that MLflow model to a run ``export-trial-<n>`` (nested
under the trial's run) and registers it under the name of its task (default ``collatz-n<range>``,
``registry.model_name``), tagged with the study, trial, run id, held-out exact match with its 95 %
interval and the split it was measured on. The alias ``champion`` moves to the new version only if
it beats the current champion on the same split beyond its interval (``search.models.champion``),
or with ``promote``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search import keys
from search.events import Log
from search.locations import first_line
from search.models.loading import (
    CONFIG_FILE,
    EXPORT_FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    ExportError,
    encoding_config,
    held_out,
    range_text,
    save_weights,
)
from search.models.registry import MLFLOW_MODEL_DIR, model_name, register_export
from search.stats import wilson
from search.study.leaders import winner
from search.tracking import names

if TYPE_CHECKING:
    from core import CollatzTransformer
    from search.spec.runconfig import RunConfig
    from search.tracking.client import ResilientClient

__all__ = ["ExportResult", "export_trial", "select_trial"]


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
    champion: bool = False  # whether the registry's alias now points at this version


def select_trial(study: optuna.Study, number: int | None = None, log: Log | None = None) -> FrozenTrial:
    """The best trial (see ``_best``), or trial ``number``; it must be COMPLETE (clear ExportError
    otherwise)."""
    if number is None:
        return _best(study, log)
    trials = study.get_trials(deepcopy=False)
    found = [t for t in trials if t.number == number]
    if not found:
        known = f"0..{len(trials) - 1}" if trials else "none"
        raise ExportError(f"study '{study.study_name}' has no trial {number} (trials: {known})")
    trial = found[0]
    if trial.state != TrialState.COMPLETE:
        raise ExportError(f"trial {number} is {trial.state.name}: only COMPLETE trials can be exported")
    return trial


def _best(study: optuna.Study, log: Log | None) -> FrozenTrial:
    """The study's best trial; with seed replicates (``[confirm]``), the best member of the winner
    by mean (its final run, if it has one), said in ``log``."""
    won = winner(study)
    if won is not None:
        best = won.best_member()
        if log is not None:
            log(f"{won.announce()}: exporting its best member, trial {best.number}")
        return best
    try:
        return keys.require_completed(study)
    except keys.NoCompletedTrialError as exc:
        raise ExportError(str(exc)) from None


def quiet_mlflow() -> None:
    """No pickling advice from MLflow: our lines are the output (its progress bars are off where
    its client is made, ``search.tracking.client``)."""
    import logging

    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    logging.getLogger("mlflow").setLevel(max(logging.getLogger("mlflow").level, logging.WARNING))


def _download(client: ResilientClient, run_id: str, path: str, dst: str) -> Path:
    try:
        return Path(client.download_artifacts(run_id, path, dst))
    except Exception as exc:  # MLflow raises several types for a missing artifact
        raise ExportError(f"cannot get artifact {path} of run {run_id}: {first_line(exc)}") from None


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
    """``core/`` and the pyfunc modules of ``search/``, staged so they import under their names:
    ``search.models.{loading,pyfunc}`` and the ``search.pyfunc`` name older exports pickled."""
    import core
    from search.models import loading

    core_dir = Path(core.__file__).parent
    models_dir = Path(loading.__file__).parent
    search_dir = models_dir.parent
    with tempfile.TemporaryDirectory(prefix="collatz-code-") as tmp:
        shutil.copytree(core_dir, Path(tmp, "core"), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        pkg = Path(tmp, "search")
        (pkg / "models").mkdir(parents=True)
        (pkg / "__init__.py").write_text('"""What an exported collatz-hpo MLflow model needs."""\n')
        for name in ("pyfunc.py", "errors.py", "locations.py", "stats.py"):  # what loading imports
            shutil.copy(search_dir / name, pkg / name)
        for name in ("__init__.py", "loading.py", "pyfunc.py"):
            shutil.copy(models_dir / name, pkg / "models" / name)
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
    from search.models import pyfunc

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
    register: str | bool | None = True,
    log: Log = print,
    promote: bool = False,
) -> ExportResult:
    """Export the best (or the given) COMPLETE trial of ``study``; see the module docstring.
    ``register``: True for the task's name, a name, or None/False for none; ``promote``: move the
    alias ``champion`` to the new version whatever it scored."""
    import torch

    from search.tracking.client import ResilientClient
    from search.trial.training import build_test_set, evaluate_test

    quiet_mlflow()
    trial = select_trial(study, trial_number, log)
    run_id = keys.run_id(trial)
    if not run_id:
        raise ExportError(f"trial {trial.number} has no MLflow run (user attr {keys.RUN_ATTR!r} missing)")
    client = ResilientClient(tracking_uri, registry_uri=tracking_uri)
    out = Path(out) if out is not None else Path("exports") / f"{study.study_name}-trial-{trial.number}"

    with tempfile.TemporaryDirectory(prefix="collatz-export-") as tmp:
        run_cfg, model, epoch = _trial_model(client, trial.number, run_id, tmp)
    test = build_test_set(run_cfg)
    if model.config.max_seq_length != test.max_length or model.config.vocab_size != test.vocab_size:
        raise ExportError(f"checkpoint of trial {trial.number} does not match its run config")
    log(f"re-evaluating trial {trial.number} (run {run_id}) on {len(test)} held-out test inputs")
    metrics = evaluate_test(model, test, torch.device("cpu"), run_cfg.eval_batch_size)
    recorded = keys.test_exact_match(trial)
    if recorded is not None and abs(recorded - metrics["exact_match"]) > 1e-9:
        log(
            f"note: test exact match {metrics['exact_match']:.4f} differs from the "
            f"{recorded:.4f} recorded by the study"
        )
    config = _export_config(study, trial, run_cfg, model, metrics, epoch)
    _write_export(out, model, config)
    figure = f"held-out exact match {held_out(config)} on {range_text(run_cfg.data_range)}"
    log(f"exported trial {trial.number} to {out} ({figure})")
    result = ExportResult(out, study.study_name, trial.number, run_id, config["test_metrics"], recorded)
    if register:
        name = model_name(run_cfg.data_range) if register is True else str(register)
        done = register_export(client, out, run_id, study.study_name, trial.number, name, log, promote)
        result.model_name, result.version, result.export_run_id = done.name, done.version, done.export_run_id
        result.champion = done.champion
    return result


def _trial_model(
    client: ResilientClient, number: int, run_id: str, tmp: str
) -> tuple[RunConfig, CollatzTransformer, int]:
    """The run's config, the model of its best checkpoint and that checkpoint's epoch."""
    from core import CheckpointError, CollatzTransformer, load_checkpoint
    from search.spec.runconfig import RunConfig

    ckpt = _download(client, run_id, names.checkpoint_path(), tmp)
    run_config_path = _download(client, run_id, names.RUN_CONFIG_ARTIFACT, tmp)
    try:
        run_cfg = RunConfig.from_dict(json.loads(run_config_path.read_text())["run"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"config.json of run {run_id} is unusable: {first_line(exc)}") from None
    try:
        epoch = int(load_checkpoint(ckpt, "cpu").get("epoch", -1))
        model = CollatzTransformer.from_checkpoint(ckpt, "cpu")
    except (CheckpointError, TypeError, ValueError, RuntimeError) as exc:
        raise ExportError(f"trial {number}: unusable checkpoint: {first_line(exc)}") from None
    return run_cfg, model, epoch


def _write_export(out: Path, model: CollatzTransformer, config: dict[str, Any]) -> None:
    """Weights, config.json and the MLflow pyfunc model, written atomically as ``out``."""
    import mlflow.pyfunc

    with _atomic_directory(out) as build, _code_paths() as code_paths:
        config["weights_sha256"] = save_weights(model, build / WEIGHTS_FILE)
        (build / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        kwargs = _pyfunc_kwargs(build / WEIGHTS_FILE, build / CONFIG_FILE, code_paths)
        mlflow.pyfunc.save_model(str(build / MLFLOW_MODEL_DIR), **kwargs)


def _export_config(
    study: optuna.Study,
    trial: FrozenTrial,
    run_cfg: RunConfig,
    model: CollatzTransformer,
    metrics: dict[str, Any],
    epoch: int,
) -> dict[str, Any]:
    """``config.json``: what rebuilds the model and encodes its inputs, and where it came from."""
    return {
        "format": EXPORT_FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "encoding": encoding_config(run_cfg.base),
        "max_length": model.config.max_seq_length,
        "eval_batch_size": run_cfg.eval_batch_size,
        "data": {
            "range": list(run_cfg.data_range),
            "train_size": run_cfg.train_size,
            "val_size": run_cfg.val_size,
            "test_size": run_cfg.test_size,
            "seed": run_cfg.data_seed,
        },
        "test_metrics": names.metrics_json(metrics),
        # the figure with its 95 % Wilson interval, measured on data.test_size inputs of data.range
        "test_exact_match_interval": wilson(metrics["exact_match"], int(metrics["num_samples"])).as_dict(),
        "recorded_test_exact_match": keys.test_exact_match(trial),
        "study": study.study_name,
        "study_metric": keys.study_metric(study),
        "trial": trial.number,
        "trial_value": trial.value,
        "params": keys.trial_params(trial),
        "run_id": keys.run_id(trial),
        "checkpoint_epoch": epoch,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "weights": WEIGHTS_FILE,
    }
