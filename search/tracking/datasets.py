"""The data a run trained and was tested on, as MLflow dataset inputs.

A study's inputs are not files: they are drawn from ``[data]`` (range, split sizes, seed) and
tokenised in the trial's base. Each split becomes an ``mlflow.entities.Dataset`` whose digest is
computed from exactly those settings, so two runs show the same digest in the UI's Dataset column
(and in ``search_runs``' ``run.inputs``) if and only if they saw the same data. The schema and
row counts come with it; nothing is uploaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.types.schema import ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

if TYPE_CHECKING:
    from search.spec.runconfig import RunConfig

__all__ = ["CONTEXTS", "data_inputs", "split_digest", "study_inputs", "trial_inputs"]

#: MLflow's context tag of each split (what the UI shows next to the dataset's name).
CONTEXTS = {"train": "train", "val": "validation", "test": "test"}
GENERATOR = "core.data.make_splits"  # where the rows come from (the dataset's source)
_SCHEMA = Schema(
    [
        ColSpec("long", "n"),  # odd input
        ColSpec("long", "kappa"),  # its long Collatz step (exact beyond 64 bits in core)
        ColSpec("integer", "k"),
        ColSpec("integer", "k_prime"),
    ]
)


def split_digest(
    split: str, data_range: Sequence[int], sizes: Sequence[int], seed: int, base: int | None
) -> str:
    """8 hex digits of SHA-256 over what decides a split's rows and tokens.

    All three sizes count: the splits are cuts of one seeded sample, so changing any size changes
    every split. ``base`` None: the values only (a study whose base is searched).
    """
    facts = {"split": split, "range": list(data_range), "sizes": list(sizes), "seed": seed, "base": base}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:8]


def data_inputs(
    data_range: Sequence[int], sizes: Sequence[int], seed: int, base: int | None
) -> list[DatasetInput]:
    """Train, validation and test splits as dataset inputs (name, digest, source, schema, rows)."""
    lo, hi = data_range
    out = []
    for split, rows in zip(CONTEXTS, sizes, strict=True):
        source = {
            "generator": GENERATOR,
            "split": split,
            "range": [lo, hi],
            "sizes": list(sizes),
            "seed": seed,
            "base": base if base is not None else "per trial",
        }
        dataset = Dataset(
            name=f"collatz-{split}" + (f"-b{base}" if base is not None else ""),
            digest=split_digest(split, data_range, sizes, seed, base),
            source_type="code",
            source=CodeDatasetSource(source).to_json(),
            schema=json.dumps({"mlflow_colspec": _SCHEMA.to_dict()}),
            profile=json.dumps({"num_rows": rows, "odd_n": f"{lo} <= n < {hi}"}),
        )
        out.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[split])]))
    return out


def trial_inputs(cfg: RunConfig) -> list[DatasetInput]:
    """What one trial's run trained, validated and was tested on (values and base)."""
    return data_inputs(cfg.data_range, cfg.split_sizes, cfg.data_seed, cfg.base)


def study_inputs(config: Mapping[str, Any]) -> list[DatasetInput]:
    """The study's splits for its parent run, from the study file's dict (``StudyConfig.to_dict()``).

    The base is part of the digest only when the study fixes it; a searched base varies by trial.
    """
    data, base = config["data"], config["search"]["base"]
    sizes = [data["train_size"], data["val_size"], data["test_size"]]
    return data_inputs(data["range"], sizes, data["seed"], base if isinstance(base, int) else None)
