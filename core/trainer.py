"""One training loop: teacher-forced training, greedy-decoding validation, checkpoints, callbacks.

Side effects that are not training (pruning, experiment tracking) live in callbacks; the loop
only promises that when a callback raises, the checkpoints on disk are consistent. A callback
may stop training after any batch (``core.callbacks``): the partial epoch is the last one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from operator import methodcaller
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from core.callbacks import Callback, StopTraining, call_hooks
from core.checkpoint import load_weights, resume, save_checkpoint
from core.ema import WeightAverage
from core.encoding import PAD
from core.evaluation import Batch, evaluate_loader, token_loss, unsmoothed
from core.model import CollatzTransformer

__all__ = ["Callback", "StopTraining", "Trainer"]

HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_exact_match",
    "lr",
    "samples_per_sec",
    "epoch_time",
    "val_time",
)


class _Watch(NamedTuple):
    """What ``best.pt`` and early stopping follow in one ``train`` call."""

    monitor: str
    sign: float  # 1.0 when the monitored metric is minimized, -1.0 when maximized
    min_delta: float
    patience: int | None


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Trainer:
    """Trains a ``CollatzTransformer`` on (input_ids, target_ids) batches.

    ``train_loader``/``val_loader`` are any iterables of batches: a ``DataLoader`` over a
    ``CollatzDataset`` as in the guide, or the faster ``BatchIterator``.
    """

    def __init__(
        self,
        model: CollatzTransformer,
        train_loader: Iterable[Batch],
        val_loader: Iterable[Batch] | None = None,
        device: str | torch.device | None = None,
        checkpoint_dir: str | Path | None = None,
        log_interval: int = 100,
        callbacks: Sequence[Callback] = (),
        max_grad_norm: float | None = 1.0,
        log: Callable[[str], None] | None = print,
        precision: str = "fp32",
        ema_decay: float | None = None,
    ) -> None:
        self.device = _resolve_device(device)
        self.model = model.to(self.device)
        # with an average of the weights, the average is what is validated, saved and exported
        self.ema = WeightAverage(self.model, ema_decay) if ema_decay else None
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.log_interval = max(1, int(log_interval))
        self.callbacks = list(callbacks)
        self.max_grad_norm = max_grad_norm
        self.log = log or (lambda _msg: None)
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        # bf16 autocast only where it pays: on CPU it is ~180x slower than fp32 (measured).
        self.autocast = precision == "bf16" and self.device.type == "cuda"
        if precision == "bf16" and not self.autocast:
            self.log("precision bf16 ignored on CPU: training in fp32")
        self.history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
        self.epoch = 0
        self.global_step = 0
        self.samples_seen = 0
        self.elapsed_seconds = 0.0  # inside train() (training + validation), over resumes
        self._clock_start: float | None = None  # perf_counter when the current train() began
        self.best_value = math.inf
        self.best_epoch = 0
        self.stop_reason: str | None = None
        # per-row exact-match flags of the latest validation, in loader order (None before one)
        self.last_val_correct: torch.Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.lr_scheduler: Any = None
        self._check_vocab()

    def _check_vocab(self) -> None:
        for name, loader in (("train_loader", self.train_loader), ("val_loader", self.val_loader)):
            vocab = getattr(getattr(loader, "dataset", None), "vocab_size", None)
            if vocab is None:  # a Subset from random_split wraps the dataset once more
                inner = getattr(getattr(loader, "dataset", None), "dataset", None)
                vocab = getattr(inner, "vocab_size", None)
            if vocab is not None and vocab > self.model.config.vocab_size:
                raise ValueError(
                    f"{name} has vocab_size {vocab} but the model was built with "
                    f"{self.model.config.vocab_size}; pass vocab_size=dataset.vocab_size"
                )

    def _to_device(self, src: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move a batch to the device, checking its token ids first while they are on the CPU."""
        if self.device.type != "cpu" and src.device.type == "cpu":
            self.model.check_tokens(src, "src")
            self.model.check_tokens(tgt, "targets")
        return src.to(self.device, non_blocking=True), tgt.to(self.device, non_blocking=True)

    # --- one epoch -----------------------------------------------------------------------
    def _train_epoch(
        self, epoch: int, optimizer: torch.optim.Optimizer, criterion: nn.Module
    ) -> dict[str, float]:
        self.model.train()
        if hasattr(self.train_loader, "set_epoch"):
            self.train_loader.set_epoch(epoch)
        total_loss = torch.zeros((), device=self.device)
        samples = 0
        num_batches = len(self.train_loader) if hasattr(self.train_loader, "__len__") else None
        of = f"/{num_batches}" if num_batches else ""
        start = time.perf_counter()
        for batch_idx, (src, tgt) in enumerate(self.train_loader, start=1):
            src, tgt = self._to_device(src, tgt)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.model(src, CollatzTransformer.shift_right(tgt))
                loss = token_loss(logits.float(), tgt, criterion)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.max_grad_norm:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
            if getattr(self.lr_scheduler, "per_step", False):
                self.lr_scheduler.update(self.global_step, self.elapsed)
            optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            total_loss += loss.detach() * src.shape[0]
            samples += src.shape[0]
            self.global_step += 1
            if batch_idx % self.log_interval == 0:
                avg = float(total_loss) / samples
                if not math.isfinite(avg):
                    raise FloatingPointError(f"train loss is {avg} at epoch {epoch} batch {batch_idx}")
                rate = samples / (time.perf_counter() - start)
                self.log(f"epoch {epoch} batch {batch_idx}{of} loss {avg:.4f} {rate:,.0f} samples/s")
            if call_hooks(self, methodcaller("on_batch_end", self, self.global_step)):
                self.log(f"epoch {epoch} stops after batch {batch_idx}{of}: {self.stop_reason}")
                break
        elapsed = time.perf_counter() - start
        if samples == 0:
            raise ValueError("train_loader yielded no batches")
        train_loss = float(total_loss) / samples
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"train loss is {train_loss} at epoch {epoch}")
        self.samples_seen += samples
        return {
            "train_loss": train_loss,
            "samples_per_sec": samples / elapsed,
            "epoch_time": elapsed,
        }

    def evaluate(
        self,
        loader: Iterable[Batch] | None = None,
        criterion: nn.Module | None = None,
        model: nn.Module | None = None,
    ) -> dict[str, Any]:
        """Teacher-forced loss, greedy token accuracy and exact match of ``model`` (default:
        ``eval_model``) over ``loader`` (default: the validation loader); ``correct`` holds the
        per-row exact-match flags in loader order."""
        loader = self.val_loader if loader is None else loader
        if loader is None:
            raise ValueError("no validation loader to evaluate on")
        criterion = criterion or nn.CrossEntropyLoss(ignore_index=PAD)
        model = self.eval_model if model is None else model
        model.eval()
        return evaluate_loader(model, loader, criterion, self._to_device)

    @property
    def eval_model(self) -> nn.Module:
        """The weights validated, checkpointed as ``model_state`` and exported: the average, if any."""
        return self.ema.module if self.ema is not None else self.model

    # --- checkpoints ---------------------------------------------------------------------
    def checkpoint_payload(self) -> dict[str, Any]:
        payload = {
            "model_config": self.model.config.to_dict(),
            "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict() if self.optimizer else None,
            "scheduler_state": (self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "samples_seen": self.samples_seen,
            "elapsed_seconds": self.elapsed,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "history": {k: list(v) for k, v in self.history.items()},
            "rng_state": torch.get_rng_state(),
        }
        if self.ema is not None:
            payload.update(self.ema.payload(self.model))
        return payload

    def save(self, name: str, kind: str) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        path = save_checkpoint(self.checkpoint_dir / name, self.checkpoint_payload())
        for cb in self.callbacks:
            cb.on_checkpoint(self, path, kind)
        return path

    def _restore(self, path: str | Path) -> None:
        ckpt = load_weights(self.model, path, map_location=self.device)
        if self.ema is not None:
            self.ema.restore(self.model, ckpt)
        if self.optimizer is not None and ckpt.get("optimizer_state") is not None:
            self.optimizer.load_state_dict(ckpt["optimizer_state"])
        if self.lr_scheduler is not None and ckpt.get("scheduler_state") is not None:
            self.lr_scheduler.load_state_dict(ckpt["scheduler_state"])
        self.epoch = int(ckpt["epoch"])
        self.global_step = int(ckpt.get("global_step", 0))
        self.samples_seen = int(ckpt.get("samples_seen", 0))
        self.elapsed_seconds = float(ckpt.get("elapsed_seconds", 0.0))
        self.best_value = float(ckpt.get("best_value", math.inf))
        self.best_epoch = int(ckpt.get("best_epoch", 0))
        saved = ckpt.get("history", {})
        self.history = {key: list(saved.get(key, [])) for key in HISTORY_KEYS}
        if ckpt.get("rng_state") is not None:
            torch.set_rng_state(ckpt["rng_state"].cpu())
        self.log(f"resumed from {path} at epoch {self.epoch}")

    # --- the loop ------------------------------------------------------------------------
    def train(
        self,
        num_epochs: int,
        optimizer: torch.optim.Optimizer | None = None,
        criterion: nn.Module | None = None,
        lr_scheduler: Any = None,
        save_every: int | None = None,
        save_best: bool = True,
        early_stopping_patience: int | None = None,
        resume_from: str | Path | None = None,
        min_delta: float = 0.0,
        monitor: str = "val_loss",
        mode: str = "min",
    ) -> dict[str, list[float]]:
        """Train ``num_epochs`` epochs; with ``resume_from``, until epoch ``num_epochs`` of the first run.

        A further call on the same trainer (the guide's pattern) trains ``num_epochs`` more.

        Early stopping and ``best.pt`` watch ``monitor`` (``val_loss`` by default; ``mode`` "max"
        for metrics such as ``val_exact_match``): after ``early_stopping_patience`` epochs without
        an improvement of more than ``min_delta`` training ends. Checkpoints: ``last.pt`` every
        epoch, ``best.pt`` on improvement, ``epoch_XXXX.pt`` every ``save_every`` epochs.
        """
        _check_train_args(num_epochs, early_stopping_patience, monitor, mode)
        if self.val_loader is None and (save_best or early_stopping_patience):
            save_best, early_stopping_patience = False, None
        # best_value is kept as a loss: lower is better
        watch = _Watch(monitor, 1.0 if mode == "min" else -1.0, min_delta, early_stopping_patience)
        self.optimizer = optimizer or torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.lr_scheduler = lr_scheduler
        criterion = criterion or nn.CrossEntropyLoss(ignore_index=PAD)
        if resume_from is not None:
            resume(self._restore, resume_from, self.log)
        last_epoch = num_epochs if resume_from is not None else self.epoch + num_epochs
        self.stop_reason = None
        self._clock_start = time.perf_counter()
        try:
            for cb in self.callbacks:
                cb.on_train_start(self)
            self._run_epochs(last_epoch, criterion, watch, save_best, save_every)
            for cb in self.callbacks:
                cb.on_train_end(self, self.history)
        finally:
            self.elapsed_seconds, self._clock_start = self.elapsed, None
        return self.history

    def _run_epochs(
        self, last_epoch: int, criterion: nn.Module, watch: _Watch, save_best: bool, save_every: int | None
    ) -> None:
        """Epochs up to ``last_epoch``, until a callback or early stopping ends them."""
        bad_epochs = self._epochs_since_best()
        for epoch in range(self.epoch + 1, last_epoch + 1):
            metrics = self._epoch(epoch, criterion)
            improved = self._update_best(epoch, metrics, watch)
            bad_epochs = 0 if improved else bad_epochs + 1
            # Checkpoints first: whatever a callback raises, the files on disk are consistent.
            self._save_epoch(epoch, save_best and improved, save_every)
            self._log_epoch(epoch, metrics)
            if call_hooks(self, methodcaller("on_epoch_end", self, epoch, metrics)):
                return
            if watch.patience and bad_epochs >= watch.patience:
                self._stop_early(watch.monitor, bad_epochs, watch.sign)
                return

    def _update_best(self, epoch: int, metrics: dict[str, float], watch: _Watch) -> bool:
        """Whether ``epoch`` improved on the best value by more than ``min_delta`` (then recorded)."""
        score = watch.sign * metrics[watch.monitor] if watch.monitor in metrics else math.nan
        improved = score < self.best_value - watch.min_delta
        if improved:
            self.best_value, self.best_epoch = score, epoch
        return improved

    def _save_epoch(self, epoch: int, best: bool, save_every: int | None) -> None:
        self.save("last.pt", "last")
        if best:
            self.save("best.pt", "best")
        if save_every and epoch % save_every == 0:
            self.save(f"epoch_{epoch:04d}.pt", "periodic")

    def _stop_early(self, monitor: str, bad_epochs: int, sign: float) -> None:
        self.stop_reason = (
            f"early stopping: {monitor} did not improve for {bad_epochs} epochs "
            f"(best {sign * self.best_value:.4f} at epoch {self.best_epoch})"
        )
        self.log(self.stop_reason)

    def _epoch(self, epoch: int, criterion: nn.Module) -> dict[str, float]:
        """Train one epoch, validate, record: the epoch's metrics."""
        assert self.optimizer is not None
        metrics = self._train_epoch(epoch, self.optimizer, criterion)
        if self.val_loader is not None:
            started = time.perf_counter()
            val = self.evaluate(criterion=unsmoothed(criterion))
            if self.ema is not None:  # the average's gain, measured on the same inputs each epoch
                raw = self.evaluate(criterion=unsmoothed(criterion), model=self.model)
                val["raw_val_exact_match"] = raw["val_exact_match"]
            val["val_time"] = time.perf_counter() - started
            self.last_val_correct = val.pop("correct")
            metrics.update(val)
        metrics["lr"] = float(self.optimizer.param_groups[0]["lr"])
        self.epoch = epoch
        self._record(epoch, metrics)
        self._step_scheduler(metrics)
        return metrics

    @property
    def elapsed(self) -> float:
        """Seconds spent in ``train`` so far (training and validation), across resumed runs."""
        running = time.perf_counter() - self._clock_start if self._clock_start is not None else 0.0
        return self.elapsed_seconds + running

    def _epochs_since_best(self) -> int:
        return self.epoch - self.best_epoch if self.best_epoch else 0

    def _record(self, epoch: int, metrics: dict[str, float]) -> None:
        metrics["epoch"] = epoch
        for key in HISTORY_KEYS:
            self.history[key].append(float(metrics.get(key, math.nan)))

    def _step_scheduler(self, metrics: dict[str, float]) -> None:
        if self.lr_scheduler is None or getattr(self.lr_scheduler, "per_step", False):
            return
        if isinstance(self.lr_scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.lr_scheduler.step(metrics.get("val_loss", metrics["train_loss"]))
        else:
            self.lr_scheduler.step()

    def _log_epoch(self, epoch: int, m: dict[str, float]) -> None:
        parts = [f"epoch {epoch}", f"train_loss {m['train_loss']:.4f}"]
        if "val_loss" in m:
            parts += [
                f"val_loss {m['val_loss']:.4f}",
                f"val_acc {m['val_accuracy']:.4f}",
                f"val_exact {m['val_exact_match']:.4f}",
            ]
        parts += [f"lr {m['lr']:.2e}", f"{m['samples_per_sec']:,.0f} samples/s"]
        self.log(" | ".join(parts))


def _check_train_args(num_epochs: int, patience: int | None, monitor: str, mode: str) -> None:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if monitor not in HISTORY_KEYS:
        raise ValueError(f"monitor must be one of {', '.join(HISTORY_KEYS[1:])}, got {monitor!r}")
    if num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1, got {num_epochs}")
    if patience is not None and patience < 1:
        raise ValueError(f"early_stopping_patience must be >= 1, got {patience}")
