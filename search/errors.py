"""The platform's user-facing errors: one base class carrying the CLI's exit code, one line of text.

Every error the platform raises for a user to read derives from :class:`CollatzHpoError`; the CLI
maps them in one place (``search.cli.main``): ``collatz-hpo: error: <one line>``, exit
``exit_code``. Library callers catch the specific class they care about; a class that code
catches as a builtin (``ValueError``, ``RuntimeError``) keeps that base too.

This module imports nothing at load time: it is staged with exported models (``search.models.export``),
whose errors derive from it.
"""

from __future__ import annotations

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_USAGE", "CollatzHpoError", "StudyError", "one_line"]

EXIT_USAGE = 2  # the input cannot work: a bad file, flag, name or URL; nothing was written
EXIT_FAILURE = 1  # the input was fine, the work failed (a disk, a server, a broken artifact)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)


class CollatzHpoError(Exception):
    """A user-facing error: ``one_line(err)`` is its message, ``exit_code`` the CLI's exit status."""

    exit_code: int = EXIT_USAGE


class StudyError(CollatzHpoError, RuntimeError):
    """A study that cannot be opened or run as asked (storage, tracking, compatibility)."""


def one_line(exc: BaseException | str) -> str:
    """``exc`` (an exception or a text) for a one-line message: its lines stripped and joined by
    one space, blank ones dropped, nothing else cut; passwords in URLs masked. An exception that
    says nothing is shown by its type's name."""
    from search.locations import mask  # lazily: locations imports this module

    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if not text and isinstance(exc, BaseException):
        text = type(exc).__name__
    return mask(text)
