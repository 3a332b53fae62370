"""Study files: one TOML file, validated into one frozen :class:`StudyConfig` before anything runs.

A study file has four sections (see ``studies/*.toml``)::

    [study]            name, metric, direction, n_trials, timeout, sampler, seed, retries
    [study.pruner]     type, n_startup_trials, n_warmup_steps, min_resource, reduction_factor
    [data]             range = [lo, hi] (odd n with lo <= n < hi), train/val/test sizes, seed
    [training]         epochs, samples_per_epoch, batch sizes, optimizer, scheduler, device, ...
    [search]           base, d_model, nhead, num_layers, lr, dropout, batch_size, ...

Every ``[search]`` parameter is written in one of three forms:

- fixed: ``dropout = 0.1`` → :class:`Fixed`;
- choices: ``d_model = { choices = [64, 128] }`` → :class:`Categorical`;
- range: ``lr = { low = 1e-4, high = 1e-2, log = true }`` → :class:`IntRange` or
  :class:`FloatRange` (integer parameters take ``step``, default 1; float ones ``step``, default none).

Each parameter allows only some forms and values (``base``: 2..64; ``d_model``, ``nhead``:
fixed or choices; ``lr``: fixed or range, > 0; ``dropout``: in [0, 1) ...; see ``PARAMETERS``).
Every problem, whatever its kind, is a :class:`ConfigError` whose message is one line,
``"<file>: <dotted.key>: <problem>"``; unknown keys come with the closest known key.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from search.retry import DEFAULT_WINDOW
from search.spec.runconfig import RunConfig, check_split_sizes

__all__ = [
    "PARAMETERS",
    "Categorical",
    "ConfigError",
    "DataSection",
    "Fixed",
    "FloatRange",
    "IntRange",
    "Param",
    "PrunerConfig",
    "SearchSpace",
    "StudyConfig",
    "StudySection",
    "TrainingSection",
    "load_study",
    "parse_study",
]

Metric = Literal["val_exact_match", "val_accuracy", "val_loss"]
MINIMIZED_METRICS = frozenset({"val_loss"})
MAX_RANGE = 2**62  # core.data draws indices in int64 arithmetic below this bound


# --- errors --------------------------------------------------------------------------------


class ConfigError(ValueError):
    """A study file that cannot run. ``str(err)`` is one line: ``"<file>: <dotted.key>: <problem>"``.

    ``key`` is empty for problems of the whole file (missing file, TOML syntax); the message is
    then ``"<file>: <problem>"``.
    """

    def __init__(self, path: str | Path, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = " ".join(str(problem).split())  # always one line
        message = f"{self.path}: {key}: {self.problem}" if key else f"{self.path}: {self.problem}"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return (type(self), (self.path, self.key, self.problem))


class _KeyedError(ValueError):
    """Raised inside validators: ``problem`` at ``subkey`` below the validated object's location."""

    def __init__(self, problem: str, subkey: tuple[str | int, ...] = ()) -> None:
        super().__init__(problem)
        self.subkey = subkey


def _suggest(key: str, known: list[str], what: str = "key") -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown {what} {key!r}; did you mean {close[0]!r}?"
    return f"unknown {what} {key!r}; known: {', '.join(known)}"


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


# --- search-space parameters ------------------------------------------------------------------


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
}
#: ``[search]`` parameters that, when absent, take their value from ``[training]``.
TRAINING_PARAMS = ("batch_size", "weight_decay", "warmup", "lr_floor", "balance")


def _scalar(spec: ParamSpec, v: Any, subkey: tuple[str | int, ...] = (), what: str = "") -> Any:
    """``v`` as the parameter's type, within its bounds (bools are never numbers)."""
    prefix = f"{what}: " if what else ""
    if spec.kind is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _KeyedError(f"{prefix}expected an integer, got {_describe(v)}", subkey)
    else:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _KeyedError(f"{prefix}expected a number, got {_describe(v)}", subkey)
        v = float(v)
        if not math.isfinite(v):
            raise _KeyedError(f"{prefix}expected a finite number, got {v!r}", subkey)
    if not spec.accepts(v):
        raise _KeyedError(f"{prefix}must be {spec.bounds()}, got {v!r}", subkey)
    return v


def parse_param(name: str, raw: Any) -> Param:
    """One ``[search]`` entry (scalar, ``{choices}`` or ``{low, high, ...}``) → a checked parameter.

    Raises ``ValueError`` (a ``_KeyedError`` naming the sub-key) on any problem.
    """
    spec = PARAMETERS[name]
    if isinstance(raw, _PARAM_TYPES):
        raw = raw.to_raw()
    if isinstance(raw, list | tuple):
        raise _KeyedError(
            f"a list is not a parameter value; write {{ choices = {list(raw)!r} }} to search over it"
        )
    if not isinstance(raw, Mapping):
        return Fixed(_scalar(spec, raw))  # every parameter may be fixed
    if not raw:
        raise _KeyedError(f"empty table; {name} must be {spec.form_names()}")
    if "choices" in raw:
        for key in raw:
            if key != "choices":
                raise _KeyedError(
                    f"a choices parameter takes only 'choices'; remove {key!r} "
                    "(ranges are written {{ low = .., high = .. }})",
                    (key,),
                )
        if "choices" not in spec.forms:
            raise _KeyedError(f"{name} cannot be searched over choices; it must be {spec.form_names()}")
        return _parse_choices(spec, raw["choices"])
    for key in raw:
        if key not in _RANGE_KEYS:
            raise _KeyedError(_suggest(key, [*_CHOICE_KEYS, *_RANGE_KEYS]), (key,))
    if "range" not in spec.forms:
        raise _KeyedError(f"{name} cannot be a range; it must be {spec.form_names()}")
    return _parse_range(spec, raw)


def _parse_choices(spec: ParamSpec, raw: Any) -> Categorical:
    if not isinstance(raw, list | tuple):
        raise _KeyedError(f"expected a list of choices, got {_describe(raw)}", ("choices",))
    if not raw:
        raise _KeyedError("choices must not be empty", ("choices",))
    values = [_scalar(spec, v, ("choices",), f"choice {i}") for i, v in enumerate(raw)]
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise _KeyedError(f"duplicate choice {v!r}", ("choices",))
        seen.add(v)
    return Categorical(tuple(values))


def _parse_range(spec: ParamSpec, raw: Mapping[str, Any]) -> IntRange | FloatRange:
    for key in ("low", "high"):
        if key not in raw:
            raise _KeyedError("missing required key", (key,))
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise _KeyedError(f"expected true or false, got {_describe(log)}", ("log",))
    if log:
        low = raw["low"]
        if not isinstance(low, bool) and isinstance(low, int | float) and low <= 0:
            raise _KeyedError(f"log = true needs low > 0, got {low!r}", ("low",))
    low = _scalar(spec, raw["low"], ("low",))
    high = _scalar(spec, raw["high"], ("high",))
    if low > high:
        raise _KeyedError(f"low ({low!r}) must not exceed high ({high!r})")
    step = raw.get("step")
    if spec.kind is int:
        step = 1 if step is None else step
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise _KeyedError(f"step must be an integer >= 1, got {_describe(step)}", ("step",))
        if log and step != 1:
            raise _KeyedError("log = true cannot be combined with step != 1", ("step",))
        if (high - low) % step:
            raise _KeyedError(f"high - low ({high - low}) must be a multiple of step ({step})", ("step",))
        return IntRange(low, high, step, log)
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or not 0 < step < math.inf:
            raise _KeyedError(f"step must be a number > 0, got {_describe(step)}", ("step",))
        if log:
            raise _KeyedError("log = true cannot be combined with step", ("step",))
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


# --- sections --------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class PrunerConfig(_Section):
    """``[study.pruner]``: which Optuna pruner stops weak trials early, and its settings."""

    type: Literal["median", "successive_halving", "hyperband", "none"] = "median"
    # what a pruner step counts: epochs, or training samples seen (rungs comparable across
    # batch sizes and epoch lengths)
    unit: Literal["epochs", "samples"] = "epochs"
    n_startup_trials: int = Field(2, ge=0)  # median: trials before any pruning
    n_warmup_steps: int = Field(1, ge=0)  # median: steps (in ``unit``) before a trial can be pruned
    min_resource: int = Field(1, ge=1)  # successive halving / hyperband, in ``unit``
    reduction_factor: int = Field(3, ge=2)  # successive halving / hyperband


class WarmStart(_Section):
    """``[study.warm_start]``: enqueue the best trials of an earlier study in the same storage."""

    study: str
    top_k: int = Field(4, ge=1)


class FinalSection(_Section):
    """``[final]``: after the search, the best configuration is trained once more, longer.

    The final run is one more trial (user attr ``final``), run by ``launch`` once its workers
    are done: ``threads`` torch threads (the search's workers have stopped), no pruning, a time
    budget of ``seconds``, or whatever is left until ``end_at`` seconds after the launch began
    (less a reserve for the test evaluation). A ``warmup_*`` schedule is planned over it.
    ``init``: ``scratch`` trains the configuration anew; ``best_trial`` starts from the best
    search trial's best checkpoint (its weights; optimizer and schedule fresh), so the samples
    that trial already trained on are not paid for twice.
    """

    seconds: float | None = Field(None, gt=0)
    end_at: float | None = Field(None, gt=0)
    threads: int = Field(2, ge=1)
    epochs: int = Field(10_000, ge=1)  # an upper bound: the time budget ends the run
    init: Literal["scratch", "best_trial"] = "scratch"

    @model_validator(mode="after")
    def _one_budget(self) -> FinalSection:
        if (self.seconds is None) == (self.end_at is None):
            raise _KeyedError("give exactly one of seconds (a budget) or end_at (a deadline)")
        return self


# A study name names files: the lock file beside the Optuna database, the experiment's artifact
# folder, report and export folders. So: no path separators, no leading dot (".." would climb
# out of mlruns/artifacts) or dash (a flag), and short enough for a 255-byte file name.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_NAME = 200


class StudySection(_Section):
    """``[study]``: the Optuna study: objective metric, budget, sampler, pruner, fault tolerance.

    ``direction`` is derived from ``metric`` when omitted (``val_loss`` is minimized, the others
    maximized); after validation it is always set.
    """

    name: str
    metric: Metric = "val_exact_match"
    direction: Literal["maximize", "minimize"] | None = None
    n_trials: int = Field(10, ge=1)
    timeout: float | None = Field(None, gt=0)  # seconds for the whole study (per worker process)
    sampler: Literal["tpe", "random", "gp", "grid"] = "tpe"
    seed: int = Field(0, ge=0, lt=2**32)
    pruner: PrunerConfig = PrunerConfig()
    # seconds; RDB storage marks dead trials (bounded: a thread waits this long between beats)
    heartbeat_interval: int | None = Field(None, ge=1, le=86_400)
    grace_period: int | None = Field(None, ge=1, le=7 * 86_400)  # silent seconds before a trial is stale
    max_retries: int = Field(2, ge=0)  # reruns of a failed/stale trial
    # seconds a worker rides out an unreachable database or MLflow server (calls retried with
    # back-off) before the call fails: the trial then FAILs with the reason (search.retry)
    outage_window: float = Field(DEFAULT_WINDOW, ge=0, le=7 * 86400)
    # the validation metric reported to the pruner (default: ``metric``); a minimized one is
    # reported negated to a maximized study, so the pruner compares in the study's direction
    prune_on: Metric | None = None
    warm_start: WarmStart | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError(
                "must be non-empty, use only letters, digits, '_', '.', '-' and start with a letter, "
                f"digit or '_'; got {v[:60]!r}"
            )
        if len(v) > MAX_NAME:
            raise ValueError(
                f"must be at most {MAX_NAME} characters (it names lock files and artifact, report "
                f"and export folders), got {len(v)}"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _derive_direction(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("direction") is None:
            metric = data.get("metric", "val_exact_match")
            if isinstance(metric, str):
                data = {**data, "direction": "minimize" if metric in MINIMIZED_METRICS else "maximize"}
        return data

    @model_validator(mode="after")
    def _check(self) -> StudySection:
        expected = "minimize" if self.metric in MINIMIZED_METRICS else "maximize"
        if self.direction != expected:
            raise _KeyedError(
                f"direction = {self.direction!r} contradicts metric = {self.metric!r}, which is "
                f"{expected}d; omit direction or set {expected!r}",
                ("direction",),
            )
        if self.grace_period is not None:
            if self.heartbeat_interval is None:
                raise _KeyedError("grace_period needs heartbeat_interval", ("grace_period",))
            if self.grace_period <= self.heartbeat_interval:
                raise _KeyedError(
                    f"grace_period ({self.grace_period}) must exceed heartbeat_interval "
                    f"({self.heartbeat_interval})",
                    ("grace_period",),
                )
        return self


class DataSection(_Section):
    """``[data]``: distinct odd inputs with ``lo <= n < hi``, split disjointly into train/val/test."""

    range: tuple[int, int]
    train_size: int = Field(ge=1)
    val_size: int = Field(ge=1)
    test_size: int = Field(ge=1)
    seed: int = Field(0, ge=0)

    @field_validator("range", mode="before")
    @classmethod
    def _list_to_tuple(cls, v: Any) -> Any:
        if isinstance(v, list):
            if len(v) != 2:
                raise ValueError(f"expected [lo, hi], got a list of {len(v)} values")
            return tuple(v)
        return v

    @field_validator("range")
    @classmethod
    def _check_range(cls, v: tuple[int, int]) -> tuple[int, int]:
        lo, hi = v
        if not 1 <= lo < hi <= MAX_RANGE:
            raise ValueError(f"must satisfy 1 <= lo < hi <= 2**62, got [{lo}, {hi}]")
        return v

    @model_validator(mode="after")
    def _check_sizes(self) -> DataSection:
        try:
            check_split_sizes(self.range, [self.train_size, self.val_size, self.test_size])
        except ValueError as exc:
            raise _KeyedError(str(exc)) from None
        return self


class TrainingSection(_Section):
    """``[training]``: how each trial trains (the searched parameters live in ``[search]``).

    Defaults are ``RunConfig``'s, but for two that a study sets per trial on purpose: one torch
    thread per worker process (workers run side by side), and an epoch that is a full pass over
    ``train_size`` unless ``samples_per_epoch`` says otherwise.
    """

    epochs: int = Field(ge=1)
    samples_per_epoch: int | None = Field(None, ge=1)  # a sample budget per epoch, not full passes
    # scheduler "warmup_cosine"/"warmup_linear": per step, planned over the trial's steps
    scheduler: Literal["none", "plateau", "cosine", "warmup_cosine", "warmup_linear"] = RunConfig.scheduler
    warmup: float = Field(RunConfig.warmup, ge=0, lt=1)  # used unless [search] sets it
    lr_floor: float = Field(RunConfig.lr_floor, ge=0, le=1)  # used unless [search] sets it
    balance: float = Field(RunConfig.balance, ge=0, le=1)  # used unless [search] sets it
    batch_size: int = Field(RunConfig.batch_size, ge=1)  # used unless [search] sets batch_size
    eval_batch_size: int = Field(RunConfig.eval_batch_size, ge=1)
    early_stopping_patience: int | None = Field(RunConfig.early_stopping_patience, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = RunConfig.optimizer
    weight_decay: float = Field(RunConfig.weight_decay, ge=0)  # used unless [search] sets it
    max_grad_norm: float | None = Field(RunConfig.max_grad_norm, gt=0)
    threads: int = Field(1, ge=1)  # torch threads per worker process
    device: Literal["auto", "cpu", "cuda"] = RunConfig.device
    # bf16 autocast on CUDA only: on CPU it is far slower than fp32, so there it stays fp32.
    precision: Literal["fp32", "bf16"] = RunConfig.precision
    # seconds between samples of CPU, memory and (CUDA) GPU use, logged to each trial's MLflow run
    # as system/* metrics by MLflow's monitor (search.tracking.system_metrics); 0 turns them off
    system_metrics: float = Field(5.0, ge=0)


class SearchSpace(_Section):
    """``[search]``: each model/optimizer parameter, fixed or searched.

    ``dropout`` defaults to 0.0 and ``num_decoder_layers`` to 1; ``dim_feedforward = None`` means
    4 · d_model and ``batch_size = None`` means ``training.batch_size``. Validation guarantees
    that every ``d_model`` value has a dividing ``nhead`` (see :meth:`valid_nheads`).
    """

    base: ParamField
    d_model: ParamField
    nhead: ParamField
    num_layers: ParamField
    lr: ParamField
    dropout: ParamField = Fixed(0.0)
    batch_size: ParamField | None = None
    num_decoder_layers: ParamField = Fixed(1)
    dim_feedforward: ParamField | None = None
    weight_decay: ParamField | None = None
    warmup: ParamField | None = None
    lr_floor: ParamField | None = None
    balance: ParamField | None = None

    def params(self) -> dict[str, Param]:
        """Every parameter that is set (the optional ones only when given)."""
        return {name: p for name in type(self).model_fields if (p := getattr(self, name)) is not None}

    def fixed(self) -> dict[str, Any]:
        """The values of the parameters that are not searched."""
        return {name: p.value for name, p in self.params().items() if isinstance(p, Fixed)}

    def searched(self) -> dict[str, Param]:
        """The parameters that are searched (choices or ranges)."""
        return {name: p for name, p in self.params().items() if not isinstance(p, Fixed)}

    def valid_nheads(self, d_model: int) -> list[int]:
        """The ``nhead`` values of this space that divide ``d_model``, in the order given."""
        return [h for h in self.nhead.values if d_model % h == 0]

    @model_validator(mode="after")
    def _check_heads(self) -> SearchSpace:
        d_models, nheads = list(self.d_model.values), list(self.nhead.values)
        if not any(d % h == 0 for d in d_models for h in nheads):
            raise _KeyedError(
                f"no nhead value in {nheads} divides any d_model value in {d_models}", ("nhead",)
            )
        for d in d_models:
            if not self.valid_nheads(d):
                raise _KeyedError(
                    f"d_model = {d} has no dividing nhead among {nheads}; add one or drop it",
                    ("d_model",),
                )
        return self


class StudyConfig(_Section):
    """One validated study file. ``source`` (the file) is neither dumped nor compared."""

    study: StudySection
    data: DataSection
    training: TrainingSection
    search: SearchSpace
    final: FinalSection | None = None
    source: str = Field("<dict>", exclude=True)

    @model_validator(mode="after")
    def _check_grid(self) -> StudyConfig:
        if self.study.sampler == "grid":
            for name, p in self.search.params().items():
                if isinstance(p, IntRange | FloatRange):
                    raise _KeyedError(
                        "sampler = 'grid' needs fixed values or { choices = [...] }, not a range",
                        ("search", name),
                    )
            heads = {tuple(self.search.valid_nheads(d)) for d in self.search.d_model.values}
            if isinstance(self.search.nhead, Categorical) and len(heads) > 1:
                raise _KeyedError(
                    "sampler = 'grid' needs nhead choices that divide every d_model "
                    f"(valid heads differ: {sorted(heads)})",
                    ("search", "nhead"),
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict in study-file form; ``parse_study(cfg.to_dict()) == cfg``."""
        return self.model_dump(mode="json")

    def with_overrides(self, **study: Any) -> StudyConfig:
        """A validated copy with the given ``[study]`` keys (n_trials, timeout, seed, warm_start)
        replaced where not None."""
        data = self.to_dict()
        data["study"].update({key: value for key, value in study.items() if value is not None})
        return parse_study(data, source=self.source)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StudyConfig):
            return NotImplemented
        return self._sections() == other._sections()

    def __hash__(self) -> int:
        return hash(self._sections())

    def _sections(self) -> tuple[Any, ...]:
        return (self.study, self.data, self.training, self.search, self.final)


# --- loading ---------------------------------------------------------------------------------


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The section model found at ``loc`` below ``StudyConfig`` (None: not a section)."""
    model: type[BaseModel] | None = StudyConfig
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        if typing.get_origin(ann) in (typing.Union, types.UnionType):  # an optional section
            ann = next((a for a in typing.get_args(ann) if a is not type(None)), None)
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return model


def _known_keys(model: type[BaseModel]) -> list[str]:
    return [name for name, f in model.model_fields.items() if not f.exclude]


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(err: dict[str, Any]) -> tuple[tuple[str | int, ...], str]:
    """A pydantic error → (location, one-line problem)."""
    loc, kind, value, ctx = tuple(err["loc"]), err["type"], err.get("input"), err.get("ctx") or {}
    name = str(loc[-1]) if loc else ""
    if kind == "value_error" and isinstance(ctx.get("error"), _KeyedError):
        exc = ctx["error"]
        return loc + exc.subkey, str(exc)
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return loc, str(ctx["error"])
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        what = "section" if not loc[:-1] else "key"
        if parent is None:
            return loc, f"unknown {what} {name!r}"
        return loc, _suggest(name, _known_keys(parent), what)
    if kind == "missing":
        section = _model_at(loc) is not None
        return loc, f"missing required {'section' if section else 'key'}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"expected a table, got {_describe(value)}"
    if kind == "int_type":
        return loc, f"expected an integer, got {_describe(value)}"
    if kind == "float_type":
        return loc, f"expected a number, got {_describe(value)}"
    if kind == "string_type":
        return loc, f"expected a string, got {_describe(value)}"
    if kind == "bool_type":
        return loc, f"expected true or false, got {_describe(value)}"
    if kind == "literal_error":
        what = f"{loc[-2]} {name}" if name == "type" and len(loc) > 1 else name  # "pruner type"
        return loc, f"{value!r} is not a valid {what}; expected one of {ctx.get('expected')}"
    if kind == "finite_number":
        return loc, f"expected a finite number, got {value!r}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return loc, f"must be {bounds[kind]} {limit}, got {value!r}"
    if kind == "tuple_type":
        return loc, f"expected [lo, hi], got {_describe(value)}"
    return loc, err.get("msg", kind)


def parse_study(data: Mapping[str, Any], source: str = "<dict>") -> StudyConfig:
    """Validate a study given as a dict (parsed TOML, or ``StudyConfig.to_dict()``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", f"expected a table of sections, got {type(data).__name__}")
    if "source" in data:
        raise ConfigError(source, "source", _suggest("source", _known_keys(StudyConfig), "section"))
    try:
        return StudyConfig.model_validate({**data, "source": str(source)})
    except ValidationError as exc:
        errors = exc.errors()
        # An unknown key usually explains a "missing" one next to it (a typo): report it first.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc, problem = _problem(first)
        raise ConfigError(source, _dotted(loc), problem) from None


def load_study(path: str | Path, **overrides: Any) -> StudyConfig:
    """Read and validate a TOML study file; ``overrides`` (n_trials, timeout, seed, warm_start)
    replace keys of ``[study]`` where not None.

    Raises :class:`ConfigError` for anything wrong, the file's absence and TOML syntax included.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "no such study file") from None
    except IsADirectoryError:
        raise ConfigError(path, "", "is a directory, not a study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None
    cfg = parse_study(data, source=str(path))
    if all(value is None for value in overrides.values()):
        return cfg
    return cfg.with_overrides(**overrides)
