"""The MLflow Model Registry side of exports: register an export directory under the name of its
task (``model_name``), move the alias ``champion`` only to a better model (``search.models.champion``),
and resolve a ``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``) URI back to a local directory.

Only calls of an explicit client (``ResilientClient``, retried across an outage): MLflow's global
tracking and registry URIs stay untouched.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.errors import CollatzHpoError, one_line
from search.events import Log
from search.locations import Locations, mask
from search.models.champion import HeldOut, Verdict, judge, reevaluate
from search.models.loading import CONFIG_FILE, ExportError, export_files, read_config, short_number
from search.tracking import names

if TYPE_CHECKING:
    from search.tracking.client import ResilientClient

__all__ = [
    "ALIAS",
    "MLFLOW_MODEL_DIR",
    "ModelUriError",
    "Registered",
    "model_name",
    "register_export",
    "resolve_model",
]

ALIAS = "champion"  # the best version of a task so far (``search.models.champion``)
MLFLOW_MODEL_DIR = "mlflow_model"  # the pyfunc model inside an export directory


class ModelUriError(CollatzHpoError, ValueError):
    """A ``models:/`` URI that is not ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""


def model_name(data_range: tuple[int, int]) -> str:
    """The default registered name: the task the model solves, i.e. the odd inputs it answers
    (``collatz-n2^20``: odd n < 2^20; ``collatz-n3-2^20``: 3 <= n < 2^20). The base is how a model
    reads its input, not what it answers: models of any base compete for one task's champion."""
    lo, hi = data_range
    return f"collatz-n{short_number(hi)}" if lo <= 1 else f"collatz-n{short_number(lo)}-{short_number(hi)}"


@dataclass
class Registered:
    name: str
    version: str
    export_run_id: str
    champion: bool  # whether the alias now points at this version
    reason: str  # why (or why not): one line


def register_export(
    client: ResilientClient,
    directory: Path,
    source_run_id: str,
    study: str,
    trial: int,
    name: str,
    log: Log,
    promote: bool = False,
) -> Registered:
    """Log the export's MLflow model to a run ``export-trial-<n>``, register it with its held-out
    figure and split (tags and description), and move the alias only as ``champion.judge`` says
    (``promote``: regardless)."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    config = read_config(directory / CONFIG_FILE)
    test, held = config["test_metrics"], HeldOut.of_config(config)
    metrics = names.scalar_metrics(test)
    if held is not None:
        metrics.update(names.interval_metrics(names.TEST_EXACT_MATCH, held.interval))
    export_run, model = _log_export_run(client, directory, source_run_id, study, trial, metrics)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    split = held.split_json() if held else None
    source = names.ModelVersionSource(
        study, trial, source_run_id, export_run, test["exact_match"], held and held.interval, split
    )
    # The artifact location, not models:/<id>: MLflow's sqlite registry would resolve that through
    # the global tracking URI instead of this client's.
    version = client.create_model_version(
        name,
        model.artifact_location,
        run_id=export_run,
        tags=source.to_tags(),
        model_id=model.model_id,
        description=f"{held.describe() if held else 'no held-out figure'}; study {study}, trial {trial}",
    )
    number = str(version.version)
    verdict = _verdict(client, name, number, directory, held, promote)
    if verdict.promote:
        client.set_registered_model_alias(name, ALIAS, number)
    log(f"registered as {name} version {number}; {verdict.reason}")
    return Registered(name, number, export_run, verdict.promote, verdict.reason)


def _verdict(
    client: ResilientClient, name: str, version: str, directory: Path, held: HeldOut | None, promote: bool
) -> Verdict:
    """Whether version ``version`` of ``name`` takes the alias, and why (``search.models.champion``)."""
    from mlflow.exceptions import MlflowException

    to = f"models:/{name}@{ALIAS} → version {version}"
    if promote:
        return Verdict(True, f"alias '{ALIAS}' moved by --promote: {to}")
    try:
        current = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException as exc:
        if exc.error_code not in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            raise
        return Verdict(True, f"the first champion of {name}: {to}")  # no alias yet
    if held is None:
        return Verdict(
            False, f"alias '{ALIAS}' stays on version {current.version}: this export has no held-out figure"
        )
    with tempfile.TemporaryDirectory(prefix="collatz-champion-") as tmp:
        theirs, champion_dir = _champion_held_out(client, name, current, tmp)
        fresh = None
        if theirs is not None and theirs.split != held.split and theirs.data_range == held.data_range:
            try:
                champion_dir = champion_dir or _download_version(client, name, current.version, tmp)
                fresh = reevaluate(directory, champion_dir, held, theirs)
            except ExportError as exc:
                fresh = f"it could not be re-evaluated on this split ({exc})"
        return judge(held, theirs, str(current.version), fresh)


def _champion_held_out(
    client: ResilientClient, name: str, version: Any, tmp: str
) -> tuple[HeldOut | None, Path | None]:
    """The champion's held-out figure and split: from its tags, else from its config.json (a
    version registered before they were tagged; then its downloaded directory too)."""
    try:
        tagged = names.ModelVersionSource.of(version)
        found = HeldOut.of_tags(tagged.test, tagged.test_split)
    except (KeyError, ValueError):
        found = None
    if found is not None:
        return found, None
    try:
        directory = _download_version(client, name, version.version, tmp)
        return HeldOut.of_config(read_config(export_files(directory)[1])), directory
    except ExportError:  # not one of ours, or gone from the store: nothing to compare with
        return None, None


def _download_version(client: ResilientClient, name: str, version: Any, tmp: str) -> Path:
    """The version's model directory (its artifacts), or ExportError when it cannot be had."""
    from mlflow.exceptions import MlflowException

    dst = Path(tmp, f"v{version}")
    dst.mkdir(exist_ok=True)
    try:
        return Path(client.download(client.get_model_version_download_uri(name, str(version)), dst))
    except (MlflowException, OSError) as exc:
        raise ExportError(f"cannot download version {version} of {name}: {one_line(exc)}") from None


def _log_export_run(
    client: ResilientClient,
    directory: Path,
    source_run_id: str,
    study: str,
    trial: int,
    metrics: dict[str, float],
) -> tuple[str, Any]:
    """A run ``export-trial-<n>`` nested under the trial's run, holding the export as a logged model."""
    from mlflow.entities import LoggedModelOutput, Metric
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    source = client.get_run(source_run_id)
    run = client.create_run(
        source.info.experiment_id,
        run_name=f"export-trial-{trial}",
        tags={
            names.ROLE_TAG: names.EXPORT_ROLE,
            MLFLOW_PARENT_RUN_ID: source_run_id,
            names.STUDY_TAG: study,
            names.TRIAL_NUMBER_TAG: str(trial),
            names.SOURCE_RUN_TAG: source_run_id,
        },
    )
    export_run = run.info.run_id
    try:
        client.log_batch(export_run, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
        client.log_artifact(export_run, str(directory / CONFIG_FILE))
        model = client.create_logged_model(
            source.info.experiment_id,
            name="model",
            source_run_id=export_run,
            tags=names.model_tags(study, trial),
            model_type="collatz-transformer",
        )
        client.log_model_artifacts(model.model_id, str(directory / MLFLOW_MODEL_DIR))
        client.finalize_logged_model(model.model_id, "READY")
        client.log_outputs(export_run, [LoggedModelOutput(model.model_id, 0)])
    except BaseException:
        client.set_terminated(export_run, status="FAILED")
        raise
    client.set_terminated(export_run, status="FINISHED")
    return export_run, model


def resolve_model(uri: str, locations: Locations, dst: str) -> Path:
    """Download the registered model ``uri`` (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``)
    into ``dst``; ``ExportError`` (one line, password masked) when it cannot be resolved."""
    name, sep, alias = uri[len("models:/") :].partition("@")
    version: str | None = None
    if not sep:
        name, _, version = name.partition("/")
        if not version.isdigit():
            raise ModelUriError(f"{uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    missing = locations.missing_store("tracking_uri")
    if missing is not None:
        raise ExportError(f"cannot resolve {uri}: {missing} does not exist")
    tracking_uri = locations.tracking_uri
    from mlflow.exceptions import MlflowException

    from search.tracking.client import COMMAND_WINDOW, ResilientClient, TrackingUnavailable

    client = ResilientClient(tracking_uri, COMMAND_WINDOW, registry_uri=tracking_uri)
    try:
        if version is None:
            version = client.get_model_version_by_alias(name, alias).version
        path = client.download(client.get_model_version_download_uri(name, version), dst)
    except (MlflowException, OSError, TrackingUnavailable) as exc:
        raise ExportError(f"cannot resolve {uri} in {mask(tracking_uri)}: {one_line(exc)}") from None
    return Path(path)
