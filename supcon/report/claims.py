"""The paper's claims as data (`supcon/paper_claims.csv`), tested on run directories: statistics and verdicts.

A recipe names the claims its grid tests (`report.claims = ['table2_supcon_gt_ce', ...]`); `supcon.experiment.grid` checks
at recipe load that each id exists and that its rows match points of the grid, and the reporter opens the report
with one verdict per claim (and per setting of the other report rows/columns, so that no comparison pools
different datasets or architectures). The file is read by `supcon.report.claims_file`, whose names are re-exported
here. Kinds of claim and their tests (scipy.stats, 95% intervals, two-sided p):

* `greater` (row a > row b) and `less` (row a < row b): the difference of means a - b with a paired t interval
  when both rows finished the same SEED values (one run each), else Welch's t interval.
* `lowest` / `highest` (row a below / above every other value of `axis`): the same test between a and the other
  value with the lowest / highest mean, the hardest comparison.
* `increasing` (the metric rises with `axis`): Spearman's rank correlation over every finished run, with
  Fisher's z interval on the ranks (`pearsonr(...).confidence_interval()` on `rankdata`); its p equals
  `spearmanr`'s. The axis `SEVERITY` is not a macro but the corruption severity inside each run
  (`report_metrics.by_severity`: each run once per severity, 0 = clean; metric eval/top1 or eval/ece).
* `lower_spread` (row a varies less than row b across hyperparameters): the Brown-Forsythe test on the per-setting
  means (seeds averaged): the difference of the mean absolute deviations from each row's median with a pooled t
  interval; its p equals `levene(center='median')`'s.
* `equivalent` (rows a and b equal within ±margin) and `not_greater` (row a not above row b by more than margin):
  a - b paired or Welch as for `greater`, with its 95% and 90% intervals; p from statsmodels, TOST
  (`ttost_paired`, `ttost_ind(usevar='unequal')`) or the one-sided t test of H0: a - b >= margin.

Metrics are result.json keys or the reporter's derived ones (`supcon.report.metrics`: robust/mce and
robust/relative_mce need `report.robustness`, and are computed per run before claims are tested).

Verdicts: *reproduced* when the interval excludes 0 on the paper's side, *contradicted* when it excludes 0 on the
other side, *inconclusive* otherwise, including when there are too few runs to test. With a margin
(`claims_stats.equivalence_verdict`, `non_superiority_verdict`): `equivalent` is reproduced when TOST's p < 0.05
(the 90% interval inside ±margin) and contradicted when the 95% interval lies outside [-margin, +margin];
`not_greater` is reproduced when the one-sided 95% upper bound is below +margin and otherwise contradicted when the
95% interval lies above 0. No TensorFlow here, and scipy and statsmodels are imported only when a claim is
evaluated (the runner imports this module to check recipes).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

from supcon import workdir
from supcon.report import metrics as report_metrics
from supcon.report.claims_file import (  # noqa: F401  (re-exported: the claims file's names, for the reporter and runner)
    FIELDS,
    KINDS,
    MARGIN_KINDS,
    PAPER_CLAIMS,
    Claim,
    ClaimError,
    check_recipe_claims,
    format_selector,
    grid_misfit,
    load_claims,
    matches,
    parse_selector,
    value_is,
)
from supcon.report.claims_stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    REPRODUCED,
    Estimate,
    Undetermined,
    equivalence,
    equivalence_verdict,
    non_superiority,
    non_superiority_verdict,
    paired_difference,
    rank_trend,
    spread_difference,
    verdict_of,
    welch_difference,
)
from supcon.report.data import SEED, Run, group_key, group_runs, value_label

# the kinds with a margin: (the statistic's function, its verdict, how the test's name shows the margin)
MARGIN_TESTS = {
    "equivalent": (equivalence, equivalence_verdict, "±"),
    "not_greater": (non_superiority, non_superiority_verdict, "margin +"),
}
Groups = tuple[tuple[str, tuple[Run, ...]], ...]  # (label, runs) pairs


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The test of one claim on the runs (of one setting of the other report rows, `where`).

    Attributes:
      claim: the claim.
      where: the setting of the other rows/columns this verdict is for ('' for the whole grid).
      verdict: reproduced, contradicted or inconclusive.
      estimate: the statistic with its interval and p (None when it could not be computed).
      compared: what the statistic measures, e.g. 'METHOD=supcon − METHOD=cross_entropy'.
      reason: why the verdict is inconclusive.
      groups: the groups of runs the statistic compares, as (label, runs) pairs: rows a and b (greater, less,
        lower_spread, equivalent, not_greater), row a and the picked other value of the axis (lowest, highest), or the runs at each
        value of the axis in ascending order (increasing); empty when the claim found nothing to compare.
    """

    claim: Claim
    where: str
    verdict: str
    estimate: Estimate | None = None
    compared: str = ""
    reason: str = ""
    groups: Groups = ()


def finished(runs: Sequence[Run], metric: str) -> list[tuple[Run, float]]:
    """The finished runs of `runs` that report `metric`, each with its value."""
    return [
        (r, r.metric(metric))
        for r in runs
        if r.state == workdir.DONE and r.metric(metric) is not None
    ]


def _progress(done: int, planned: int) -> str:
    return "" if done == planned else f"; {done} of {planned} finished"


def compare_rows(
    a_runs: Sequence[Run], b_runs: Sequence[Run], metric: str, names: tuple[str, str] = ("a", "b"),
    tests=(paired_difference, welch_difference),
) -> Estimate:
    """mean(a) - mean(b) over finished runs: paired by SEED when both finished the same seeds, else Welch; `tests`
    are the (paired, Welch) statistics, each taking the values of a and of b.

    Raises:
      Undetermined: a row (named by `names` in the message) has no finished run, or too few for the test.
    """
    a, b = finished(a_runs, metric), finished(b_runs, metric)
    if not a or not b:
        name, members = (names[0], a_runs) if not a else (names[1], b_runs)
        if any(r.state == workdir.DONE for r in members):
            raise Undetermined(f"no finished run of {name} reports {metric}")
        raise Undetermined(f"no run of {name} finished")
    seeds_a = [r.values.get(SEED) for r, _ in a]
    seeds_b = [r.values.get(SEED) for r, _ in b]
    labels_a, labels_b = [value_label(s) for s in seeds_a], [value_label(s) for s in seeds_b]
    unique = len(set(labels_a)) == len(labels_a) and len(set(labels_b)) == len(labels_b)
    if None not in seeds_a + seeds_b and unique and set(labels_a) == set(labels_b):
        by_seed = dict(zip(labels_b, (v for _, v in b), strict=True))
        estimate = tests[0]([v for _, v in a], [by_seed[s] for s in labels_a])
    else:
        if None in seeds_a + seeds_b:
            why = "no SEED axis"
        elif not unique:
            why = "several runs per SEED"
        else:
            why = "the rows finished different SEED values"
        estimate = tests[1]([v for _, v in a], [v for _, v in b])
        estimate = dataclasses.replace(estimate, note=why)
    if len(a) < len(a_runs) or len(b) < len(b_runs):
        extra = f"; {len(a)}/{len(a_runs)} and {len(b)}/{len(b_runs)} finished"
        estimate = dataclasses.replace(estimate, n=estimate.n + extra)
    return estimate


def _decide(claim: Claim, compute, judge, compared: str, groups: Groups) -> Verdict:
    """The verdict `judge(estimate)` gives on `compute()`'s estimate, inconclusive when it is Undetermined."""
    try:
        estimate = compute()
    except Undetermined as why:
        return Verdict(claim, "", INCONCLUSIVE, None, compared, str(why), groups)
    verdict, reason = judge(estimate)
    return Verdict(claim, "", verdict, estimate, compared, reason, groups)


def _sided(sign: int):
    """The judge of a claim whose statistic should be > 0 (`sign` +1) or < 0 (-1)."""
    return functools.partial(verdict_of, sign=sign)


def _greater(claim: Claim, runs: Sequence[Run]) -> Verdict | None:
    """Row a above row b (`greater`), below it (`less`), equal within ±margin (`equivalent`) or not above it by
    more than margin (`not_greater`): the difference a - b."""
    a = [r for r in runs if matches(r.values, claim.a)]
    b = [r for r in runs if matches(r.values, claim.b)]
    if not a or not b:
        return None
    names = format_selector(claim.a), format_selector(claim.b)
    compared = f"{names[0]} − {names[1]}"
    groups = ((names[0], tuple(a)), (names[1], tuple(b)))
    if claim.kind not in MARGIN_TESTS:
        judge = _sided(-1 if claim.kind == "less" else +1)
        return _decide(claim, lambda: compare_rows(a, b, claim.metric, names), judge, compared, groups)
    statistic, judge, shown = MARGIN_TESTS[claim.kind]
    margin = claim.metric_margin
    tests = (functools.partial(statistic, margin=margin, paired=True),
             functools.partial(statistic, margin=margin, paired=False))  # fmt: skip

    def compute() -> Estimate:
        estimate = compare_rows(a, b, claim.metric, names, tests)
        return dataclasses.replace(estimate, test=f"{estimate.test}, {shown}{claim.margin:g}{claim.unit_suffix}")

    return _decide(claim, compute, judge, compared, groups)


def _extreme(claim: Claim, runs: Sequence[Run]) -> Verdict | None:
    """Row a against the other value of the axis with the lowest (or highest) mean."""
    a = [r for r in runs if matches(r.values, claim.a)]
    others = [r for r in runs if claim.axis in r.values and not matches(r.values, claim.a)]
    if not a or not others:
        return None
    levels: dict[str, list[Run]] = {}
    for run in others:
        levels.setdefault(value_label(run.values[claim.axis]), []).append(run)
    means = {
        label: sum(v for _, v in done) / len(done)
        for label, members in levels.items()
        if (done := finished(members, claim.metric))
    }
    if not means:
        why = f"no run with another value of {claim.axis} finished"
        return Verdict(claim, "", INCONCLUSIVE, None, "", why)
    lowest = claim.kind == "lowest"
    pick = (min if lowest else max)(means, key=means.get)
    b, names = levels[pick], (format_selector(claim.a), f"{claim.axis}={pick}")
    groups = ((names[0], tuple(a)), (names[1], tuple(b)))
    if lowest:  # the other value minus a: positive when a is the lowest
        compared = f"{names[1]} (next lowest) − {names[0]}"
        high, low, shown = b, a, names[::-1]
    else:
        compared = f"{names[0]} − {names[1]} (next highest)"
        high, low, shown = a, b, names
    return _decide(
        claim, lambda: compare_rows(high, low, claim.metric, shown), _sided(+1), compared, groups
    )


def axis_number(claim: Claim, value: Any) -> float:
    """The number that orders an axis value: its axis_map entry, else the value itself."""
    label = value_label(value)
    if label in claim.axis_map:
        return claim.axis_map[label]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise Undetermined(f"{claim.axis}={label} is not a number (give it one in axis_map)")


def _axis_groups(claim: Claim, swept: Sequence[Run]) -> Groups:
    """The runs at each value of the axis, as ('AXIS=value', runs) in ascending axis_number order (empty when a
    value has no number: the trend is then undetermined)."""
    try:
        ordered = sorted(
            group_runs(swept, [claim.axis]),
            key=lambda g: axis_number(claim, g[1][0].values[claim.axis]),
        )
    except Undetermined:
        return ()
    return tuple((f"{claim.axis}={label}", tuple(members)) for (label,), members in ordered)


def _increasing(claim: Claim, runs: Sequence[Run]) -> Verdict | None:
    swept = [r for r in runs if claim.axis in r.values]
    severity = claim.axis == report_metrics.SEVERITY
    if len({value_label(r.values[claim.axis]) for r in swept}) < 2:
        if severity and swept:
            why = "no finished run reports a corrupted test set (corruption/severity_<s>/* in result.json)"
            return Verdict(claim, "", INCONCLUSIVE, None, "", why)
        return None

    def compute() -> Estimate:
        done = finished(swept, claim.metric)
        x = [axis_number(claim, r.values[claim.axis]) for r, _ in done]
        estimate = rank_trend(x, [v for _, v in done])
        note = "each run once per severity, 0 = clean" if severity else ""
        n = estimate.n + _progress(len(done), len(swept))
        return dataclasses.replace(estimate, n=n, note=note)

    return _decide(
        claim, compute, _sided(+1), f"{claim.metric} vs {claim.axis}", _axis_groups(claim, swept)
    )


def _spread(claim: Claim, runs: Sequence[Run]) -> Verdict | None:
    rows = [[r for r in runs if matches(r.values, s)] for s in (claim.a, claim.b)]
    if not all(rows):
        return None

    def setting_means(members: list[Run]) -> list[float]:
        settings: dict[tuple, list[float]] = {}
        for run, value in finished(members, claim.metric):
            settings.setdefault(group_key(run.values), []).append(value)
        return [sum(v) / len(v) for v in settings.values()]

    names = format_selector(claim.a), format_selector(claim.b)
    compared = f"spread of {names[0]} − spread of {names[1]}"
    groups = tuple((name, tuple(members)) for name, members in zip(names, rows, strict=True))
    return _decide(
        claim, lambda: spread_difference(*map(setting_means, rows)), _sided(-1), compared, groups
    )


KIND_TESTS = {
    "greater": _greater,
    "less": _greater,
    "lowest": _extreme,
    "highest": _extreme,
    "increasing": _increasing,
    "lower_spread": _spread,
    "equivalent": _greater,
    "not_greater": _greater,
}


def _strata(runs: Sequence[Run], macros: list[str]) -> list[tuple[str, list[Run]]]:
    """Runs grouped by their values of `macros`, as ('M=v, N=w', runs), in value order.

    A run whose grid point does not name one of the macros is a shared row (SupCon's point in a grid over
    cross-entropy's batch and epochs names neither): it joins every group that agrees with it on the macros it
    names, so that it trains once and is compared in each setting. When no run names every macro, the runs are
    grouped by their values as they are (a missing value is a value of its own)."""
    names_all = [all(m in r.values for m in macros) for r in runs]
    named = [r for r, full in zip(runs, names_all, strict=True) if full]
    shared = [r for r, full in zip(runs, names_all, strict=True) if not full] if named else []
    named = named or list(runs)
    strata = []
    for key, members in group_runs(named, macros):
        joins = [r for r in shared if all(value_label(r.values[m]) == k for m, k in zip(macros, key, strict=True)
                                          if m in r.values)]  # fmt: skip
        strata.append((", ".join(f"{m}={v}" for m, v in zip(macros, key, strict=True)), members + joins))
    return strata


def evaluate(claim: Claim, runs: Sequence[Run], within: Sequence[str] = ()) -> list[Verdict]:
    """Tests a claim on the runs, separately for each setting of the macros `within` (the report's rows and
    columns) that the claim does not name; settings that lack a compared row are skipped. A spread claim spans
    the whole grid. Never raises for missing data: such a verdict is inconclusive with the reason."""
    if claim.axis == report_metrics.SEVERITY and all(claim.axis not in r.values for r in runs):
        runs = report_metrics.by_severity(runs)  # each run once per severity
    varying = {m for m in within if len({value_label(r.values.get(m)) for r in runs}) > 1}
    macros = [] if claim.kind == "lower_spread" else [
        m for m in dict.fromkeys(within) if m in varying and m not in claim.macros and m != SEED
    ]  # fmt: skip
    verdicts = []
    for where, members in _strata(runs, macros):
        verdict = KIND_TESTS[claim.kind](claim, members)
        if verdict is not None:
            verdicts.append(dataclasses.replace(verdict, where=where))
    if not verdicts:
        why = grid_misfit(claim, [r.values for r in runs], "run") or (
            f"no setting of {', '.join(macros)} holds every compared row"
        )
        verdicts = [Verdict(claim, "", INCONCLUSIVE, None, "", why)]
    return verdicts


def evaluate_claims(
    ids: Sequence[str], runs: Sequence[Run], within: Sequence[str] = (), path: str = PAPER_CLAIMS
) -> list[Verdict]:
    """The verdicts of the claims `ids` (a recipe's report.claims) on the runs, in the order given.

    Raises:
      ClaimError: an id is not in the claims file.
    """
    known = load_claims(path)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ClaimError(
            f"report.claims: unknown claim(s) {', '.join(unknown)} (not in {os.path.basename(path)})"
        )
    return [v for i in ids for v in evaluate(known[i], runs, within)]


def summary(verdicts: Sequence[Verdict]) -> str:
    """'2 of 3 claims reproduced at this scale (1 contradicted, 0 inconclusive).'"""
    count = {
        k: sum(v.verdict == k for v in verdicts) for k in (REPRODUCED, CONTRADICTED, INCONCLUSIVE)
    }
    several = len(verdicts) > len({v.claim.id for v in verdicts})
    noun = "claim tests" if several else ("claim" if len(verdicts) == 1 else "claims")
    return (
        f"{count[REPRODUCED]} of {len(verdicts)} {noun} reproduced at this scale "
        f"({count[CONTRADICTED]} contradicted, {count[INCONCLUSIVE]} inconclusive)."
    )
