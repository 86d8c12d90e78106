"""Robustness and calibration metrics: ECE and reliability diagrams, mCE and relative mCE. NumPy only (no TF).

Calibration (Guo et al., 2017; the paper's Table 6 uses 15 bins). With M equal-width confidence bins
B_m = ((m - 1) / M, m / M] (the first also holds confidence 0),
    ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|,
acc(B_m) the fraction of correct predictions in the bin and conf(B_m) their mean confidence.

Corruption errors (Hendrycks & Dietterich, ICLR 2019), with E^f_{s,c} the top-1 error of model f on
corruption c at severity s and a baseline model (AlexNet in the paper):
    CE^f_c          = sum_s E^f_{s,c} / sum_s E^base_{s,c}
    relative CE^f_c = sum_s (E^f_{s,c} - E^f_clean) / sum_s (E^base_{s,c} - E^base_clean)
mCE and relative mCE are their means over the corruptions, reported x 100 (so the baseline scores 100).
Errors may be fractions or percentages, as long as model and baseline use the same unit.

Error tables are mappings {corruption: {severity: error}}; severity keys may be ints or strings (JSON).
A baseline entry may also be one number, the mean over the same severities (as the published AlexNet table
below): the sums then become means, which is the same ratio when both sides cover the same severities.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

# AlexNet's ImageNet-C top-1 errors, mean over severities 1-5 per corruption, as published with the ImageNet-C
# code (hendrycks/robustness; also quoted by AugMix) for mCE normalisation, and its clean top-1 error
# (torchvision's AlexNet, acc@1 56.522, the weights the ImageNet-C evaluation loads).
ALEXNET_IMAGENET_C_ERRORS = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
}
ALEXNET_CLEAN_ERROR = 1.0 - 0.56522


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin calibration data. Arrays of length num_bins; accuracy and confidence are NaN in empty bins."""

    bin_edges: np.ndarray  # [M + 1], 0 .. 1
    counts: np.ndarray  # [M] int
    accuracy: np.ndarray  # [M]
    confidence: np.ndarray  # [M]

    @property
    def ece(self):
        """sum_m |B_m| / n * |acc(B_m) - conf(B_m)| over the non-empty bins."""
        filled = self.counts > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.counts[filled] * gaps) / np.sum(self.counts))


ECE_BINS = 15  # equal-width confidence bins of the expected calibration error (the paper's Table 6)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64: [N, K] logits -> [N, K] probabilities."""
    shifted = np.asarray(logits, np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k largest logits."""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]  # [N, k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def _confidences_and_correct(probabilities, predictions, labels):
    """([N] confidence, [N] bool correct) from [N, K] probabilities or [N] confidences."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    if probabilities.ndim == 2:
        confidences = probabilities.max(axis=1)
        if predictions is None:
            predictions = probabilities.argmax(axis=1)
    elif probabilities.ndim == 1:
        confidences = probabilities
        if predictions is None:
            raise ValueError("predictions are required when probabilities are [N] confidences")
    else:
        raise ValueError(f"probabilities must be [N, K] or [N], got shape {probabilities.shape}")
    predictions = np.asarray(predictions)
    n = confidences.shape[0]
    if n == 0 or predictions.shape != (n,) or labels.shape != (n,):
        raise ValueError(
            f"need N > 0 examples and predictions, labels of shape [N]; got confidences [{n}], "
            f"predictions {predictions.shape}, labels {labels.shape}"
        )
    if np.any(confidences < 0) or np.any(confidences > 1) or not np.all(np.isfinite(confidences)):
        raise ValueError("confidences (probabilities) must lie in [0, 1]")
    return confidences, predictions == labels


def reliability_diagram(probabilities, predictions, labels, num_bins=15):
    """Bins predictions by confidence into num_bins equal-width bins ((lower, upper], the first from 0).

    Args:
      probabilities: [N, K] class probabilities, or [N] confidences of the predicted classes.
      predictions: [N] predicted classes, or None to take the argmax of [N, K] probabilities.
      labels: [N] true classes.
      num_bins: number of equal-width bins on [0, 1].

    Returns:
      A ReliabilityDiagram (bin edges, counts, per-bin accuracy and mean confidence; `.ece`).
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    confidences, correct = _confidences_and_correct(probabilities, predictions, labels)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    # bin m holds edges[m] < confidence <= edges[m + 1]; confidence 0 falls into bin 0
    bins = np.clip(np.searchsorted(edges[1:-1], confidences, side="left"), 0, num_bins - 1)
    counts = np.bincount(bins, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (
            np.bincount(bins, weights=correct.astype(np.float64), minlength=num_bins) / counts
        )
        confidence = np.bincount(bins, weights=confidences, minlength=num_bins) / counts
    return ReliabilityDiagram(edges, counts, accuracy, confidence)


def expected_calibration_error(probabilities, predictions, labels, num_bins=15):
    """ECE with num_bins equal-width confidence bins (see the module docstring); a fraction in [0, 1].

    Args:
      probabilities: [N, K] class probabilities, or [N] confidences of the predicted classes.
      predictions: [N] predicted classes, or None to take the argmax of [N, K] probabilities.
      labels: [N] true classes.
      num_bins: number of bins (15, as the paper's Table 6).
    """
    return reliability_diagram(probabilities, predictions, labels, num_bins).ece


def _mean_over_severities(entry, where):
    """The mean of {severity: error} (or a number, already that mean) and the severities it covers."""
    if isinstance(entry, Mapping):
        if not entry:
            raise ValueError(f"{where}: no severities")
        return float(np.mean([float(v) for v in entry.values()])), frozenset(int(s) for s in entry)
    return float(entry), None


def _paired_means(errors, baseline_errors):
    """{corruption: (model mean error, baseline mean error)}, checking both tables cover the same cells."""
    if not errors:
        raise ValueError("errors: no corruptions")
    missing = sorted(set(errors) - set(baseline_errors))
    if missing:
        raise ValueError(f"baseline_errors lack corruptions {missing}")
    pairs = {}
    for name in errors:
        model, model_sev = _mean_over_severities(errors[name], f"errors[{name!r}]")
        base, base_sev = _mean_over_severities(baseline_errors[name], f"baseline_errors[{name!r}]")
        if model_sev is not None and base_sev is not None and model_sev != base_sev:
            raise ValueError(
                f"{name}: severities differ, errors {sorted(model_sev)} vs baseline {sorted(base_sev)}"
            )
        pairs[name] = (model, base)
    return pairs


def corruption_errors(errors, baseline_errors):
    """{corruption: CE_c x 100}, CE_c = sum_s E_{s,c} / sum_s E^base_{s,c}."""
    out = {}
    for name, (model, base) in _paired_means(errors, baseline_errors).items():
        if base <= 0:
            raise ValueError(f"{name}: the baseline error must be positive, got {base}")
        out[name] = 100.0 * model / base
    return out


def mean_corruption_error(errors, baseline_errors):
    """mCE: the mean over corruptions of CE_c x 100 (Hendrycks & Dietterich, 2019).

    Args:
      errors: {corruption: {severity: top-1 error}} of the model.
      baseline_errors: the same for the normalising model (or {corruption: mean error over severities}).
    """
    return float(np.mean(list(corruption_errors(errors, baseline_errors).values())))


def relative_corruption_errors(errors, clean_error, baseline_errors, baseline_clean_error):
    """{corruption: relative CE_c x 100}, sum_s (E_{s,c} - E_clean) / sum_s (E^base_{s,c} - E^base_clean)."""
    out = {}
    for name, (model, base) in _paired_means(errors, baseline_errors).items():
        if base == baseline_clean_error:
            raise ValueError(
                f"{name}: the baseline's corrupted and clean errors are equal; ratio undefined"
            )
        out[name] = 100.0 * (model - clean_error) / (base - baseline_clean_error)
    return out


def relative_mean_corruption_error(errors, clean_error, baseline_errors, baseline_clean_error):
    """Relative mCE: the mean over corruptions of relative CE_c x 100 (Hendrycks & Dietterich, 2019).

    Args:
      errors: {corruption: {severity: top-1 error}} of the model.
      clean_error: the model's top-1 error on the clean test set.
      baseline_errors: the same for the normalising model (or {corruption: mean error over severities}).
      baseline_clean_error: the normalising model's clean error.
    """
    relative = relative_corruption_errors(
        errors, clean_error, baseline_errors, baseline_clean_error
    )
    return float(np.mean(list(relative.values())))
