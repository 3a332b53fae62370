"""Token accuracy, exact match and the Collatz breakdown, on hand-built token sequences (base 10)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core import (
    EOS,
    PAD,
    classify_error,
    compute_accuracy,
    compute_collatz_metrics,
    compute_exact_match,
    error_kind,
    exact_match_mask,
    long_step,
    loop_lengths,
)

WIDTH = 6


def seq(digits: str, width: int = WIDTH, eos: bool = True) -> list[int]:
    """Tokens of a base-10 digit string, then EOS, PAD-padded: seq('105') == [4, 3, 8, 2, 0, 0]."""
    tokens = [3 + int(c) for c in digits] + ([EOS] if eos else [])
    return tokens + [PAD] * (width - len(tokens))


def rows(*seqs: list[int]) -> torch.Tensor:
    return torch.tensor(seqs)


def test_seq_helper() -> None:
    assert seq("105") == [4, 3, 8, EOS, PAD, PAD]


def test_accuracy_ignores_pad() -> None:
    target = rows(seq("12"))  # 3 real tokens: 1, 2, EOS
    assert compute_accuracy(rows(seq("12")), target) == 1.0
    assert compute_accuracy(rows([4, 5, EOS, 9, 9, 9]), target) == 1.0  # junk under PAD is ignored
    assert compute_accuracy(rows(seq("13")), target) == pytest.approx(2 / 3)
    assert compute_accuracy(rows(seq("")), target) == 0.0  # EOS at position 0 matches nothing
    two = rows(seq("12"), seq("345"))  # 3 + 4 tokens
    assert compute_accuracy(rows(seq("12"), seq("349")), two) == pytest.approx(6 / 7)


def test_accuracy_aligns_prediction_widths() -> None:
    target = rows(seq("105"))
    assert compute_accuracy(torch.tensor([[4, 3, 8, EOS]]), target) == 1.0
    assert compute_accuracy(torch.tensor([[4, 3]]), target) == pytest.approx(2 / 4)
    assert compute_accuracy(torch.tensor([seq("105", width=20)]), target) == 1.0


def test_exact_match_compares_tokens_up_to_eos() -> None:
    target = rows(seq("105"))
    assert compute_exact_match(rows(seq("105")), target) == 1.0
    assert compute_exact_match(rows(seq("15")), target) == 0.0  # zero digits matter
    assert compute_exact_match(rows(seq("1050")), target) == 0.0  # longer number
    assert compute_exact_match(rows(seq("10")), target) == 0.0  # prefix
    assert compute_exact_match(rows(seq("105", eos=False)), target) == 0.0  # no EOS
    assert compute_exact_match(rows([4, 3, 8, EOS, 7, 7]), target) == 1.0  # after EOS is ignored
    assert compute_exact_match(rows(seq("100")), rows(seq("1"))) == 0.0
    assert compute_exact_match(rows(seq("115")), target) == 0.0  # differs only at the zero digit
    assert compute_exact_match(rows(seq("111")), rows(seq("100"))) == 0.0
    assert compute_accuracy(rows(seq("115")), target) == pytest.approx(3 / 4)  # zeros count as tokens
    assert compute_exact_match(rows(seq("1")), rows(seq("100"))) == 0.0


def test_exact_match_per_row() -> None:
    targets = rows(seq("105"), seq("15"), seq("7"), seq("100"))
    preds = rows(seq("105"), seq("105"), seq("7"), seq("10"))
    assert exact_match_mask(preds, targets).tolist() == [True, False, True, False]
    assert compute_exact_match(preds, targets) == 0.5


def test_logits_are_accepted() -> None:
    targets = rows(seq("105"), seq("15"))
    logits = torch.nn.functional.one_hot(rows(seq("105"), seq("105")), 13).float()
    assert compute_exact_match(logits, targets) == 0.5


def test_mismatched_batch_sizes_raise() -> None:
    with pytest.raises(ValueError):
        compute_exact_match(rows(seq("1")), rows(seq("1"), seq("2")))


@pytest.mark.parametrize(
    ("n", "prediction", "kind"),
    [
        (27, 62, "wrong_k_prime"),  # κ·2 = a: no halving at all
        (3, 4, "wrong_k_prime"),  # a = 8, κ = 1: κ·4, one halving instead of three
        (3, 8, "wrong_k_prime"),  # κ·8 = a
        (7, 6, "wrong_k_prime"),  # κ = 13: one halving too many, ⌊13/2⌋
        (7, 3, "wrong_k_prime"),  # ⌊13/4⌋
        (7, 11, "wrong_k"),  # one (3x+1)/2 step instead of three: 3·4 − 1
        (7, 17, "wrong_k"),  # two steps: 9·2 − 1
        (27, 1000, "other"),
        (97, 50, "other"),
        (97, 1000, "other"),
        (97, 0, "other"),
        (2**61 - 1, 3**61 - 1, "wrong_k_prime"),
        (2**61 - 1, 3**60 * 2 - 1, "wrong_k"),
    ],
)
def test_classify_error(n: int, prediction: int, kind: str) -> None:
    assert prediction != long_step(n)
    assert classify_error(n, prediction) == kind


@given(st.integers(0, 2**80).map(lambda x: 2 * x + 1))
def test_classify_error_taxonomy_property(n: int) -> None:
    kappa = long_step(n)
    k, k_prime = loop_lengths(n)
    for i in range(1, k_prime + 1):  # too few halvings: κ·2^i, up to a = κ·2^k′ itself
        assert classify_error(n, kappa << i) == "wrong_k_prime", i
    for j in (1, 2):  # too many halvings: ⌊κ/2^j⌋
        if kappa >> j:
            assert classify_error(n, kappa >> j) == "wrong_k_prime", j
    for k2 in range(1, k):  # stopping the (3x+1)/2 loop after k2 < k steps
        x = 3**k2 * ((n + 1) >> k2) - 1
        assert classify_error(n, x) in ("wrong_k", "wrong_k_prime"), k2


def test_classify_error_refuses_a_right_prediction() -> None:
    with pytest.raises(ValueError):
        classify_error(27, 31)


def test_error_kind_adds_undecodable_to_classify_error() -> None:
    """One classifier: a decoded answer is classified as classify_error does; no integer is
    undecodable; a row marked wrong whose integer is κ(n) anyway counts as other."""
    assert error_kind(27, None) == "undecodable"
    assert error_kind(27, 62) == classify_error(27, 62) == "wrong_k_prime"  # 2·κ(27)
    assert error_kind(7, 11) == "wrong_k" and error_kind(97, 1000) == "other"
    assert error_kind(27, 31) == "other"


def test_collatz_metrics_on_hand_built_predictions() -> None:
    # n: (k, k′), κ
    #  1: (1, 1), 1   right
    #  9: (1, 1), 7   right
    # 27: (2, 1), 31  predicted 62 = κ·2            -> wrong_k_prime
    #  7: (3, 1), 13  predicted 11 = 3·4 − 1 (k=1)   -> wrong_k
    #  3: (2, 3), 1   predicted 4 = 8/2 = κ·4       -> wrong_k_prime
    # 97: (1, 1), 73  predicted 50                  -> other
    # 13: (1, 2), 5   predicted PAD inside digits   -> undecodable
    inputs = [1, 9, 27, 7, 3, 97, 13]
    assert [loop_lengths(n) for n in inputs] == [(1, 1), (1, 1), (2, 1), (3, 1), (2, 3), (1, 1), (1, 2)]
    targets = rows(*(seq(str(long_step(n))) for n in inputs))
    preds = rows(seq("1"), seq("7"), seq("62"), seq("11"), seq("4"), seq("50"), [4, PAD, 8, EOS, PAD, PAD])

    m = compute_collatz_metrics(preds, targets, inputs, base=10)
    assert m["num_samples"] == 7
    assert m["exact_match"] == pytest.approx(2 / 7)
    assert m["num_errors"] == 5
    assert m["undecodable_rate"] == pytest.approx(1 / 7)
    assert m["wrong_k_prime_share"] == pytest.approx(2 / 5)
    assert m["wrong_k_share"] == pytest.approx(1 / 5)
    assert m["wrong_loop_length_share"] == pytest.approx(3 / 5)
    assert m["other_error_share"] == pytest.approx(1 / 5)
    assert m["undecodable_share"] == pytest.approx(1 / 5)
    assert m["token_accuracy"] == pytest.approx(compute_accuracy(preds, targets))

    assert m["by_k"] == {
        1: {"count": 4, "exact_match": 0.5},
        2: {"count": 2, "exact_match": 0.0},
        3: {"count": 1, "exact_match": 0.0},
    }
    assert m["by_k_prime"] == {
        1: {"count": 5, "exact_match": pytest.approx(2 / 5)},
        2: {"count": 1, "exact_match": 0.0},
        3: {"count": 1, "exact_match": 0.0},
    }
    assert m["by_class"] == {
        (1, 1): {"count": 3, "exact_match": pytest.approx(2 / 3)},
        (1, 2): {"count": 1, "exact_match": 0.0},
        (2, 1): {"count": 1, "exact_match": 0.0},
        (2, 3): {"count": 1, "exact_match": 0.0},
        (3, 1): {"count": 1, "exact_match": 0.0},
    }


def test_collatz_metrics_all_right() -> None:
    inputs = [27, 97, 7]
    targets = rows(*(seq(str(long_step(n))) for n in inputs))
    m = compute_collatz_metrics(targets.clone(), targets, inputs, base=10)
    assert m["exact_match"] == 1.0
    assert m["num_errors"] == 0
    assert m["undecodable_rate"] == 0.0
    assert m["wrong_loop_length_share"] == 0.0
    assert m["by_class"][(2, 1)] == {"count": 1, "exact_match": 1.0}


def test_collatz_metrics_checks_its_inputs() -> None:
    targets = rows(seq("31"))
    with pytest.raises(ValueError):
        compute_collatz_metrics(targets, targets, [27, 9], base=10)
    with pytest.raises(ValueError, match="28"):
        compute_collatz_metrics(targets, targets, [28], base=10)
