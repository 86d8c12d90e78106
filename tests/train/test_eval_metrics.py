"""The classifier's evaluation metrics (top-1, top-5, loss, ECE) against values worked out by hand, and against a
second computation that shares nothing with the code under test (ranks by counting, log-sum-exp with math.fsum).

supcon.robust.metrics (softmax, topk_accuracy) is numpy only; supcon.train.evaluate.classifier_metrics combines
them with its cross-entropy and ECE.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from supcon.robust import metrics

# Logits are logs of positive integers, so the softmax is count / row sum exactly and the cross-entropy of a row
# is log(row sum / count of the label). Seven classes, so that top-5 can miss. The label's rank (1 = largest):
COUNTS = [
    [8, 1, 2, 3, 4, 5, 6],  # label 0, count 8 of 29: rank 1
    [1, 2, 3, 4, 5, 6, 9],  # label 4, count 5 of 30: rank 3 (after 9, 6)
    [6, 5, 4, 3, 2, 1, 7],  # label 3, count 3 of 28: rank 5 (after 7, 6, 5, 4)
    [2, 12, 1, 3, 4, 5, 6],  # label 0, count 2 of 33: rank 6 (after 12, 6, 5, 4, 3)
]
LABELS = np.array([0, 4, 3, 0])
LOGITS = np.log(np.array(COUNTS, np.float64))
TOP_K = {1: 1 / 4, 2: 1 / 4, 3: 2 / 4, 4: 2 / 4, 5: 3 / 4, 6: 4 / 4, 7: 4 / 4}  # ranks 1, 3, 5, 6
# -mean log p(label) = mean log(sum / count)
CROSS_ENTROPY = (math.log(29 / 8) + math.log(30 / 5) + math.log(28 / 3) + math.log(33 / 2)) / 4
# ECE, 15 bins of width 1/15 (upper edge inclusive). Confidences (largest count / sum) and correctness:
#   8/29 = 0.276 correct, 9/30 = 0.300 wrong -> bin (4/15, 5/15]: accuracy 1/2, confidence (8/29 + 9/30) / 2
#   7/28 = 0.250 wrong                       -> bin (3/15, 4/15]: accuracy 0,   confidence 7/28
#   12/33 = 0.364 wrong                      -> bin (5/15, 6/15]: accuracy 0,   confidence 12/33
ECE = float(
    Fraction(2, 4) * abs(Fraction(1, 2) - (Fraction(8, 29) + Fraction(9, 30)) / 2)
    + Fraction(1, 4) * Fraction(7, 28)
    + Fraction(1, 4) * Fraction(12, 33)
)


def test_softmax_of_log_counts_is_the_count_fractions():
    expected = np.array(COUNTS, np.float64) / np.array(COUNTS).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(metrics.softmax(LOGITS), expected, rtol=1e-12)
    # a shift by 1000 overflows a naive exp(); the probabilities do not move
    np.testing.assert_allclose(metrics.softmax(LOGITS + 1000.0), expected, rtol=1e-12)


@pytest.mark.parametrize("k", sorted(TOP_K))
def test_topk_accuracy_hand_computed(k):
    assert metrics.topk_accuracy(LOGITS, LABELS, k) == TOP_K[k]
    assert metrics.topk_accuracy(np.float32(LOGITS), LABELS, k) == TOP_K[k]


def test_topk_accuracy_with_k_above_the_classes_counts_every_row():
    assert metrics.topk_accuracy(LOGITS, LABELS, 10) == 1.0


def test_classifier_metrics_hand_computed():
    from supcon.train import evaluate

    got = evaluate.classifier_metrics({"logits": LOGITS.astype(np.float32), "label": LABELS})
    assert got["eval/top1"] == 0.25 and got["eval/top5"] == 0.75 and got["eval/examples"] == 4
    assert got["eval/loss"] == pytest.approx(CROSS_ENTROPY, rel=1e-6)  # float32 logits
    assert got["eval/ece"] == pytest.approx(ECE, rel=1e-6)


def _rank_of_label(row, label):
    """1 + the number of classes scoring strictly higher than the label (no ties in these data)."""
    return 1 + sum(1 for value in row if value > row[label])


def _cross_entropy_fsum(logits, labels):
    """Mean of logsumexp(row) - row[label], the log-sum-exp shifted by the row maximum and summed with fsum."""
    total = []
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        top = max(row)
        total.append(top + math.log(math.fsum(math.exp(v - top) for v in row)) - row[label])
    return math.fsum(total) / len(total)


def test_classifier_metrics_match_an_independent_computation_on_random_logits():
    from supcon.train import evaluate

    rng = np.random.default_rng(20)
    logits = rng.normal(scale=3.0, size=(64, 10))  # continuous: no ties
    labels = rng.integers(0, 10, size=64)
    got = evaluate.classifier_metrics({"logits": logits, "label": labels})
    ranks = [_rank_of_label(row, label) for row, label in zip(logits.tolist(), labels.tolist(), strict=True)]
    assert got["eval/top1"] == sum(r <= 1 for r in ranks) / 64
    assert got["eval/top5"] == sum(r <= 5 for r in ranks) / 64
    for k in (2, 3, 10):
        assert metrics.topk_accuracy(logits, labels, k) == sum(r <= k for r in ranks) / 64
    assert got["eval/loss"] == pytest.approx(_cross_entropy_fsum(logits, labels), rel=1e-12)
