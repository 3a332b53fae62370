"""How a collatz-hpo process stops: Ctrl-C and SIGTERM become KeyboardInterrupt, a worker follows
its parent's death, and cleanup that must not be cut short ignores further signals."""

from __future__ import annotations

import os
import signal
from typing import Any

__all__ = ["ignore_signals", "interrupt_when_parent_dies", "stop_on_sigterm"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_signals() -> None:
    """Ignore Ctrl-C and SIGTERM from now on: the interrupted trial is being recorded."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`, a dying parent) stops like Ctrl-C: trial recorded, then exit.

    Ctrl-C is (re)armed too: a shell starts background jobs with SIGINT ignored, and a study
    launched from a script must still stop cleanly when its process group is interrupted.
    """

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupt_when_parent_dies(parent: int) -> None:
    """A worker whose `launch` process is killed gets SIGTERM: it records its trial and stops.

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere an orphaned worker finishes its trials.
    """
    stop_on_sigterm()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
