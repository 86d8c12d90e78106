"""The reporter: run directories -> `reports/<recipe>/README.md` with tables and PNG plots.

Usage::

    python -m supcon.report runs/<recipe-stem> --out reports/<recipe-stem> [--no_plots] [--command CMD]
        [--recipe RECIPE.gin [--overlay F]... [--gin_param B]...]

Reads only run directories (`point.json`, `status.json`, `result.json`, `env.json`, `metrics.jsonl`,
`embeddings.npz`); never trains and never imports TensorFlow. The table is shaped by the recipe's `report.*`
bindings (rows, columns, metrics, paper, paper_rows, paper_columns, title, claims, robustness), copied into
each `point.json` by the runner. With --recipe (the runner passes it, with its overlays and --gin_params) the
recipe is read as text (`supcon.experiment.grid`): its grid selects the run dirs (by point id: a recipe with
`grid.runs_of = 'other'` reports its points among the runs of `other`; other run dirs are left out and counted),
every point of it without a run dir is listed as absent, and its own `report.*` settings and header shape the
report; a run dir whose point.json records other training settings than its point's now (an edited recipe) is left
out, its point listed as absent, and named in one line with the first differences. With report.robustness, a Robustness section follows the results
(`supcon.report.robustness`: mCE against a baseline, top-1 and ECE by corruption severity, reliability diagrams
from `calibration.json`). A report whose recipe names claims opens with their verdicts (`supcon.report.claims`); every
report shows raw-pixel baselines on the runs' data (`supcon.report.baselines`, cached in `baselines.json` beside
the run records, else in `<runs_dir>`: the one file the reporter writes beside the runs). Beside the README it
writes `claims.json`, the verdicts as data (`supcon.report.claims_record`), and rebuilds the scoreboard of the
folder of reports, `reports/README.md` and `reports/claims.png` (`supcon.report.scoreboard`). Cells are mean ± std (n) over the SEED axis, with the paper's
number and the difference beside them; failed and missing points are listed with their reason. The output is
deterministic (no timestamps), so a report can be committed and diffed.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from supcon import workdir
from supcon.report import claims, claims_record, scoreboard
from supcon.report import plots as report_plots
from supcon.report import records as report_records
from supcon.report import robust_data as report_robust_data
from supcon.report import spec as report_spec
from supcon.report.baselines_section import baselines_section
from supcon.report.claims_section import claims_section, tested_claims
from supcon.report.convergence import convergence_section
from supcon.report.data import (
    MISSING,
    SEED,
    SKIPPED,
    ReportRecipe,
    Run,
    choose_layout,
    independent_macros,
    read_runs,
    run_paths,
    sort_key,
    table_metrics,
    value_label,
    varying_macros,
)
from supcon.report.header import format_seconds, header, paper_note, scale_values
from supcon.report.robustness import robustness_section
from supcon.report.tables import (
    LEGEND,
    format_number,
    is_fraction,
    load_paper_numbers,
    markdown_table,
    results_table,
)

README = "README.md"
STATE_ORDER = (workdir.FAILED, "partial", "new", "absent", SKIPPED)
NO_SEED_LEGEND = (
    "No SEED axis: each cell is one run, `value ± – (1)` (one run, no spread), `–` when it did not finish. "
    "Accuracies are in percent. Δ = ours − paper, in percentage points."
)


def has_seeds(runs: list[Run]) -> bool:
    """Whether the grid has a SEED axis (some point sets SEED)."""
    return any(SEED in r.values for r in runs)


def _point_label(run: Run, macros: list[str]) -> str:
    return ", ".join(f"{m}={value_label(run.values.get(m))}" for m in macros) or "all"


def _usable(runs: list[Run]) -> list[Run]:
    """The runs of this grid: all but skipped run directories whose point.json is not this recipe's."""
    return [r for r in runs if r.state != SKIPPED or r.values]


def _notes_lines(runs: list[Run]) -> list[str]:
    """Problems with files a run's numbers do not need (status.json, env.json, metrics.jsonl lines)."""
    noted = [r for r in runs if r.notes]
    if not noted:
        return []
    lines = ["Unreadable files and lines (the rest of each run directory is used):", ""]
    return lines + [f"- `{r.slug}`: {'; '.join(r.notes)}" for r in noted] + [""]


def problems_section(runs: list[Run]) -> list[str]:
    """Failed, missing and skipped points with their state, step and reason; never silently dropped."""
    lines = ["## Failed and missing points", ""]
    bad = [r for r in runs if r.state != workdir.DONE]
    if not bad:
        return lines + ["None: every planned point finished.", ""] + _notes_lines(runs)
    macros = independent_macros(_usable(runs), varying_macros(_usable(runs)))
    seeds = [SEED] if has_seeds(runs) else []
    bad.sort(
        key=lambda r: (
            STATE_ORDER.index(r.state) if r.state in STATE_ORDER else 9,
            tuple(sort_key(r.values.get(m)) for m in macros + seeds),
            r.slug,
        )
    )
    rows = [
        [
            _point_label(r, macros),
            *[value_label(r.values.get(SEED)) for _ in seeds],
            r.state,
            str(r.step),
            (r.reason.strip().splitlines() or [MISSING])[0][:200],
            f"`{r.slug}`",
        ]
        for r in bad
    ]
    table = markdown_table(["point", *seeds, "state", "step", "reason", "run dir"], rows)
    return lines + [table, ""] + _notes_lines(runs)


def runs_appendix(runs: list[Run], metrics: list[str]) -> list[str]:
    """Every run directory with its values, state, metrics, steps, train time and git SHA."""
    macros = varying_macros(_usable(runs)) + ([SEED] if has_seeds(runs) else [])
    rows = []
    for run in sorted((r for r in runs if r.path), key=lambda r: r.slug):
        cells = [
            format_number(v, is_fraction(m)) if (v := run.metric(m)) is not None else MISSING
            for m in metrics
        ]
        seconds = run.metric("train_seconds")
        rows.append(
            [
                f"`{run.slug}`",
                _point_label(run, macros),
                run.state,
                *cells,
                value_label(run.result.get("step")) if run.result else str(run.step),
                format_seconds(seconds) if seconds is not None else MISSING,
                str(run.env.get("git_sha", MISSING))[:12],
            ]
        )
    table = markdown_table(
        ["run dir", "values", "state", *metrics, "step", "train time", "git"], rows
    )
    return [
        "## All runs",
        "",
        f"<details><summary>{len(rows)} run directories</summary>",
        "",
        table,
        "",
        "</details>",
        "",
    ]


def plots_section(runs: list[Run], rows: list[str], metrics: list[str], out: str) -> list[str]:
    """Writes the PNGs into `out` and returns the markdown that links them relatively."""
    lines = ["## Plots", ""]
    shown = [m for m in metrics if any(r.metric(m) is not None for r in runs)] or metrics[:1]
    seeds = has_seeds(runs)
    for axis in report_plots.sweep_axes(runs):
        name = f"sweep_{axis.lower()}.png"
        report_plots.sweep_plot(runs, axis, shown, os.path.join(out, name))
        spread = f"Mean ± std over {SEED} (error bars)" if seeds else "One run per value (no SEED axis)"
        lines += [
            f"### {' / '.join(shown)} vs {axis}",
            "",
            f"{spread}; one line per setting of the other macros, so only {axis} changes along a line"
            + report_plots.special_note(axis) + ".",
            "",
            f"![{axis} sweep]({name})",
            "",
        ]
    if report_plots.curves_plot(runs, os.path.join(out, "curves.png")):
        how = "faint lines are single seeds, solid lines their mean" if seeds else "one line per run"
        lines += [
            "### Training curves",
            "",
            f"Loss vs step per stage (and eval/top1 when evaluated during training); {how}.",
            "",
            "![training curves](curves.png)",
            "",
        ]
    lines += _embedding_lines(runs, rows[:1], shown[0], out)
    if len(lines) == 2:
        lines += ["No plot: no run has results, curves or embeddings.", ""]
    return lines


def _embedding_lines(runs: list[Run], by: list[str], metric: str, out: str) -> list[str]:
    """Draws embeddings.png for the best finished run of each value of `by`; returns its markdown."""
    chosen = report_plots.best_runs(runs, by, metric)[: report_plots.MAX_PANELS]
    if not chosen:
        return []
    problems = report_plots.embedding_plot(chosen, metric, os.path.join(out, "embeddings.png"))
    which = f"for each {by[0]}" if by else "of all"
    return [
        "### Test-set embeddings (PCA)",
        "",
        f"The finished run with the best {metric} {which}: its test-set encoder embeddings projected "
        "on their first two principal components, coloured by class.",
        "",
        *[f"- {label}: `{run.slug}`" for label, run in chosen],
        *[f"- problem: {p}" for p in problems],
        "",
        "![embeddings](embeddings.png)",
        "",
    ]


def load_checked(
    runs_dir: str, recipe: ReportRecipe | None = None, records: str | None = None
) -> tuple[list[Run], dict, list[dict], list[str], dict[str, str]]:
    """The runs, their validated report spec, the paper numbers, the run dirs left out as not in the grid and those
    left out as trained with other settings, with the first differences (`read_runs`).

    Raises:
      ValueError: if `runs_dir` is missing or holds no run directory, or the spec is invalid.
    """
    runs, outside, otherwise = read_runs(runs_dir, recipe, records)
    spec = report_spec.spec_of_recipe(recipe, runs) if recipe else report_spec.spec_of_runs(runs)
    numbers = load_paper_numbers()
    known = claims.load_claims()
    unknown = [c for c in spec["claims"] if c not in known]
    if unknown:
        raise ValueError(
            f"report.claims: unknown claim(s) {', '.join(unknown)} (the ids are in supcon/paper_claims.csv)"
        )
    return runs, spec, numbers, outside, otherwise


def outside_note(recipe: ReportRecipe | None, outside: list[str]) -> list[str]:
    """Which runs of the folder a recipe's report reads, when not all of them (`read_runs`)."""
    if recipe is None:
        return []
    dirs = f"{len(outside)} other run director{'y' if len(outside) == 1 else 'ies'}"
    if recipe.runs_stem != recipe.stem:
        text = (
            f"**Runs of `{recipe.runs_stem}`** (`grid.runs_of`): this recipe's points are points of "
            f"`{recipe.runs_stem}`'s grid, and their run directories are `{recipe.runs_stem}`'s"
        )
        return [text + (f"; the {dirs} there are its other points, not shown." if outside else "."), ""]
    if not outside:
        return []
    shown = ", ".join(f"`{slug}`" for slug in outside[:5]) + (", ..." if len(outside) > 5 else "")
    text = f"Not shown: {dirs} of `{recipe.stem}` whose points are not in the recipe's grid (an earlier grid's?)"
    return [f"{text}: {shown}.", ""]


def settings_note(otherwise: dict[str, str]) -> list[str]:
    """One line naming the run dirs left out because they were trained with other settings than the recipe's now
    (`read_runs`), grouped by their first differences."""
    if not otherwise:
        return []
    groups: dict[str, list[str]] = {}
    for slug, mismatch in otherwise.items():
        groups.setdefault(mismatch, []).append(slug)
    parts = [
        ", ".join(f"`{slug}`" for slug in slugs[:5]) + (", ..." if len(slugs) > 5 else "") + f" ({mismatch})"
        for mismatch, slugs in groups.items()
    ]  # fmt: skip
    dirs = f"{len(otherwise)} run director{'y' if len(otherwise) == 1 else 'ies'}"
    return [f"Not shown: {dirs} trained with other settings than the recipe's now: {'; '.join(parts)}; their "
            "points are listed as absent (move the run dirs away and run the recipe to retrain them).", ""]


def build_report(runs_dir: str, out: str, plots: bool = True, command: str | None = None,
                 recipe: ReportRecipe | None = None, records: str | None = None) -> str:
    """Reads the runs under `runs_dir`, writes the PNGs into `out` and returns the README markdown.

    `command` is the one named in the report's "Generated by" line (default: this module's, over
    runs/<stem> into reports/<stem>). `recipe`: the recipe the report is for (see `read_runs`), or None.
    """
    return build_report_and_claims(runs_dir, out, plots, command, recipe, records)[0]


def build_report_and_claims(runs_dir: str, out: str, plots: bool = True, command: str | None = None,
                            recipe: ReportRecipe | None = None, records: str | None = None) -> tuple[str, dict | None]:
    """`build_report`'s README markdown, and the report's claims.json (`supcon.report.claims_record`) from the
    verdicts its Claims section prints, or None when the report tests no claim."""
    every, spec, numbers, outside, otherwise = load_checked(runs_dir, recipe, records)
    runs = _usable(every)  # skipped run directories appear only in the problems and the appendix
    rows, columns, extra = choose_layout(runs, spec)
    robust = None
    if spec["robustness"] is not None:  # mCE per run against the baseline, before tables and claims read it
        robust = report_robust_data.derive(runs, spec["robustness"], rows + columns)
        runs = robust.runs
        scored = {r.slug: r for r in runs if r.slug in robust.scores}
        every = [scored.get(r.slug, r) if r.state == workdir.DONE else r for r in every]
    metrics = table_metrics(runs, spec)
    table, quoted = results_table(runs, spec, rows, columns, metrics, numbers)
    # cached beside the records when there are some: committed with them, a report rebuilds without the data
    pixels, pixel_line, pixel_top1 = baselines_section(runs, records or runs_dir, rows + columns)
    curves, curve_line = [], []
    if spec.get("convergence"):
        curves, curve_line = convergence_section(runs, spec["convergence"], metrics[0], rows + columns)
    lines = header(every, spec, command) + outside_note(recipe, outside) + settings_note(otherwise)
    tested = tested_claims(runs, spec, rows + columns, pixel_top1)
    lines += claims_section(
        runs, spec, rows + columns, pixel_line + curve_line, real_data=bool(pixels), pixel_top1=pixel_top1,
        tested=tested,
    )
    lines += ["## Results", "", table, "", LEGEND if has_seeds(runs) else NO_SEED_LEGEND, ""]
    if extra:
        lines += [
            f"Rows are also split by {', '.join(extra)}: they vary across the grid and "
            "report.rows / report.columns do not determine them.",
            "",
        ]
    if spec["paper"] and not quoted:
        lines += [
            f"No number of the paper's {spec['paper']} matched these rows; map them with "
            "report.paper_rows / report.paper_columns.",
            "",
        ]
    lines += paper_note(quoted, scale_values(runs)) + curves + pixels
    if robust is not None:
        lines += robustness_section(runs, spec, robust, rows + columns, numbers, out if plots else None)
    lines += (
        plots_section(runs, rows, metrics, out)
        if plots
        else ["## Plots", "", "Not drawn (--no_plots).", ""]
    )
    lines += problems_section(every) + runs_appendix(every, metrics)
    record = None if tested is None else claims_record.report_record(
        spec["stem"], tested, scale_values(every), smoke=any(r.point.get("smoke") for r in every),
        supersedes=spec.get("supersedes", ()),
    )
    return "\n".join(lines).rstrip("\n") + "\n", record


def write_report(runs_dir: str, out_dir: str, plots: bool = True, command: str | None = None,
                 recipe: ReportRecipe | None = None, records: bool = True) -> str:
    """Builds the report in a staging folder, then moves it into `out_dir`; returns the README path.

    With `records`, the finished and failed runs are first recorded beside the report (`supcon.report.records`:
    `out_dir/runs/<slug>/`; records of points not in `runs_dir` are kept: they may have finished elsewhere), records
    in an older or larger form (copied from another report, say) are compacted, and the report reads those records
    together with the run dirs still in progress (`supcon.report.data.run_paths`).

    Each file lands by an atomic rename, the README last; PNGs from an earlier report that this one no
    longer draws are removed. Beside the README, `claims.json` records the verdicts of the Claims section
    (`supcon.report.claims_record`; removed when the report tests no claim), and then the scoreboard of the folder
    of reports is rebuilt (`supcon.report.scoreboard.update`: `<parent>/README.md` and `claims.png`, when that
    README is a scoreboard or is absent and some report there has a claims.json). Nothing is written when reading
    the runs fails.

    Raises:
      ValueError: if `runs_dir` is missing, holds no run directory or has an invalid report spec.
    """
    kept = report_records.records_dir(out_dir) if records else None
    load_checked(runs_dir, recipe, kept)  # fail before creating anything
    if records:  # finished and failed runs are recorded beside the report, and read from there
        report_records.sync(read_runs(runs_dir, recipe)[0] if run_paths(runs_dir) else [], out_dir)
        report_records.compact(out_dir)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=".report-", dir=parent)
    try:
        text, record = build_report_and_claims(runs_dir, stage, plots, command, recipe, kept)
        os.makedirs(out_dir, exist_ok=True)
        drawn = sorted(f for f in os.listdir(stage) if f.endswith(".png"))
        for name in os.listdir(out_dir):
            if name.endswith(".png") and name not in drawn:
                os.remove(os.path.join(out_dir, name))
        for name in drawn:
            os.replace(os.path.join(stage, name), os.path.join(out_dir, name))
        claims_record.write_record(out_dir, record)
        workdir.write_text_atomic(os.path.join(out_dir, README), text)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    scoreboard.update(parent)
    return os.path.join(out_dir, README)
