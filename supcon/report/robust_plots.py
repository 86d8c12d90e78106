"""The Robustness section's plots (PNG through `supcon.report.plots`' figure and save conventions; no TensorFlow).

- `severity_plot`: top-1 (%) and ECE against corruption severity, the clean test set at 0, mean ± std over seeds,
  one line per report row;
- `reliability_plot`: one reliability diagram per report row (accuracy against mean confidence per confidence
  bin), each chosen test set a line, calibration.json pooled over the row's finished seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

from supcon import workdir
from supcon.report import plots as report_plots
from supcon.report.data import Run
from supcon.report.metrics import ECE, TOP1, severity_key
from supcon.report.robust_data import pooled_diagram
from supcon.report.tables import summarize

Groups = Sequence[tuple[str, Sequence[Run]]]


def _tick(severity: int) -> str:
    return "clean" if severity == 0 else str(severity)


def severity_line(
    members: Sequence[Run], what: str, levels: Sequence[int], scale: float
) -> list[tuple]:
    """(severity, mean, std) of `what` ('top1' or 'ece') at each level some finished member reports."""
    out = []
    for s in levels:
        values = [
            v
            for r in members
            if r.state == workdir.DONE and (v := r.metric(severity_key(s, what))) is not None
        ]
        mean, std, n = summarize(values)
        if n:
            out.append((s, scale * mean, scale * (std or 0.0)))
    return out


def severity_plot(groups: Groups, levels: Sequence[int], path: str) -> None:
    """Top-1 (%) and ECE against severity (0 = clean), mean ± std over seeds, one line per row."""
    fig, axes = report_plots._grid(2)
    for ax, (what, scale, ylabel) in zip(
        axes, ((TOP1, 100.0, "top-1 (%)"), (ECE, 1.0, "ECE (15 bins)")), strict=True
    ):
        for i, (label, members) in enumerate(groups):
            points = severity_line(members, what, levels, scale)
            if points:
                ax.errorbar(
                    [x for x, _, _ in points],
                    [y for _, y, _ in points],
                    yerr=[e for _, _, e in points],
                    marker="o",
                    capsize=3,
                    color=report_plots.COLORS[i % 10],
                    label=label,
                )
        ax.set_xticks(list(levels), [_tick(s) for s in levels])
        ax.set_xlabel("corruption severity")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} vs severity (mean ± std over seeds)", fontsize=9)
        ax.grid(alpha=0.3)
    report_plots._save(fig, path, axes)


def reliability_plot(
    groups: Groups, severities: Sequence[int], path: str
) -> tuple[bool, list[str]]:
    """One reliability diagram per row (at most `report_plots.MAX_PANELS`), a line per test set in `severities`.

    Returns:
      (whether anything was drawn, the problems met reading calibration.json), writing nothing when no row has
      a diagram.
    """
    problems: list[str] = []
    panels = []
    for label, members in groups[: report_plots.MAX_PANELS]:
        curves = []
        for s in severities:
            diagram, used, found = pooled_diagram(members, s)
            problems += [p for p in found if p not in problems]
            if diagram is not None:
                curves.append((s, diagram, used))
        if curves:
            panels.append((label, curves))
    if not panels:
        return False, problems
    fig, axes = report_plots._grid(len(panels), width=3.8, height=3.6)
    for ax, (label, curves) in zip(axes, panels, strict=True):
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        for s, diagram, used in curves:
            filled = diagram.counts > 0
            name = "clean" if s == 0 else f"severity {s}"
            ax.plot(
                diagram.confidence[filled],
                diagram.accuracy[filled],
                marker="o",
                markersize=3,
                color=report_plots.COLORS[s % 10],
                label=f"{name}: ECE {diagram.ece:.3f} (n={used})",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    report_plots._save(fig, path)
    return True, problems
