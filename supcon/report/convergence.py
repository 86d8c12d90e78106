"""The Convergence section: where each row's learning curve flattens (no TensorFlow).

`report.convergence = 'PRETRAIN_EPOCHS'` names a macro whose values are training lengths. For every row of the
report (the other row and column macros), the section lists the report's first metric (mean over finished runs)
at each length, the change over each doubling in the grid (a length L and 2L both present, within 5%), and where
the row has plateaued: the shortest L whose chain of doublings up to the longest length measured is complete and
moves the metric by less than `PLATEAU_PP` percentage points at every step. That is the design rule of the CPU-scale tables (issue: a small-scale result
is evidence about the paper only once its models have trained to a plateau); a row whose last doubling still
moves more is "still rising", and one without a doubling in the grid cannot be judged.
"""

from __future__ import annotations

import math

from supcon import workdir
from supcon.report.data import Run, group_runs, sort_key, value_label
from supcon.report.tables import markdown_table

PLATEAU_PP = 1.0  # percentage points: a doubling that moves the metric by less has plateaued


def _is_length(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def curve(runs: list[Run], axis: str, metric: str) -> list[tuple[float, float, int]]:
    """(length, mean metric, n) for each length with at least one finished run, in increasing length."""
    by_length: dict[float, list[float]] = {}
    for run in runs:
        length = run.values.get(axis)
        value = run.metric(metric) if run.state == workdir.DONE else None
        if _is_length(length) and value is not None:
            by_length.setdefault(float(length), []).append(value)
    return [(length, sum(v) / len(v), len(v)) for length, v in sorted(by_length.items())]


DOUBLING_TOLERANCE = 0.05  # relative: 25 epochs counts as the double of 12


def doublings(points: list[tuple[float, float, int]]) -> list[tuple[float, float, float]]:
    """(L, 2L, change in pp of the mean) for every L whose double (within DOUBLING_TOLERANCE) is on the curve."""
    means = {length: mean for length, mean, _ in points}
    out = []
    for length, mean, _ in points:
        double = next((d for d in means if math.isclose(d, 2 * length, rel_tol=DOUBLING_TOLERANCE)), None)
        if double is not None:
            out.append((length, double, 100 * (means[double] - mean)))
    return out


def plateau(steps: list[tuple[float, float, float]], longest: float) -> float | None:
    """The shortest L whose chain of doublings L, 2L, 4L, ... reaches `longest` (the longest length measured)
    with every doubling moving the metric by less than PLATEAU_PP; None when there is none (a link missing from
    the grid or unfinished breaks a chain: nothing is judged across it)."""
    by_start = {a: (b, change) for a, b, change in steps}
    for length in sorted(by_start):
        x = length
        while x in by_start and abs(by_start[x][1]) < PLATEAU_PP and x != longest:
            x = by_start[x][0]
        if x == longest:
            return length
    return None


def _length(value: float) -> str:
    return value_label(int(value) if float(value).is_integer() else value)


def _verdict(steps: list[tuple[float, float, float]], longest: float | None) -> str:
    at = plateau(steps, longest) if steps else None
    if at is not None:
        return f"**plateaued at {_length(at)}**"
    last = next((s for s in steps if s[1] == longest), None)
    if last is not None and abs(last[2]) >= PLATEAU_PP:
        return f"still rising ({_length(last[0])}→{_length(last[1])}: {last[2]:+.2f} pp)"
    if not steps:
        return "no doubling in the grid: cannot judge"
    return f"cannot judge: the doublings up to {_length(longest)} are not all measured"


def convergence_section(runs: list[Run], axis: str, metric: str, macros: list[str]) -> tuple[list[str], list[str]]:
    """`## Convergence` and one summary line for the Claims section.

    Args:
      runs: every run (only finished ones count).
      axis: the macro whose values are training lengths (`report.convergence`).
      metric: the metric the curve follows (the report's first).
      macros: the report's row and column macros; the rows here are their settings without `axis`.
    """
    others = [m for m in macros if m != axis]
    lengths = sorted({run.values.get(axis) for run in runs if _is_length(run.values.get(axis))}, key=sort_key)
    header = [" / ".join(others) or "runs"] + [f"{_length(v)}" for v in lengths]
    header += ["doublings (pp)", "verdict"]
    body, summary = [], []
    for key, members in group_runs(runs, others):
        label = " / ".join(key) or "all"
        points = curve(members, axis, metric)
        at = {length: (mean, n) for length, mean, n in points}
        cells = [label]
        for length in lengths:
            mean, n = at.get(float(length), (None, 0))
            cells.append("–" if mean is None else f"{100 * mean:.2f}" + ("" if n == 1 else f" (n={n})"))
        steps = doublings(points)
        longest = points[-1][0] if points else None
        cells.append(", ".join(f"{_length(a)}→{_length(b)} {c:+.2f}" for a, b, c in steps) or "–")
        verdict = _verdict(steps, longest)
        cells.append(verdict)
        body.append(cells)
        summary.append(f"{label}: {verdict.replace('**', '')}")
    lines = [
        "## Convergence",
        "",
        f"{metric} (%, mean over finished runs) against {axis}; each doubling's change in percentage points. A row "
        f"has plateaued at L when each doubling from L up to the largest {axis} measured (L, 2L, 4L, ..., every one "
        f"finished) moves {metric} by less than {PLATEAU_PP:g} point (the CPU-scale design rule).",
        "",
        markdown_table(header, body),
        "",
    ]
    claim_line = (
        f"**Convergence ({axis}, doubling moves < {PLATEAU_PP:g} pp):** {'; '.join(summary)} (Convergence below)."
    )
    return lines, [claim_line]
