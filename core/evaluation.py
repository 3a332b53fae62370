"""Validation on batches: teacher-forced loss, greedy token accuracy and exact match.

One encoder pass per batch serves both the loss and the greedy decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from core.encoding import PAD
from core.metrics import exact_match_mask
from core.model import CollatzTransformer

__all__ = ["Batch", "evaluate_loader", "token_loss", "unsmoothed"]

Batch = tuple[torch.Tensor, torch.Tensor]


def token_loss(logits: torch.Tensor, targets: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
    """``criterion`` over every target token: ``[batch, length, vocab]`` logits flattened."""
    return criterion(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def unsmoothed(criterion: nn.Module) -> nn.Module:
    """``criterion`` without label smoothing: validation and test losses stay plain cross-entropy,
    comparable across runs whatever smoothing they trained with."""
    if isinstance(criterion, nn.CrossEntropyLoss) and criterion.label_smoothing:
        return nn.CrossEntropyLoss(ignore_index=criterion.ignore_index, reduction=criterion.reduction)
    return criterion


@torch.no_grad()
def evaluate_loader(
    model: CollatzTransformer,
    loader: Iterable[Batch],
    criterion: nn.Module,
    to_device: Callable[[torch.Tensor, torch.Tensor], Batch],
) -> dict[str, Any]:
    """``val_loss``, ``val_accuracy`` and ``val_exact_match`` of ``model`` (in eval mode) over
    ``loader``; ``correct`` holds the per-row exact-match flags in loader order."""
    loss_sum, rows, tokens, tokens_right = 0.0, 0, 0, 0
    correct: list[torch.Tensor] = []
    for src, tgt in loader:
        src, tgt = to_device(src, tgt)
        memory = model.encode(src)  # one encoder pass for the loss and the decoding
        logits = model.decode(CollatzTransformer.shift_right(tgt), *memory)
        loss_sum += float(token_loss(logits, tgt, criterion)) * src.shape[0]
        pred = model.generate(src, max_new_tokens=tgt.shape[1], memory=memory)
        width = tgt.shape[1]
        pred = nn.functional.pad(pred, (0, max(0, width - pred.shape[1])), value=PAD)[:, :width]
        mask = tgt != PAD
        tokens += int(mask.sum())
        tokens_right += int(((pred == tgt) & mask).sum())
        correct.append(exact_match_mask(pred, tgt))
        rows += src.shape[0]
    if rows == 0:
        raise ValueError("validation loader yielded no batches")
    flags = torch.cat(correct)
    return {
        "val_loss": loss_sum / rows,
        "val_accuracy": tokens_right / tokens if tokens else 0.0,
        "val_exact_match": float(flags.float().mean()),
        "correct": flags,
    }
