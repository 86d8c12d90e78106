"""Result tables for the reporter: mean ± std (n) cells, the paper's numbers beside ours, markdown.

The paper's numbers live in `supcon/paper_numbers.csv` (read and checked by `supcon.report.paper_numbers`), in
percent. Imports no TensorFlow.
"""

from __future__ import annotations

import pandas as pd

from supcon import workdir
from supcon.report.data import MISSING, Run, sort_key, value_label
from supcon.report.metrics import is_fraction  # also imported from here by the reporter's modules
from supcon.report.paper_numbers import (  # noqa: F401  (re-exported: the reporter's tables use the paper's numbers)
    PAPER_NUMBERS,
    WILDCARD,
    format_paper,
    load_paper_numbers,
    paper_label,
)

LEGEND = (
    "Cells are mean ± sample standard deviation (ddof=1) over seeds, then (n) = the number of finished "
    "seeds; (n/N) when only n of the N planned seeds finished; `± –` when n = 1 (no spread); `–` when no "
    "seed finished. Accuracies are in percent. Δ = ours − paper, in percentage points."
)


def paper_lookup(
    numbers: list[dict], table: str, row: str, column: str | None, metric: str
) -> dict | None:
    """The paper's entry for (table, row, column, metric), labels matched by `paper_label`.

    With `column` None, the row's only column for that metric (None when there are several).
    """
    found = [
        n
        for n in numbers
        if (n["table"], n["metric"]) == (table, metric)
        and paper_label(n["row"]) == paper_label(row)
    ]
    if column is not None:
        found = [n for n in found if paper_label(n["column"]) == paper_label(column)]
    return found[0] if len(found) == 1 else None


def infer_paper_row(numbers: list[dict], table: str, stem: str) -> str | None:
    """The one paper row of `table` whose name appears in a recipe stem (`supcon_cifar10_resnet50`).

    Used for single-point recipes, which have no row values; numeric and short row names never match.
    """
    name = paper_label(stem)
    rows = {n["row"] for n in numbers if n["table"] == table}
    hits = [
        r
        for r in rows
        if len(paper_label(r)) >= 4 and paper_label(r).isalpha() and paper_label(r) in name
    ]
    return hits[0] if len(hits) == 1 else None


def summarize(values: list[float]) -> tuple[float | None, float | None, int]:
    """Mean, sample std (ddof=1; None when n < 2) and n of a list of finite values."""
    series = pd.Series(values, dtype="float64")
    n = int(series.size)
    if n == 0:
        return None, None, 0
    std = float(series.std(ddof=1)) if n > 1 else None
    return float(series.mean()), std, n


def format_number(value: float, fraction: bool) -> str:
    """A fraction as a percentage with 2 decimals, anything else with 4 significant digits."""
    return f"{100 * value:.2f}" if fraction else f"{value:.4g}"


def format_cell(mean: float | None, std: float | None, n: int, planned: int, fraction: bool) -> str:
    """`mean ± std (n)`, `(n/N)` when seeds are missing, `± –` without spread, `–` without data."""
    count = f"({n})" if n >= planned else f"({n}/{planned})"
    if mean is None:
        return f"{MISSING} {count}"
    spread = MISSING if std is None else format_number(std, fraction)
    return f"{format_number(mean, fraction)} ± {spread} {count}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table; '|' inside cells is escaped."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header)] + [line(r) for r in rows])


def _cells(runs: list[Run], rows: list[str], columns: list[str]) -> tuple[dict, dict, dict]:
    """Groups runs by (row labels, column labels); returns the groups and the sort keys of both axes."""
    cells: dict[tuple, list[Run]] = {}
    row_order: dict[tuple, tuple] = {}
    col_order: dict[tuple, tuple] = {}
    for run in runs:
        rkey = tuple(value_label(run.values.get(m)) for m in rows)
        ckey = tuple(value_label(run.values.get(m)) for m in columns)
        row_order[rkey] = tuple(sort_key(run.values.get(m)) for m in rows)
        col_order[ckey] = tuple(sort_key(run.values.get(m)) for m in columns)
        cells.setdefault((rkey, ckey), []).append(run)
    return cells, row_order, col_order


def _paper_column(members: list[Run], ckey: tuple, spec: dict) -> str | None:
    """The paper column compared with one cell: the mapped column value, else the runs' dataset.

    Without declared columns the runs' dataset (env.json) is the column: `cifar10` meets the paper's
    CIFAR-10, while `fashion_mnist` meets nothing unless report.paper_columns maps it (or '*') to one.
    """
    mapping = spec["paper_columns"]
    if ckey:
        label = " / ".join(ckey)
        return mapping.get(label, mapping.get(WILDCARD, label))
    datasets = [r.env.get("scale", {}).get("dataset") for r in members if r.env]
    dataset = next((str(d) for d in datasets if d), None)
    if dataset is None:
        return mapping.get(WILDCARD)
    return mapping.get(dataset, mapping.get(WILDCARD, dataset))


def _paper_row(rkey: tuple, spec: dict, numbers: list[dict]) -> str | None:
    """The paper row compared with one table row: mapped, else the row's own label, else the stem's."""
    mapping = spec["paper_rows"]
    if rkey:
        label = " / ".join(rkey)
        return mapping.get(label, mapping.get(WILDCARD, label))
    return mapping.get(WILDCARD) or infer_paper_row(numbers, spec["paper"], spec["stem"])


SMOKE_PAPER = "smoke run: the column a real run fills"


class _Column:
    """One metric column of the results table (for one column value), with its paper comparison.

    With `smoke` (smoke runs: a few steps on a stand-in dataset) the paper's number is shown, so the mapping to the
    paper is visible and tested, under a header that says so, and without the meaningless Δ.
    """

    def __init__(self, ckey: tuple, metric: str, title: str, smoke: bool = False):
        self.ckey, self.metric, self.title, self.smoke = ckey, metric, title, smoke
        self.ours: list[str] = []
        self.paper: list[str] = []
        self.delta: list[str] = []
        self.matched: list[dict] = []

    def add(self, members: list[Run], entry: dict | None) -> None:
        """Appends one row's cell: our summary, the paper's number and the difference."""
        fraction = is_fraction(self.metric)
        done = [r.metric(self.metric) for r in members if r.state == workdir.DONE]
        mean, std, n = summarize([v for v in done if v is not None])
        self.ours.append(format_cell(mean, std, n, len(members), fraction) if members else MISSING)
        if entry is None:
            self.paper.append(MISSING)
            self.delta.append(MISSING)
            return
        self.matched.append(entry)
        self.paper.append(format_paper(entry["value"]))
        ours = None if mean is None else (100 * mean if fraction else mean)
        self.delta.append(MISSING if ours is None else f"{ours - entry['value']:+.2f}")

    def headers(self) -> list[str]:
        """Our header, then the paper's (naming its dataset and model when unique) and Δ when matched."""
        if not self.matched:
            return [self.title]
        where = sorted({(e["column"], e["model"]) for e in self.matched})
        paper = f"paper ({where[0][0]}, {where[0][1]})" if len(where) == 1 else "paper"
        if self.smoke:
            return [self.title, f"{paper} [{SMOKE_PAPER}]"]
        return [self.title, paper, "Δ"]

    def body(self, i: int) -> list[str]:
        """The cells of row `i`."""
        if not self.matched:
            return [self.ours[i]]
        return [self.ours[i], self.paper[i]] + ([] if self.smoke else [self.delta[i]])


def results_table(
    runs: list[Run],
    spec: dict,
    rows: list[str],
    columns: list[str],
    metrics: list[str],
    numbers: list[dict],
) -> tuple[str, list[dict]]:
    """The results table as markdown, and the paper entries it quotes.

    Args:
      runs: every run (done, failed, missing); planned counts include the unfinished ones. When any is a smoke
        run (point.json), the paper's numbers are shown under a header that says so, without Δ.
      spec: the validated report spec (`paper`, `paper_rows`, `paper_columns`).
      rows, columns: the macros whose values make the rows and the columns.
      metrics: result.json keys to show.
      numbers: the paper numbers (see `load_paper_numbers`).
    """
    cells, row_order, col_order = _cells(runs, rows, columns)
    rkeys = sorted(row_order, key=row_order.get)
    ckeys = sorted(col_order, key=col_order.get)
    smoke = any(r.point.get("smoke") for r in runs)
    table_columns = []
    for ckey in ckeys:
        for metric in metrics:
            unit = " (%)" if is_fraction(metric) else ""
            title = f"{' / '.join(ckey)} {metric}{unit}" if ckey else f"{metric}{unit}"
            table_columns.append(_Column(ckey, metric, title, smoke))
    for rkey in rkeys:
        paper_row = _paper_row(rkey, spec, numbers) if spec["paper"] else None
        for col in table_columns:
            members = cells.get((rkey, col.ckey), [])
            entry = None
            if paper_row is not None and members:
                column = _paper_column(members, col.ckey, spec)
                entry = paper_lookup(numbers, spec["paper"], paper_row, column, col.metric)
            col.add(members, entry)
    header = (rows or ["runs"]) + [h for c in table_columns for h in c.headers()]
    body = [
        list(rkey or ("all",)) + [x for c in table_columns for x in c.body(i)]
        for i, rkey in enumerate(rkeys)
    ]
    quoted = [e for c in table_columns for e in c.matched]
    unique = list({(e["table"], e["row"], e["column"], e["metric"]): e for e in quoted}.values())
    return markdown_table(header, body), unique
