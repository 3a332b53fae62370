"""One training run from one frozen config: data, model, optimizer, training, held-out test.

Both `collatz-hpo train` and every study trial go through `execute`; callbacks (pruning,
tracking) are passed in, so this module knows nothing of Optuna or MLflow.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from core import (
    BatchIterator,
    Callback,
    CollatzDataset,
    CollatzTransformer,
    ModelConfig,
    StopTraining,
    Trainer,
    compute_collatz_metrics,
    load_checkpoint,
    make_splits,
    split_values,
)

__all__ = [
    "RunConfig",
    "RunResult",
    "build_data",
    "build_model",
    "build_test_set",
    "evaluate_test",
    "execute",
]


@dataclass(frozen=True)
class RunConfig:
    """Everything one run depends on; saved with the run so it can be reproduced."""

    # model / encoding
    base: int = 24
    d_model: int = 128
    nhead: int = 4
    num_layers: int = 2
    num_decoder_layers: int = 1
    dim_feedforward: int | None = None
    dropout: float = 0.0
    # data
    data_range: tuple[int, int] = (1, 2**20)
    train_size: int = 200_000
    val_size: int = 2_000
    test_size: int = 10_000
    data_seed: int = 0
    # training
    lr: float = 1e-3
    batch_size: int = 256
    eval_batch_size: int = 1024
    epochs: int = 3
    samples_per_epoch: int | None = None
    early_stopping_patience: int | None = None
    monitor: str = "val_loss"  # early stopping and best.pt follow this metric
    monitor_mode: Literal["min", "max"] = "min"
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: float = 0.0
    scheduler: Literal["none", "plateau", "cosine"] = "none"
    max_grad_norm: float | None = 1.0
    time_budget: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    threads: int | None = None

    @property
    def split_sizes(self) -> list[int]:
        """Train, val and test sizes: the cut of one seeded distinct sample (see make_splits)."""
        return [self.train_size, self.val_size, self.test_size]

    def model_config(self, vocab_size: int, max_seq_length: int = 64) -> ModelConfig:
        """The model part; building it validates nhead | d_model and the other model fields."""
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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["data_range"] = list(self.data_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        d = dict(d)
        if "data_range" in d:
            d["data_range"] = tuple(d["data_range"])
        return cls(**d)


@dataclass
class RunResult:
    history: dict[str, list[float]]
    test: dict[str, Any]
    best_epoch: int
    best_checkpoint: Path | None
    stop_reason: str | None
    train_seconds: float
    eval_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA GPU")
    return torch.device(name)


def build_data(cfg: RunConfig) -> tuple[CollatzDataset, CollatzDataset, CollatzDataset]:
    """Train/val/test splits, disjoint by value; the same values for every base and trial."""
    train, val, test = make_splits(cfg.data_range, cfg.split_sizes, cfg.base, seed=cfg.data_seed)
    return train, val, test


def build_test_set(cfg: RunConfig) -> CollatzDataset:
    """The test split of ``build_data`` alone: same values, no κ or tokens for the others."""
    test_values = split_values(cfg.data_range, cfg.split_sizes, cfg.data_seed)[-1]
    # max_length derived from the range, as make_splits derives it for all three splits
    return CollatzDataset.from_values(test_values, cfg.data_range, cfg.base)


def build_model(cfg: RunConfig, dataset: CollatzDataset) -> CollatzTransformer:
    return CollatzTransformer.from_config(cfg.model_config(dataset.vocab_size, dataset.max_length))


def build_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def build_scheduler(cfg: RunConfig, optimizer: torch.optim.Optimizer) -> Any:
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=1)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}")


class TimeBudget(Callback):
    """Ends training normally once ``seconds`` of training have passed (checked per epoch)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = 0.0

    def on_train_start(self, trainer: Trainer) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if time.perf_counter() - self.start >= self.seconds:
            raise StopTraining(f"time budget of {self.seconds:g}s reached")


@torch.no_grad()
def evaluate_test(
    model: CollatzTransformer, test: CollatzDataset, device: torch.device, batch_size: int = 1024
) -> dict[str, Any]:
    """Greedy predictions on the held-out test set, with the Collatz breakdown."""
    model.eval()
    preds = []
    width = test.target_ids.shape[1]
    for src, _ in BatchIterator(test, batch_size, shuffle=False):
        # Decode up to the full max length, as a served model does: the recorded predictions are
        # the model's answers, not answers cut at the longest true κ of the batch.
        out = model.generate(src.to(device), max_new_tokens=width).cpu()
        preds.append(torch.nn.functional.pad(out, (0, width - out.shape[1])))
    predictions = torch.cat(preds)
    metrics = compute_collatz_metrics(predictions, test.target_ids.long(), test.values, test.base)
    metrics["predictions"] = predictions
    return metrics


def execute(
    cfg: RunConfig,
    checkpoint_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    log: Callable[[str], None] | None = print,
    log_interval: int = 10**9,
    data: tuple[CollatzDataset, CollatzDataset, CollatzDataset] | None = None,
) -> RunResult:
    """Train one model as ``cfg`` says and evaluate its best checkpoint on the test set."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    train, val, test = data or build_data(cfg)
    model = build_model(cfg, train)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    cbs = list(callbacks)
    if cfg.time_budget:
        cbs.insert(0, TimeBudget(cfg.time_budget))
    trainer = Trainer(
        model,
        BatchIterator(train, cfg.batch_size, seed=cfg.seed, samples_per_epoch=cfg.samples_per_epoch),
        BatchIterator(val, cfg.eval_batch_size, shuffle=False),
        device=device,
        checkpoint_dir=checkpoint_dir,
        log_interval=log_interval,
        callbacks=cbs,
        max_grad_norm=cfg.max_grad_norm,
        log=log,
        precision=cfg.precision,
    )
    start = time.perf_counter()
    history = trainer.train(
        cfg.epochs,
        optimizer,
        lr_scheduler=scheduler,
        save_best=True,
        early_stopping_patience=cfg.early_stopping_patience,
        monitor=cfg.monitor,
        mode=cfg.monitor_mode,
    )
    train_seconds = time.perf_counter() - start
    best = Path(checkpoint_dir) / "best.pt" if checkpoint_dir is not None else None
    if best is not None and best.is_file():
        model.load_state_dict(load_checkpoint(best, device)["model_state"])
    start = time.perf_counter()
    test_metrics = evaluate_test(model, test, device, cfg.eval_batch_size)
    eval_seconds = time.perf_counter() - start
    return RunResult(
        history=history,
        test=test_metrics,
        best_epoch=trainer.best_epoch,
        best_checkpoint=best if best is not None and best.is_file() else None,
        stop_reason=trainer.stop_reason,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        extra={
            "model": model,
            "num_parameters": model.num_parameters(),
            "samples_seen": trainer.samples_seen,
        },
    )


def best_value(history: dict[str, list[float]], metric: str, maximize: bool) -> float:
    values = [v for v in history.get(metric, []) if not math.isnan(v)]
    if not values:
        return math.nan
    return max(values) if maximize else min(values)
