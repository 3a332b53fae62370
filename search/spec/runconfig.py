"""The frozen config of one training run, and the one place every run default is written.

``RunConfig()`` is what ``collatz-hpo train`` runs; its flags are built from these fields (help
text and default included), and a study's ``[training]`` section takes its defaults from here
too. A study trial sets every field from its study file and sampled params (``run_config_for``).
This module imports neither torch nor optuna: study files are validated with it in milliseconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from core import ModelConfig, WarmupDecay

__all__ = [
    "MINIMIZED_METRICS",
    "STORE_URI",
    "Device",
    "Metric",
    "Optimizer",
    "Precision",
    "RunConfig",
    "Scheduler",
    "check_split_sizes",
    "count_odd",
    "direction_of",
    "load_params",
    "reported_sign",
]

#: The validation metrics of every epoch: what early stopping and a study's objective follow.
Metric = Literal["val_exact_match", "val_accuracy", "val_loss"]
#: Metrics a study minimizes (here, not beside the study file's models: ``status`` reads it
#: without loading pydantic).
MINIMIZED_METRICS = frozenset({"val_loss"})
Optimizer = Literal["adamw", "adam", "sgd"]
#: per epoch (plateau, cosine) or per step (warmup_*: planned over the run's steps or seconds)
Scheduler = Literal["none", "plateau", "cosine", "warmup_cosine", "warmup_linear"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16"]

STORE_URI = "runs:/"  # an init_from starting so names an artifact of the MLflow store, not a file


def direction_of(metric: str) -> Literal["maximize", "minimize"]:
    """The direction a study optimizes ``metric`` in (``MINIMIZED_METRICS``, else maximized)."""
    return "minimize" if metric in MINIMIZED_METRICS else "maximize"


def reported_sign(signal: str, maximize: bool) -> float:
    """+1, or -1 where the pruner is told ``signal`` negated: a minimized metric reported to a
    maximized study (or the reverse), so the pruner compares in the study's direction."""
    return 1.0 if (signal not in MINIMIZED_METRICS) == maximize else -1.0


def _knob(default: Any, help: str, flag: str | None = None) -> Any:
    """A field with its default and the help text of its ``collatz-hpo train`` flag."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on; saved with the run so it can be reproduced."""

    # model / encoding
    base: int = _knob(24, "encoding base (2-64); the paper's best are 24 and 32")
    d_model: int = _knob(128, "transformer width: learns n < 2^20 on one CPU core in minutes")
    nhead: int = _knob(4, "attention heads; must divide d_model")
    num_layers: int = _knob(2, "encoder layers")
    num_decoder_layers: int = _knob(1, "decoder layers (the paper uses 1)", flag="--decoder-layers")
    dim_feedforward: int | None = _knob(None, "feed-forward width (none: 4 x d_model)")
    dropout: float = _knob(0.0, "dropout; fresh samples every epoch leave nothing to overfit")
    # data
    data_range: tuple[int, int] = _knob((1, 2**20), "odd n with LO <= n < HI", flag="--range")
    train_size: int = _knob(400_000, "distinct training inputs, disjoint from val/test by value")
    val_size: int = _knob(2_000, "validation inputs (greedy decoding every epoch)")
    test_size: int = _knob(10_000, "held-out test inputs, evaluated once at the end")
    data_seed: int = _knob(0, "seed of the value draw: same splits for every base and trial")
    # training
    lr: float = _knob(1e-3, "peak learning rate")
    batch_size: int = _knob(256, "training batch: fills one CPU core's matmuls well")
    eval_batch_size: int = _knob(1024, "validation/test batch (no gradients: larger is cheaper)")
    epochs: int = _knob(100, "epochs at most (--seconds usually ends training first)")
    samples_per_epoch: int | None = _knob(50_000, "samples per epoch (none: a full pass)")
    early_stopping_patience: int | None = _knob(
        None, "epochs without improvement before stopping", flag="--patience"
    )
    monitor: Metric = _knob("val_loss", "metric that early stopping and best.pt follow")
    monitor_mode: Literal["min", "max"] = _knob("min", "whether the monitored metric is minimized")
    optimizer: Optimizer = _knob("adamw", "optimizer")
    weight_decay: float = _knob(0.0, "weight decay")
    scheduler: Scheduler = _knob(
        "none",
        "learning-rate schedule: per epoch (plateau, cosine) or per step (warmup_*: linear warmup, "
        "then decay to lr_floor, planned over the run's steps or --seconds, whichever ends first)",
    )
    warmup: float = _knob(0.03, "warmup_* schedules: share of the plan spent warming up")
    lr_floor: float = _knob(0.05, "warmup_* schedules: final learning rate as a share of --lr")
    balance: float = _knob(
        0.0,
        "class balance of training inputs: 0 samples them uniformly, 1 gives every (k, k') class "
        "the same share (validation and test keep the natural distribution)",
    )
    init_from: str | None = _knob(
        None,
        "start from the model weights of this checkpoint (a best.pt/last.pt file, or runs:/RUN_ID/PATH "
        "in the store): same model settings; optimizer and schedule start fresh",
    )
    max_grad_norm: float | None = _knob(1.0, "gradient clipping norm (none: no clipping)")
    ema_decay: float = _knob(
        0.0,
        "exponential moving average of the weights, its decay per step (0: off; 0.999 averages the "
        "last ~1,000 steps, warmed up over the first ~9,000): the average is what is validated, "
        "checkpointed, tested and exported",
    )
    label_smoothing: float = _knob(
        0.0, "label smoothing of the training loss (validation and test losses stay plain cross-entropy)"
    )
    time_budget: float | None = _knob(
        180.0, "training time budget in seconds (per batch; the last validation fits in it)", flag="--seconds"
    )
    seed: int = _knob(0, "seed of initialisation and batch order")
    device: Device = _knob("auto", "auto: cuda when torch sees a GPU")
    precision: Precision = _knob("fp32", "bf16 autocast on CUDA only (far slower on CPU)")
    threads: int | None = _knob(None, "torch threads (none: torch's default, all cores)")

    @property
    def split_sizes(self) -> list[int]:
        """Train, val and test sizes: the cut of one seeded distinct sample (see make_splits)."""
        return [self.train_size, self.val_size, self.test_size]

    def model_config(self, vocab_size: int, max_seq_length: int | None = None) -> ModelConfig:
        """The model part; building it validates nhead | d_model and the other model fields.

        ``max_seq_length``: the longest token sequence (none: ``ModelConfig``'s default)."""
        from core import ModelConfig

        if max_seq_length is None:
            max_seq_length = ModelConfig.max_seq_length
        return ModelConfig(
            vocab_size=vocab_size,
            d_model=self.d_model,
            nhead=self.nhead,
            num_layers=self.num_layers,
            num_decoder_layers=self.num_decoder_layers,
            dim_feedforward=self.dim_feedforward,
            dropout=self.dropout,
            max_seq_length=max_seq_length,
        )

    def validate(self) -> None:
        """Fail before any work (data, model, files) on settings that cannot run (ValueError)."""
        from core import MultiBaseEncoder

        self.model_config(MultiBaseEncoder(self.base).vocab_size)
        check_split_sizes(self.data_range, self.split_sizes)
        self.schedule_shape()
        if not 0.0 <= self.balance <= 1.0:
            raise ValueError(f"balance must be in [0, 1], got {self.balance}")
        for name in ("ema_decay", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def schedule_shape(self) -> WarmupDecay | None:
        """The per-step schedule's shape (``warmup_*`` schedulers), else None."""
        from core import WarmupDecay

        if not self.scheduler.startswith("warmup_"):
            return None
        return WarmupDecay(self.scheduler.removeprefix("warmup_"), self.warmup, self.lr_floor)

    @property
    def init_in_store(self) -> bool:
        """Whether ``init_from`` is a ``runs:/`` URI (fetched by ``search.tracking.runs.fetch_init``)."""
        return self.init_from is not None and self.init_from.startswith(STORE_URI)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data_range"] = list(self.data_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls().replace(**d)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` (RunConfig field names; a ValueError names an unknown one)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown run setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        if "data_range" in changes:
            changes = {**changes, "data_range": tuple(changes["data_range"])}
        return dataclasses.replace(self, **changes)


def count_odd(lo: int, hi: int) -> int:
    """How many odd n satisfy lo <= n < hi (as ``core.data.count_odd``, without importing torch)."""
    first = lo | 1
    return max(0, (hi - first + 1) // 2)


def check_split_sizes(data_range: tuple[int, int], sizes: list[int]) -> None:
    """ValueError when the splits ask for more distinct odd values than the range holds."""
    lo, hi = data_range
    total, available = sum(sizes), count_odd(lo, hi)
    if total > available:
        raise ValueError(
            f"train_size + val_size + test_size = {total} distinct odd values, "
            f"but range [{lo}, {hi}) holds only {available}"
        )


def load_params(path: str | Path) -> dict[str, Any]:
    """RunConfig settings from a JSON or TOML file: a mapping of RunConfig fields, or a trial's
    ``config.json`` (its ``run`` mapping) or an export's (its ``params``)."""
    import json
    import tomllib

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise ValueError(
            f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("run"), dict):
        data = data["run"]
    elif isinstance(data, dict) and isinstance(data.get("params"), dict):
        data = data["params"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of run settings, got {type(data).__name__}")
    return data
