"""Riding out an outage: a call retried with back-off while its failure is transient, within a window.

One loop for both services of a study: the Optuna storage (a database restarting, see
``storage.retry_on_disconnect``) and the MLflow tracking server (``tracking_client``). The
window is a time, not a number of attempts, so the study file can say how long an outage a
study rides out (``[study] outage_window``); past it the call gives up with ``give_up``'s error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DEFAULT_WINDOW", "retry_within"]

T = TypeVar("T")
DEFAULT_WINDOW = 300.0  # seconds: a server restart or a short network cut, not a lost machine
FIRST_DELAY = 0.25  # seconds before the first retry, doubling ...
MAX_DELAY = 8.0  # ... up to this between attempts


def retry_within(
    call: Callable[[], T],
    window: float,
    transient: Callable[[BaseException], bool],
    give_up: Callable[[BaseException, float], BaseException] | None = None,
) -> T:
    """``call()``, again with exponential back-off while it fails transiently, for up to ``window`` s.

    A failure that is not ``transient`` is raised at once. Past the window the last failure is
    raised, or ``give_up(last failure, seconds waited)`` when given (chained to it).
    """
    start = time.monotonic()
    delay = FIRST_DELAY
    while True:
        try:
            return call()
        except Exception as exc:
            waited = time.monotonic() - start
            if not transient(exc):
                raise
            if waited >= window:
                if give_up is None:
                    raise
                raise give_up(exc, waited) from exc
            time.sleep(min(delay, max(0.0, window - waited)))
            delay = min(delay * 2, MAX_DELAY)
