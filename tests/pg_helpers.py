"""A throwaway database on the machine's real PostgreSQL for a test (skips, or fails on CI, without one)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN = os.environ.get("COLLATZ_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_reachable() -> str | None:
    """None when the server answers, else why not."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    try:
        engine = sqlalchemy.create_engine(PG_ADMIN, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # no server, no driver, no permission
        return f"PostgreSQL not reachable at {PG_ADMIN}: {str(exc).splitlines()[0]}"


@contextlib.contextmanager
def throwaway_database(password: str = "pw") -> Iterator[str]:
    """The URL of a fresh database (trust auth ignores ``password``), dropped afterwards."""
    reason = pg_reachable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    import sqlalchemy

    name = f"collatz_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(
        PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool
    )
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres:{password}@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
