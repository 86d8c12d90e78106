"""What the runner will do (no TensorFlow): its options and the recipe checked, the grid expanded and selected
(--only, --shard), each point's run dir located and judged (usable, trained with the same settings, to be copied
from another recipe), and the content of each point's point.json. Making a plan writes nothing."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from supcon import workdir
from supcon.experiment import environment, grid, reuse, scoring, sharing
from supcon.experiment.bindings import eval_only_overrides, run_settings_mismatch, settings_hash
from supcon.experiment.options import SMOKE_GIN, Options, UsageError
from supcon.experiment.shown import rel, repo_path
from supcon.report import data as report_data
from supcon.robust import spec as corruption_spec

UNUSABLE = "unusable"  # a point whose run dir holds something it cannot use (see workdir.run_problem)
NEEDS_EVAL = "needs eval"  # a finished point whose result.json lacks metrics the recipe asks for


@dataclasses.dataclass
class Plan:
    """What to run: the recipe, the selected points and where their run directories go."""

    recipe: grid.Recipe
    grid_points: list  # every point of the grid
    points: list  # the points selected by --only and --shard
    runs_root: str
    report_out: str
    overlays: list
    gin_params: list
    sharded: bool
    unusable: dict = dataclasses.field(default_factory=dict)  # slug -> why its run dir is not used
    dirs: dict = dataclasses.field(default_factory=dict)  # point id -> its run dir's name, when not its slug
    requests: dict = dataclasses.field(default_factory=dict)  # point id -> (corruptions, severities) asked for
    runs_of: grid.Recipe | None = None  # the recipe whose runs this one reads (grid.runs_of), None: its own
    folder_ids: set = dataclasses.field(default_factory=set)  # ids of every point whose run dir is in runs_root
    trainer_params: list = dataclasses.field(default_factory=list)  # the --gin_params the trainer gets
    settings: dict = dataclasses.field(default_factory=dict)  # point id -> {binding: gin text} (grid.point_settings)
    unrecorded: set = dataclasses.field(default_factory=set)  # ids of points whose run dir predates recorded settings
    copies: dict = dataclasses.field(default_factory=dict)  # point id -> another recipe's run dir to copy (reuse_from)
    copied: dict = dataclasses.field(default_factory=dict)  # point id -> the run dir (or record) copied by this runner
    record_copies: dict = dataclasses.field(default_factory=dict)  # point id -> another report's run record to copy
    reuse_notes: list = dataclasses.field(default_factory=list)  # one line per source record skipped as damaged
    recorded: dict = dataclasses.field(default_factory=dict)  # point id -> its finished record beside the report
    damaged_records: list = dataclasses.field(default_factory=list)  # report_data.RecordProblem, one per damaged file

    @property
    def trainer_recipe(self) -> grid.Recipe:
        """The recipe file the trainer reads: the other recipe's with grid.runs_of (the two train alike)."""
        return self.runs_of or self.recipe

    def run_dir(self, point: grid.Point) -> str:
        return os.path.join(self.runs_root, self.dirs.get(point.id, point.slug))

    def record_dir(self, point: grid.Point) -> str:
        """The point's run record beside the report: `<report>/runs/<its run dir's name>`."""
        return os.path.join(self.report_out, workdir.RECORDS_DIR, os.path.basename(self.run_dir(point)))

    def missing_metrics(self, point: grid.Point, run_dir: str | None = None) -> list[str]:
        """The result.json keys the point's settings ask for that its finished run (or the finished `run_dir`, e.g.
        the run it will copy) lacks ([] if unfinished)."""
        names, severities = self.requests.get(point.id, ((), ()))
        if not names:
            return []
        result = workdir.read_json(os.path.join(run_dir or self.run_dir(point), workdir.RESULT))
        return corruption_spec.missing_keys(result, names, severities) if isinstance(result, dict) else []

    def status(self, point: grid.Point) -> str:
        """workdir.point_status, UNUSABLE, NEEDS_EVAL for a finished point that lacks asked-for metrics,
        workdir.RECORDED for a point not finished here whose finished record is beside the report (it finished on
        another machine), reuse.COPY for a point with no trained run that will be copied from another recipe's run
        dir, or reuse.COPY_RECORD from another recipe's run record (grid.reuse_from)."""
        if point.slug in self.unusable:
            return UNUSABLE
        status = workdir.point_status(self.run_dir(point))
        if status != workdir.DONE and point.id in self.recorded:
            return workdir.RECORDED
        if status == reuse.NEW and point.id in self.copies:
            return reuse.COPY
        if status == reuse.NEW and point.id in self.record_copies:
            return reuse.COPY_RECORD
        return NEEDS_EVAL if status == workdir.DONE and self.missing_metrics(point) else status


def make_plan(argv: list[str], options: Options) -> Plan:
    """Checks the options and the recipe, expands the grid and applies --only and --shard (writes nothing).

    Raises:
      UsageError: a bad flag, environment, recipe or point (one line).
    """
    path = _check_recipe(argv)
    shard = _check_options(options)
    overlays = [SMOKE_GIN] if options.smoke else []
    gin_params = list(options.gin_params)
    try:
        recipe = grid.load_recipe(path, overlays=overlays, gin_params=gin_params)
        _check_gin_params(recipe, gin_params)
        other = grid.load_runs_of(recipe, overlays=overlays, gin_params=gin_params)
        points = grid.runs_of_points(recipe, other) if other else grid.expand(recipe)
        folder_ids = {p.id for p in grid.expand(other)} if other else {p.id for p in points}
        selected = grid.select(points, grid.parse_only(list(options.only), recipe.keys))
        if shard:
            selected = grid.shard(selected, *shard)
    except grid.GridError as e:
        raise UsageError(str(e)) from None
    sub = os.path.join("smoke", recipe.runs_stem) if options.smoke else recipe.runs_stem
    report_sub = os.path.join("smoke", recipe.stem) if options.smoke else recipe.stem
    plan = Plan(
        recipe=recipe,
        grid_points=points,
        points=selected,
        runs_root=os.path.abspath(os.path.join(options.runs_dir, sub)),
        report_out=os.path.abspath(os.path.join(options.report_dir, report_sub)),
        overlays=overlays,
        gin_params=gin_params,
        sharded=bool(shard),
        runs_of=other,
        folder_ids=folder_ids,
        trainer_params=trainer_params(recipe, other, gin_params),
    )
    plan.dirs = locate_run_dirs(plan)
    for point in selected:
        plan.settings[point.id] = grid.point_settings(plan.trainer_recipe, point)
        try:
            plan.requests[point.id] = scoring.requested(recipe, point.values)
        except ValueError as e:
            raise UsageError(f"point {point.slug}: {' '.join(str(e).split())}") from None
    _check_existing(plan)
    plan.recorded, plan.damaged_records = find_records(plan, strict=not options.report_only)
    plan.copies = plan_copies(plan, options.runs_dir)
    if not options.report_only:
        plan.record_copies, plan.reuse_notes = plan_record_copies(plan, options.report_dir)
    return plan


def find_records(plan: Plan, strict: bool = True) -> tuple[dict[str, str], list[report_data.RecordProblem]]:
    """{point id: record} of the grid's points whose finished record is beside the report
    (<report>/runs/<slug>/, supcon.report.records) and no run here, so they count as finished here too; and what is
    wrong with the damaged records (`supcon.report.data.record_problems`: the runner names each file in one line).
    A record that cannot be used is not counted (its point is trained here, or the report lists it as not run).

    With `strict` (not --report_only) only the records that count are checked against their point's settings now;
    else every finished or failed record of the grid, whatever run dir is here (--report_only reads none).

    Raises:
      UsageError: with `strict`, a record whose settings differ from its point's now (one line naming both); else
        the record is one of the damaged ones (the report leaves it out and names it).
    """
    folder = os.path.join(plan.report_out, workdir.RECORDS_DIR)
    damaged = report_data.record_problems(folder, plan.recipe.runs_stem)
    unused = {p.slug for p in damaged if not p.used}
    ids = {p.id: p for p in plan.grid_points}
    found = {}
    for slug in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        record = os.path.join(folder, slug)
        if slug in unused or slug.startswith(".") or not os.path.isdir(record):
            continue
        point, _ = workdir.read_object(os.path.join(record, workdir.POINT))
        if not point or point.get("id") not in ids:
            continue  # a point no longer in the grid: the report counts it
        mine, done = ids[point["id"]], workdir.point_status(record) == workdir.DONE
        if strict and (not done or workdir.point_status(plan.run_dir(mine)) != reuse.NEW):
            continue  # a failed record (trained again here), or a run dir here governs the point (checked as such)
        settings = plan.settings.get(mine.id) or grid.point_settings(plan.trainer_recipe, mine)
        recorded = workdir.recorded_settings(point)
        if recorded is not None and (mismatch := run_settings_mismatch(recorded, settings)):
            mismatch = mismatch.replace("(recipe now)", "(recipe)").replace("(run)", "(record)")
            if strict:
                raise UsageError(
                    f"{rel(os.path.join(record, workdir.POINT))}: recorded with other settings than "
                    f"{rel(plan.recipe.path)}'s point {mine.slug} now: {mismatch}; remove the record to train the "
                    "point again"
                )
            damaged.append(report_data.RecordProblem(
                slug, os.path.join(record, workdir.POINT),
                f"was trained with other settings than {rel(plan.recipe.path)}'s point {mine.slug} now: {mismatch}",
                False,
            ))
            continue
        if done:
            found[point["id"]] = record
    return found, sorted(damaged, key=lambda p: (p.slug, p.path))


def _check_recipe(argv: list[str]) -> str:
    if len(argv) != 2:
        raise UsageError(
            f"expected one recipe: python runner.py RECIPE.gin [flags]; got {argv[1:] or 'none'}"
        )
    path = argv[1]
    if not os.path.exists(path):
        raise UsageError(f"recipe {path} does not exist")
    if os.path.isdir(path):
        raise UsageError(f"recipe {path} is a folder, not a gin file")
    if not path.endswith(".gin"):
        raise UsageError(f"recipe {path} is not a gin file (expected a .gin file)")
    return path


def _check_dir(path: str, flag: str) -> None:
    """A directory flag must name a directory or a path that can be created."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--{flag} {path} is a file, not a directory")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--{flag} {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--{flag} {path}: {parent} is not writable")


def _check_options(options: Options) -> tuple[int, int] | None:
    """Checks TF_CONFIG and the options; returns --shard as (I, N), or None."""
    environment.check_tf_config()
    if options.jobs < 1:
        raise UsageError(f"--jobs must be an integer >= 1, got {options.jobs}")
    if options.jobs > 1 and os.environ.get("TF_CONFIG"):
        raise UsageError("--jobs must be 1 when TF_CONFIG is set (every host runs the same point)")
    if not options.claim_timeout > 0:
        raise UsageError(f"--claim_timeout must be > 0 seconds, got {options.claim_timeout}")
    if not options.progress_every > 0:
        raise UsageError(f"--progress_every must be > 0 seconds, got {options.progress_every}")
    _check_dir(options.runs_dir, "runs_dir")
    if options.report and not options.dry_run:
        _check_dir(options.report_dir, "report_dir")
    if options.smoke and not os.path.isfile(SMOKE_GIN):
        raise UsageError(f"--smoke needs {SMOKE_GIN}, which does not exist")
    try:
        return grid.parse_shard(options.shard) if options.shard is not None else None
    except grid.GridError as e:
        raise UsageError(str(e)) from None


def _check_gin_params(recipe: grid.Recipe, gin_params: list) -> None:
    """A --gin_param must not rebind a grid macro: every point would silently get the same value."""
    for param in gin_params:
        for st in grid.parse_statements(param, f"--gin_param {param!r}"):
            name = getattr(st, "selector", "")
            if not getattr(st, "arg_name", "x") and name in recipe.keys:
                raise UsageError(
                    f"--gin_param {param!r} rebinds the grid axis {name}; use --only {name}=VALUE"
                )


def locate_run_dirs(plan: Plan) -> dict[str, str]:
    """{point id: run dir name} for the points whose run dir is not `<runs_root>/<slug>`.

    A point is identified by its id (recipe and bindings), not by its slug: a run dir whose point.json holds the
    point's id is its run dir whatever its name, so the dirs of an earlier version's slugs (slugs changed when
    they learned to leave out unread and redundant keys) are found, resumed and skipped as before, and keep
    their names. A point whose slug names the dir of another point of this grid gets `<slug>-<id>`.
    """
    holders: dict[str, list[str]] = {}  # id -> names of the dirs whose point.json holds it
    if os.path.isdir(plan.runs_root):
        for name in sorted(os.listdir(plan.runs_root)):
            point, _ = workdir.read_object(os.path.join(plan.runs_root, name, workdir.POINT))
            if isinstance(point, dict) and isinstance(point.get("id"), str):
                holders.setdefault(point["id"], []).append(name)
    owner = {name: pid for pid, names in holders.items() for name in names}
    ids = plan.folder_ids or {p.id for p in plan.grid_points}
    dirs = {}
    for point in plan.grid_points:
        names = holders.get(point.id, [])
        if names and point.slug not in names:
            dirs[point.id] = names[0]
        elif not names and owner.get(point.slug, point.id) in ids - {point.id}:
            dirs[point.id] = f"{point.slug}-{point.id}"
    return dirs


def trainer_params(recipe: grid.Recipe, other: grid.Recipe | None, gin_params: list) -> list:
    """The --gin_params the trainer gets: the runner's; with grid.runs_of (the trainer then reads the other
    recipe's file), those but the grid.* and report.* ones, plus this recipe's evaluation-only settings where they
    differ from the other's (e.g. "train_and_evaluate.corruptions = 'all'"), so its points are scored as it asks."""
    if other is None:
        return list(gin_params)
    return [p for p in gin_params if not grid.is_runner_param(p)] + eval_only_overrides(recipe, other)


def training_params(params: list) -> list:
    """The --gin_params without the evaluation-only ones (train_and_evaluate.corruptions, ...) and the grid.* and
    report.* ones: those change what is scored or reported, not what is trained, so a run dir may be scored again
    (or read by another recipe, grid.runs_of) with others."""
    kept = []
    for param in params:
        if grid.is_runner_param(param):
            continue
        try:
            statements = grid.parse_statements(param, f"--gin_param {param!r}")
        except grid.GridError:
            statements = []
        if not statements or not all(
            corruption_spec.is_eval_only_binding(getattr(st, "selector", ""), getattr(st, "arg_name", "") or "")
            for st in statements
        ):
            kept.append(param)
    return kept


def _check_existing(plan: Plan) -> None:
    """Sets aside run dirs this point cannot use in `plan.unusable`: unreadable files, another recipe's or an older
    version's point (`workdir.run_problem`), or a run trained with other settings than the point's now (its
    point.json's `training_settings`; a run dir that predates them is used, and noted in `plan.unrecorded`). Refuses
    to mix a point's runs with other --gin_params."""
    for point in plan.points:
        where = rel(plan.run_dir(point))
        problem = workdir.run_problem(plan.run_dir(point), point.id)
        if problem:
            plan.unusable[point.slug] = f"{problem}; move {where} away to run this point"
            continue
        old = workdir.read_json(os.path.join(plan.run_dir(point), workdir.POINT))
        if old and training_params(old.get("gin_params", [])) != training_params(plan.gin_params):
            raise UsageError(
                f"{where} was run with --gin_param {old.get('gin_params')}, not {plan.gin_params}; "
                "pass another --runs_dir to keep both"
            )
        if workdir.point_status(plan.run_dir(point)) == "new":
            continue  # nothing trained yet: training rewrites its point.json
        recorded = workdir.recorded_settings(old)
        if recorded is None:
            plan.unrecorded.add(point.id)
        elif mismatch := run_settings_mismatch(recorded, plan.settings[point.id]):
            plan.unusable[point.slug] = (
                f"{where} was trained with other settings: {mismatch}; move it away to retrain, or pass another "
                "--runs_dir"
            )


def same_params(plan: Plan) -> Callable[[list], bool]:
    """Whether a run dir's --gin_params (point.json's `gin_params`) train like this plan's (`training_params`)."""
    mine = training_params(plan.trainer_params)
    return lambda params: training_params(params) == mine


def plan_copies(plan: Plan, runs_dir: str) -> dict[str, str]:
    """{point id: run dir to copy} for the selected points with no trained run (no run dir, or status 'new') that a
    recipe of grid.reuse_from (the trainer recipe's) has finished in `runs_dir` with exactly their settings
    (supcon.experiment.reuse). None with TF_CONFIG: every host of a multi-host point must run the same points."""
    stems, wanting = _reuse_wanted(plan)
    smoke = bool(plan.overlays)
    return reuse.find_copies(reuse.folders(runs_dir, stems, smoke), smoke, same_params(plan), wanting)


def plan_record_copies(plan: Plan, report_dir: str) -> tuple[dict[str, str], list[str]]:
    """{point id: run record to copy} for the selected points with no trained run, no record of their own and no
    run dir to copy (`plan_copies`) whose settings a finished record of a grid.reuse_from recipe, beside its report
    in `report_dir` (`<report_dir>/<other>/runs/<slug>/`), recorded exactly, with every metric the point asks for;
    and one line per source record skipped as damaged or unfinished, or lacking metrics the point asks for."""
    stems, wanting = _reuse_wanted(plan)
    wanting = {pid: settings for pid, settings in wanting.items() if pid not in plan.copies}
    smoke = bool(plan.overlays)
    folders = dict(zip(reuse.record_folders(report_dir, stems, smoke), stems, strict=True))
    found, skipped = reuse.find_record_copies(folders, smoke, same_params(plan), wanting)
    notes = [f"grid.reuse_from: {rel(path)} {problem}; not copied" for path, problem in skipped]
    for point in plan.points:
        lacking = plan.missing_metrics(point, found[point.id]) if point.id in found else []
        if lacking:
            notes.append(f"grid.reuse_from: {rel(os.path.join(found.pop(point.id), workdir.RESULT))} lacks "
                         f"{len(lacking)} of the metrics {rel(plan.recipe.path)} asks for, e.g. {lacking[0]}; not "
                         "copied")
    return found, notes


def _reuse_wanted(plan: Plan) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The stems of the trainer recipe's grid.reuse_from, and {id: settings} of the selected points that may be
    copied: usable, nothing trained in their run dir, no finished record of their own. None with TF_CONFIG: every
    host of a multi-host point must run the same points."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in plan.trainer_recipe.reuse_from_paths]
    if not stems or os.environ.get("TF_CONFIG"):
        return [], {}
    wanting = {
        p.id: plan.settings[p.id]
        for p in plan.points
        if p.slug not in plan.unusable and workdir.point_status(plan.run_dir(p)) == reuse.NEW
        and p.id not in plan.recorded
    }
    return stems, wanting


def point_record(plan: Plan, point: grid.Point, gin_files: list[str]) -> dict:
    """The content of point.json: with grid.runs_of, the other recipe's point as its own runner writes it (its
    recipe, report settings and header), and `runs_of_by`, the recipe whose runner wrote it; with
    grid.share_pretraining, the hash of its pretraining settings (`supcon.experiment.sharing`)."""
    recipe = plan.trainer_recipe
    record = {
        "recipe": repo_path(recipe.path),
        "recipe_stem": recipe.stem,
        "id": point.id,
        "slug": os.path.basename(plan.run_dir(point)),  # the point's slug, or an earlier version's
        "bindings": point.bindings,
        "values": point.values,
        "gin_files": gin_files,
        "gin_params": plan.trainer_params,
        "smoke": bool(plan.overlays),
        "report": recipe.report,
        "header": recipe.header,
        workdir.TRAINING_SETTINGS: dict(sorted(plan.settings[point.id].items())),
        workdir.TRAINING_SETTINGS_HASH: settings_hash(plan.settings[point.id]),
    }
    if plan.runs_of is not None:
        record["runs_of_by"] = repo_path(plan.recipe.path)
    if recipe.share_pretraining and (key := sharing.pretraining_hash(plan.settings[point.id])) is not None:
        record[sharing.SHARED_HASH] = key
    return record
