"""A recipe's `report.*` settings: their names, types and what they refer to (no TensorFlow, no pandas).

Checked when the runner loads the recipe (`supcon.experiment.grid.check_report`, against the grid's points) and again, but
for the macro names, when the reporter reads the runs (`spec_of_runs`). Every error is one line naming the
setting and, where it helps, the nearest valid name:

* `rows`, `columns`: lists of macros that the points set (a name that matches no grid key is a typo);
* `metrics`: result.json keys that a finished run writes (`workdir.RESULT_METRICS`);
* `paper`: a table of `supcon/paper_numbers.csv`; `paper_rows` / `paper_columns`: dicts from our labels (or
  '*') to rows / columns of that table;
* `convergence`: a macro whose values are training lengths (e.g. 'PRETRAIN_EPOCHS'): adds the Convergence
  section (`supcon.report.convergence`: where each row's curve of the first metric flattens);
* `title`: a string; `claims`: a list of claim ids (checked further by `supcon.report.claims`); a claim or metric
  that needs a baseline (robust/mce, robust/relative_mce) needs `robustness`;
* `supersedes`: report folders (recipe stems) whose verdicts on the claims this report also tests it replaces
  (a rerun with a fairer design): the scoreboard shows theirs as superseded and leaves them out of its counts;
* `robustness`: turns on the Robustness section (`supcon.report.robustness`), a dict:
    report.robustness = {
        'baseline': 'alexnet',              # or a row of the grid: {'METHOD': 'cross_entropy'}
        'paper_rows': {'supcon / 50': 'SupCon R50'},   # optional: our row labels -> figure3/table6/table7 rows
        'reliability': ['clean', 5],        # optional: the test sets of the reliability diagrams
    }
  'alexnet' normalises corruption errors by AlexNet's published ImageNet-C errors (only meaningful on
  ImageNet-C); a dict of macro values names the grid row whose errors (mean over seeds) normalise, within each
  setting of the other report rows and columns.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from typing import Any

from supcon import workdir
from supcon.report import claims, paper_numbers
from supcon.report import metrics as report_metrics
from supcon.report.data import value_label

SPEC_KEYS = (
    "rows", "columns", "metrics", "paper", "title", "paper_rows", "paper_columns", "claims", "robustness",
    "convergence", "supersedes",
)  # fmt: skip
ALEXNET = "alexnet"  # report.robustness's baseline: AlexNet's published ImageNet-C errors
ROBUSTNESS_KEYS = ("baseline", "paper_rows", "reliability")
ROBUSTNESS_TABLES = ("figure3", "table6", "table7")  # the paper tables the Robustness section quotes
DEFAULT_RELIABILITY = (0, 5)  # the clean test set and severity 5
ROBUSTNESS_EXAMPLE = "{'baseline': 'alexnet'} or {'baseline': {'METHOD': 'cross_entropy'}}"


class SpecError(ValueError):
    """A bad `report.*` setting; `key` names it (without `report.`)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def _nearest(name: str, candidates: Sequence[str]) -> str:
    found = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean {found[0]}?" if found else ""


def _names(raw: dict, key: str, what: str, one: bool = True) -> list[str]:
    """A setting that must be a list of strings (with `one`, a single string is one name)."""
    value = raw.get(key) or []
    if isinstance(value, str) and one:
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise SpecError(key, f"report.{key} must be a list of {what}; got {value!r}")
    if len(set(value)) != len(value):
        raise SpecError(key, f"report.{key} names an entry twice: {value!r}")
    return list(value)


def _mapping(raw: dict, key: str) -> dict[str, str]:
    """A setting that must map our values to the paper's labels."""
    value = raw.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SpecError(
            key, f"report.{key} must be a dict from our values to the paper's labels; got {value!r}"
        )
    return {value_label(k): v for k, v in value.items()}


def parse(raw: dict) -> dict:
    """Checks the names and types of `report.*` settings; returns them with defaults filled.

    Raises:
      SpecError: an unknown name or a value of the wrong type.
    """
    for name in raw:
        if name not in SPEC_KEYS:
            allowed = ", ".join(f"report.{k}" for k in SPEC_KEYS)
            raise SpecError(
                name, f"unknown binding report.{name} (allowed: {allowed}){_nearest(name, SPEC_KEYS)}"
            )
    spec: dict[str, Any] = {k: _names(raw, k, "macro names") for k in ("rows", "columns")}
    spec["metrics"] = _names(raw, "metrics", "metric names (result.json keys)")
    spec["claims"] = _names(raw, "claims", "claim ids", one=False)
    spec.update({k: _mapping(raw, k) for k in ("paper_rows", "paper_columns")})
    for key in ("paper", "title", "convergence"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise SpecError(key, f"report.{key} must be a string; got {raw[key]!r}")
        spec[key] = raw.get(key)
    spec["robustness"] = _robustness(raw.get("robustness"))
    spec["supersedes"] = _names(raw, "supersedes", "report names (recipe stems)", one=False)
    bad = [name for name in spec["supersedes"] if not re.fullmatch(r"[a-z0-9_]+", name)]
    if bad:
        raise SpecError("supersedes", f"report.supersedes: {bad[0]!r} is not a report name (a recipe stem such as "
                                      f"'fmnist_table2')")  # fmt: skip
    return spec


def _robust_error(message: str) -> SpecError:
    return SpecError("robustness", f"report.robustness{message}")


def _baseline(value: Any) -> str | dict[str, str]:
    """'alexnet', or a row selector {MACRO: value label}."""
    if value == ALEXNET:
        return ALEXNET
    if isinstance(value, dict) and value and all(
        isinstance(k, str) and k.isupper() and isinstance(v, str | int | float) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        return {k: value_label(v) for k, v in value.items()}
    raise _robust_error(
        f"['baseline'] must be 'alexnet' (the paper's AlexNet ImageNet-C errors) or a dict of macro values "
        f"naming a row of the grid, e.g. {{'METHOD': 'cross_entropy'}}; got {value!r}"
    )


def _reliability(value: Any) -> tuple[int, ...]:
    """['clean', 5] -> (0, 5): the test sets of the reliability diagrams, 0 = clean."""
    if value is None:
        return DEFAULT_RELIABILITY
    items = value if isinstance(value, list | tuple) else [value]
    ok = [0 if v == "clean" else v for v in items]
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 5 for v in ok):
        raise _robust_error(
            f"['reliability'] must be a list of 'clean' and severities 1..5, e.g. ['clean', 5]; got {value!r}"
        )
    return tuple(dict.fromkeys(ok))


def _robustness(value: Any) -> dict | None:
    """report.robustness parsed: {'baseline', 'paper_rows', 'reliability'}, or None when it is not set."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _robust_error(f" must be a dict such as {ROBUSTNESS_EXAMPLE}; got {value!r}")
    for key in value:
        if key not in ROBUSTNESS_KEYS:
            raise _robust_error(
                f" has unknown key {key!r} (allowed: {', '.join(ROBUSTNESS_KEYS)})"
                + _nearest(str(key), ROBUSTNESS_KEYS)
            )
    if "baseline" not in value:
        raise _robust_error(f" needs a 'baseline': {ROBUSTNESS_EXAMPLE}")
    rows = value.get("paper_rows") or {}
    if not isinstance(rows, dict) or not all(isinstance(v, str) for v in rows.values()):
        raise _robust_error(
            f"['paper_rows'] must be a dict from our row labels to rows of the paper's "
            f"{', '.join(ROBUSTNESS_TABLES)}; got {rows!r}"
        )
    return {
        "baseline": _baseline(value["baseline"]),
        "paper_rows": {value_label(k): v for k, v in rows.items()},
        "reliability": _reliability(value.get("reliability")),
    }


def _check_macros(spec: dict, points: Sequence[dict]) -> None:
    keys = list(dict.fromkeys(k for p in points for k in p))
    for key in ("rows", "columns"):
        for name in spec[key]:
            if name not in keys:
                have = ", ".join(keys) or "none: the grid sets no macro"
                raise SpecError(
                    key,
                    f"report.{key} names {name}, which no grid point sets (the grid's macros: {have})"
                    + _nearest(name, keys),
                )
    both = [m for m in spec["rows"] if m in spec["columns"]]
    if both:
        raise SpecError("columns", f"report.columns repeats {', '.join(both)} of report.rows")


def _check_convergence(spec: dict, points: Sequence[dict]) -> None:
    """report.convergence names a macro every point sets to a positive number (a training length)."""
    axis = spec["convergence"]
    keys = list(dict.fromkeys(k for p in points for k in p))
    if axis not in keys:
        raise SpecError(
            "convergence",
            f"report.convergence names {axis}, which no grid point sets (the grid's macros: "
            f"{', '.join(keys) or 'none'})" + _nearest(axis, keys),
        )
    bad = [p.get(axis) for p in points if not (
        isinstance(p.get(axis), int | float) and not isinstance(p.get(axis), bool) and p.get(axis) > 0
    )]
    if bad:
        raise SpecError(
            "convergence", f"report.convergence: {axis} must be a positive number (a training length) at every "
            f"point; got {bad[0]!r}"
        )


def _check_derived(spec: dict) -> None:
    """Metrics and claims on robust/mce or robust/relative_mce need report.robustness (their baseline)."""
    if spec["robustness"] is not None:
        return
    need = f"which needs report.robustness (the baseline of corruption errors, {ROBUSTNESS_EXAMPLE})"
    for name in spec["metrics"]:
        if name in report_metrics.DERIVED:
            raise SpecError("metrics", f"report.metrics names {name}, {need}")
    known = claims.load_claims()
    for claim_id in spec["claims"]:
        if claim_id in known and known[claim_id].metric in report_metrics.DERIVED:
            raise SpecError("claims", f"report.claims: {claim_id} tests {known[claim_id].metric}, {need}")


def _check_robustness(spec: dict, points: Sequence[dict], macros: bool) -> None:
    """The baseline row exists in the grid (with `macros`); paper_rows name rows of the robustness tables."""
    robust = spec["robustness"]
    selector = robust["baseline"]
    if macros and selector != ALEXNET:
        keys = list(dict.fromkeys(k for p in points for k in p))
        for name in selector:
            if name not in keys:
                raise _robust_error(
                    f"['baseline'] names {name}, which no grid point sets (the grid's macros: "
                    f"{', '.join(keys) or 'none'})" + _nearest(name, keys)
                )
        if not any(claims.matches(p, selector) for p in points):
            raise _robust_error(f"['baseline']: no grid point has {claims.format_selector(selector)}")
    if not robust["paper_rows"]:
        return
    numbers = paper_numbers.load_paper_numbers()
    theirs = {paper_numbers.paper_label(n["row"]): n["row"] for n in numbers if n["table"] in ROBUSTNESS_TABLES}
    for label, target in robust["paper_rows"].items():
        if paper_numbers.paper_label(target) not in theirs:
            raise _robust_error(
                f"['paper_rows'] maps {label!r} to {target!r}, which is no row of "
                f"{'/'.join(ROBUSTNESS_TABLES)} ({'; '.join(sorted(set(theirs.values())))})"
                + _nearest(target, list(theirs.values()))
            )
    ours = spec["rows"] + spec["columns"]
    if macros and ours:
        have = _labels(points, ours)
        for label in robust["paper_rows"]:
            if label not in have:
                raise _robust_error(
                    f"['paper_rows'] has {label!r}, which is no row of the report "
                    f"({', '.join(sorted(have))})" + _nearest(label, have)
                )


def _check_metrics(spec: dict) -> None:
    for name in spec["metrics"]:
        if not report_metrics.is_metric(name):
            raise SpecError(
                "metrics",
                f"report.metrics names {name}, which no run writes (result.json has "
                f"{report_metrics.known_metrics()})" + _nearest(name, workdir.RESULT_METRICS),
            )


def _labels(points: Sequence[dict], macros: list[str]) -> set[str]:
    """The row (or column) labels the table will have: the macros' value labels joined by ' / '."""
    return {" / ".join(value_label(p.get(m)) for m in macros) for p in points}


def _check_paper(spec: dict, points: Sequence[dict], numbers: list[dict]) -> None:
    tables = sorted({n["table"] for n in numbers})
    paper = spec["paper"]
    if paper is not None and paper not in tables:
        raise SpecError(
            "paper", f"report.paper must be one of {tables}; got {paper!r}" + _nearest(paper, tables)
        )
    for key, field, ours in (("paper_rows", "row", "rows"), ("paper_columns", "column", "columns")):
        if not spec[key]:
            continue
        if paper is None:
            raise SpecError(key, f"report.{key} needs report.paper (the table whose {field}s it names)")
        theirs = paper_numbers.table_labels(numbers, paper, field)
        for label, target in spec[key].items():
            if paper_numbers.paper_label(target) not in theirs:
                names = sorted({n[field] for n in numbers if n["table"] == paper})
                raise SpecError(
                    key,
                    f"report.{key} maps {label!r} to {target!r}, which is not a {field} of {paper} "
                    f"({'; '.join(names)})" + _nearest(target, names),
                )
        if spec[ours]:  # without declared rows/columns the labels come from the runs (or their dataset)
            have = _labels(points, spec[ours])
            for label in spec[key]:
                if label != paper_numbers.WILDCARD and label not in have:
                    raise SpecError(
                        key,
                        f"report.{key} has {label!r}, which is no value of report.{ours} "
                        f"({', '.join(sorted(have))}; '*' maps every one)" + _nearest(label, have),
                    )


def check(raw: dict, points: Sequence[dict], macros: bool = True) -> dict:
    """Checks `report.*` settings against the points (their macro values) and the paper numbers.

    `macros=False` skips checking that rows and columns name macros of the points (the reporter: runs of an
    older grid still report, with '–' for a macro they lack).

    Returns:
      The parsed settings (see `parse`).

    Raises:
      SpecError: see the module docstring.
      ValueError: supcon/paper_numbers.csv is malformed (naming its line).
    """
    spec = parse(raw)
    if macros:
        _check_macros(spec, points)
        if spec["convergence"] is not None:
            _check_convergence(spec, points)
    _check_metrics(spec)
    _check_derived(spec)
    if spec["robustness"] is not None:
        _check_robustness(spec, points, macros)
    if spec["paper"] is not None or spec["paper_rows"] or spec["paper_columns"]:
        _check_paper(spec, points, paper_numbers.load_paper_numbers())
    return spec


def spec_of_runs(runs: Sequence) -> dict:
    """The `report.*` settings copied into the runs' point.json (the first readable one), checked.

    Returns:
      `parse`'s dict plus `stem` (the recipe stem) and `header` (the recipe's comment lines).

    Raises:
      ValueError: one line naming the point.json and the setting (see `check`).
    """
    first = next((r for r in runs if r.point and r.path), None)
    point = first.point if first else {}
    raw = point.get("report") or {}
    where = os.path.join(first.path, workdir.POINT) if first else "point.json"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: report must be a dict of report.* settings; got {raw!r}")
    raw = {str(k).removeprefix("report."): v for k, v in raw.items()}
    try:
        spec = check(raw, [r.values for r in runs], macros=False)
    except SpecError as e:
        raise ValueError(f"{paper_numbers.shown(where)}: {e}") from None
    spec["stem"] = str(point.get("recipe_stem") or "runs")
    spec["header"] = [str(line) for line in point.get("header") or []]
    return spec


def spec_of_recipe(recipe, runs: Sequence) -> dict:
    """The `report.*` settings of the recipe the report is for (`report_data.ReportRecipe`, given by the runner),
    checked as in `spec_of_runs`: they, not those copied into the runs' point.json, shape the report (with
    grid.runs_of the runs are another recipe's, and so are their point.json's settings).

    Returns:
      `parse`'s dict plus `stem` (the recipe's own stem) and `header` (its comment lines).

    Raises:
      ValueError: one line naming the recipe's file and line and the setting (see `check`).
    """
    try:
        spec = check(dict(recipe.report), [r.values for r in runs], macros=False)
    except SpecError as e:
        raise ValueError(f"{recipe.where.get(f'report.{e.key}', paper_numbers.shown(recipe.path))}: {e}") from None
    spec["stem"] = recipe.stem
    spec["header"] = [str(line) for line in recipe.header]
    return spec

