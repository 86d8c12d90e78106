"""A recipe's `report.*` settings: their names, types and what they refer to (no TensorFlow, no pandas).

Checked when the runner loads the recipe (`supcon.grid.check_report`, against the grid's points) and again, but
for the macro names, when the reporter reads the runs (`spec_of_runs`). Every error is one line naming the
setting and, where it helps, the nearest valid name:

* `rows`, `columns`: lists of macros that the points set (a name that matches no grid key is a typo);
* `metrics`: result.json keys that a finished run writes (`workdir.RESULT_METRICS`);
* `paper`: a table of `supcon/paper_numbers.csv`; `paper_rows` / `paper_columns`: dicts from our labels (or
  '*') to rows / columns of that table;
* `title`: a string; `claims`: a list of claim ids (checked further by `supcon.claims`).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from typing import Any

from supcon import paper_numbers, workdir
from supcon.report_data import value_label

SPEC_KEYS = ("rows", "columns", "metrics", "paper", "title", "paper_rows", "paper_columns", "claims")


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
    for key in ("paper", "title"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise SpecError(key, f"report.{key} must be a string; got {raw[key]!r}")
        spec[key] = raw.get(key)
    return spec


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


def _check_metrics(spec: dict) -> None:
    for name in spec["metrics"]:
        if name not in workdir.RESULT_METRICS:
            raise SpecError(
                "metrics",
                f"report.metrics names {name}, which no run writes (result.json has "
                f"{', '.join(workdir.RESULT_METRICS)})" + _nearest(name, workdir.RESULT_METRICS),
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
    _check_metrics(spec)
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

