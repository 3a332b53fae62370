"""The sections of a study file, each a frozen pydantic model with its defaults and checks.

::

    [study]            name, metric, direction, n_trials, timeout, timeout_stops_trials, sampler,
                       seed, retries, stratify
    [study.pruner]     type, n_startup_trials, n_warmup_steps, min_resource, reduction_factor
    [study.warm_start] study, top_k
    [data]             range = [lo, hi] (odd n with lo <= n < hi), train/val/test sizes, seed
    [training]         epochs, samples_per_epoch, batch sizes, optimizer, scheduler, device,
                       checkpoint_every, ...
    [search]           base, d_model, nhead, num_layers, lr, dropout, batch_size, ... (search.spec.params)
    [confirm]          top_k, seeds
    [final]            seconds or end_at, threads, epochs, init

Validators raise :class:`~search.spec.problems.KeyedError` so the message names the exact key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from search.retry import DEFAULT_WINDOW
from search.spec.params import PARAMETERS, Fixed, Param, ParamField
from search.spec.problems import KeyedError
from search.spec.runconfig import (
    MINIMIZED_METRICS,
    Device,
    Metric,
    Optimizer,
    Precision,
    RunConfig,
    Scheduler,
    check_split_sizes,
    direction_of,
)

__all__ = [
    "MAX_NAME",
    "MAX_RANGE",
    "MINIMIZED_METRICS",
    "ConfirmSection",
    "DataSection",
    "CheckpointEvery",
    "FinalSection",
    "Metric",
    "PrunerConfig",
    "SearchSpace",
    "Section",
    "StudySection",
    "TrainingSection",
    "WarmStart",
    "direction_of",
]

MAX_UPLOAD_SHARE = 0.02  # default checkpoint_every: uploads take at most this share of trial time
MAX_RANGE = 2**62  # core.data draws indices in int64 arithmetic below this bound


class Section(BaseModel):
    """A study-file section: frozen, no unknown keys, no coercion ("3" is not 3), finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class PrunerConfig(Section):
    """``[study.pruner]``: which Optuna pruner stops weak trials early, and its settings."""

    type: Literal["median", "successive_halving", "hyperband", "none"] = "median"
    # what a pruner step counts: epochs, or training samples seen (rungs comparable across
    # batch sizes and epoch lengths)
    unit: Literal["epochs", "samples"] = "epochs"
    n_startup_trials: int = Field(2, ge=0)  # median: trials before any pruning
    n_warmup_steps: int = Field(1, ge=0)  # median: steps (in ``unit``) before a trial can be pruned
    min_resource: int = Field(1, ge=1)  # successive halving / hyperband, in ``unit``
    reduction_factor: int = Field(3, ge=2)  # successive halving / hyperband


class WarmStart(Section):
    """``[study.warm_start]``: enqueue the best trials of an earlier study in the same storage."""

    study: str
    top_k: int = Field(4, ge=1)


class ConfirmSection(Section):
    """``[confirm]``: after the search, the ``top_k`` best search trials are trained again with
    ``seeds`` fresh training seeds each, at the search trials' full budget (same data split).

    Each such seed replicate is a trial (user attr ``replicate_of``) that does not count towards
    ``n_trials``; the study's winner is then the configuration with the best mean over its seeds,
    which the final run continues and ``export`` picks from (``search.study.leaders``).
    """

    top_k: int = Field(3, ge=1)
    seeds: int = Field(3, ge=1)


class FinalSection(Section):
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
            raise KeyedError("give exactly one of seconds (a budget) or end_at (a deadline)")
        return self


# A study name names files: the lock file beside the Optuna database, the experiment's artifact
# folder, report and export folders. So: no path separators, no leading dot (".." would climb
# out of mlruns/artifacts) or dash (a flag), and short enough for a 255-byte file name.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_NAME = 200


class StudySection(Section):
    """``[study]``: the Optuna study: objective metric, budget, sampler, pruner, fault tolerance.

    ``direction`` is derived from ``metric`` when omitted (``val_loss`` is minimized, the others
    maximized); after validation it is always set.
    """

    name: str
    metric: Metric = "val_exact_match"
    direction: Literal["maximize", "minimize"] | None = None
    n_trials: int = Field(10, ge=1)
    timeout: float | None = Field(None, gt=0)  # seconds for the whole study (per worker process)
    # whether a search trial still training at the timeout stops there, PRUNED (its worker free
    # at the deadline); by default (Optuna's meaning) the timeout only stops new trials from starting
    timeout_stops_trials: bool = False
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
    # a [search] parameter with choices whose every value gets the same number of search trials,
    # each pruned against its own value's trials only (checked against [search] by StudyConfig)
    stratify: str | None = None

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
            metric = data.get("metric", cls.model_fields["metric"].default)
            if isinstance(metric, str):
                data = {**data, "direction": direction_of(metric)}
        return data

    @model_validator(mode="after")
    def _check(self) -> StudySection:
        expected = direction_of(self.metric)
        if self.direction != expected:
            raise KeyedError(
                f"direction = {self.direction!r} contradicts metric = {self.metric!r}, which is "
                f"{expected}d; omit direction or set {expected!r}",
                ("direction",),
            )
        if self.grace_period is not None:
            if self.heartbeat_interval is None:
                raise KeyedError("grace_period needs heartbeat_interval", ("grace_period",))
            if self.grace_period <= self.heartbeat_interval:
                raise KeyedError(
                    f"grace_period ({self.grace_period}) must exceed heartbeat_interval "
                    f"({self.heartbeat_interval})",
                    ("grace_period",),
                )
        return self


class DataSection(Section):
    """``[data]``: distinct odd inputs with ``lo <= n < hi``, split disjointly into train/val/test."""

    range: tuple[int, int]
    train_size: int = Field(ge=1)
    val_size: int = Field(ge=1)
    test_size: int = Field(ge=1)
    seed: int = Field(RunConfig.data_seed, ge=0)

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
            raise KeyedError(str(exc)) from None
        return self


class CheckpointEvery(Section):
    """``[training] checkpoint_every``: how often a running trial uploads its latest checkpoint to
    its MLflow run, where a retried trial resumes from: ``{ epochs = N }``, ``{ minutes = M }``, or
    (neither, the default) cost-bounded: after an upload that took u seconds, the next waits until
    the trial has run 49 u more, so uploads take at most ``MAX_UPLOAD_SHARE`` of trial time."""

    epochs: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> CheckpointEvery:
        if self.epochs is not None and self.minutes is not None:
            raise KeyedError("give one of epochs or minutes (neither: bounded by the upload cost)")
        return self


def _searchable(name: str) -> Any:
    """A ``[training]`` key used unless ``[search]`` sets it: ``RunConfig``'s default, the bounds
    of the ``[search]`` parameter (``PARAMETERS``)."""
    return Field(getattr(RunConfig, name), **PARAMETERS[name].field_bounds())


class TrainingSection(Section):
    """``[training]``: how each trial trains (the searched parameters live in ``[search]``).

    Defaults are ``RunConfig``'s, but for two that a study sets per trial on purpose: one torch
    thread per worker process (workers run side by side), and an epoch that is a full pass over
    ``train_size`` unless ``samples_per_epoch`` says otherwise.
    """

    epochs: int = Field(ge=1)
    samples_per_epoch: int | None = Field(None, ge=1)  # a sample budget per epoch, not full passes
    # a time budget per trial: training stops on time and a warmup_* schedule is planned over it
    # (with epochs as well, whichever runs out first), so trials compare at equal wall time
    seconds: float | None = Field(None, gt=0)
    # scheduler "warmup_cosine"/"warmup_linear": per step, planned over the trial's steps
    scheduler: Scheduler = RunConfig.scheduler
    warmup: float = _searchable("warmup")
    lr_floor: float = _searchable("lr_floor")
    balance: float = _searchable("balance")
    ema_decay: float = _searchable("ema_decay")
    label_smoothing: float = _searchable("label_smoothing")
    batch_size: int = _searchable("batch_size")
    eval_batch_size: int = Field(RunConfig.eval_batch_size, ge=1)
    early_stopping_patience: int | None = Field(RunConfig.early_stopping_patience, ge=1)
    optimizer: Optimizer = RunConfig.optimizer
    weight_decay: float = _searchable("weight_decay")
    max_grad_norm: float | None = Field(RunConfig.max_grad_norm, gt=0)
    threads: int = Field(1, ge=1)  # torch threads per worker process
    device: Device = RunConfig.device
    # bf16 autocast on CUDA only: on CPU it is far slower than fp32, so there it stays fp32.
    precision: Precision = RunConfig.precision
    # seconds between samples of CPU, memory and (CUDA) GPU use, logged to each trial's MLflow run
    # as system/* metrics by MLflow's monitor (search.tracking.system_metrics); 0 turns them off
    system_metrics: float = Field(5.0, ge=0)
    # how often a running trial uploads its checkpoint for a retry to resume from (CheckpointEvery)
    checkpoint_every: CheckpointEvery = CheckpointEvery()


class SearchSpace(Section):
    """``[search]``: each model/optimizer parameter, fixed or searched.

    ``dropout`` and ``num_decoder_layers`` default to ``RunConfig``'s; ``dim_feedforward = None`` means
    4 · d_model and ``batch_size = None`` means ``training.batch_size``. Validation guarantees
    that every ``d_model`` value has a dividing ``nhead`` (see :meth:`valid_nheads`).
    """

    base: ParamField
    d_model: ParamField
    nhead: ParamField
    num_layers: ParamField
    lr: ParamField
    dropout: ParamField = Fixed(RunConfig.dropout)
    batch_size: ParamField | None = None
    num_decoder_layers: ParamField = Fixed(RunConfig.num_decoder_layers)
    dim_feedforward: ParamField | None = None
    weight_decay: ParamField | None = None
    warmup: ParamField | None = None
    lr_floor: ParamField | None = None
    balance: ParamField | None = None
    ema_decay: ParamField | None = None
    label_smoothing: ParamField | None = None

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
            raise KeyedError(
                f"no nhead value in {nheads} divides any d_model value in {d_models}", ("nhead",)
            )
        for d in d_models:
            if not self.valid_nheads(d):
                raise KeyedError(
                    f"d_model = {d} has no dividing nhead among {nheads}; add one or drop it",
                    ("d_model",),
                )
        return self
