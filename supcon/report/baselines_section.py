"""The raw-pixel baselines section of a report, and how each row compares with pixels. No TensorFlow.

The numbers come from `supcon.report.baselines` (logistic regression and k-NN on the pixels the runs' classifiers saw,
cached beside the runs); this module writes them as markdown, compares every results row with them, and checks
which runs a claim's verdict rests on fall below the CPU-scale bar (`below_bar`).
"""

from __future__ import annotations

from supcon import workdir
from supcon.report import baselines, claims
from supcon.report import metrics as report_metrics
from supcon.report.claims_stats import Undetermined, one_sample_difference
from supcon.report.data import MISSING, Run, group_runs
from supcon.report.header import DATASET_NAMES
from supcon.report.tables import format_cell, markdown_table, summarize

METRIC = "eval/top1"
METHODS = (("logreg_top1", "logistic regression"), ("knn_top1", f"{baselines.KNN_K}-NN"))


BAR_PP = 5.0  # percentage points above pixel logistic regression that a CPU-scale design asks of every method


def describe(b: baselines.Baseline) -> str:
    """'Fashion-MNIST: the first 5000 of train, 14×14×1 (resize_then_crop), all 10000 of test'."""
    s = b.setting
    name = DATASET_NAMES.get(s.dataset, s.dataset)
    if b.reason:
        return name
    shape = "×".join(str(d) for d in b.image_shape)
    return (
        f"{name}: the first {s.train_examples} of {s.train_split}, {shape} ({s.method}), "
        f"all {b.test_examples} of {s.eval_split}"
    )


def _difference(values: list[float], reference: float) -> str:
    """`+1.23 [−0.50, +2.96]` in pp (one-sample t over runs), or `+1.23 (n = 1)`."""
    if not values:
        return MISSING
    try:
        est = one_sample_difference(values, reference)
    except Undetermined:
        return f"{100 * (sum(values) / len(values) - reference):+.2f} (n = {len(values)})"
    return f"{100 * est.value:+.2f} [{100 * est.low:+.2f}, {100 * est.high:+.2f}]"


def _points_over(values: list[float], logreg_top1: float) -> float:
    """The mean of top-1 fractions minus pixel logistic regression's, in percentage points."""
    return 100 * (sum(values) / len(values) - logreg_top1)


def _finished_top1(members: tuple[Run, ...]) -> list[float]:
    done = [r.metric(METRIC) for r in members if r.state == workdir.DONE]
    return [v for v in done if v is not None]


def _judged(verdict: claims.Verdict) -> list[tuple[str, list[float]]]:
    """The groups of a verdict that the bar judges, as (label, finished top-1 values), each with a finished run:
    all of them, except for a rise along a swept value only the highest value that finished (a learning curve's
    short-training points are low by design), and along SEVERITY only the clean runs, severity 0 (the same
    models; at other severities eval/top1 is corrupted accuracy)."""
    groups = [(label, _finished_top1(members)) for label, members in verdict.groups]
    groups = [(label, values) for label, values in groups if values]
    if verdict.claim.kind != "increasing":
        return groups
    return groups[:1] if verdict.claim.axis == report_metrics.SEVERITY else groups[-1:]


def below_bar(verdict: claims.Verdict, logreg_top1: float) -> list[tuple[str, float]]:
    """The groups of runs a verdict rests on whose mean eval/top1 over finished runs is below pixel logistic
    regression + BAR_PP points, as (label, points above pixels), in the verdict's order; a group with no finished
    run is not judged.

    Args:
      verdict: a claim's verdict (`claims.Verdict.groups` are the runs its statistic compares).
      logreg_top1: pixel logistic regression's top-1 on the runs' data, a fraction.
    """
    over = [(label, _points_over(values, logreg_top1)) for label, values in _judged(verdict)]
    return [(label, points) for label, points in over if points < BAR_PP]


def _listed(labels: list[str], total: int) -> str:
    """The row labels, 'none', or 'all N rows' when every one of more than two rows is listed."""
    if not labels:
        return "none"
    return f"all {total} rows" if len(labels) == total > 2 else ", ".join(labels)


def _row_groups(runs: list[Run], macros: list[str]) -> list[tuple[str, list[Run]]]:
    return [(" / ".join(key) or "all", members) for key, members in group_runs(runs, macros)]


def comparison(
    runs: list[Run], macros: list[str], b: baselines.Baseline
) -> tuple[list[str], list[str], list[str], int]:
    """The table of every row against the pixel baselines, the rows whose interval lies above logistic
    regression, the rows whose mean is at least BAR_PP points above it, and the number of rows."""
    header = [" / ".join(macros) or "runs", f"{METRIC} (%)"]
    header += [f"− pixels {name} (pp, 95% CI)" for _, name in METHODS]
    body, above, bar = [], [], []
    for label, members in _row_groups(runs, macros):
        done = [r.metric(METRIC) for r in members if r.state == workdir.DONE]
        values = [v for v in done if v is not None]
        cells = [label, format_cell(*summarize(values), len(members), True)]
        cells += [_difference(values, getattr(b, key)) for key, _ in METHODS]
        body.append(cells)
        if values and _points_over(values, b.logreg_top1) >= BAR_PP:
            bar.append(label)
        try:
            if one_sample_difference(values, b.logreg_top1).low > 0:
                above.append(label)
        except Undetermined:
            pass
    return [markdown_table(header, body)], above, bar, len(body)


def baselines_section(
    runs: list[Run], runs_dir: str | None, macros: list[str]
) -> tuple[list[str], list[str], float | None]:
    """`## Raw-pixel baselines` (always present), one line for the Claims section ([] without numbers), and
    pixel logistic regression's top-1 that the Claims section holds verdicts to (`below_bar`), or None unless
    the runs use one data setting whose baselines were computed.

    Args:
      runs: every run; the baselines follow the data settings of those with a run directory.
      runs_dir: the runs folder, where `baselines.json` caches the numbers.
      macros: the results table's row and column macros (each of their settings is compared with pixels).
    """
    computed, reasons = baselines.baselines_for_runs(runs, runs_dir)
    lines = ["## Raw-pixel baselines", ""]
    done = [b for b in computed if not b.reason]
    reasons += [f"{describe(b)}: {b.reason}" for b in computed if b.reason]
    if done:
        lines += [
            f"Logistic regression and {baselines.KNN_K}-nearest-neighbours on raw pixels, computed by "
            "supcon.report.baselines (scikit-learn) on the runs' training examples at the runs' evaluation image "
            "size, scored on the whole test split; see its docstring for the settings.",
            "",
            markdown_table(
                ["baseline", "top-1 (%)", "data"],
                [
                    [f"pixels + {name}", f"{100 * getattr(b, key):.2f}", describe(b)]
                    for b in done
                    for key, name in METHODS
                ],
            ),
            "",
        ]
    for reason in reasons:
        lines += [f"Not computed: {reason}.", ""]
    if not done:
        if not reasons:
            lines += ["Not computed: no run has written env.json yet.", ""]
        return lines, [], None
    if len(done) > 1:
        lines += [
            "The runs use several data settings: compare each row with the baseline of its data.",
            "",
        ]
        return lines, [], None
    table, above, bar, total = comparison(runs, macros, done[0])
    lines += [
        f"Each row against pixels ({METRIC} − the baseline; one-sample t over finished runs):",
        "",
    ]
    lines += table + [""]
    b = done[0]
    claim_line = (
        f"**Against raw pixels:** logistic regression scores {100 * b.logreg_top1:.2f}% and "
        f"{baselines.KNN_K}-NN {100 * b.knn_top1:.2f}% on the same data (Raw-pixel baselines below); "
        f"rows whose 95% interval lies above logistic regression: {_listed(above, total)}; rows whose mean "
        f"is at least {BAR_PP:g} points above it (the CPU-scale bar): {_listed(bar, total)}."
    )
    return lines, [claim_line], b.logreg_top1
