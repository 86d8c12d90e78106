"""Statistics for the paper's claims (see `supcon.report.claims`): plain numbers in, an `Estimate` or `Undetermined`.

Every interval and p comes from scipy.stats, and the margin tests' p from statsmodels (both imported on first use,
so the runner that checks recipes does not pay for them); intervals are 95%, p values two-sided, except the margin
tests' (`equivalence`, `non_superiority`): their p is TOST's or the one-sided test's, and they add the 90% interval.
No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
CONFIDENCE = 0.95
ALPHA = 0.05  # the level of the margin tests: TOST and non-superiority (one-sided, so their interval is 90%)
MIN_SETTINGS = 3  # per row, for a spread test


class Undetermined(Exception):
    """The data cannot decide: too few runs, no spread, no finished run; the message says which."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A statistic with its 95% interval and two-sided p, the test that gave them and the sample size; a margin test
    (`equivalence`, `non_superiority`) adds its margin and the 90% interval, and its p is the margin test's."""

    value: float
    low: float
    high: float
    p: float
    test: str
    n: str
    note: str = ""
    spreads: tuple[float, ...] = ()  # a spread test's sample standard deviations (row a, row b)
    margin: float | None = None  # a margin test's margin, in the statistic's unit
    ci90: tuple[float, ...] = ()  # a margin test's 90% interval: its upper end is the one-sided 95% upper bound


def _finite(*numbers: float) -> bool:
    return all(isinstance(x, float | int) and math.isfinite(x) for x in numbers)


def _t_test(a: Sequence[float], b: Sequence[float], paired: bool):
    """scipy's paired t (`ttest_rel`) or Welch t (`ttest_ind(equal_var=False)`) of a - b: (result, mean difference,
    its 95% interval, n as shown).

    Raises:
      Undetermined: too few runs or pairs, or no spread (the interval is undefined).
    """
    from scipy import stats

    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired samples need equal lengths; got {len(a)} and {len(b)}")
        if len(a) < 2:
            raise Undetermined(f"{len(a)} pair(s) of seeds: a paired test needs at least 2")
        result, diff, n = stats.ttest_rel(a, b), float(sum(a) - sum(b)) / len(a), f"{len(a)} pairs"
        flat = "the differences do not vary across seeds: the t interval is undefined"
    else:
        if min(len(a), len(b)) < 2:
            raise Undetermined(f"n = {len(a)} vs {len(b)}: Welch's test needs at least 2 runs per row")
        result = stats.ttest_ind(a, b, equal_var=False)
        diff, n = float(sum(a) / len(a) - sum(b) / len(b)), f"{len(a)} vs {len(b)}"
        flat = "neither row varies across seeds: the t interval is undefined"
    ci = result.confidence_interval(CONFIDENCE)
    if not _finite(ci.low, ci.high, result.pvalue):
        raise Undetermined(flat)
    return result, diff, ci, n


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Mean of a_i - b_i over pairs (same seed) with the paired t interval (`scipy.stats.ttest_rel`)."""
    result, diff, ci, n = _t_test(a, b, paired=True)
    return Estimate(diff, float(ci.low), float(ci.high), float(result.pvalue), "paired t (by SEED)", n)


def welch_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """mean(a) - mean(b) with Welch's t interval (`scipy.stats.ttest_ind(equal_var=False)`)."""
    result, diff, ci, n = _t_test(a, b, paired=False)
    return Estimate(diff, float(ci.low), float(ci.high), float(result.pvalue), "Welch t", n)


def _with_margin(a, b, margin: float, paired: bool, test: str, p_of) -> Estimate:
    """a - b with its 95% and 90% t intervals and the p that `p_of(a, b)` gives (a statsmodels test)."""
    if not margin > 0:
        raise ValueError(f"margin must be a positive number; got {margin!r}")
    import numpy as np

    result, diff, ci, n = _t_test(a, b, paired)
    inner = result.confidence_interval(1 - 2 * ALPHA)
    p = float(p_of(np.asarray(a, float), np.asarray(b, float)))
    if not _finite(inner.low, inner.high, p):
        raise Undetermined("the runs do not vary: the t interval is undefined")
    name = f"{test} paired t (by SEED)" if paired else f"{test} Welch t"
    return Estimate(diff, float(ci.low), float(ci.high), p, name, n, margin=float(margin),
                    ci90=(float(inner.low), float(inner.high)))  # fmt: skip


def equivalence(a: Sequence[float], b: Sequence[float], margin: float, paired: bool) -> Estimate:
    """Two one-sided tests (TOST) that -margin < mean(a) - mean(b) < +margin: statsmodels' `ttost_paired` (pairs
    by seed) or `ttost_ind(usevar='unequal')` (Welch). p < 0.05 exactly when the 90% interval lies inside
    ±margin; `margin` is in the metric's own unit (a fraction for accuracies)."""
    from statsmodels.stats import weightstats

    def p_of(x, y):
        if paired:
            return weightstats.ttost_paired(x, y, -margin, margin)[0]
        return weightstats.ttost_ind(x, y, -margin, margin, usevar="unequal")[0]

    return _with_margin(a, b, margin, paired, "TOST", p_of)


def non_superiority(a: Sequence[float], b: Sequence[float], margin: float, paired: bool) -> Estimate:
    """The one-sided t test of H0: mean(a) - mean(b) >= +margin against H1: below it, with statsmodels
    (`DescrStatsW(a - b).ttest_mean(margin, 'smaller')` on pairs by seed, else `ttest_ind(usevar='unequal',
    value=margin, alternative='smaller')`). p < 0.05 exactly when the one-sided 95% upper bound of a - b (the upper
    end of its 90% interval) is below +margin."""
    from statsmodels.stats import weightstats

    def p_of(x, y):
        if paired:
            return weightstats.DescrStatsW(x - y).ttest_mean(margin, alternative="smaller")[1]
        return weightstats.ttest_ind(x, y, alternative="smaller", usevar="unequal", value=margin)[1]

    return _with_margin(a, b, margin, paired, "non-superiority", p_of)


def rank_trend(x: Sequence[float], y: Sequence[float]) -> Estimate:
    """Spearman's rho of y on x with Fisher's z interval on the ranks; p from the t approximation."""
    from scipy import stats

    levels = len(set(x))
    if levels < 2:
        raise Undetermined(f"{levels} value(s) of the axis finished: a trend needs at least 2")
    if len(x) < 4:
        raise Undetermined(f"{len(x)} finished runs: a rank correlation interval needs at least 4")
    ranks_x, ranks_y = stats.rankdata(x), stats.rankdata(y)
    result = stats.pearsonr(ranks_x, ranks_y)
    ci = result.confidence_interval(CONFIDENCE)
    if not _finite(result.statistic, ci.low, ci.high, result.pvalue):
        raise Undetermined("the metric does not vary: the rank correlation is undefined")
    n = f"{len(x)} runs at {levels} values"
    if abs(result.statistic) > 1 - 1e-9:
        # Every run in rank order: Fisher's interval collapses to the point and the t approximation's p to 0, so p
        # comes from the permutation distribution (exact up to 9,999 orderings, else 9,999 of them, fixed seed) and
        # decides alone whether the interval (the point) may stand.
        p = float(stats.pearsonr(ranks_x, ranks_y, method=stats.PermutationMethod(n_resamples=9999, rng=0)).pvalue)
        if p >= 1 - CONFIDENCE:
            raise Undetermined(
                f"ρ = {result.statistic:+.2f} over {n}, but a perfect order of so few runs has permutation p {p:.2g}"
            )
        rho = float(round(result.statistic))
        return Estimate(rho, rho, rho, p, "Spearman ρ (permutation p; Fisher-z CI undefined at ρ = ±1)", n)
    return Estimate(float(result.statistic), float(ci.low), float(ci.high), float(result.pvalue),
                    "Spearman ρ (Fisher-z CI)", n)  # fmt: skip


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


def equivalence_verdict(estimate: Estimate) -> tuple[str, str]:
    """(verdict, reason) of an `equivalence` estimate: reproduced when TOST's p < 0.05 (the 90% interval inside
    ±margin), contradicted when the 95% interval lies entirely outside [-margin, +margin], else inconclusive."""
    margin = estimate.margin
    if estimate.p < ALPHA:
        return REPRODUCED, ""
    if estimate.low > margin or estimate.high < -margin:
        return CONTRADICTED, ""
    return INCONCLUSIVE, "the 90% interval is not inside ±margin (TOST p ≥ 0.05) and the 95% interval overlaps it"


def non_superiority_verdict(estimate: Estimate) -> tuple[str, str]:
    """(verdict, reason) of a `non_superiority` estimate: reproduced when the one-sided 95% upper bound (the 90%
    interval's upper end) is below +margin; contradicted when not and the 95% interval lies above 0; else
    inconclusive."""
    if estimate.ci90[1] < estimate.margin:
        return REPRODUCED, ""
    if estimate.low > 0:
        return CONTRADICTED, ""
    return INCONCLUSIVE, "the one-sided 95% upper bound is not below +margin and the 95% interval includes 0"
