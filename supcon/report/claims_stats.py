"""Statistics for the paper's claims (see `supcon.report.claims`): plain numbers in, an `Estimate` or `Undetermined`.

Every interval and p comes from scipy.stats (imported on first use, so the runner that checks recipes does not
pay for it); intervals are 95%, p values two-sided. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
CONFIDENCE = 0.95
MIN_SETTINGS = 3  # per row, for a spread test


class Undetermined(Exception):
    """The data cannot decide: too few runs, no spread, no finished run; the message says which."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% interval and two-sided p, the test that gave them and the sample size."""

    value: float
    low: float
    high: float
    p: float
    test: str
    n: str
    note: str = ""
    spreads: tuple[float, ...] = ()  # a spread test's sample standard deviations (row a, row b)


def _finite(*numbers: float) -> bool:
    return all(isinstance(x, float | int) and math.isfinite(x) for x in numbers)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Mean of a_i - b_i over pairs (same seed) with the paired t interval (`scipy.stats.ttest_rel`)."""
    from scipy import stats

    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths; got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise Undetermined(f"{len(a)} pair(s) of seeds: a paired test needs at least 2")
    result = stats.ttest_rel(a, b)
    ci = result.confidence_interval(CONFIDENCE)
    diff = float(sum(a) - sum(b)) / len(a)
    if not _finite(ci.low, ci.high, result.pvalue):
        raise Undetermined("the differences do not vary across seeds: the t interval is undefined")
    return Estimate(diff, float(ci.low), float(ci.high), float(result.pvalue), "paired t (by SEED)",
                    f"{len(a)} pairs")  # fmt: skip


def welch_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) - mean(b) with Welch's t interval (`scipy.stats.ttest_ind(equal_var=False)`)."""
    from scipy import stats

    if min(len(a), len(b)) < 2:
        raise Undetermined(f"n = {len(a)} vs {len(b)}: Welch's test needs at least 2 runs per row")
    result = stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(CONFIDENCE)
    diff = sum(a) / len(a) - sum(b) / len(b)
    if not _finite(ci.low, ci.high, result.pvalue):
        raise Undetermined("neither row varies across seeds: the t interval is undefined")
    return Estimate(float(diff), float(ci.low), float(ci.high), float(result.pvalue), "Welch t",
                    f"{len(a)} vs {len(b)}")  # fmt: skip


def rank_trend(x: Sequence[float], y: Sequence[float]) -> Estimate:
    """Spearman's rho of y on x with Fisher's z interval on the ranks; p from the t approximation."""
    from scipy import stats

    levels = len(set(x))
    if levels < 2:
        raise Undetermined(f"{levels} value(s) of the axis finished: a trend needs at least 2")
    if len(x) < 4:
        raise Undetermined(f"{len(x)} finished runs: a rank correlation interval needs at least 4")
    result = stats.pearsonr(stats.rankdata(x), stats.rankdata(y))
    ci = result.confidence_interval(CONFIDENCE)
    if not _finite(result.statistic, ci.low, ci.high, result.pvalue):
        raise Undetermined("the metric does not vary: the rank correlation is undefined")
    return Estimate(float(result.statistic), float(ci.low), float(ci.high), float(result.pvalue),
                    "Spearman ρ (Fisher-z CI)", f"{len(x)} runs at {levels} values")  # fmt: skip


def spread_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Brown-Forsythe: mean |a - median(a)| - mean |b - median(b)| with a pooled t interval on the deviations.

    Its t squared is `scipy.stats.levene(a, b, center='median')`'s W, so p is the Brown-Forsythe p.
    """
    import numpy as np
    from scipy import stats

    if min(len(a), len(b)) < MIN_SETTINGS:
        raise Undetermined(
            f"{len(a)} vs {len(b)} finished settings: a spread test needs at least {MIN_SETTINGS} per row"
        )
    dev_a = np.abs(np.asarray(a, float) - np.median(a))
    dev_b = np.abs(np.asarray(b, float) - np.median(b))
    result = stats.ttest_ind(dev_a, dev_b, equal_var=True)
    ci = result.confidence_interval(CONFIDENCE)
    p = stats.levene(a, b, center="median").pvalue
    if not _finite(ci.low, ci.high, p):
        raise Undetermined("the deviations do not vary: the Brown-Forsythe test is undefined")
    spreads = (float(np.std(a, ddof=1)), float(np.std(b, ddof=1)))
    return Estimate(
        float(dev_a.mean() - dev_b.mean()), float(ci.low), float(ci.high), float(p), "Brown-Forsythe",
        f"{len(a)} vs {len(b)} settings", spreads=spreads,
    )  # fmt: skip


def one_sample_difference(values: Sequence[float], reference: float) -> Estimate:
    """mean(values) - reference with the one-sample t interval (`scipy.stats.ttest_1samp`), e.g. seeds of a
    method against a deterministic baseline."""
    from scipy import stats

    if len(values) < 2:
        raise Undetermined(f"{len(values)} finished run(s): an interval needs at least 2")
    result = stats.ttest_1samp(values, reference)
    ci = result.confidence_interval(CONFIDENCE)
    if not _finite(ci.low, ci.high, result.pvalue):
        raise Undetermined("the runs do not vary: the t interval is undefined")
    diff = sum(values) / len(values) - reference
    return Estimate(
        float(diff), float(ci.low) - reference, float(ci.high) - reference, float(result.pvalue),
        "one-sample t", f"{len(values)} runs",
    )  # fmt: skip


def verdict_of(estimate: Estimate, sign: int) -> tuple[str, str]:
    """(verdict, reason): the paper's direction is `sign` (+1: the statistic should be > 0, -1: < 0)."""
    if estimate.low > 0 or estimate.high < 0:
        agrees = (estimate.low > 0) == (sign > 0)
        return (REPRODUCED, "") if agrees else (CONTRADICTED, "")
    return INCONCLUSIVE, "the 95% interval includes 0"
