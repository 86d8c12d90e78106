"""The paper's claims file, `supcon/paper_claims.csv`: its rows as `Claim`s, and whether a grid can test them.

The file's header comment documents its columns and kinds; the tests of claims on runs are `supcon.report.claims`
(which re-exports these names). Light: no NumPy, SciPy or TensorFlow, since the runner checks recipes' `report.claims`
with `check_recipe_claims` when it loads them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from typing import Any

from supcon.report import metrics as report_metrics
from supcon.report.claims_stats import MIN_SETTINGS
from supcon.report.data import group_key, value_label
from supcon.report.paper_numbers import read_csv_lines

PAPER_CLAIMS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paper_claims.csv")
FIELDS = (
    "id", "source", "kind", "metric", "a", "b", "axis", "axis_map", "margin", "paper_a", "paper_b", "paper_values",
    "paper_setting", "statement", "not_tested_because",
)  # fmt: skip
# kind -> the fields it needs besides id, source, kind, metric and statement
KINDS = {
    "greater": ("a", "b"),
    "less": ("a", "b"),
    "lowest": ("a", "axis"),
    "highest": ("a", "axis"),
    "increasing": ("axis",),
    "lower_spread": ("a", "b"),
    "equivalent": ("a", "b", "margin"),
    "not_greater": ("a", "b", "margin"),
}
MARGIN_KINDS = ("equivalent", "not_greater")  # the kinds that need a margin
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
    margin: float | None = None  # equivalent / not_greater: in the metric's unit (pp for accuracies)
    not_tested_because: str = ""  # why no report tests it yet (shown by the scoreboard while none does)

    @property
    def unit_suffix(self) -> str:
        """The unit of the claims file's numbers for this claim (paper_a, margin) as a suffix: ' pp' for
        accuracies, else ''."""
        return " pp" if report_metrics.is_fraction(self.metric) else ""

    @property
    def metric_margin(self) -> float | None:
        """The margin in the metric's own unit (a fraction for accuracies), as the statistics take it."""
        if self.margin is None:
            return None
        return self.margin / 100.0 if report_metrics.is_fraction(self.metric) else self.margin

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


def _margin(row: dict[str, str], where: str) -> float | None:
    """The row's margin: a positive number for the kinds with a margin (required there), None for the others."""
    margin = _number(row["margin"], where)
    if margin is not None and row["kind"] not in MARGIN_KINDS:
        raise ClaimError(
            f"{where}: claim {row['id']} ({row['kind']}) takes no margin (only {' and '.join(MARGIN_KINDS)} do)"
        )
    if margin is not None and not 0 < margin < math.inf:
        raise ClaimError(f"{where}: claim {row['id']}: margin {row['margin']!r} must be a positive number")
    return margin


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
            example = " (in the metric's unit, e.g. 0.5 for 0.5 pp of top-1)" if name == "margin" else ""
            raise ClaimError(f"{where}: claim {row['id']} ({row['kind']}) needs a value for {name}{example}")
    margin = _margin(row, where)
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
        row["paper_setting"].strip(), row["statement"].strip(), margin, row["not_tested_because"].strip(),
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
