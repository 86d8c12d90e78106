"""The paper's numbers as data (`supcon/paper_numbers.csv`): reading, checking and matching labels.

Columns: table,row,column,metric,value,model,source; `value` in percent; lines starting with '#' are comments.
A recipe selects a table with `report.paper` and maps its own values to the paper's labels with
`report.paper_rows` / `report.paper_columns`. Light (no pandas, no TensorFlow): the runner checks recipes
against this file when it loads them.
"""

from __future__ import annotations

import csv
import math
import os
import re

from supcon.report import metrics as report_metrics

PAPER_NUMBERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paper_numbers.csv")
PAPER_FIELDS = ("table", "row", "column", "metric", "value", "model", "source")
WILDCARD = "*"  # a paper_rows / paper_columns key that applies to every row / column
# Normalised labels (see `paper_label`) of our macro values -> normalised paper labels.
ALIASES = {
    "ce": "crossentropy",
    "xent": "crossentropy",
    "outside": "lout",
    "inside": "lin",
    "lsupout": "lout",
    "lsupin": "lin",
    "imagenet2012": "imagenet",
}


def paper_label(label: str) -> str:
    """Normalises a label for matching: `Cross-Entropy`, `cross_entropy` and `ce` all become one key.

    Numbers stay as written (so `-1` never matches `1`); other labels lose case and punctuation, then a
    few aliases apply (our macro values -> the paper's names).
    """
    try:
        float(label)
        return label.strip()
    except ValueError:
        key = re.sub(r"[^a-z0-9]", "", label.lower())
        return ALIASES.get(key, key)


def shown(path: str) -> str:
    """A path relative to the working directory when it is inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def read_csv_lines(path: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of each CSV record of a data file, without '#' comment lines and blank lines.

    Raises:
      ValueError: the file cannot be read, is not UTF-8 text or holds no record, naming the file.
    """
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{shown(path)}: not UTF-8 text (byte offset {e.start})") from None
    except OSError as e:
        raise ValueError(f"{shown(path)}: cannot read: {e.strerror or e}") from None
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines())]
    lines = [(n, line) for n, line in lines if line.strip() and not line.startswith("#")]
    try:
        records = list(csv.reader(line for _, line in lines))
    except csv.Error as e:
        raise ValueError(f"{shown(path)}: not CSV: {e}") from None
    if not records:
        raise ValueError(f"{shown(path)}: empty (no header and no row)")
    return [(n, record) for (n, _), record in zip(lines, records, strict=True)]


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: value {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: value {text!r} is not a finite number")
    return value


def load_paper_numbers(path: str = PAPER_NUMBERS) -> list[dict]:
    """Reads and checks the paper-numbers CSV; `value` becomes a float.

    Raises:
      ValueError: one line naming the file and line: unreadable or not UTF-8, a wrong header, a row with the
        wrong number of fields, an empty table/row/metric, a value that is not a number, a metric that no run
        writes (`report_metrics.is_metric`), or two rows with the same table, row, column and metric.
    """
    lines = read_csv_lines(path)
    (_, header), body = lines[0], lines[1:]
    if tuple(header) != PAPER_FIELDS:
        raise ValueError(f"{shown(path)}: the header must be {','.join(PAPER_FIELDS)}; got {','.join(header)}")
    rows, seen = [], {}
    for number, record in body:
        where = f"{shown(path)}:{number}"
        if len(record) != len(PAPER_FIELDS):
            raise ValueError(f"{where}: {len(record)} fields, expected {len(PAPER_FIELDS)}")
        row = dict(zip(PAPER_FIELDS, record, strict=True))
        for name in ("table", "row", "metric"):
            if not row[name].strip():
                raise ValueError(f"{where}: empty {name}")
        if not report_metrics.is_metric(row["metric"]):
            raise ValueError(
                f"{where}: metric {row['metric']!r} is not one a run writes ({report_metrics.known_metrics()})"
            )
        row["value"] = _number(row["value"], where)
        key = (row["table"], paper_label(row["row"]), paper_label(row["column"]), row["metric"])
        if key in seen:
            raise ValueError(f"{where}: the same table, row, column and metric as line {seen[key]}")
        seen[key] = number
        rows.append(row)
    return rows


def format_paper(value: float) -> str:
    """A paper number as printed: one decimal (96.0, 67.2), or all its digits (78.24, an ECE of 0.039)."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def table_labels(numbers: list[dict], table: str, field: str) -> set[str]:
    """The normalised labels (see `paper_label`) of a field ('row' or 'column') in one table."""
    return {paper_label(n[field]) for n in numbers if n["table"] == table}
