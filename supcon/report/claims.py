"""The paper's claims as data (`supcon/paper_claims.csv`), tested on run directories: statistics and verdicts.

A recipe names the claims its grid tests (`report.claims = ['table2_supcon_gt_ce', ...]`); `supcon.experiment.grid` checks
at recipe load that each id exists and that its rows match points of the grid, and the reporter opens the report
with one verdict per claim (and per setting of the other report rows/columns, so that no comparison pools
different datasets or architectures). Kinds of claim and their tests (scipy.stats, 95% intervals, two-sided p):

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

Metrics are result.json keys or the reporter's derived ones (`supcon.report.metrics`: robust/mce and
robust/relative_mce need `report.robustness`, and are computed per run before claims are tested).

Verdicts: *reproduced* when the interval excludes 0 on the paper's side, *contradicted* when it excludes 0 on the
other side, *inconclusive* otherwise, including when there are too few runs to test. No TensorFlow here, and
scipy is imported only when a claim is evaluated (the runner imports this module to check recipes).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

from supcon import workdir
from supcon.report import metrics as report_metrics
from supcon.report.claims_stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    MIN_SETTINGS,
    REPRODUCED,
    Estimate,
    Undetermined,
    paired_difference,
    rank_trend,
    spread_difference,
    verdict_of,
    welch_difference,
)
from supcon.report.data import SEED, Run, group_key, group_runs, value_label
from supcon.report.paper_numbers import read_csv_lines

PAPER_CLAIMS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paper_claims.csv")
FIELDS = (
    "id", "source", "kind", "metric", "a", "b", "axis", "axis_map", "paper_a", "paper_b", "paper_values",
    "paper_setting", "statement",
)  # fmt: skip
# kind -> the fields it needs besides id, source, kind, metric and statement
KINDS = {
    "greater": ("a", "b"),
    "less": ("a", "b"),
    "lowest": ("a", "axis"),
    "highest": ("a", "axis"),
    "increasing": ("axis",),
    "lower_spread": ("a", "b"),
}
ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


class ClaimError(ValueError):
    """A malformed claims file or an unusable `report.claims`; the message is one line naming the file."""


@dataclasses.dataclass(frozen=True)
class Claim:
    """One row of the claims file (see its header for the columns)."""

    id: str
    source: str
    kind: str
    metric: str
    a: dict[str, str]
    b: dict[str, str]
    axis: str
    axis_map: dict[str, float]
    paper_a: float | None
    paper_b: float | None
    paper_values: str
    paper_setting: str
    statement: str

    @property
    def macros(self) -> list[str]:
        """The macros the claim names (its rows' keys and its axis)."""
        return list(dict.fromkeys([*self.a, *self.b] + ([self.axis] if self.axis else [])))


def format_selector(selector: dict[str, str]) -> str:
    """{'METHOD': 'supcon'} -> 'METHOD=supcon'."""
    return " & ".join(f"{k}={v}" for k, v in selector.items())


def parse_selector(text: str, where: str) -> dict[str, str]:
    """'METHOD=supcon & DEPTH=50' -> {'METHOD': 'supcon', 'DEPTH': '50'}; '' -> {}."""
    selector = {}
    for part in filter(None, (p.strip() for p in text.split("&"))):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not KEY_RE.match(key) or not value:
            raise ClaimError(f"{where}: row {part!r} must be MACRO=value (e.g. METHOD=supcon)")
        selector[key] = value
    return selector


def _number(text: str, where: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise ClaimError(f"{where}: {text!r} is not a number") from None


def _parse_row(row: dict[str, str], where: str) -> Claim:
    if not ID_RE.match(row["id"]):
        raise ClaimError(f"{where}: id {row['id']!r} must be lower_case_with_underscores")
    if row["kind"] not in KINDS:
        raise ClaimError(f"{where}: kind {row['kind']!r} must be one of {', '.join(KINDS)}")
    if not report_metrics.is_metric(row["metric"]):
        raise ClaimError(
            f"{where}: metric {row['metric']!r} is not one a run writes ({report_metrics.known_metrics()})"
        )
    for name in ("source", "metric", "statement") + KINDS[row["kind"]]:
        if not row[name].strip():
            raise ClaimError(f"{where}: claim {row['id']} ({row['kind']}) needs a value for {name}")
    a, b = parse_selector(row["a"], where), parse_selector(row["b"], where)
    axis = row["axis"].strip()
    if axis and not KEY_RE.match(axis):
        raise ClaimError(f"{where}: axis {axis!r} must be an UPPER_CASE macro name")
    if axis == report_metrics.SEVERITY and (
        row["kind"] != "increasing" or row["metric"] not in report_metrics.SEVERITY_METRICS
    ):
        raise ClaimError(
            f"{where}: axis {axis} (corruption severity within each run) needs kind increasing and metric "
            f"{' or '.join(report_metrics.SEVERITY_METRICS)}"
        )
    if row["kind"] in ("lowest", "highest") and list(a) != [axis]:
        raise ClaimError(
            f"{where}: a of a {row['kind']} claim must be one value of its axis {axis}"
        )
    axis_map = {}
    for part in filter(None, (p.strip() for p in row["axis_map"].split("&"))):
        value, sep, number = (s.strip() for s in part.partition("="))
        if not sep:
            raise ClaimError(f"{where}: axis_map {part!r} must be value=number (e.g. -1=inf)")
        axis_map[value] = _number(number, where)
    return Claim(
        row["id"], row["source"], row["kind"], row["metric"], a, b, axis, axis_map,
        _number(row["paper_a"], where), _number(row["paper_b"], where), row["paper_values"].strip(),
        row["paper_setting"].strip(), row["statement"].strip(),
    )  # fmt: skip


def load_claims(path: str = PAPER_CLAIMS) -> dict[str, Claim]:
    """Reads the claims file (lines starting with '#' are comments) into {id: Claim}, in file order.

    Raises:
      ClaimError: a missing column, unknown kind, missing field, malformed row or duplicate id, naming the line.
    """
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    try:
        lines = read_csv_lines(path)
    except ValueError as e:
        raise ClaimError(str(e)) from None
    if tuple(lines[0][1]) != FIELDS:
        raise ClaimError(f"{shown}: the header must be {','.join(FIELDS)}")
    claims: dict[str, Claim] = {}
    for number, record in lines[1:]:
        where = f"{shown}:{number}"
        if len(record) != len(FIELDS):
            raise ClaimError(f"{where}: {len(record)} fields, expected {len(FIELDS)}")
        claim = _parse_row(dict(zip(FIELDS, record, strict=True)), where)
        if claim.id in claims:
            raise ClaimError(f"{where}: duplicate claim id {claim.id}")
        claims[claim.id] = claim
    return claims


def value_is(value: Any, text: str) -> bool:
    """Whether a grid value reads as `text`: its label (`supcon`, `0.1`, `@ce`) or an equal number."""
    if value_label(value) == text:
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return False


def matches(values: dict, selector: dict[str, str]) -> bool:
    """Whether a point's values bind every macro of `selector` to its value."""
    return all(k in values and value_is(values[k], text) for k, text in selector.items())


def grid_misfit(claim: Claim, points: Sequence[dict], noun: str = "grid point") -> str | None:
    """Why a grid (its points' values) cannot test `claim`, or None when it can."""
    for name in ("a", "b"):
        selector = getattr(claim, name)
        if selector and not any(matches(p, selector) for p in points):
            return f"no {noun} has {format_selector(selector)}"
    severity = claim.axis == report_metrics.SEVERITY  # the runs' results hold it, not the grid
    levels = {value_label(p[claim.axis]) for p in points if claim.axis in p}
    if claim.axis and not severity and len(levels) < 2:
        return f"fewer than 2 values of {claim.axis} in the {noun}s"
    if claim.kind == "lower_spread":
        for selector in (claim.a, claim.b):
            settings = {group_key(p) for p in points if matches(p, selector)}
            if len(settings) < MIN_SETTINGS:
                return (
                    f"{format_selector(selector)} has {len(settings)} hyperparameter setting(s) in the grid; "
                    f"a spread needs at least {MIN_SETTINGS}"
                )
    return None


def check_recipe_claims(
    ids: Any, points: Sequence[dict], where: str, path: str = PAPER_CLAIMS
) -> None:
    """Checks a recipe's `report.claims`: a list of known ids, each testable by the grid's points.

    Raises:
      ClaimError: one line naming `where` (the recipe's file:line) and the bad id.
    """
    if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
        raise ClaimError(f"{where}: report.claims must be a list of claim ids; got {ids!r}")
    known = load_claims(path)
    for claim_id in ids:
        if claim_id not in known:
            raise ClaimError(
                f"{where}: report.claims: unknown claim {claim_id!r} (the ids are in "
                f"supcon/paper_claims.csv: {', '.join(known)})"
            )
        misfit = grid_misfit(known[claim_id], points)
        if misfit:
            raise ClaimError(f"{where}: report.claims: {claim_id} does not fit this grid: {misfit}")


# -------------------------------------------------------------------------------------------------------------
# Claims on runs


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
        lower_spread), row a and the picked other value of the axis (lowest, highest), or the runs at each
        value of the axis in ascending order (increasing); empty when the claim found nothing to compare.
    """

    claim: Claim
    where: str
    verdict: str
    estimate: Estimate | None = None
    compared: str = ""
    reason: str = ""
    groups: Groups = ()


def _finished(runs: Sequence[Run], metric: str) -> list[tuple[Run, float]]:
    return [
        (r, r.metric(metric))
        for r in runs
        if r.state == workdir.DONE and r.metric(metric) is not None
    ]


def _progress(done: int, planned: int) -> str:
    return "" if done == planned else f"; {done} of {planned} finished"


def compare_rows(
    a_runs: Sequence[Run], b_runs: Sequence[Run], metric: str, names: tuple[str, str] = ("a", "b")
) -> Estimate:
    """mean(a) - mean(b) over finished runs: paired by SEED when both finished the same seeds, else Welch.

    Raises:
      Undetermined: a row (named by `names` in the message) has no finished run, or too few for the test.
    """
    a, b = _finished(a_runs, metric), _finished(b_runs, metric)
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
        estimate = paired_difference([v for _, v in a], [by_seed[s] for s in labels_a])
    else:
        if None in seeds_a + seeds_b:
            why = "no SEED axis"
        elif not unique:
            why = "several runs per SEED"
        else:
            why = "the rows finished different SEED values"
        estimate = welch_difference([v for _, v in a], [v for _, v in b])
        estimate = dataclasses.replace(estimate, note=why)
    if len(a) < len(a_runs) or len(b) < len(b_runs):
        extra = f"; {len(a)}/{len(a_runs)} and {len(b)}/{len(b_runs)} finished"
        estimate = dataclasses.replace(estimate, n=estimate.n + extra)
    return estimate


def _decide(claim: Claim, compute, sign: int, compared: str, groups: Groups) -> Verdict:
    try:
        estimate = compute()
    except Undetermined as why:
        return Verdict(claim, "", INCONCLUSIVE, None, compared, str(why), groups)
    verdict, reason = verdict_of(estimate, sign)
    return Verdict(claim, "", verdict, estimate, compared, reason, groups)


def _greater(claim: Claim, runs: Sequence[Run]) -> Verdict | None:
    """Row a above row b (`greater`) or below it (`less`): the difference a - b."""
    a = [r for r in runs if matches(r.values, claim.a)]
    b = [r for r in runs if matches(r.values, claim.b)]
    if not a or not b:
        return None
    names = format_selector(claim.a), format_selector(claim.b)
    compared = f"{names[0]} − {names[1]}"
    sign = -1 if claim.kind == "less" else +1
    groups = ((names[0], tuple(a)), (names[1], tuple(b)))
    return _decide(claim, lambda: compare_rows(a, b, claim.metric, names), sign, compared, groups)


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
        if (done := _finished(members, claim.metric))
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
        claim, lambda: compare_rows(high, low, claim.metric, shown), +1, compared, groups
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
        done = _finished(swept, claim.metric)
        x = [axis_number(claim, r.values[claim.axis]) for r, _ in done]
        estimate = rank_trend(x, [v for _, v in done])
        note = "each run once per severity, 0 = clean" if severity else ""
        n = estimate.n + _progress(len(done), len(swept))
        return dataclasses.replace(estimate, n=n, note=note)

    return _decide(
        claim, compute, +1, f"{claim.metric} vs {claim.axis}", _axis_groups(claim, swept)
    )


def _spread(claim: Claim, runs: Sequence[Run]) -> Verdict | None:
    rows = [[r for r in runs if matches(r.values, s)] for s in (claim.a, claim.b)]
    if not all(rows):
        return None

    def setting_means(members: list[Run]) -> list[float]:
        settings: dict[tuple, list[float]] = {}
        for run, value in _finished(members, claim.metric):
            settings.setdefault(group_key(run.values), []).append(value)
        return [sum(v) / len(v) for v in settings.values()]

    names = format_selector(claim.a), format_selector(claim.b)
    compared = f"spread of {names[0]} − spread of {names[1]}"
    groups = tuple((name, tuple(members)) for name, members in zip(names, rows, strict=True))
    return _decide(
        claim, lambda: spread_difference(*map(setting_means, rows)), -1, compared, groups
    )


KIND_TESTS = {
    "greater": _greater,
    "less": _greater,
    "lowest": _extreme,
    "highest": _extreme,
    "increasing": _increasing,
    "lower_spread": _spread,
}


def _strata(runs: Sequence[Run], macros: list[str]) -> list[tuple[str, list[Run]]]:
    """Runs grouped by their values of `macros`, as ('M=v, N=w', runs), in value order."""
    return [(", ".join(f"{m}={v}" for m, v in zip(macros, key, strict=True)), members)
            for key, members in group_runs(runs, macros)]


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
