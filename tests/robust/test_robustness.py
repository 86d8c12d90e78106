"""Robustness metrics: ECE and reliability diagrams against hand-computed cases, mCE and relative mCE against a
hand-computed table, input checks, and no TensorFlow import."""

import os
import subprocess
import sys

import numpy as np
import pytest

from supcon.robust import metrics as robustness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ECE, 5 bins (0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1]:
#   bin 0: conf .1 wrong            -> |0 - .1| = .1,    1 example
#   bin 1: conf .25 right, .4 wrong -> |.5 - .325| = .175, 2 (.4 sits on an upper edge: bin 1, not 2)
#   bin 2: conf .55 right           -> |1 - .55| = .45,  1
#   bin 3: empty
#   bin 4: conf .9 right, .95 wrong -> |.5 - .925| = .425, 2
#   ECE = (.1 + 2 * .175 + .45 + 2 * .425) / 6 = 1.75 / 6
CONFIDENCES = [0.1, 0.25, 0.4, 0.55, 0.9, 0.95]
CORRECT = [False, True, False, True, True, False]


def test_ece_hand_computed_five_bins():
    labels = np.zeros(6, int)
    predictions = np.where(CORRECT, 0, 1)
    ece = robustness.expected_calibration_error(CONFIDENCES, predictions, labels, num_bins=5)
    assert ece == pytest.approx(1.75 / 6, abs=1e-12)
    diagram = robustness.reliability_diagram(CONFIDENCES, predictions, labels, num_bins=5)
    np.testing.assert_array_equal(diagram.counts, [1, 2, 1, 0, 2])
    np.testing.assert_allclose(diagram.accuracy, [0, 0.5, 1, np.nan, 0.5])
    np.testing.assert_allclose(diagram.confidence, [0.1, 0.325, 0.55, np.nan, 0.925])
    np.testing.assert_allclose(diagram.bin_edges, [0, 0.2, 0.4, 0.6, 0.8, 1])
    assert diagram.ece == pytest.approx(ece)


def test_ece_from_probabilities_fifteen_bins():
    # confidences .7 (right), .5 (wrong: predicts 0, label 1), .85 (right), .34 (wrong: predicts 0) fall into
    # four different 1/15-wide bins (10, 7, 12, 5), so ECE = mean |correct - confidence|.
    probabilities = [[0.7, 0.2, 0.1], [0.5, 0.45, 0.05], [0.1, 0.05, 0.85], [0.34, 0.33, 0.33]]
    labels = [0, 1, 2, 1]
    expected = (0.3 + 0.5 + 0.15 + 0.34) / 4
    assert robustness.expected_calibration_error(probabilities, None, labels) == pytest.approx(
        expected
    )
    diagram = robustness.reliability_diagram(probabilities, None, labels)
    assert len(diagram.counts) == 15 and np.flatnonzero(diagram.counts).tolist() == [5, 7, 10, 12]


def test_ece_matches_a_direct_loop_on_random_data():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 10, 500)
    confidences, correct = probabilities.max(1), probabilities.argmax(1) == labels
    edges = np.linspace(0, 1, 16)
    expected = 0.0
    for lower, upper in zip(edges[:-1], edges[1:], strict=True):  # Guo et al.'s (lower, upper] bins
        inside = (confidences > lower) & (confidences <= upper)
        if inside.any():
            expected += inside.mean() * abs(correct[inside].mean() - confidences[inside].mean())
    assert robustness.expected_calibration_error(probabilities, None, labels) == pytest.approx(
        expected
    )


def test_ece_perfect_calibration_and_overconfidence():
    # 10 predictions at confidence .8, 8 right: calibrated. All right at .6: ECE .4.
    labels = np.zeros(10, int)
    assert robustness.expected_calibration_error(
        [0.8] * 10, [0] * 8 + [1] * 2, labels
    ) == pytest.approx(0)
    assert robustness.expected_calibration_error([0.6] * 10, [0] * 10, labels) == pytest.approx(0.4)


@pytest.mark.parametrize(
    "args, match",
    [
        (([0.5, 0.7], None, [0, 1]), "predictions are required"),
        (([[[0.5]]], None, [0]), r"\[N, K\] or \[N\]"),
        (([0.5, 1.2], [0, 0], [0, 0]), r"in \[0, 1\]"),
        (([0.5, 0.7], [0], [0, 0]), "shape"),
        (([], [], []), "N > 0"),
    ],
)
def test_ece_rejects_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        robustness.expected_calibration_error(*args)


def test_ece_rejects_bad_bin_count():
    with pytest.raises(ValueError, match="num_bins"):
        robustness.expected_calibration_error([0.5], [0], [0], num_bins=0)


# mCE by hand. Model errors summed over 5 severities: noise 2.0, blur 1.0; baseline: noise 3.0, blur 2.0.
#   CE: noise 2/3 -> 66.67, blur 1/2 -> 50; mCE = 58.33.
# Relative, clean errors .1 (model) and .2 (baseline):
#   noise (2.0 - 5 * .1) / (3.0 - 5 * .2) = 1.5 / 2 -> 75; blur (1.0 - .5) / (2.0 - 1.0) -> 50; mean 62.5.
ERRORS = {
    "noise": {1: 0.2, 2: 0.3, 3: 0.4, 4: 0.5, 5: 0.6},
    "blur": {1: 0.1, 2: 0.1, 3: 0.2, 4: 0.2, 5: 0.4},
}
BASELINE = {
    "noise": {1: 0.4, 2: 0.5, 3: 0.6, 4: 0.7, 5: 0.8},
    "blur": {1: 0.3, 2: 0.3, 3: 0.4, 4: 0.5, 5: 0.5},
}


def test_mce_hand_computed():
    per = robustness.corruption_errors(ERRORS, BASELINE)
    assert per == pytest.approx({"noise": 200 / 3, "blur": 50.0})
    assert robustness.mean_corruption_error(ERRORS, BASELINE) == pytest.approx((200 / 3 + 50) / 2)


def test_relative_mce_hand_computed():
    per = robustness.relative_corruption_errors(ERRORS, 0.1, BASELINE, 0.2)
    assert per == pytest.approx({"noise": 75.0, "blur": 50.0})
    assert robustness.relative_mean_corruption_error(ERRORS, 0.1, BASELINE, 0.2) == pytest.approx(
        62.5
    )


def test_mce_units_json_keys_and_mean_baselines_agree():
    percent = {c: {str(s): 100 * e for s, e in table.items()} for c, table in ERRORS.items()}
    percent_base = {c: {str(s): 100 * e for s, e in table.items()} for c, table in BASELINE.items()}
    expected = robustness.mean_corruption_error(ERRORS, BASELINE)
    assert robustness.mean_corruption_error(percent, percent_base) == pytest.approx(expected)
    means = {c: np.mean(list(table.values())) for c, table in BASELINE.items()}
    assert robustness.mean_corruption_error(ERRORS, means) == pytest.approx(expected)
    assert robustness.relative_mean_corruption_error(ERRORS, 0.1, means, 0.2) == pytest.approx(62.5)


def test_baseline_scores_100_against_itself():
    alexnet = robustness.ALEXNET_IMAGENET_C_ERRORS
    assert len(alexnet) == 15
    assert robustness.mean_corruption_error(alexnet, alexnet) == pytest.approx(100)
    clean = robustness.ALEXNET_CLEAN_ERROR
    assert robustness.relative_mean_corruption_error(
        alexnet, clean, alexnet, clean
    ) == pytest.approx(100)


def test_mce_rejects_mismatched_tables():
    with pytest.raises(ValueError, match="lack corruptions"):
        robustness.mean_corruption_error(ERRORS, {"noise": BASELINE["noise"]})
    with pytest.raises(ValueError, match="severities differ"):
        robustness.mean_corruption_error(ERRORS, {**BASELINE, "blur": {1: 0.3, 2: 0.3}})
    with pytest.raises(ValueError, match="positive"):
        robustness.mean_corruption_error(ERRORS, {**BASELINE, "blur": 0.0})
    with pytest.raises(ValueError, match="undefined"):
        robustness.relative_mean_corruption_error(ERRORS, 0.1, BASELINE, 0.6)
    with pytest.raises(ValueError, match="no corruptions"):
        robustness.mean_corruption_error({}, BASELINE)


def test_robustness_imports_no_tensorflow():
    code = "import sys, supcon.robust.metrics; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
