"""Metrics on token sequences: token accuracy, exact match, and Collatz-specific breakdowns.

Sequences are compared as tokens up to EOS (never with digits stripped): "105" ≠ "15".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from core.collatz import check_odd_positive, long_step, loop_lengths
from core.encoding import PAD, MultiBaseEncoder

__all__ = [
    "ERROR_KINDS",
    "classify_error",
    "compute_accuracy",
    "compute_collatz_metrics",
    "compute_exact_match",
    "error_kind",
    "error_kinds",
    "exact_match_mask",
]


def _as_tensor(x: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() == 3:  # logits given: take the argmax token
        t = t.argmax(-1)
    if t.dim() != 2:
        raise ValueError(f"expected [batch, length] token ids, got shape {tuple(t.shape)}")
    return t.long().cpu()


def _aligned(predictions: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad or cut predictions to the targets' length (extra predicted tokens past it are PAD)."""
    pred, tgt = _as_tensor(predictions), _as_tensor(targets)
    if pred.shape[0] != tgt.shape[0]:
        raise ValueError(f"{pred.shape[0]} predictions but {tgt.shape[0]} targets")
    width = tgt.shape[1]
    if pred.shape[1] < width:
        pred = torch.nn.functional.pad(pred, (0, width - pred.shape[1]), value=PAD)
    return pred[:, :width], tgt


def compute_accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of target tokens (digits and EOS, PAD ignored) predicted right at their position."""
    pred, tgt = _aligned(predictions, targets)
    mask = tgt != PAD
    total = int(mask.sum())
    return float(((pred == tgt) & mask).sum()) / total if total else 0.0


def exact_match_mask(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per row: the prediction spells the target's digits and then EOS (tokens after it ignored).

    Targets are canonical (digits, EOS, PAD...), so this is "decodes to the same integer".
    A prediction longer than the target is wrong: the target's EOS is not matched.
    """
    pred, tgt = _aligned(predictions, targets)
    mask = tgt != PAD
    return ((pred == tgt) | ~mask).all(dim=1)


def compute_exact_match(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of rows whose whole sequence up to EOS is right."""
    match = exact_match_mask(predictions, targets)
    return float(match.float().mean()) if match.numel() else 0.0


def classify_error(n: int, prediction: int, max_extra_k: int = 2, slack: int = 1) -> str:
    """Why ``prediction`` is not κ(n): 'wrong_k_prime', 'wrong_k' or 'other'.

    Applied to n, the long step of class (k₂, k′₂) is (3^k₂·(n+1) − 2^k₂) / 2^(k₂+k′₂); for the
    true class it is exactly κ(n). A prediction within ``slack`` of this value for another class
    is right arithmetic with a wrong loop length: 'wrong_k_prime' when only k′ differs (κ·2^j,
    or κ/2^j), 'wrong_k' when k differs. The slack of 1 admits the rounding that a model which
    only ever writes odd numbers must make (κ·2 is even; κ/2 is not an integer). k₂ is tried
    up to k + ``max_extra_k``; each k₂ leaves at most three candidate k′₂ (by magnitude), so a
    random wrong number almost never matches.
    """
    kappa = long_step(n)
    if prediction == kappa:
        raise ValueError(f"prediction {prediction} is κ({n}): not an error")
    if prediction <= 0:
        return "other"
    k, k_prime = loop_lengths(n)
    for k2 in (k, *range(1, k), *range(k + 1, k + max_extra_k + 1)):  # true k first: κ·2^j, κ/2^j
        numerator = 3**k2 * (n + 1) - 2**k2
        guess = numerator.bit_length() - prediction.bit_length()
        for shift in (guess, guess - 1, guess + 1):
            if shift < k2 or (k2 == k and shift == k + k_prime):
                continue
            # |prediction − numerator / 2^shift| <= slack, in exact integer arithmetic
            if abs((prediction << shift) - numerator) <= slack << shift:
                return "wrong_k_prime" if k2 == k else "wrong_k"
    return "other"


def _rate_table(keys: list[Any], correct: list[bool]) -> dict[Any, dict[str, float]]:
    counts: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for key, ok in zip(keys, correct, strict=True):
        counts[key][0] += 1
        counts[key][1] += int(ok)
    return {key: {"count": n, "exact_match": hits / n} for key, (n, hits) in sorted(counts.items())}


#: The kinds of a wrong answer, in the order reports show them (see ``error_kind``).
ERROR_KINDS = ("wrong_k_prime", "wrong_k", "other", "undecodable")


def error_kind(n: int, decoded: int | None) -> str:
    """Why a wrong answer for ``n`` is wrong: ``decoded`` is the predicted integer, None when the
    output did not decode; one of ``ERROR_KINDS``. The single classifier behind every taxonomy
    (the training metrics here and the study report's per-class table)."""
    if decoded is None:
        return "undecodable"
    if decoded == long_step(n):  # right integer, but the row was marked wrong: count as other
        return "other"
    return classify_error(n, decoded)


def error_kinds(values: list[int], correct: list[bool], decoded: list[int | None]) -> dict[str, int]:
    """How many wrong rows are of each of ``ERROR_KINDS`` (right rows are skipped)."""
    kinds = dict.fromkeys(ERROR_KINDS, 0)
    for n, ok, p in zip(values, correct, decoded, strict=True):
        if not ok:
            kinds[error_kind(n, p)] += 1
    return kinds


def compute_collatz_metrics(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    input_values: Sequence[int] | np.ndarray,
    base: int,
) -> dict[str, Any]:
    """Exact match overall and by k, k′ and (k, k′) class, undecodable share and error taxonomy.

    ``input_values[i]`` is the odd n of row i: it gives the row's class and the reference for
    classifying a wrong prediction. Rates of the taxonomy are shares of the wrong rows.
    """
    pred, tgt = _aligned(predictions, targets)
    values = [check_odd_positive(v) for v in np.asarray(input_values, dtype=object).tolist()]
    if len(values) != pred.shape[0]:
        raise ValueError(f"{len(values)} input values but {pred.shape[0]} predictions")
    encoder = MultiBaseEncoder(base)
    correct = exact_match_mask(pred, tgt).tolist()
    decoded = encoder.decode_batch(pred)
    classes = [loop_lengths(v) for v in values]

    kinds = error_kinds(values, correct, decoded)
    total = len(values)
    errors = total - sum(correct)

    def share(x: int) -> float:
        return x / errors if errors else 0.0

    return {
        "num_samples": total,
        "exact_match": sum(correct) / total if total else 0.0,
        "token_accuracy": compute_accuracy(pred, tgt),
        "undecodable_rate": kinds["undecodable"] / total if total else 0.0,
        "num_errors": errors,
        "wrong_loop_length_share": share(kinds["wrong_k_prime"] + kinds["wrong_k"]),
        "wrong_k_prime_share": share(kinds["wrong_k_prime"]),
        "wrong_k_share": share(kinds["wrong_k"]),
        "other_error_share": share(kinds["other"]),
        "undecodable_share": share(kinds["undecodable"]),
        "by_k": _rate_table([c[0] for c in classes], correct),
        "by_k_prime": _rate_table([c[1] for c in classes], correct),
        "by_class": _rate_table(classes, correct),
    }
