"""Checkpoints: plain dicts of tensors and primitives, written atomically, read weights-only."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "load_weights",
    "resume",
    "resume_candidates",
    "save_checkpoint",
]

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
    os.close(fd)
    try:
        # A path, not a Python file object: torch then writes from C++, and a Ctrl-C/SIGTERM
        # arriving mid-write raises KeyboardInterrupt once the write returns. Through a file
        # object it is raised inside torch's write callback, whose zip writer swallows it and
        # reports a short write ("unexpected pos"): an interrupted trial would read as a disk error.
        torch.save({"version": CHECKPOINT_VERSION, **payload}, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        # torch's zip writer reports a full disk as "unexpected pos": say what it was
        free = shutil.disk_usage(path.parent).free if isinstance(exc, Exception) else None
        Path(tmp).unlink(missing_ok=True)
        if free is not None and not isinstance(exc, OSError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OSError(f"cannot write checkpoint {path}: {first} ({free:,} bytes free)") from exc
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


def load_weights(
    model: torch.nn.Module, path: str | Path, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model``, whose config must be the one it was saved
    with; returns the whole checkpoint for the caller's other keys. An unreadable file is a
    ``CheckpointError`` (damage); another model's checkpoint a plain ``ValueError`` (a wrong path)."""
    ckpt = load_checkpoint(path, map_location)
    expected = model.config.to_dict()
    if ckpt["model_config"] != expected:
        raise ValueError(
            f"checkpoint {path} was made for model config {ckpt['model_config']}, not {expected}"
        )
    model.load_state_dict(ckpt["model_state"])
    return ckpt


def resume_candidates(path: str | Path) -> list[Path]:
    """Where a resume may start, best first: ``path`` itself (a checkpoint file), then the other
    checkpoints of its folder, newest first; for a folder, its checkpoints newest first.

    Temp files of a write cut short (``.last.pt.*.tmp``) are never candidates. A path that is
    neither a file nor a folder is a ``CheckpointError`` (a typo must not start afresh).
    """
    path = Path(path)
    if path.is_file():
        folder, first = path.parent, [path]
    elif path.is_dir():
        folder, first = path, []
    else:
        raise CheckpointError(f"checkpoint not found: {path}")
    others = [p for p in folder.glob("*.pt") if p.is_file() and p not in first and not p.name.startswith(".")]
    return first + sorted(others, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def resume(restore: Callable[[Path], None], resume_from: str | Path, log: Callable[[str], None]) -> None:
    """``restore`` from ``resume_from`` (a checkpoint file or a folder of them).

    A truncated or corrupt checkpoint (a full disk, a process killed outside the atomic
    write, a damaged copy) is reported by name and the newest readable one beside it is
    used; with none readable, training starts afresh. Never a crash loop on a bad file.
    A checkpoint of another model is still an error: that is a wrong path, not damage.
    """
    for path in resume_candidates(resume_from):
        try:
            restore(path)
            return
        except CheckpointError as exc:
            log(f"{exc}: trying an earlier checkpoint")
    log(f"no readable checkpoint at {resume_from}: training from the start")
