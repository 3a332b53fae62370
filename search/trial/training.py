"""One training run from one frozen config: data, model, optimizer, training, held-out test.

Both `collatz-hpo train` and every study trial go through `execute`; callbacks (pruning,
tracking) are passed in, so this module knows nothing of Optuna or MLflow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from core import (
    PAD,
    BatchIterator,
    Callback,
    CollatzDataset,
    CollatzTransformer,
    StepSchedule,
    StopTraining,
    Trainer,
    class_balance_weights,
    compute_collatz_metrics,
    load_checkpoint,
    load_weights,
    make_splits,
    split_values,
)
from search.errors import CollatzHpoError
from search.spec.runconfig import RunConfig
from search.tracking.names import class_key

__all__ = [
    "InitFromError",
    "RunResult",
    "Splits",
    "build_data",
    "build_model",
    "build_test_set",
    "evaluate_test",
    "execute",
    "resolve_device",
]


class Splits(NamedTuple):
    """A run's three datasets, disjoint by value (``build_data``)."""

    train: CollatzDataset
    val: CollatzDataset
    test: CollatzDataset


@dataclass
class RunResult:
    """What one run did and measured: per-epoch history and the held-out test metrics."""

    history: dict[str, list[float]]
    test: dict[str, Any]  # compute_collatz_metrics of the best checkpoint, plus "predictions"
    best_epoch: int
    best_checkpoint: Path | None
    stop_reason: str | None
    train_seconds: float
    eval_seconds: float
    num_parameters: int
    samples_seen: int

    def summary(self, min_class_count: int = 20) -> dict[str, Any]:
        """The JSON-able summary ``collatz-hpo train`` prints: test figures and where they came from."""
        test = self.test
        return {
            "test_exact_match": test["exact_match"],
            "test_token_accuracy": test["token_accuracy"],
            "test_size": test["num_samples"],
            "best_epoch": self.best_epoch,
            "train_seconds": round(self.train_seconds, 1),
            "samples_seen": self.samples_seen,
            "num_parameters": self.num_parameters,
            "stop_reason": self.stop_reason,
            "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            "exact_match_by_class": {
                class_key(k, kp): round(v["exact_match"], 4)
                for (k, kp), v in test["by_class"].items()
                if v["count"] >= min_class_count
            },
            "wrong_loop_length_share_of_errors": test["wrong_loop_length_share"],
        }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA GPU")
    return torch.device(name)


def build_data(cfg: RunConfig) -> Splits:
    """Train/val/test splits, disjoint by value; the same values for every base and trial."""
    train, val, test = make_splits(cfg.data_range, cfg.split_sizes, cfg.base, seed=cfg.data_seed)
    return Splits(train, val, test)


def build_test_set(cfg: RunConfig) -> CollatzDataset:
    """The test split of ``build_data`` alone: same values, no κ or tokens for the others."""
    test_values = split_values(cfg.data_range, cfg.split_sizes, cfg.data_seed)[-1]
    # max_length derived from the range, as make_splits derives it for all three splits
    return CollatzDataset.from_values(test_values, cfg.data_range, cfg.base)


def build_model(cfg: RunConfig, dataset: CollatzDataset) -> CollatzTransformer:
    return CollatzTransformer.from_config(cfg.model_config(dataset.vocab_size, dataset.max_length))


def build_batches(cfg: RunConfig, train: CollatzDataset) -> BatchIterator:
    """Training batches: shuffled passes, or class-balanced draws when ``cfg.balance`` > 0."""
    weights = class_balance_weights(train.k, train.k_prime, cfg.balance) if cfg.balance > 0 else None
    return BatchIterator(
        train, cfg.batch_size, seed=cfg.seed, samples_per_epoch=cfg.samples_per_epoch, weights=weights
    )


def build_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def build_scheduler(cfg: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    """Per epoch (plateau, cosine) or per step (warmup_*: planned over the run's steps and time budget)."""
    shape = cfg.schedule_shape()
    if shape is not None:
        return StepSchedule(optimizer, shape, cfg.epochs * steps_per_epoch, cfg.time_budget)
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=1)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}")


class InitFromError(CollatzHpoError, ValueError):
    """``init_from`` names no readable checkpoint of this run's model (raised before training)."""


def init_weights(model: CollatzTransformer, cfg: RunConfig) -> None:
    """Start ``model`` from the weights of the local checkpoint ``cfg.init_from``."""
    assert cfg.init_from is not None
    if cfg.init_in_store:
        raise InitFromError(f"init_from {cfg.init_from}: fetch it from the store first (fetch_init)")
    try:
        load_weights(model, cfg.init_from)
    except ValueError as exc:  # CheckpointError (unreadable) or another model's checkpoint
        raise InitFromError(f"init_from: {exc}") from exc


def validation_lead(trainer: Trainer) -> float:
    """Seconds to keep in hand for validating a partial epoch: the last validation's (0 before one)."""
    times = trainer.history["val_time"]
    return times[-1] if times and math.isfinite(times[-1]) else 0.0


class TimeBudget(Callback):
    """Ends training normally so that it fits in ``seconds``, its last validation included:
    checked after every batch, and after every epoch (another epoch could not validate in
    time), with the last validation's time kept in hand; a resumed run counts the time of the
    runs before it. Per epoch alone, a long epoch overran the budget by up to an epoch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_batch_end(self, trainer: Trainer, step: int) -> None:
        self._check(trainer)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._check(trainer)

    def _check(self, trainer: Trainer) -> None:
        if trainer.elapsed + validation_lead(trainer) >= self.seconds:
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
    data: Splits | None = None,
    resume_from: str | Path | None = None,
) -> RunResult:
    """Train one model as ``cfg`` says and evaluate its best checkpoint on the test set; with
    ``resume_from`` (a checkpoint of this very run, or a folder of them), go on from it."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    train, val, test = data or build_data(cfg)
    model = build_model(cfg, train)
    if cfg.init_from is not None:
        init_weights(model, cfg)
    optimizer = build_optimizer(cfg, model)
    batches = build_batches(cfg, train)
    scheduler = build_scheduler(cfg, optimizer, len(batches))
    cbs = [TimeBudget(cfg.time_budget), *callbacks] if cfg.time_budget else list(callbacks)
    trainer = Trainer(
        model,
        batches,
        BatchIterator(val, cfg.eval_batch_size, shuffle=False),
        **_trainer_options(cfg, device, checkpoint_dir, cbs, log, log_interval),
    )
    start = time.perf_counter()
    history = _fit(cfg, trainer, optimizer, scheduler, resume_from)
    train_seconds = time.perf_counter() - start
    best = Path(checkpoint_dir) / "best.pt" if checkpoint_dir is not None else None
    model = trainer.eval_model  # the average of the weights, when there is one
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
        num_parameters=model.num_parameters(),
        samples_seen=trainer.samples_seen,
    )


def _fit(
    cfg: RunConfig,
    trainer: Trainer,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    resume_from: str | Path | None = None,
) -> dict[str, list[float]]:
    """``trainer.train`` for ``cfg``'s epochs, keeping the best checkpoint, with its early stopping."""
    return trainer.train(
        cfg.epochs,
        optimizer,
        criterion=torch.nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=cfg.label_smoothing),
        lr_scheduler=scheduler,
        save_best=True,
        early_stopping_patience=cfg.early_stopping_patience,
        resume_from=resume_from,
        monitor=cfg.monitor,
        mode=cfg.monitor_mode,
    )


def _trainer_options(
    cfg: RunConfig,
    device: torch.device,
    checkpoint_dir: str | Path | None,
    callbacks: list[Callback],
    log: Callable[[str], None] | None,
    log_interval: int,
) -> dict[str, Any]:
    return {
        "device": device,
        "checkpoint_dir": checkpoint_dir,
        "log_interval": log_interval,
        "callbacks": callbacks,
        "max_grad_norm": cfg.max_grad_norm,
        "log": log,
        "precision": cfg.precision,
        "ema_decay": cfg.ema_decay or None,
    }
