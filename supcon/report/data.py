"""Reading run directories for the reporter: runs, their values, the report spec and missing points.

Reads only what the runner and the trainer wrote (`point.json`, `status.json`, `result.json`, `env.json`);
imports no TensorFlow. A folder of runs is `<runs_dir>/<slug>/point.json`, one level deep. Given the recipe the
report is for (`ReportRecipe`, what the runner passes), only the run dirs of its grid's points are read (a recipe
with grid.runs_of reads some of another recipe's runs), and every point of the grid without a run dir is absent.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from supcon import workdir

SEED = "SEED"
ABSENT = "absent"  # a planned point with no run directory at all
SKIPPED = "skipped"  # a run directory the report cannot use (unreadable files, another recipe, an older version)
MISSING = "–"  # shown for a value, metric or spread that does not exist
MIXED_BF16, FLOAT32 = "mixed bfloat16", "float32"  # `Run.precision`
DEFAULT_METRICS = ("eval/top1", "eval/top5", "knn/top1")


@dataclasses.dataclass
class Run:
    """One grid point as found on disk (or inferred as absent).

    Attributes:
      slug: the run directory's name.
      path: the run directory, or None for an absent point.
      values: the point's macro values (`point.json` "values"), SEED included.
      state: `done`, `failed`, `partial` (running or interrupted), `new` (never started), `absent`, or
        `skipped` (the directory cannot be used, see `workdir.run_problem`: with empty values when its
        point.json is unreadable, another recipe's or another version's, kept out of every table; with its
        values when only its result.json is bad, a planned point without a result).
      step: the last step recorded in `status.json` (0 when unknown).
      reason: why the run failed, is missing or was skipped.
      result: `result.json` (empty unless done).
      env: `env.json` (empty when not written yet or unreadable).
      point: the whole `point.json`.
      notes: problems with files the report can do without (status.json, env.json, metrics.jsonl lines).
    """

    slug: str
    path: str | None
    values: dict
    state: str
    step: int = 0
    reason: str = ""
    result: dict = dataclasses.field(default_factory=dict)
    env: dict = dataclasses.field(default_factory=dict)
    point: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)

    def metric(self, name: str) -> float | None:
        """Returns a finite metric from result.json, or None."""
        value = self.result.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) if value == value else None

    @property
    def precision(self) -> str | None:
        """The precision the run computed in, from env.json `mixed_precision`: `mixed bfloat16` or `float32`
        (None when not recorded)."""
        mixed = self.env.get("mixed_precision")
        if not isinstance(mixed, bool):
            return None
        return MIXED_BF16 if mixed else FLOAT32


@dataclasses.dataclass(frozen=True)
class ReportRecipe:
    """The recipe a report is for, as the runner read it (`python -m supcon.report --recipe`).

    Attributes:
      path: the recipe file.
      stem: its stem: the report's name.
      runs_stem: the stem its points carry in point.json (`grid.runs_of`'s, else `stem`).
      points: point id -> the point's values, for every point of its grid, as the report shows them (with the
        recipe's value of a macro other points set, `supcon.experiment.grid.shown_values`); a run of the
        point is shown with them.
      report: its `report.*` settings (without the prefix).
      header: its leading comment lines.
      where: 'file:line' of each `report.*` binding, for error messages.
      settings: point id -> the settings the point trains with now ({binding: gin text},
        `supcon.experiment.grid.point_settings`): a run whose point.json records others is left out.
    """

    path: str
    stem: str
    runs_stem: str
    points: dict[str, dict]
    report: dict
    header: list
    where: dict = dataclasses.field(default_factory=dict)
    settings: dict[str, dict] = dataclasses.field(default_factory=dict)


def value_label(value: Any) -> str:
    """Formats one macro value for people: strings bare, numbers short, containers as JSON."""
    if value is None:
        return MISSING
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def sort_key(value: Any) -> tuple:
    """Orders mixed values: numbers numerically, then strings, then anything else, missing last."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    if isinstance(value, str):
        return (1, 0.0, value)
    if value is None:
        return (3, 0.0, "")
    return (2, 0.0, value_label(value))


def group_runs(runs: Sequence[Run], macros: Sequence[str]) -> list[tuple[tuple[str, ...], list[Run]]]:
    """Runs grouped by their values of `macros`: (value labels, runs) pairs in value order."""
    groups: dict[tuple, list[Run]] = {}
    order: dict[tuple, tuple] = {}
    for run in runs:
        key = tuple(value_label(run.values.get(m)) for m in macros)
        groups.setdefault(key, []).append(run)
        order[key] = tuple(sort_key(run.values.get(m)) for m in macros)
    return [(key, groups[key]) for key in sorted(groups, key=order.get)]


def _notes(path: str) -> tuple[dict, dict, list[str]]:
    """status.json and env.json (empty when unreadable) and what is wrong with them and metrics.jsonl."""
    status, why_status = workdir.read_object(os.path.join(path, workdir.STATUS))
    env, why_env = workdir.read_object(os.path.join(path, workdir.ENV))
    notes = [why for why in (why_status, why_env) if why]
    _, bad = workdir.read_jsonl_checked(os.path.join(path, workdir.METRICS))
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        notes.append(f"{workdir.METRICS}: {len(bad)} line(s) not a JSON object, skipped (line {shown})")
    return status or {}, env or {}, notes


def _read_run(path: str, slug: str, stem: str | None, recipe: ReportRecipe | None = None) -> Run:
    """Builds a Run from one directory that holds a point.json; `stem`: the recipe of this folder's runs."""
    point, why = workdir.read_object(os.path.join(path, workdir.POINT))
    problem = workdir.run_problem(path)
    if not why and point is not None and stem is not None and point.get("recipe_stem") != stem:
        whose = f"this report reads {stem!r}'s runs" if recipe else f"the other runs here are {stem!r}'s"
        problem = f"left by recipe {point.get('recipe_stem')!r}; {whose}"
    elif not problem and recipe is not None and not (isinstance(point, dict) and isinstance(point.get("id"), str)):
        problem = f"left by an older version of the runner ({workdir.POINT} has no point id)"
    if problem:
        # Values are kept only when point.json is this recipe's (a bad result.json): the point stays planned.
        readable = not why and point is not None and not problem.startswith((workdir.POINT, "left by"))
        values = point["values"] if readable else {}
        return Run(slug, path, values, SKIPPED, reason=f"{problem} (not used)", point=point if readable else {})
    state = workdir.point_status(path)
    status, env, notes = _notes(path)
    result = workdir.read_json(os.path.join(path, workdir.RESULT), {}) if state == workdir.DONE else {}
    reason = str(status.get("reason") or "")
    if state == "partial":
        reason = f"no result.json: {status.get('state', 'started')}" + (
            f" ({reason})" if reason else ""
        )
        if not status and notes and notes[0].startswith(workdir.STATUS):
            reason = f"no result.json; {notes[0]}"
    elif state == "new":
        reason = "not started (point.json only)"
    step = status.get("step")
    step = int(step) if isinstance(step, int | float) and not isinstance(step, bool) else 0
    return Run(slug, path, point["values"], state, step, reason, result, env, point, notes)


def _folder_stem(runs_dir: str, slugs: list[str], paths: dict[str, str] | None = None) -> str | None:
    """The recipe whose runs this folder holds: the folder's name if a run says so, else the most common."""
    paths = paths or {s: os.path.join(runs_dir, s) for s in slugs}
    stems = [(workdir.read_json(os.path.join(paths[s], workdir.POINT), {}) or {}) for s in slugs]
    stems = [p.get("recipe_stem") for p in stems if isinstance(p, dict) and p.get("recipe_stem")]
    if not stems:
        return None
    name = os.path.basename(os.path.normpath(runs_dir))
    return name if name in stems else max(sorted(set(stems)), key=stems.count)


def load_runs(runs_dir: str, recipe: ReportRecipe | None = None, records: str | None = None) -> list[Run]:
    """Reads every `<runs_dir>/<slug>/point.json` (and record), sorted by slug (see `read_runs`)."""
    return read_runs(runs_dir, recipe, records)[0]


def trained_otherwise(runs: list[Run], recipe: ReportRecipe) -> dict[str, str]:
    """{slug: the first differences} of the started or finished runs whose point.json records other settings than
    the recipe's point trains with now (`ReportRecipe.settings`, compared as gin text, as the runner does); a run
    without a record (written before settings were recorded) is kept."""
    found = {}
    for run in runs:
        recorded = workdir.recorded_settings(run.point)
        current = recipe.settings.get(run.point.get("id")) if run.point else None
        if run.state in (workdir.DONE, workdir.FAILED, "partial") and recorded is not None and current is not None:
            if mismatch := workdir.run_settings_mismatch(recorded, current):
                found[run.slug] = mismatch
    return found


def _slugs(folder: str | None) -> list[str]:
    """The folders of `folder` that hold a point.json; dot-named ones (a copy or a record being written) are not
    runs."""
    if not folder or not os.path.isdir(folder):
        return []
    return [s for s in os.listdir(folder)
            if not s.startswith(".") and os.path.isfile(os.path.join(folder, s, workdir.POINT))]


@dataclasses.dataclass(frozen=True)
class RecordProblem:
    """What is wrong with one file of a run record (`supcon.report.records`).

    Attributes:
      slug: the record's folder name.
      path: the damaged file (or the record's folder, when it holds no point.json).
      problem: what is wrong, to follow the path: 'is not JSON (truncated?): ...'.
      used: whether the rest of the record is used (a damaged status.json, env.json, calibration.json or
        metrics.jsonl line); if not, the record is not read: without a run dir here, its point counts as not run.
    """

    slug: str
    path: str
    problem: str
    used: bool

    def line(self, shown=lambda path: path) -> str:
        """One line naming the file, e.g. for the runner's output; `shown` formats the path."""
        then = "the rest of it is used" if self.used else "not used"
        return f"damaged run record: {shown(self.path)} {self.problem}; {then}"


def _after_name(why: str, name: str) -> str:
    """A `workdir.read_object` reason without the file name it starts with."""
    return why[len(name) + 1:] if why.startswith(name + " ") else why


def record_problems(records: str, stem: str | None = None, only: str | None = None) -> list[RecordProblem]:
    """What is wrong with the run records in the folder `records` (with `only`, that one record's alone), one
    entry per damaged file, by slug.

    Not used (the reporter lists the record as skipped or its point as absent, the runner trains the point): a
    folder without point.json; a point.json that is unreadable, not an object, or has no point id or values; a
    result.json that is unreadable or has no eval/top1; with `stem`, a point of another recipe (point.json's
    recipe_stem). Used, and noted in the report: a status.json, env.json or calibration.json that is not a JSON
    object, metrics.jsonl lines that are not one. (A record trained with other settings than its point's now is
    found by the runner, `supcon.experiment.plan.find_records`, which knows the settings.)
    """
    found: list[RecordProblem] = []
    if only is not None:
        names = [only]
    else:
        names = sorted(os.listdir(records)) if os.path.isdir(records) else []
    for slug in names:
        record = os.path.join(records, slug)
        if slug.startswith(".") or not os.path.isdir(record):
            continue
        point_path = os.path.join(record, workdir.POINT)
        point, why = workdir.read_object(point_path)
        if point is None:
            problem = _after_name(why, workdir.POINT) if why else f"holds no {workdir.POINT}: not a run record"
            found.append(RecordProblem(slug, point_path if why else record, problem, False))
            continue
        problem = workdir.run_problem(record)
        if not problem and not isinstance(point.get("id"), str):
            problem = f"{workdir.POINT} has no point id (an older version's)"
        if problem:
            name = workdir.RESULT if problem.startswith(workdir.RESULT) else workdir.POINT
            found.append(RecordProblem(slug, os.path.join(record, name), _after_name(problem, name), False))
            continue
        if stem is not None and point.get("recipe_stem") != stem:
            found.append(RecordProblem(
                slug, point_path, f"holds a point of recipe {point.get('recipe_stem')!r}, not of {stem!r}", False))
            continue
        for name in (workdir.STATUS, workdir.ENV, workdir.CALIBRATION):
            _, why = workdir.read_object(os.path.join(record, name))
            if why:
                found.append(RecordProblem(slug, os.path.join(record, name), _after_name(why, name), True))
        _, bad = workdir.read_jsonl_checked(os.path.join(record, workdir.METRICS))
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            found.append(RecordProblem(slug, os.path.join(record, workdir.METRICS),
                                       f"has {len(bad)} line(s) that are not a JSON object (line {shown})", True))
    return found


def run_paths(runs_dir: str, records: str | None = None) -> dict[str, str]:
    """{slug: the folder to read}: the run directories of `runs_dir` and the run records in `records`
    (`supcon.report.records`). A finished, readable record wins when the run dir of the same slug is not finished
    here (the point finished on another machine) or is the run it records (the report is then made from records
    alone, and rebuilds from them identically); else the run dir does (in progress, failed, or changed since)."""
    paths = {slug: os.path.join(runs_dir, slug) for slug in _slugs(runs_dir)}
    for slug in _slugs(records):
        record = os.path.join(records, slug)
        here = paths.get(slug)
        if here is None or (workdir.point_status(record) == workdir.DONE and not workdir.run_problem(record) and (
                workdir.point_status(here) != workdir.DONE or same_run(here, record))):
            paths[slug] = record
    return paths


def same_run(run_dir: str, record: str) -> bool:
    """Whether a record holds this run as it is now: the same point.json (its gin files made portable as the
    record keeps them: `workdir.portable_point`), status.json and result.json."""
    def read(folder: str, name: str):
        found = workdir.read_json(os.path.join(folder, name))
        return workdir.portable_point(found, os.getcwd()) if name == workdir.POINT else found

    return all(read(run_dir, name) == read(record, name) for name in (workdir.POINT, workdir.STATUS, workdir.RESULT))


def read_runs(runs_dir: str, recipe: ReportRecipe | None = None,
              records: str | None = None) -> tuple[list[Run], list[str], dict[str, str]]:
    """Reads every `<runs_dir>/<slug>/point.json` and every record `<records>/<slug>/point.json`, sorted by slug.

    Args:
      runs_dir: the folder of one recipe's run directories (with grid.runs_of: the other recipe's); it need not
        exist when `records` holds the runs.
      recipe: the recipe the report is for, or None: every run dir of the folder's recipe is read.
      records: the report's run records (`supcon.report.records`), or None (see `run_paths`).

    Returns:
      The runs found (those the report cannot use as `skipped`, with the reason), plus the absent points: with
      `recipe`, every point of its grid that has no run dir; else those inferred from the SEED axis (see
      `infer_absent`). The slugs of the run dirs left out: with `recipe`, those of its runs' recipe whose point is
      not in its grid (another recipe's points, for grid.runs_of; an earlier grid's, else). And, with `recipe`,
      {slug: the first differences} of the run dirs left out because they were trained with other settings than
      its points' now (`trained_otherwise`); their points are absent.

    Raises:
      ValueError: if `runs_dir` is not a directory or holds no run directory.
    """
    paths = run_paths(runs_dir, records)
    if not paths:
        kept = bool(records) and os.path.isdir(records)
        if not os.path.isdir(runs_dir) and not kept:
            raise ValueError(f"runs_dir {runs_dir!r} is not a directory")
        where = f"runs_dir {runs_dir!r}" + (f" and the records in {records!r} hold" if kept else " holds")
        raise ValueError(f"{where} no run directory (no <slug>/{workdir.POINT})")
    slugs = sorted(paths)
    stem = recipe.runs_stem if recipe else _folder_stem(os.path.dirname(paths[slugs[0]]), slugs, paths)
    runs = [_read_run(paths[slug], slug, stem, recipe) for slug in slugs]
    if recipe is None:
        return runs + infer_absent([r for r in runs if r.state != SKIPPED or r.values]), [], {}
    outside = [r.slug for r in runs if r.point and r.point.get("id") not in recipe.points]
    runs = [r for r in runs if r.slug not in outside]
    for run in runs:
        if run.values and run.point.get("id") in recipe.points:
            run.values = {**recipe.points[run.point["id"]], **run.values}
    otherwise = trained_otherwise(runs, recipe)
    left_out = {r.point.get("id"): r.slug for r in runs if r.slug in otherwise}
    runs = [r for r in runs if r.slug not in otherwise]
    found = {r.point.get("id") for r in runs if r.point}
    absent = [
        Run(MISSING, None, dict(values), ABSENT, reason=(
            f"its run dir {left_out[pid]} was trained with other settings (not shown)" if pid in left_out
            else "no run directory"))
        for pid, values in recipe.points.items() if pid not in found
    ]  # fmt: skip
    return runs + absent, outside, otherwise


def group_key(values: dict, exclude: tuple[str, ...] = (SEED,)) -> tuple:
    """A hashable key of a point's values without the replicate axis."""
    return tuple(sorted((k, value_label(v)) for k, v in values.items() if k not in exclude))


def infer_absent(runs: list[Run]) -> list[Run]:
    """Points planned but with no run directory: a SEED value that other points ran but this one lacks.

    The runner writes `point.json` before launching, so a point without a directory was never launched. The
    grid itself is not in the run directories; the SEED values seen anywhere stand for the planned seeds.
    """
    seeds = {value_label(r.values[SEED]): r.values[SEED] for r in runs if SEED in r.values}
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_key(run.values), []).append(run)
    absent = []
    for members in groups.values():
        if not all(SEED in r.values for r in members):
            continue
        have = {value_label(r.values[SEED]) for r in members}
        for label in sorted(set(seeds) - have, key=lambda s: sort_key(seeds[s])):
            values = dict(members[0].values, **{SEED: seeds[label]})
            absent.append(
                Run(
                    MISSING,
                    None,
                    values,
                    ABSENT,
                    reason=f"no run directory (other points ran SEED={label})",
                )
            )
    return absent


def varying_macros(runs: list[Run]) -> list[str]:
    """Macros whose value differs between runs (SEED excluded), sorted by name."""
    names = sorted({k for r in runs for k in r.values} - {SEED})
    return [n for n in names if len({value_label(r.values.get(n)) for r in runs}) > 1]


def determined_by(runs: list[Run], keys: list[str], macro: str) -> bool:
    """True when `macro` takes a single value within every group of runs that agree on `keys`."""
    seen: dict[tuple, str] = {}
    for run in runs:
        key = tuple(value_label(run.values.get(k)) for k in keys)
        value = value_label(run.values.get(macro))
        if seen.setdefault(key, value) != value:
            return False
    return True


def independent_macros(runs: list[Run], macros: list[str]) -> list[str]:
    """Drops macros that the others determine (coupled settings, e.g. LOSS with METHOD).

    Macros holding gin references ('@...') are dropped first, so labels keep the readable names.
    """

    def has_refs(m: str) -> bool:
        return any(str(r.values.get(m, "")).startswith(("@", "%")) for r in runs)

    keep = list(macros)
    for macro in sorted(macros, key=lambda m: (not has_refs(m), m)):
        rest = [k for k in keep if k != macro]
        if rest and determined_by(runs, rest, macro):
            keep = rest
    return keep


def choose_layout(runs: list[Run], spec: dict) -> tuple[list[str], list[str], list[str]]:
    """Row macros, column macros and the extra row macros added so no varying value is averaged away.

    Default rows are every varying macro but SEED (less those the others determine). A varying macro that the declared rows and columns do
    not determine is appended to the rows (and returned as `extra`), never silently averaged over.
    """
    varying = varying_macros(runs)
    rows, columns = list(spec["rows"]), list(spec["columns"])
    if not rows and not columns:
        return independent_macros(runs, varying), [], []
    extra = [
        m for m in varying if m not in rows + columns and not determined_by(runs, rows + columns, m)
    ]
    return rows + extra, columns, extra


def table_metrics(runs: list[Run], spec: dict) -> list[str]:
    """The declared metrics, or the default ones that some finished run reports."""
    if spec["metrics"]:
        return spec["metrics"]
    present = [m for m in DEFAULT_METRICS if any(r.metric(m) is not None for r in runs)]
    return present or [DEFAULT_METRICS[0]]
