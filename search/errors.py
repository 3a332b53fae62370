"""The platform's user-facing error: one line for the user, exit code 2 from the CLI."""

from __future__ import annotations

__all__ = ["StudyError"]


class StudyError(RuntimeError):
    """A study that cannot be opened or run as asked (storage, tracking, compatibility)."""
