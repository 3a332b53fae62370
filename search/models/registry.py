"""The MLflow Model Registry side of exports: register an export directory, and resolve a
``models:/NAME@ALIAS`` (or ``models:/NAME/VERSION``) URI back to a local directory.

Only calls of an explicit client (``ResilientClient``, retried across an outage): MLflow's global
tracking and registry URIs stay untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.errors import CollatzHpoError, one_line
from search.events import Log
from search.locations import Locations, mask
from search.models.loading import CONFIG_FILE, ExportError
from search.tracking import names

if TYPE_CHECKING:
    from search.tracking.client import ResilientClient

__all__ = [
    "ALIAS",
    "DEFAULT_MODEL_NAME",
    "MLFLOW_MODEL_DIR",
    "ModelUriError",
    "Registered",
    "register_export",
    "resolve_model",
]

DEFAULT_MODEL_NAME = "collatz-transformer"
ALIAS = "champion"  # moved to every new version: models:/NAME@champion is the latest export
MLFLOW_MODEL_DIR = "mlflow_model"  # the pyfunc model inside an export directory


class ModelUriError(CollatzHpoError, ValueError):
    """A ``models:/`` URI that is not ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""


@dataclass
class Registered:
    name: str
    version: str
    export_run_id: str


def register_export(
    client: ResilientClient,
    directory: Path,
    source_run_id: str,
    study: str,
    trial: int,
    test: dict[str, Any],
    name: str,
    log: Log,
) -> Registered:
    """Log the export's MLflow model to a run ``export-trial-<n>``, register it, move the alias."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    export_run, model = _log_export_run(client, directory, source_run_id, study, trial, test)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    tags = names.ModelVersionSource(study, trial, source_run_id, export_run, test["exact_match"]).to_tags()
    # The artifact location, not models:/<id>: MLflow's sqlite registry would resolve that through
    # the global tracking URI instead of this client's.
    version = client.create_model_version(
        name, model.artifact_location, run_id=export_run, tags=tags, model_id=model.model_id
    )
    client.set_registered_model_alias(name, ALIAS, version.version)
    log(f"registered as {name} version {version.version}; alias '{ALIAS}' → models:/{name}@{ALIAS}")
    return Registered(name, str(version.version), export_run)


def _log_export_run(
    client: ResilientClient, directory: Path, source_run_id: str, study: str, trial: int, test: dict[str, Any]
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
        scalars = names.scalar_metrics(test)
        client.log_batch(export_run, metrics=[Metric(k, v, 0, 0) for k, v in scalars.items()])
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
