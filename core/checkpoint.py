"""Checkpoints: plain dicts of tensors and primitives, written atomically, read weights-only."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_VERSION = 1
_REQUIRED = ("model_config", "model_state", "epoch")


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated or not one of ours."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    A crash mid-write leaves the previous checkpoint intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"version": CHECKPOINT_VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code runs); clear error when unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(ckpt, dict) or any(key not in ckpt for key in _REQUIRED):
        raise CheckpointError(f"{path} is not a collatz-hpo checkpoint (missing model config/state)")
    return ckpt
