"""The platform's user-facing errors: one base class carrying the CLI's exit code, one line of text.

Every error the platform raises for a user to read derives from :class:`CollatzHpoError`; the CLI
maps them in one place (``search.cli.main``): ``collatz-hpo: error: <one line>``, exit
``exit_code``. Library callers catch the specific class they care about.
"""

from __future__ import annotations

from search.locations import mask

__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "CollatzHpoError", "StudyError", "one_line"]

EXIT_USAGE = 2  # the input cannot work: a bad file, flag, name or URL; nothing was written
EXIT_FAILURE = 1  # the input was fine, the work failed (a disk, a server, a broken artifact)


class CollatzHpoError(Exception):
    """A user-facing error: ``one_line(err)`` is its message, ``exit_code`` the CLI's exit status."""

    exit_code: int = EXIT_USAGE


class StudyError(CollatzHpoError, RuntimeError):
    """A study that cannot be opened or run as asked (storage, tracking, compatibility)."""


def one_line(exc: BaseException) -> str:
    """``exc`` as one line with passwords masked (its type's name when it says nothing)."""
    return mask(" ".join(str(exc).split()) or type(exc).__name__)
