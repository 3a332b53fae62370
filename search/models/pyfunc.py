"""The MLflow pyfunc flavour of an exported model: a DataFrame column ``n`` in, a column ``kappa`` out.

``collatz-hpo export`` saves :class:`CollatzPyfunc` with the export's ``model.safetensors`` and
``config.json`` as artifacts and ``core/`` plus this module as code, so ``mlflow models serve``
and ``mlflow.pyfunc.load_model`` need nothing else from the project. Inputs are int64 or, for
integers beyond 64 bits, decimal strings; κ comes back as int64, or as strings when some κ does
not fit 64 bits (None where the model's output is not a number).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

from search.models.loading import ExportedModel, InputError, load_files

__all__ = ["INPUT_COLUMN", "OUTPUT_COLUMN", "CollatzPyfunc", "input_example", "signature"]

INPUT_COLUMN = "n"
OUTPUT_COLUMN = "kappa"
_INT64_MAX = 2**63 - 1


def _column(model_input: Any) -> list[Any]:
    if isinstance(model_input, pd.DataFrame):
        if INPUT_COLUMN in model_input.columns:
            return model_input[INPUT_COLUMN].tolist()
        if model_input.shape[1] == 1:
            return model_input.iloc[:, 0].tolist()
        raise InputError(f"expected a column {INPUT_COLUMN!r}, got columns {list(model_input.columns)}")
    if isinstance(model_input, pd.Series | np.ndarray):
        return list(np.asarray(model_input).reshape(-1).tolist())
    if isinstance(model_input, dict) and INPUT_COLUMN in model_input:
        value = model_input[INPUT_COLUMN]
        return list(value) if isinstance(value, list | tuple) else [value]
    if isinstance(model_input, list | tuple):
        return list(model_input)
    return [model_input]


def to_frame(predictions: list[int | None]) -> pd.DataFrame:
    """κ as int64 when every prediction is a number within int64, else as decimal strings."""
    if all(p is not None and p <= _INT64_MAX for p in predictions):
        return pd.DataFrame({OUTPUT_COLUMN: np.array(predictions, dtype=np.int64)})
    return pd.DataFrame({OUTPUT_COLUMN: [None if p is None else str(p) for p in predictions]}, dtype=object)


class CollatzPyfunc(mlflow.pyfunc.PythonModel):
    """Maps odd positive integers to the exported transformer's predicted κ(n)."""

    def load_context(self, context: Any) -> None:
        self._model: ExportedModel = load_files(context.artifacts["weights"], context.artifacts["config"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """``model_input``: a DataFrame with a column ``n`` (also a list, Series or array of n)."""
        try:
            predictions = self._model.predict(_column(model_input))
        except InputError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        return to_frame(predictions)


def signature() -> Any:
    """``n`` (int64 or decimal string) → ``kappa`` (int64, or strings beyond 64 bits)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), INPUT_COLUMN)]),
        outputs=Schema([ColSpec(AnyType(), OUTPUT_COLUMN)]),
    )


def input_example() -> pd.DataFrame:
    return pd.DataFrame({INPUT_COLUMN: np.array([27, 97], dtype=np.int64)})
