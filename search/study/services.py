"""Fail fast: do the Optuna storage and the MLflow tracking server answer, before anything is written?

A server that is not up (or a mistyped port) would otherwise be found inside the first storage or
tracking call, after the embedded store's files were made and behind the outage window that
study calls ride out. ``check_services`` asks both at once, each with a short timeout, and raises
``ServiceUnreachable`` with one line naming the masked URL and the cause. Nothing is created:
a database is only connected to (no tables), a tracking server only asked for ``/health``; local
sqlite files are not probed (their folder is made later, after the config was validated).
"""

from __future__ import annotations

import concurrent.futures
import math
import urllib.error
import urllib.request
from collections.abc import Callable

from search.errors import StudyError, one_line
from search.locations import CONNECT_TIMEOUT, Locations, mask, sqlite_path

__all__ = ["ServiceUnreachable", "check_services", "check_storage", "check_tracking"]

_UNAVAILABLE = (502, 503, 504)  # a proxy that answers for a server that does not


class ServiceUnreachable(StudyError):
    """The storage or the tracking server did not answer (one line, password masked)."""


def check_storage(url: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Connect to a database storage once (``SELECT 1``); sqlite files are local: not probed."""
    if sqlite_path(url) is not None or url.startswith("sqlite:"):
        return
    import sqlalchemy as sa

    connect_args = {"connect_timeout": max(1, math.ceil(timeout))} if url.startswith("postgresql") else {}
    try:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
    except Exception as exc:  # no driver, malformed URL
        raise ServiceUnreachable(f"cannot use Optuna storage {mask(url)}: {one_line(exc)}") from None

    def probe() -> None:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()

    _within(probe, timeout, f"Optuna storage {mask(url)}")


def check_tracking(uri: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Ask an HTTP tracking server for ``/health``: any answer but 502/503/504 is an answer
    (a server behind authentication answers 401). Other schemes are local: not probed."""
    if not uri.startswith(("http://", "https://")):
        return

    def probe() -> None:
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
                return
        except urllib.error.HTTPError as exc:
            if exc.code in _UNAVAILABLE:
                raise ConnectionError(f"HTTP {exc.code} {exc.reason}") from None

    _within(probe, timeout, f"MLflow tracking server {mask(uri)}")


def check_services(locations: Locations, timeout: float = CONNECT_TIMEOUT, tracking: bool = True) -> None:
    """Both services of a study answer within ``timeout`` (asked at the same time); else one line."""
    checks = [lambda: check_storage(locations.storage, timeout)]
    if tracking:
        checks.append(lambda: check_tracking(locations.tracking_uri, timeout))
    with concurrent.futures.ThreadPoolExecutor(len(checks)) as pool:
        for future in [pool.submit(check) for check in checks]:
            future.result()


def _within(probe: Callable[[], None], timeout: float, what: str) -> None:
    """Run ``probe`` in a thread (a DNS lookup or a silent host ignores socket timeouts)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(probe)
    try:
        future.result(timeout=timeout + 1)
    except concurrent.futures.TimeoutError:
        raise ServiceUnreachable(f"{what} did not answer within {timeout:g}s") from None
    except Exception as exc:
        raise ServiceUnreachable(f"cannot connect to {what}: {_cause(exc)}") from None
    finally:
        pool.shutdown(wait=False)


def _cause(exc: BaseException) -> str:
    """The innermost reason (``Connection refused``), not the wrapper, as one line."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        exc = reason
    orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
    return one_line(orig if isinstance(orig, BaseException) else exc)
