"""The machine's real PostgreSQL for tests of distributed studies: a throwaway database per test.

A test module uses the fixture by binding it at module level: ``pg_url = pg_helpers.pg_url``, or
opens a database itself with ``throwaway_database()``. Without a reachable server the tests skip
with the reason; under CI=true (CI has one) they fail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN = os.environ.get("COLLATZ_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "S3cretPassw0rd-xyz"  # in every URL pg_url gives: tests prove it never leaks


def pg_reachable() -> str | None:
    """None when the admin database answers, else why not (a reason for skip or fail)."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(PG_ADMIN, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # no server, no driver, no permission
        return f"PostgreSQL not reachable at {PG_ADMIN}: {str(exc).splitlines()[0]}"


@contextlib.contextmanager
def throwaway_database(password: str = SECRET) -> Iterator[str]:
    """The URL of a fresh database on the real server, dropped afterwards (trust auth ignores
    ``password``: it is there to prove it never leaks)."""
    import sqlalchemy

    reason = pg_reachable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
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


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the real server, dropped after the test."""
    with throwaway_database() as url:
        yield url
