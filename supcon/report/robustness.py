"""The Robustness section of a report (`report.robustness`): mCE and relative mCE against a baseline, top-1 and
ECE by corruption severity, each corruption's top-1 and CE, the paper's Figure 3 / Table 6 / Table 7 numbers beside
ours, and plots (top-1 and ECE against severity, reliability diagrams). No TensorFlow.

The numbers come from `supcon.report.robust_data` (mCE per run against the baseline) and result.json's
corruption keys (`supcon.report.metrics`); cells are mean ± std (n) over seeds like the Results table.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from supcon import workdir
from supcon.report import robust_plots as report_robust_plots
from supcon.report.data import MISSING, Run, group_runs
from supcon.report.metrics import (
    CLEAN_ECE,
    CLEAN_TOP1,
    CORRUPTION_NAMES,
    ECE,
    MCE,
    MEAN_TOP1,
    RELATIVE_MCE,
    TOP1,
    has_corruptions,
    severities_of,
    severity_key,
)
from supcon.report.paper_numbers import format_paper, paper_label
from supcon.report.robust_data import ALEXNET_LABEL, Robustness, corruption_table
from supcon.report.spec import ROBUSTNESS_TABLES
from supcon.report.tables import SMOKE_PAPER, markdown_table, summarize

LEGEND = (
    "Cells are mean ± sample standard deviation (ddof=1) over seeds (n) = finished seeds, (n/N) when only n "
    "of N planned seeds finished; mCE and relative mCE are computed per run, then averaged. Top-1 in percent; "
    "ECE (15 equal-width bins) as a fraction, as the paper prints it; severity s is the mean over the "
    "corruptions at s. Lower mCE, relative mCE and ECE are better. Δ = ours − paper."
)
TABLE_NAMES = {"figure3": "Figure 3", "table6": "Table 6", "table7": "Table 7"}
SOURCES = {"figure3": "Figure 3 (left)", "table6": "Table 6 (supplement)", "table7": "Table 7"}
METRIC_NAMES = {  # in the order the quoted-numbers lines name them
    MCE: "mCE",
    RELATIVE_MCE: "relative mCE",
    CLEAN_TOP1: "clean top-1",
    CLEAN_ECE: "clean ECE",
    TOP1: "top-1 by severity",
    ECE: "ECE by severity",
}
SEVERITY_PNG = "robust_severity.png"
RELIABILITY_PNG = "reliability.png"


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _num(x: float) -> str:
    return f"{x:.2f}"


def _ece(x: float) -> str:
    return f"{x:.3f}"


@dataclasses.dataclass(frozen=True)
class _Stat:
    """One quantity of a table: its title, how a run gives it, its format, the factor from ours to the paper's
    unit, and the paper metric it is compared with (None: not compared)."""

    title: str
    read: Callable[[Run], float | None]
    fmt: Callable[[float], str]
    scale: float
    metric: str | None = None

    def cell(self, members: Sequence[Run]) -> tuple[str, float | None]:
        """`mean ± std (n)` over the finished members, and the mean."""
        values = [v for r in members if r.state == workdir.DONE and (v := self.read(r)) is not None]
        mean, std, n = summarize(values)
        count = f"({n})" if n >= len(members) else f"({n}/{len(members)})"
        if mean is None:
            return f"{MISSING} {count}", None
        spread = MISSING if std is None else self.fmt(std)
        return f"{self.fmt(mean)} ± {spread} {count}", mean


def _metric(name: str) -> Callable[[Run], float | None]:
    return lambda run: run.metric(name)


def paper_entry(numbers: list[dict], row: str | None, metric: str) -> dict | None:
    """The paper's number for a row of Figure 3, Table 6 or Table 7 (searched in that order) and a metric."""
    if row is None:
        return None
    key = paper_label(row)
    for table in ROBUSTNESS_TABLES:
        for entry in numbers:
            if (entry["table"], entry["metric"]) == (table, metric) and paper_label(
                entry["row"]
            ) == key:
                return entry
    return None


class _Table:
    """A table of our rows x quantities, with the paper's number (and Δ) beside each quantity it has."""

    def __init__(
        self, groups, stats: list[_Stat], paper_rows: dict, numbers: list[dict], smoke: bool
    ):
        self.groups, self.stats, self.smoke = groups, stats, smoke
        self.paper = [paper_rows.get(label) for label, _ in groups]
        self.entries = [
            [paper_entry(numbers, row, s.metric) if s.metric else None for s in stats]
            for row in self.paper
        ]
        self.quoted = [e for row in self.entries for e in row if e]

    def _paper_cells(self, stat: _Stat, entry: dict | None, mean: float | None) -> list[str]:
        if entry is None:
            return [MISSING] if self.smoke else [MISSING, MISSING]
        paper = format_paper(entry["value"])
        if self.smoke:
            return [paper]
        if mean is None:
            return [paper, MISSING]
        delta = stat.scale * mean - entry["value"]
        return [paper, f"{delta:+.3f}" if stat.fmt is _ece else f"{delta:+.2f}"]

    def markdown(self, first: str) -> str:
        header = [first]
        with_paper = [any(row[j] for row in self.entries) for j in range(len(self.stats))]
        for stat, paper in zip(self.stats, with_paper, strict=True):
            header.append(stat.title)
            if paper:
                header += [f"paper [{SMOKE_PAPER}]"] if self.smoke else ["paper", "Δ"]
        body = []
        for (label, members), entries in zip(self.groups, self.entries, strict=True):
            cells = [label]
            for stat, entry, paper in zip(self.stats, entries, with_paper, strict=True):
                text, mean = stat.cell(members)
                cells.append(text)
                if paper:
                    cells += self._paper_cells(stat, entry, mean)
            body.append(cells)
        return markdown_table(header, body)


def _severity_table(
    groups,
    first: str,
    what: str,
    levels: list[int],
    paper_rows: dict,
    numbers: list[dict],
    fmt: Callable,
    scale: float,
    smoke: bool,
) -> tuple[str, list[dict]]:
    """Rows x (clean, severities), each mapped row followed by the paper's row (Table 6), in our format."""
    header = [first] + ["clean" if s == 0 else str(s) for s in levels]
    stats = [
        _Stat("", _metric(severity_key(s, what)), fmt, scale, severity_key(s, what)) for s in levels
    ]
    body, quoted = [], []
    for label, members in groups:
        body.append([label] + [stat.cell(members)[0] for stat in stats])
        row = paper_rows.get(label)
        entries = [paper_entry(numbers, row, stat.metric) for stat in stats]
        if any(entries):
            quoted += [e for e in entries if e]
            table = next(e["table"] for e in entries if e)
            body.append(
                [
                    f"paper ({TABLE_NAMES.get(table, table)}, {row})"
                    + (f" [{SMOKE_PAPER}]" if smoke else "")
                ]
                + [fmt(e["value"] / scale) if e else MISSING for e in entries]
            )
    return markdown_table(header, body), quoted


def _corruption_tables(groups, robust: Robustness) -> list[str]:
    """Each corruption's top-1 (mean over its severities) and CE_c, per row."""
    names = [
        c for c in CORRUPTION_NAMES if any(c in corruption_table(r) for _, m in groups for r in m)
    ]
    if not names:
        return []

    def top1(name: str) -> Callable[[Run], float | None]:
        def read(run: Run) -> float | None:
            by = corruption_table(run).get(name)
            return sum(by.values()) / len(by) if by else None

        return read

    def ce(name: str) -> Callable[[Run], float | None]:
        return lambda run: (
            s.per_corruption.get(name) if (s := robust.scores.get(run.slug)) else None
        )

    lines = []
    for title, make, fmt in (
        ("Top-1 (%), mean over severities", top1, _pct),
        ("Corruption error CE_c (x 100, baseline = 100)", ce, _num),
    ):
        body = [
            [name] + [_Stat("", make(name), fmt, 1.0).cell(m)[0] for _, m in groups]
            for name in names
        ]
        lines += [
            f"{title}:",
            "",
            markdown_table(["corruption"] + [label for label, _ in groups], body),
            "",
        ]
    return lines


def _baseline_lines(robust: Robustness) -> list[str]:
    """The baseline (or, for a grid row, the baseline of each setting of the other rows) and its clean error."""
    lines = []
    if any(where for where, _ in robust.baselines):
        lines = ["Baseline, within each setting of the other rows:", ""]
    for where, base in robust.baselines:
        prefix = f"- {where}: " if where else "Baseline: "
        if base is None:
            lines.append(f"{prefix}no finished run of the baseline row has corruption results.")
            continue
        clean = MISSING if base.clean_error is None else f"{100 * base.clean_error:.2f}%"
        if base.label == ALEXNET_LABEL:
            lines.append(f"{prefix}{base.label}; clean top-1 error {clean}.")
        else:
            lines.append(
                f"{prefix}{base.label}, the mean of its {base.runs} finished run(s); clean error {clean}."
            )
    return lines + [""]


def _scope_lines(runs: list[Run], robust: Robustness) -> list[str]:
    """Which corrupted sets the runs were scored on, and a warning when the paper's setting differs."""
    names = sorted({c for r in runs for c in corruption_table(r)}, key=CORRUPTION_NAMES.index)
    levels = severities_of(runs)[1:]
    lines = [
        f"Corrupted test sets: {len(names)} of the 15 ImageNet-C corruptions × severities "
        f"{', '.join(map(str, levels)) or MISSING} (result.json's corruption/* keys)."
        + (
            ""
            if len(names) == 15
            else f" Scored: {', '.join(names)}; mCE averages over these only."
        ),
        "",
    ]
    datasets = sorted({str(d) for r in runs if (d := (r.env.get("scale") or {}).get("dataset"))})
    alexnet = any(b is not None and b.label == ALEXNET_LABEL for _, b in robust.baselines)
    if alexnet and any(not d.startswith("imagenet") for d in datasets):
        lines += [
            f"**AlexNet's errors are ImageNet-C's, while these runs are {', '.join(datasets)}:** their mCE only "
            "ranks the rows; it is not comparable with the paper's.",
            "",
        ]
    return lines


def robustness_section(
    runs: list[Run],
    spec: dict,
    robust: Robustness,
    macros: list[str],
    numbers: list[dict],
    out: str | None,
) -> list[str]:
    """`## Robustness`: tables, plots (into `out`; None: not drawn) and the paper numbers quoted.

    Args:
      runs: the report's runs, finished ones with robust/* added (`robust.runs`).
      spec: the report spec (`spec['robustness']`: baseline, paper_rows, reliability).
      robust: the derived scores (`supcon.report.robust_data.derive`).
      macros: the report's row and column macros: one table row per setting of them.
      numbers: the paper numbers.
      out: the folder of the PNGs, or None (--no_plots).
    """
    lines = ["## Robustness", ""]
    done = [r for r in runs if r.state == workdir.DONE]
    if not any(has_corruptions(r) for r in done):
        return lines + [
            "No finished run has corrupted-test-set results (result.json has no corruption/* keys): set "
            "train_and_evaluate.corruptions (e.g. 'all') and run the grid again to score finished points.",
            "",
        ]
    robust_spec = spec["robustness"]
    paper_rows = robust_spec["paper_rows"]
    smoke = any(r.point.get("smoke") for r in runs)
    groups = [(" / ".join(key) or "all", members) for key, members in group_runs(runs, macros)]
    first = " / ".join(macros) or "runs"
    lines += _scope_lines(done, robust) + _baseline_lines(robust)
    lines += [
        "mCE (Hendrycks & Dietterich, 2019): CE_c = Σ_s E_s,c / Σ_s E^base_s,c per corruption c, E the top-1 "
        "error at severity s; relative CE_c = Σ_s (E_s,c − E_clean) / Σ_s (E^base_s,c − E^base_clean); mCE and "
        "relative mCE are their means over the corruptions × 100 (the baseline scores 100).",
        "",
    ]
    summary = _Table(
        groups,
        [
            _Stat("mCE", _metric(MCE), _num, 1.0, MCE),
            _Stat("relative mCE", _metric(RELATIVE_MCE), _num, 1.0, RELATIVE_MCE),
            _Stat("clean top-1 (%)", _metric(CLEAN_TOP1), _pct, 100.0, CLEAN_TOP1),
            _Stat("mean corrupted top-1 (%)", _metric(MEAN_TOP1), _pct, 100.0),
        ],
        paper_rows,
        numbers,
        smoke,
    )
    levels = severities_of(done)
    table_args = (levels, paper_rows, numbers)
    top1, quoted_top1 = _severity_table(groups, first, TOP1, *table_args, _pct, 100.0, smoke)
    ece, quoted_ece = _severity_table(groups, first, ECE, *table_args, _ece, 1.0, smoke)
    lines += ["### mCE and relative mCE", "", summary.markdown(first), ""]
    lines += ["### Top-1 (%) by severity", "", top1, ""]
    lines += ["### ECE by severity", "", ece, "", LEGEND, ""]
    lines += ["### Per corruption", ""] + _corruption_tables(groups, robust)
    lines += _plot_lines(groups, robust_spec["reliability"], levels, out)
    lines += _quoted_lines(summary.quoted + quoted_top1 + quoted_ece, smoke)
    if robust.notes:
        lines += ["Runs without mCE:", ""] + [f"- {n}" for n in robust.notes] + [""]
    return lines


def _plot_lines(
    groups, reliability: Sequence[int], levels: list[int], out: str | None
) -> list[str]:
    lines = ["### Robustness plots", ""]
    if out is None:
        return lines + ["Not drawn (--no_plots).", ""]
    report_robust_plots.severity_plot(groups, levels, os.path.join(out, SEVERITY_PNG))
    lines += [
        "Top-1 and ECE against severity (clean at 0), mean ± std over seeds (error bars), one line per row.",
        "",
        f"![top-1 and ECE vs severity]({SEVERITY_PNG})",
        "",
    ]
    shown = [s for s in reliability if s in levels]
    drawn, problems = report_robust_plots.reliability_plot(
        groups, shown, os.path.join(out, RELIABILITY_PNG)
    )
    if drawn:
        sets = ", ".join("clean" if s == 0 else f"severity {s}" for s in shown)
        lines += [
            f"Reliability diagrams ({sets}): accuracy against mean confidence per confidence bin, each row's "
            "calibration.json pooled over its finished seeds (the legend gives the pooled ECE); the diagonal is "
            "perfect calibration.",
            "",
            f"![reliability diagrams]({RELIABILITY_PNG})",
            "",
        ]
    else:
        lines += [
            "No reliability diagram: no finished run has a readable calibration.json entry for "
            f"{', '.join('clean' if s == 0 else f'severity_{s}' for s in shown) or 'the sets asked'}.",
            "",
        ]
    return lines + [f"- problem: {p}" for p in problems] + ([""] if problems else [])


def _quoted_lines(quoted: list[dict], smoke: bool) -> list[str]:
    """One line per paper table quoted: its rows and what was taken from it."""
    if not quoted:
        return []
    tables: dict[str, tuple[dict, dict]] = {}
    for e in quoted:
        rows, metrics = tables.setdefault(e["table"], ({}, {}))
        rows[e["row"]] = e["model"]
        metric = e["metric"] if e["metric"] in METRIC_NAMES else e["metric"].rsplit("/", 1)[-1]
        metrics[metric] = None
    lines = ["Paper numbers quoted (supcon/paper_numbers.csv; ImageNet and ImageNet-C):", ""]
    if smoke:
        lines = ["Paper numbers quoted beside a smoke run (the columns a real run fills):", ""]
    for table in ROBUSTNESS_TABLES:
        if table in tables:
            rows, metrics = tables[table]
            shown = "; ".join(f"{row} ({model})" for row, model in rows.items())
            named = [name for key, name in METRIC_NAMES.items() if key in metrics]
            lines.append(f"- {SOURCES[table]}: {', '.join(named)} of {shown}")
    return lines + [""]
