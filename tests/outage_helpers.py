"""A connection dropped once: what every MLflow call of the platform must ride out."""

from __future__ import annotations

from typing import Any

import pytest


def drop_first_call(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, answer_lost: bool = False
) -> list[int]:
    """Make ``owner.name`` (a class's method or a module's function) fail once with a connection
    reset, then work as before. ``answer_lost``: the first call does its work, then its answer is
    lost. Returns a list that grows by one per call."""
    real = getattr(owner, name)
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(calls))
        if len(calls) == 1 and not answer_lost:
            raise ConnectionResetError("connection reset by peer")
        result = real(*args, **kwargs)
        if len(calls) == 1:
            raise ConnectionResetError("connection reset by peer")
        return result

    monkeypatch.setattr(owner, name, flaky)
    return calls
