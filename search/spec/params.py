"""The parameters of a study's ``[search]`` section: their three forms and what each accepts.

Every ``[search]`` parameter is written in one of three forms:

- fixed: ``dropout = 0.1`` → :class:`Fixed`;
- choices: ``d_model = { choices = [64, 128] }`` → :class:`Categorical`;
- range: ``lr = { low = 1e-4, high = 1e-2, log = true }`` → :class:`IntRange` or
  :class:`FloatRange` (integer parameters take ``step``, default 1; float ones ``step``, default none).

Each parameter allows only some forms and values (``base``: 2..64; ``d_model``, ``nhead``:
fixed or choices; ``lr``: fixed or range, > 0; ``dropout``: in [0, 1) ...; see ``PARAMETERS``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, ValidationInfo

from search.spec.problems import KeyedError, describe, did_you_mean

__all__ = [
    "PARAMETERS",
    "TRAINING_PARAMS",
    "Categorical",
    "Fixed",
    "FloatRange",
    "IntRange",
    "Param",
    "ParamField",
    "ParamSpec",
    "parse_param",
]


@dataclass(frozen=True)
class Fixed:
    """A parameter that is not searched: always ``value`` (TOML: ``dropout = 0.1``)."""

    value: Any

    @property
    def values(self) -> tuple[Any, ...]:
        return (self.value,)

    def to_raw(self) -> Any:
        return self.value


@dataclass(frozen=True)
class Categorical:
    """One of ``choices`` (TOML: ``d_model = { choices = [64, 128] }``); non-empty, distinct."""

    choices: tuple[Any, ...]

    @property
    def values(self) -> tuple[Any, ...]:
        return self.choices

    def to_raw(self) -> dict[str, Any]:
        return {"choices": list(self.choices)}


@dataclass(frozen=True)
class IntRange:
    """An integer in ``[low, high]`` (both included), on a ``step`` grid or log-uniform
    (TOML: ``num_layers = { low = 1, high = 4 }``)."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def to_raw(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "step": self.step, "log": self.log}


@dataclass(frozen=True)
class FloatRange:
    """A float in ``[low, high]``, uniform, log-uniform (``log = true``) or on a ``step`` grid
    (TOML: ``lr = { low = 1e-4, high = 1e-2, log = true }``)."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def to_raw(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


Param = Fixed | Categorical | IntRange | FloatRange
_PARAM_TYPES = (Fixed, Categorical, IntRange, FloatRange)
_CHOICE_KEYS = ("choices",)
_RANGE_KEYS = ("low", "high", "step", "log")


@dataclass(frozen=True)
class ParamSpec:
    """What one ``[search]`` parameter accepts: value type, forms and bounds."""

    kind: type  # int or float
    forms: frozenset[str]  # of "fixed", "choices", "range"
    low: float  # smallest allowed value
    high: float = math.inf  # largest allowed value
    high_open: bool = False  # value must be < high
    low_open: bool = False  # value must be > low

    def accepts(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    def bounds(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.high == math.inf:
            return f"{noun} {'>' if self.low_open else '>='} {self.low:g}"
        if self.kind is int:
            return f"{noun} in {self.low:g}..{self.high:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{noun} in {left}{self.low:g}, {self.high:g}{right}"

    def field_bounds(self) -> dict[str, float]:
        """The bounds as pydantic ``Field`` constraints (``ge``/``gt``, ``le``/``lt``)."""
        bounds = {"gt" if self.low_open else "ge": self.low}
        if self.high != math.inf:
            bounds["lt" if self.high_open else "le"] = self.high
        return bounds

    def form_names(self) -> str:
        names = {
            "fixed": "a fixed value",
            "choices": "{ choices = [...] }",
            "range": "{ low = .., high = .. }",
        }
        return " or ".join(names[f] for f in ("fixed", "choices", "range") if f in self.forms)


_ALL = frozenset({"fixed", "choices", "range"})
_NO_RANGE = frozenset({"fixed", "choices"})

#: The parameters of ``[search]``, what each accepts.
PARAMETERS: dict[str, ParamSpec] = {
    "base": ParamSpec(int, _ALL, 2, 64),
    "d_model": ParamSpec(int, _NO_RANGE, 1),
    "nhead": ParamSpec(int, _NO_RANGE, 1),
    "num_layers": ParamSpec(int, _ALL, 1),
    "lr": ParamSpec(float, frozenset({"fixed", "range"}), 0, low_open=True),
    "dropout": ParamSpec(float, _ALL, 0, 1, high_open=True),
    "batch_size": ParamSpec(int, _NO_RANGE, 1),
    "num_decoder_layers": ParamSpec(int, _ALL, 1),
    "dim_feedforward": ParamSpec(int, _NO_RANGE, 1),
    "weight_decay": ParamSpec(float, _ALL, 0),
    "warmup": ParamSpec(float, _ALL, 0, 1, high_open=True),
    "lr_floor": ParamSpec(float, _ALL, 0, 1),
    "balance": ParamSpec(float, _ALL, 0, 1),
    "ema_decay": ParamSpec(float, _ALL, 0, 1, high_open=True),
    "label_smoothing": ParamSpec(float, _ALL, 0, 1, high_open=True),
}
#: ``[search]`` parameters that, when absent, take their value from ``[training]``.
TRAINING_PARAMS = (
    "batch_size",
    "weight_decay",
    "warmup",
    "lr_floor",
    "balance",
    "ema_decay",
    "label_smoothing",
)


def _scalar(spec: ParamSpec, v: Any, subkey: tuple[str | int, ...] = (), what: str = "") -> Any:
    """``v`` as the parameter's type, within its bounds (bools are never numbers)."""
    prefix = f"{what}: " if what else ""
    if spec.kind is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise KeyedError(f"{prefix}expected an integer, got {describe(v)}", subkey)
    else:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise KeyedError(f"{prefix}expected a number, got {describe(v)}", subkey)
        v = float(v)
        if not math.isfinite(v):
            raise KeyedError(f"{prefix}expected a finite number, got {v!r}", subkey)
    if not spec.accepts(v):
        raise KeyedError(f"{prefix}must be {spec.bounds()}, got {v!r}", subkey)
    return v


def parse_param(name: str, raw: Any) -> Param:
    """One ``[search]`` entry (scalar, ``{choices}`` or ``{low, high, ...}``) → a checked parameter.

    Raises ``ValueError`` (a ``KeyedError`` naming the sub-key) on any problem.
    """
    spec = PARAMETERS[name]
    if isinstance(raw, _PARAM_TYPES):
        raw = raw.to_raw()
    if isinstance(raw, list | tuple):
        raise KeyedError(
            f"a list is not a parameter value; write {{ choices = {list(raw)!r} }} to search over it"
        )
    if not isinstance(raw, Mapping):
        return Fixed(_scalar(spec, raw))  # every parameter may be fixed
    if not raw:
        raise KeyedError(f"empty table; {name} must be {spec.form_names()}")
    if "choices" in raw:
        for key in raw:
            if key != "choices":
                raise KeyedError(
                    f"a choices parameter takes only 'choices'; remove {key!r} "
                    "(ranges are written {{ low = .., high = .. }})",
                    (key,),
                )
        if "choices" not in spec.forms:
            raise KeyedError(f"{name} cannot be searched over choices; it must be {spec.form_names()}")
        return _parse_choices(spec, raw["choices"])
    for key in raw:
        if key not in _RANGE_KEYS:
            raise KeyedError(did_you_mean(key, [*_CHOICE_KEYS, *_RANGE_KEYS]), (key,))
    if "range" not in spec.forms:
        raise KeyedError(f"{name} cannot be a range; it must be {spec.form_names()}")
    return _parse_range(spec, raw)


def _parse_choices(spec: ParamSpec, raw: Any) -> Categorical:
    if not isinstance(raw, list | tuple):
        raise KeyedError(f"expected a list of choices, got {describe(raw)}", ("choices",))
    if not raw:
        raise KeyedError("choices must not be empty", ("choices",))
    values = [_scalar(spec, v, ("choices",), f"choice {i}") for i, v in enumerate(raw)]
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise KeyedError(f"duplicate choice {v!r}", ("choices",))
        seen.add(v)
    return Categorical(tuple(values))


def _parse_range(spec: ParamSpec, raw: Mapping[str, Any]) -> IntRange | FloatRange:
    for key in ("low", "high"):
        if key not in raw:
            raise KeyedError("missing required key", (key,))
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise KeyedError(f"expected true or false, got {describe(log)}", ("log",))
    if log:
        low = raw["low"]
        if not isinstance(low, bool) and isinstance(low, int | float) and low <= 0:
            raise KeyedError(f"log = true needs low > 0, got {low!r}", ("low",))
    low = _scalar(spec, raw["low"], ("low",))
    high = _scalar(spec, raw["high"], ("high",))
    if low > high:
        raise KeyedError(f"low ({low!r}) must not exceed high ({high!r})")
    step = raw.get("step")
    if spec.kind is int:
        step = 1 if step is None else step
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise KeyedError(f"step must be an integer >= 1, got {describe(step)}", ("step",))
        if log and step != 1:
            raise KeyedError("log = true cannot be combined with step != 1", ("step",))
        if (high - low) % step:
            raise KeyedError(f"high - low ({high - low}) must be a multiple of step ({step})", ("step",))
        return IntRange(low, high, step, log)
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step < math.inf:
            raise KeyedError(f"step must be a number > 0, got {describe(step)}", ("step",))
        if log:
            raise KeyedError("log = true cannot be combined with step", ("step",))
        step = float(step)
    return FloatRange(low, high, log, step)


def _validate_param(raw: Any, info: ValidationInfo) -> Param:
    return parse_param(info.field_name, raw)


def _dump_param(param: Param) -> Any:
    return param.to_raw()


#: A ``[search]`` field: parsed by :func:`parse_param`, dumped back to its TOML/JSON form.
ParamField = Annotated[
    Param,
    PlainValidator(_validate_param, json_schema_input_type=Any),
    PlainSerializer(_dump_param),
]
