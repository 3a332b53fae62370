"""How a study file's problems are told: one line, ``"<file>: <dotted.key>: <problem>"``.

Validators raise :class:`KeyedError` (a problem and the sub-key it sits at); pydantic's own
errors (wrong types, bounds, unknown or missing keys) are translated by :func:`problem`, with
the closest known key for a typo. ``parse_study`` turns the first one into a :class:`ConfigError`.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from search.errors import EXIT_USAGE, CollatzHpoError

__all__ = ["ConfigError", "KeyedError", "describe", "did_you_mean", "dotted", "known_keys", "problem"]

Loc = tuple[str | int, ...]


class ConfigError(CollatzHpoError, ValueError):
    """A study file that cannot run. ``str(err)`` is one line: ``"<file>: <dotted.key>: <problem>"``.

    ``key`` is empty for problems of the whole file (missing file, TOML syntax); the message is
    then ``"<file>: <problem>"``. Nothing was written: the CLI exits with ``EXIT_USAGE``.
    """

    exit_code = EXIT_USAGE

    def __init__(self, path: str | Path, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = " ".join(str(problem).split())  # always one line
        message = f"{self.path}: {key}: {self.problem}" if key else f"{self.path}: {self.problem}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (self.path, self.key, self.problem))


class KeyedError(CollatzHpoError, ValueError):
    """Raised inside validators: ``problem`` at ``subkey`` below the validated object's location.

    A ValueError, so pydantic collects it; it reaches the user as the ``ConfigError`` it becomes."""

    def __init__(self, problem: str, subkey: Loc = ()) -> None:
        super().__init__(problem)
        self.subkey = subkey


def did_you_mean(key: str, known: list[str], what: str = "key") -> str:
    """``unknown key 'x'`` with the closest of ``known`` (or all of them, when none is close)."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown {what} {key!r}; did you mean {close[0]!r}?"
    return f"unknown {what} {key!r}; known: {', '.join(known)}"


def describe(value: Any) -> str:
    """A value as a problem names it: its type, then its repr (``str '3'``, ``int 3``)."""
    return f"{type(value).__name__} {value!r}"


def known_keys(model: type[BaseModel]) -> list[str]:
    """The keys a study file may write in ``model``'s section."""
    return [name for name, f in model.model_fields.items() if not f.exclude]


def dotted(loc: Loc) -> str:
    """A pydantic location as the key a user writes: ``search.d_model.choices[1]``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The section model found at ``loc`` below ``root`` (None: not a section)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        if typing.get_origin(ann) in (typing.Union, types.UnionType):  # an optional section
            ann = next((a for a in typing.get_args(ann) if a is not type(None)), None)
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


# pydantic error type → what was expected instead of the value given
_EXPECTED = {
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "tuple_type": "[lo, hi]",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def problem(err: Mapping[str, Any], root: type[BaseModel]) -> tuple[Loc, str]:
    """A pydantic error of validating ``root`` → (location, one-line problem)."""
    loc, kind, value, ctx = tuple(err["loc"]), err["type"], err.get("input"), err.get("ctx") or {}
    name = str(loc[-1]) if loc else ""
    if kind == "value_error" and isinstance(ctx.get("error"), KeyedError):
        exc = ctx["error"]
        return loc + exc.subkey, str(exc)
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return loc, str(ctx["error"])
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        what = "section" if not loc[:-1] else "key"
        if parent is None:
            return loc, f"unknown {what} {name!r}"
        return loc, did_you_mean(name, known_keys(parent), what)
    if kind == "missing":
        section = _model_at(root, loc) is not None
        return loc, f"missing required {'section' if section else 'key'}"
    if kind in _EXPECTED:
        return loc, f"expected {_EXPECTED[kind]}, got {describe(value)}"
    if kind == "literal_error":
        what = f"{loc[-2]} {name}" if name == "type" and len(loc) > 1 else name  # "pruner type"
        return loc, f"{value!r} is not a valid {what}; expected one of {ctx.get('expected')}"
    if kind == "finite_number":
        return loc, f"expected a finite number, got {value!r}"
    if kind in _BOUNDS:
        limit = next(iter(ctx.values()), "?")
        return loc, f"must be {_BOUNDS[kind]} {limit}, got {value!r}"
    return loc, err.get("msg", kind)
