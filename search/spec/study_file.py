"""Study files: one TOML file, validated into one frozen :class:`StudyConfig` before anything runs.

A study file has these sections (see ``studies/*.toml``; each one's keys and defaults in
:mod:`search.spec.sections`)::

    [study]            name, metric, direction, n_trials, timeout, timeout_stops_trials, sampler,
                       seed, retries, stratify
    [study.pruner]     type, n_startup_trials, n_warmup_steps, min_resource, reduction_factor
    [data]             range = [lo, hi] (odd n with lo <= n < hi), train/val/test sizes, seed
    [training]         epochs, samples_per_epoch, batch sizes, optimizer, scheduler, device, ...
    [search]           base, d_model, nhead, num_layers, lr, dropout, batch_size, ...
    [confirm]          optional: the best search trials trained again with fresh seeds
    [final]            optional: the best configuration trained once more, longer

Each ``[search]`` parameter is fixed (``dropout = 0.1``), choices (``d_model = { choices = [64,
128] }``) or a range (``lr = { low = 1e-4, high = 1e-2, log = true }``); what each accepts is in
:mod:`search.spec.params`. Every problem, whatever its kind, is a :class:`ConfigError` whose
message is one line, ``"<file>: <dotted.key>: <problem>"``; unknown keys come with the closest
known key (:mod:`search.spec.problems`).

The names of those modules stay importable from here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from search.spec.params import (
    PARAMETERS,
    TRAINING_PARAMS,
    Categorical,
    Fixed,
    FloatRange,
    IntRange,
    Param,
    ParamField,
    ParamSpec,
    parse_param,
)
from search.spec.problems import ConfigError, KeyedError, did_you_mean, dotted, known_keys, problem
from search.spec.sections import (
    MAX_NAME,
    MAX_RANGE,
    MINIMIZED_METRICS,
    ConfirmSection,
    DataSection,
    FinalSection,
    Metric,
    PrunerConfig,
    SearchSpace,
    Section,
    StudySection,
    TrainingSection,
    WarmStart,
)

__all__ = [
    "MAX_NAME",
    "MAX_RANGE",
    "MINIMIZED_METRICS",
    "PARAMETERS",
    "TRAINING_PARAMS",
    "Categorical",
    "ConfigError",
    "ConfirmSection",
    "DataSection",
    "FinalSection",
    "Fixed",
    "FloatRange",
    "IntRange",
    "Metric",
    "Param",
    "ParamField",
    "ParamSpec",
    "PrunerConfig",
    "SearchSpace",
    "StudyConfig",
    "StudySection",
    "TrainingSection",
    "WarmStart",
    "load_study",
    "parse_param",
    "parse_study",
]


class StudyConfig(Section):
    """One validated study file. ``source`` (the file) is neither dumped nor compared."""

    study: StudySection
    data: DataSection
    training: TrainingSection
    search: SearchSpace
    confirm: ConfirmSection | None = None
    final: FinalSection | None = None
    source: str = Field("<dict>", exclude=True)

    @model_validator(mode="after")
    def _check_grid(self) -> StudyConfig:
        if self.study.sampler == "grid":
            for name, p in self.search.params().items():
                if isinstance(p, IntRange | FloatRange):
                    raise KeyedError(
                        "sampler = 'grid' needs fixed values or { choices = [...] }, not a range",
                        ("search", name),
                    )
            heads = {tuple(self.search.valid_nheads(d)) for d in self.search.d_model.values}
            if isinstance(self.search.nhead, Categorical) and len(heads) > 1:
                raise KeyedError(
                    "sampler = 'grid' needs nhead choices that divide every d_model "
                    f"(valid heads differ: {sorted(heads)})",
                    ("search", "nhead"),
                )
        return self

    @model_validator(mode="after")
    def _check_stratify(self) -> StudyConfig:
        """``[study] stratify`` names a ``[search]`` parameter given as choices.

        A study-level key, like ``sampler`` and ``pruner``, because it changes how the study asks
        and prunes (``search.study.strata``), not what the parameter may take; the parameter keeps
        its usual ``{ choices = [...] }`` form, so warm starts and grids read it unchanged.
        """
        name = self.study.stratify
        if name is None:
            return self
        where = ("study", "stratify")
        if name not in SearchSpace.model_fields:
            raise KeyedError(did_you_mean(name, list(SearchSpace.model_fields), "[search] parameter"), where)
        param = getattr(self.search, name)
        if name == "nhead":
            raise KeyedError("nhead cannot be stratified: the heads on offer depend on d_model", where)
        if not isinstance(param, Categorical):
            form = "not set" if param is None else "fixed" if isinstance(param, Fixed) else "a range"
            raise KeyedError(
                f"search.{name} is {form}; only a parameter searched with {{ choices = [...] }} "
                "can be stratified",
                where,
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
        return (self.study, self.data, self.training, self.search, self.confirm, self.final)


def parse_study(data: Mapping[str, Any], source: str = "<dict>") -> StudyConfig:
    """Validate a study given as a dict (parsed TOML, or ``StudyConfig.to_dict()``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", f"expected a table of sections, got {type(data).__name__}")
    if "source" in data:
        raise ConfigError(source, "source", did_you_mean("source", known_keys(StudyConfig), "section"))
    try:
        return StudyConfig.model_validate({**data, "source": str(source)})
    except ValidationError as exc:
        errors = exc.errors()
        # An unknown key usually explains a "missing" one next to it (a typo): report it first.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc, text = problem(first, StudyConfig)
        raise ConfigError(source, dotted(loc), text) from None


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
