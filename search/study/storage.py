"""The Optuna storage of a study: opened once, retried across dropped connections, locked, beating.

- ``open_storage``: Optuna's RDB storage (sqlite or PostgreSQL) behind ``ResilientStorage``,
  which retries every storage call when the database connection dropped;
- ``retry_on_disconnect``: storage calls (and the advisory lock) retried while the database is
  gone, for up to the study's ``outage_window`` (``search.retry``), then ``StorageUnavailable``;
- ``study_lock``: serialises "count the trials, then ask for one" across workers of a study;
- ``heartbeat``: beats for a running trial, so a dead worker's trial is found and retried.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import threading
from collections.abc import Callable, Container, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage

# Optuna's interface for storages with heartbeats (``fail_stale_trials`` checks for it).
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search.errors import StudyError
from search.locations import first_line, mask, sqlite_path
from search.retry import DEFAULT_WINDOW, retry_within

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy

    from search.spec.study_file import StudyConfig

__all__ = [
    "ResilientStorage",
    "StorageUnavailable",
    "heartbeat",
    "is_disconnect",
    "open_storage",
    "retry_on_disconnect",
    "study_lock",
]

T = TypeVar("T")
SQLITE_LOCK_TIMEOUT = 120  # seconds a worker waits for another's write lock on a shared sqlite file
# connections of one worker to a database server: 1 kept open, up to 3 more while in use
POOL = {"pool_size": 1, "max_overflow": 3, "pool_timeout": 60}


class StorageUnavailable(StudyError):
    """The database stayed unreachable for the whole outage window: the worker stops (one line)."""


def retry_on_disconnect(call: Callable[[], T], window: float = DEFAULT_WINDOW, url: str = "") -> T:
    """``call()``, again with back-off while it fails because the database connection dropped
    (a restart, a terminated backend), for up to ``window`` seconds."""

    def give_up(exc: BaseException, waited: float) -> BaseException:
        where = f" {mask(url)}" if url else ""
        return StorageUnavailable(f"Optuna storage{where} unreachable for {waited:.0f}s: {first_line(exc)}")

    return retry_within(call, window, is_disconnect, give_up)


class ResilientStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage whose every call is retried when the database connection drops.

    It implements the abstract methods of Optuna's storage and heartbeat interfaces, each by
    delegation to the storage Optuna itself would use for the URL (RDB behind Optuna's trial
    cache). An Optuna release that adds or renames one makes this class fail to instantiate,
    loudly, instead of leaving a call unprotected; the other methods of ``BaseStorage`` are
    built on these.
    """

    def __init__(self, rdb: RDBStorage, window: float = DEFAULT_WINDOW) -> None:
        self.rdb = rdb
        self.window = window  # seconds a call rides out a database that is gone
        self._inner: Any = optuna.storages.get_storage(rdb)

    def _call(self, name: str, *args: Any) -> Any:
        method = getattr(self._inner, name)
        return retry_on_disconnect(lambda: method(*args), self.window, self.rdb.url)

    @property
    def engine(self) -> Any:
        """The SQLAlchemy engine (the PostgreSQL advisory lock borrows its connections)."""
        return self.rdb.engine

    def remove_session(self) -> None:
        """Discard the database session (after an interrupt cut a call in half)."""
        self.rdb.remove_session()

    # --- studies
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self._call("create_new_study", directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self._call("delete_study", study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call("set_study_user_attr", study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call("set_study_system_attr", study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._call("get_study_id_from_name", study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._call("get_study_name_from_id", study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._call("get_study_directions", study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call("get_study_user_attrs", study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call("get_study_system_attrs", study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._call("get_all_studies")

    # --- trials
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._call("create_new_trial", study_id, template_trial)

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        self._call("set_trial_param", trial_id, param_name, param_value_internal, distribution)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        return self._call("set_trial_state_values", trial_id, state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._call("set_trial_intermediate_value", trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call("set_trial_user_attr", trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call("set_trial_system_attr", trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._call("get_trial", trial_id)

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._call("get_all_trials", study_id, deepcopy, states)

    # --- heartbeats
    def record_heartbeat(self, trial_id: int) -> None:
        self._call("record_heartbeat", trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self._call("_get_stale_trial_ids", study_id)

    def get_heartbeat_interval(self) -> int | None:
        return self._inner.get_heartbeat_interval()

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._inner.get_heartbeat_stale_trial_callback()


def open_storage(url: str, cfg: StudyConfig | None = None) -> ResilientStorage:
    """The study's Optuna storage at ``url``; heartbeats when the study file asks for them.

    With ``heartbeat_interval`` set, a trial whose worker stops beating for ``grace_period``
    seconds is failed by the next worker and retried with the same params (up to
    ``max_retries`` times) by Optuna's ``RetryHeartbeatStaleTrialCallback``, from its latest
    uploaded checkpoint (``search.trial.resume.RetryFromCheckpoint``).
    """
    if url.startswith("sqlite:"):
        # Several worker processes share one file: wait for locks instead of failing.
        kwargs: dict[str, Any] = {"engine_kwargs": {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT}}}
    else:
        # pre-ping replaces connections the server dropped while they sat in the pool. A worker
        # uses at most POOL_MAX connections at once (its calls, the study lock, the heartbeat) and
        # keeps one open between calls: dozens of workers fit PostgreSQL's max_connections.
        kwargs = {"engine_kwargs": {"pool_pre_ping": True, "pool_recycle": 300, **POOL}}
    if cfg is not None and cfg.study.heartbeat_interval:
        from search.trial.resume import RetryFromCheckpoint  # where trials run: torch is loaded anyway

        kwargs["heartbeat_interval"] = cfg.study.heartbeat_interval
        kwargs["grace_period"] = cfg.study.grace_period or 2 * cfg.study.heartbeat_interval
        kwargs["heartbeat_stale_trial_callback"] = RetryFromCheckpoint(cfg.study.max_retries)
    try:
        # Workers starting together on a fresh database would race to create Optuna's tables.
        with study_lock(url, "collatz-hpo-schema"):
            window = cfg.study.outage_window if cfg is not None else DEFAULT_WINDOW
            return ResilientStorage(
                retry_on_disconnect(lambda: RDBStorage(url, **kwargs), window, url), window
            )
    except Exception as exc:  # no driver, unreachable server, bad URL: one line, not a traceback
        raise StudyError(f"cannot open Optuna storage {mask(url)}: {first_line(exc)}") from exc


@contextlib.contextmanager
def study_lock(storage: str, study_name: str, engine: Any = None) -> Iterator[None]:
    """Serialise "count trials, then ask for a new one" (and creation) across workers of one study.

    sqlite: an flock on a file beside the database (all workers share the machine);
    PostgreSQL: a session advisory lock keyed by the study's name (through ``engine``, or a
    short-lived connection). Other databases run unlocked (a worker may then start one
    trial more than asked).
    """
    db = sqlite_path(storage)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock_path = db.with_name(f"{db.name}.{study_name}.lock")
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    if storage.startswith("postgresql"):
        import sqlalchemy as sa

        digest = hashlib.blake2b(study_name.encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        own = engine is None
        if own:
            engine = sa.create_engine(storage, poolclass=sa.pool.NullPool)
        try:
            conn = retry_on_disconnect(lambda: _locked_connection(engine, key))
            try:
                yield
            finally:
                # A connection that died meanwhile took its session's lock with it.
                with contextlib.suppress(Exception):
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                with contextlib.suppress(Exception):
                    conn.close()
        finally:
            if own:
                engine.dispose()
        return
    yield


def _locked_connection(engine: Any, key: int) -> Any:
    """A connection holding the advisory lock ``key`` (closed again if taking the lock fails)."""
    import sqlalchemy as sa

    conn = engine.connect()
    try:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
    except BaseException:
        with contextlib.suppress(Exception):
            conn.close()
        raise
    return conn


@contextlib.contextmanager
def heartbeat(storage: BaseStorage, trial_id: int, interval: int | None) -> Iterator[None]:
    """Beat for ``trial_id`` every ``interval`` seconds while the block runs (no-op if None).

    ``study.optimize`` does this itself; our ask-and-tell loop has to.
    """
    if not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat is survivable: grace period
                storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval + 5)


_DISCONNECT_WORDS = (
    "server closed the connection",
    "terminating connection",
    "connection refused",
    "could not connect",
    "connection is closed",
    "connection already closed",
    "ssl syscall",
    "broken pipe",
    "connection reset",
    "the database system is starting up",
    "the database system is shutting down",
    # the server is full: wait for a slot as for a restart (see README, many workers)
    "too many clients",
    "remaining connection slots are reserved",
)


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a lost database connection worth retrying."""
    import sqlalchemy.exc as sa_exc

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sa_exc.OperationalError | sa_exc.InterfaceError):
            text = str(seen).lower()
            if any(word in text for word in _DISCONNECT_WORDS):
                return True
        seen = seen.__cause__ or seen.__context__
    return False
