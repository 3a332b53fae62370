"""One GPU per worker: which device each local worker of ``launch --workers N`` trains on.

``assign_devices`` is a pure function of the worker count and the GPUs this process sees; the
launching process calls it before anything runs (too many workers is a one-line error, exit 2),
and each worker process sets its ``CUDA_VISIBLE_DEVICES`` to its own GPU first thing, before
torch initialises CUDA (``use_device``), so that its ``cuda`` (``[training] device = "auto"``) is
that GPU. Without a visible GPU, or with ``device = "cpu"``, nothing is set: the CPU path as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from search.errors import CollatzHpoError

__all__ = ["DeviceError", "assign_devices", "cuda_visible_value", "use_device", "visible_gpus"]


class DeviceError(CollatzHpoError, ValueError):
    """Workers and GPUs that do not fit (``--devices``, ``--share-devices``): one line, exit 2."""


def visible_gpus(training_device: str = "auto") -> int:
    """How many CUDA GPUs this process sees (none when the study trains on the CPU). Counted
    without initialising CUDA (torch asks NVML), so a worker may still choose its GPU."""
    if training_device == "cpu":
        return 0
    import torch

    return torch.cuda.device_count()


def assign_devices(
    workers: int, visible: int, devices: Sequence[int] | None = None, share: bool = False
) -> list[int | None]:
    """The GPU of each of ``workers`` workers (an index among the ``visible`` ones), round robin
    over ``devices`` (default: every visible GPU); None for each when there is no GPU (CPU).

    More workers than GPUs only with ``share`` (several workers per GPU)."""
    if devices is not None:
        if visible == 0:
            raise DeviceError(f"--devices {_listed(devices)}: this machine shows torch no CUDA GPU")
        wrong = [d for d in devices if not 0 <= d < visible]
        if wrong:
            raise DeviceError(
                f"--devices {_listed(devices)}: no GPU {_listed(wrong)} here "
                f"(torch sees {visible}: {_listed(range(visible))})"
            )
        if len(set(devices)) != len(devices):
            raise DeviceError(f"--devices {_listed(devices)}: a GPU is named twice")
    pool = list(devices) if devices is not None else list(range(visible))
    if not pool:
        return [None] * workers
    if workers > len(pool) and not share:
        raise DeviceError(
            f"--workers {workers} on {len(pool)} GPU(s) ({_listed(pool)}): give --share-devices to "
            "run several workers on one GPU, or fewer workers"
        )
    return [pool[i % len(pool)] for i in range(workers)]


def cuda_visible_value(index: int, environ: Mapping[str, str] | None = None) -> str:
    """What a worker on visible GPU ``index`` sets as its ``CUDA_VISIBLE_DEVICES``: that GPU's
    entry in this process's own ``CUDA_VISIBLE_DEVICES`` if it has one, else the index."""
    env = os.environ if environ is None else environ
    own = env.get("CUDA_VISIBLE_DEVICES")
    if own is None:
        return str(index)
    entries = [e.strip() for e in own.split(",") if e.strip()]
    return entries[index]


def use_device(value: str | None) -> None:
    """Make this process see only the GPU ``value`` (a ``cuda_visible_value``); None: leave it.
    Called before anything initialises CUDA here."""
    if value is None:
        return
    import torch

    if torch.cuda.is_initialized():
        raise RuntimeError("CUDA was initialised before the worker chose its GPU")
    os.environ["CUDA_VISIBLE_DEVICES"] = value


def _listed(values: Sequence[int] | range) -> str:
    return ",".join(str(v) for v in values)
