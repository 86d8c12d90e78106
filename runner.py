"""Runs the grid of a gin recipe: trains every point in `python -m supcon.main` trainer processes, then reports.

Usage:
  python runner.py RECIPE.gin [--gin_param B]... [--smoke] [--dry_run] [--jobs N] [--shard I/N]
      [--runs_dir runs] [--report_dir reports] [--only KEY=VALUE]... [--noreport] [--noreuse_process]
      [--progress auto|bar|lines|off] [--progress_every SECONDS] [--eval_only]

Every point of the recipe's grid (`grid.axes` x `grid.points`) gets a stable id, a slug and its own
run directory `<runs_dir>/<recipe>/<slug>/` (`<runs_dir>/smoke/<recipe>/<slug>/` with --smoke). The id
identifies it: a run directory whose point.json holds the point's id is its own whatever its name, so run
directories named by an earlier version's slugs keep their names. All selected points are validated in one
subprocess before anything is written. Reruns skip finished points and let the trainer resume partial ones
from their checkpoint. Runners started at once on the same grid (or on the same shared file system) train each
point once: a point is claimed atomically (`claim.json`, refreshed while it trains; a claim older than
--claim_timeout is taken over).

  --shard I/N       the I-th (0-based) of N disjoint slices, e.g. I=$SLURM_ARRAY_TASK_ID or
                    I=$JOB_COMPLETION_INDEX of a Kubernetes Indexed Job.
  --jobs N          N points at once on this machine; each gets SUPCON_THREADS = cores // N.
  --progress        each running point's stage, step/total, loss and ETA, read from its log.txt: a status
                    line redrawn in place on a terminal ('bar'), a plain line per point every
                    --progress_every seconds otherwise ('lines': logs, CI); 'off': only the runner's lines.
  --eval_only       train nothing: only score finished points that lack metrics the recipe asks for (below);
                    unfinished points are listed as not run.
  --noreuse_process a fresh trainer process per point. By default each job keeps one trainer process and
                    trains its points one after another in it (TensorFlow's import and start-up, ~10 s on
                    2 cores, are paid once; see supcon/experiment/worker.py); a point that needs a fresh process (other
                    logical devices, a TPU or multi-host topology) gets one, and a process that dies is
                    replaced for the next point.

Scoring finished points. A recipe or --gin_param that sets train_and_evaluate.corruptions (or another
evaluation-only argument, supcon.robust.spec.EVAL_ONLY_ARGS) changes what is evaluated, not what is trained:
point ids hash the grid values only, so the points keep their run dirs, and a finished point whose result.json
lacks some of the corruption/... keys asked for is not skipped but scored again in eval mode (its final
checkpoint restored, no training; `--gin_param "train_and_evaluate.mode = 'eval'"` is added), which adds those
keys to its result.json and keeps every other field. --dry_run shows such points as 'needs eval'. A run dir's
--gin_params are compared without the evaluation-only ones.

Reading another recipe's runs. `grid.runs_of = 'other'` (a recipe stem: `other.gin` in the recipe's folder or in
recipes/) makes a recipe read, score and report points of another recipe's grid instead of training copies of them
under its own stem: its points take the other recipe's ids, slugs and run dirs (`<runs_dir>/<other>/`, with --smoke
`<runs_dir>/smoke/<other>/`; --dry_run and the summary say `runs of recipes/other.gin`), and a point missing there
is trained there as the other recipe's runner would (its file, its point.json, which also names this recipe as
`runs_of_by`). The recipe's evaluation-only settings reach the trainer as --gin_params, so the other's finished
points are scored in eval mode as above. Before anything runs, every point must be a point of the other grid and
the two recipes must train alike: every binding but grid.*, report.* and the evaluation-only ones, macros included
(but those every point binds from the grid), must have the same final value; else a one-line error naming
grid.runs_of. Comments, report.* and grid.* settings may differ. The report still goes to
`<report_dir>/<recipe>/`: the reporter gets the recipe (`--recipe`, for every recipe) and reads only the run dirs
of its grid's points, with its report.* settings and header; a plain recipe's report thus leaves out (and counts)
run dirs of points no longer in its grid, and lists every point of its grid without a run dir as absent.

Copying another recipe's runs. `grid.reuse_from = ['other', ...]` (recipe stems, found as for grid.runs_of) makes
the runner copy, for each selected point with no trained run (no run dir, or one where nothing was trained), a
finished run dir of those recipes (`<runs_dir>/<other>/`, with --smoke `<runs_dir>/smoke/<other>/`) that trained
exactly the same thing, instead of training it again: its status.json says done, its result.json is readable, its
point.json records the settings it trained with (below), equal to this point's as a dict, and the same --gin_params
(but the evaluation-only ones). A run dir that predates recorded settings is never copied. The copy
(shutil.copytree, into a temporary sibling of the point's run dir, then renamed into place: never half a run dir; a
run dir another runner made meanwhile wins) gets this recipe's point.json with `copied_from`, the source's run dir
(supcon/experiment/reuse.py). A copied point is done: it is not trained, and is scored in eval mode if it lacks metrics the
recipe asks for. --dry_run shows `copy <id> <run dir> <- <source>`, the run one `copied` line per copy and the
summary `N copied from other recipes`; --eval_only copies too (a copy trains nothing). A recipe with grid.runs_of
cannot bind it (the other recipe's own grid.reuse_from applies to points trained into its folder); nothing is copied
with TF_CONFIG (every host must run the same points).

A point that spans hosts (MultiWorkerMirroredStrategy) runs the same command on every host with
its TF_CONFIG: only the chief (or worker 0) claims points and writes point.json.
A run directory the point cannot use (an unreadable point.json or result.json, another recipe's point, an older
version's files: supcon.workdir.run_problem) is skipped with its reason, never trained over.

Settings a run was trained with. A point's id hashes its grid values only, so an edited recipe (other epochs, another
augmenter, an edited include) keeps its points' ids and run dirs. point.json therefore records the settings the point
trains with (`training_settings`, {binding: gin text}, and their `training_settings_hash`): every final binding of its
configuration (the recipe and its includes, its grid values, the --smoke overlay, the --gin_params) that it may read
(supcon.experiment.bindings.reach: a cross-entropy point leaves out the pretraining settings), but grid.*, report.* and the
evaluation-only ones. Every run (--dry_run and --eval_only too, and a grid.runs_of recipe reading the other's runs)
compares a started or finished run dir's record with the point's settings now, as gin text; one that differs is
unusable as above, with the first differences, e.g. `runs/x/method-supcon_seed-0 was trained with other settings:
PRETRAIN_EPOCHS = 20 (run) vs 50 (recipe now); move it away to retrain, or pass another --runs_dir`. Comments,
report.*, grid.* and evaluation-only edits keep the runs. A run dir written before settings were recorded is used as
it is (there is no way to tell), and --dry_run marks it `(settings not recorded)`. The reporter leaves run dirs
trained with other settings out of a recipe's report, in one line.

Exit codes: 0 all selected points done (or held by another runner), 1 some failed or unusable, 2 bad
flags, environment, recipe or point (nothing was written), 130 interrupted (Ctrl-C or SIGTERM: the trainers are
stopped, their points resume on the next run).

This module imports no TensorFlow: --help, --dry_run and flag errors are fast.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from absl import app, flags

from supcon import workdir
from supcon.experiment import grid, progress, reuse, scoring, show_config
from supcon.experiment.bindings import eval_only_overrides, run_settings_mismatch, settings_hash
from supcon.experiment.claim import HOST, Claim
from supcon.experiment.worker import Worker
from supcon.robust import spec as corruption_spec

ROOT = os.path.dirname(os.path.abspath(__file__))
SMOKE_GIN = os.path.join(ROOT, "recipes", "smoke.gin")
REPORTER = os.path.join(ROOT, "supcon", "report", "build.py")
POINT_GIN = "point.gin"  # the point's bindings as a gin file, in its run directory

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_param", [], "Gin binding applied to every point, after the recipe.")
flags.DEFINE_boolean(
    "smoke", False, "Append recipes/smoke.gin: a few tiny steps per point, on CPU."
)
flags.DEFINE_boolean(
    "dry_run", False, "List the points, their run directories and status; run nothing."
)
flags.DEFINE_boolean(
    "show_config", False,
    "With --dry_run: also print each point's effective settings per stage (optimizer and its constants, peak LR, "
    "schedule, weight decay, augmenter, views; heads, loss, encoder, topology), from one trainer process "
    "(supcon/experiment/show_config.py); trains nothing.",
)
flags.DEFINE_integer(
    "jobs", 1, "Points trained at once on this machine (they share the CPU threads)."
)
flags.DEFINE_string(
    "shard", None, "I/N: run only the I-th (0-based) of N disjoint slices of the grid."
)
flags.DEFINE_string(
    "runs_dir", "runs", "Where run directories go: <runs_dir>/<recipe>/<slug>/ (grid.runs_of: the other recipe's)."
)
flags.DEFINE_string(
    "report_dir", "reports", "Where the report goes: <report_dir>/<recipe>/README.md."
)
flags.DEFINE_multi_string("only", [], "KEY=VALUE: keep points whose grid value KEY equals VALUE.")
flags.DEFINE_boolean("report", True, "Run the reporter afterwards (--noreport skips it).")
flags.DEFINE_float(
    "claim_timeout", 600.0, "Seconds after which another runner's silent claim is stale."
)
flags.DEFINE_boolean(
    "reuse_process",
    True,
    "Train a job's points one after another in one trainer process (--noreuse_process: one per point).",
)
flags.DEFINE_enum(
    "progress", "auto", list(progress.MODES),
    "Progress of running points (stage, step/total, loss, ETA, from each point's log.txt): 'bar' redraws one "
    "status line in place, 'lines' prints a line per point every --progress_every seconds, 'auto' is 'bar' on "
    "a terminal and 'lines' otherwise (logs, CI), 'off' shows only the runner's messages.",
)
flags.DEFINE_float("progress_every", 30.0, "Seconds between a point's progress lines in --progress=lines.")
flags.DEFINE_boolean(
    "eval_only", False,
    "Never train: score finished points whose result.json lacks metrics the recipe asks for (e.g. "
    "train_and_evaluate.corruptions) in eval mode; list unfinished points as not run.",
)
flags.DEFINE_string(
    "main_module", "supcon.main", "Internal: the trainer module (tests use a fake)."
)


UNUSABLE = "unusable"  # a point whose run dir holds something it cannot use (see workdir.run_problem)
NEEDS_EVAL = "needs eval"  # a finished point whose result.json lacks metrics the recipe asks for
EVALUATED = "evaluated"  # the outcome of scoring such a point
NOT_RUN = "not run"  # the outcome of an unfinished point under --eval_only
EVAL_MODE_PARAM = "train_and_evaluate.mode = 'eval'"  # how a finished point is scored again


class UsageError(Exception):
    """A bad flag, recipe or point: printed as one line, exit code 2, nothing written."""


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
    copied: dict = dataclasses.field(default_factory=dict)  # point id -> the run dir copied by this runner

    @property
    def trainer_recipe(self) -> grid.Recipe:
        """The recipe file the trainer reads: the other recipe's with grid.runs_of (the two train alike)."""
        return self.runs_of or self.recipe

    def run_dir(self, point: grid.Point) -> str:
        return os.path.join(self.runs_root, self.dirs.get(point.id, point.slug))

    def missing_metrics(self, point: grid.Point, run_dir: str | None = None) -> list[str]:
        """The result.json keys the point's settings ask for that its finished run (or the finished `run_dir`, e.g.
        the run it will copy) lacks ([] if unfinished)."""
        names, severities = self.requests.get(point.id, ((), ()))
        if not names:
            return []
        result = workdir.read_json(os.path.join(run_dir or self.run_dir(point), workdir.RESULT))
        return corruption_spec.missing_keys(result, names, severities) if isinstance(result, dict) else []

    def status(self, point: grid.Point) -> str:
        """workdir.point_status, UNUSABLE, NEEDS_EVAL for a finished point that lacks asked-for metrics, or
        reuse.COPY for a point with no trained run that will be copied from another recipe (grid.reuse_from)."""
        if point.slug in self.unusable:
            return UNUSABLE
        status = workdir.point_status(self.run_dir(point))
        if status == reuse.NEW and point.id in self.copies:
            return reuse.COPY
        return NEEDS_EVAL if status == workdir.DONE and self.missing_metrics(point) else status


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


def _count(n: int, noun: str) -> str:
    """`1 point`, `3 points`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _rel(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


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


TF_CONFIG_EXAMPLE = '{"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}'


def _check_tf_config() -> None:
    """TF_CONFIG, when set, must describe a cluster and this host's task in it (see README: several hosts)."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"TF_CONFIG is not JSON ({e.msg} at column {e.colno}); expected {TF_CONFIG_EXAMPLE}") from None
    if config == {}:
        return
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster:
        raise UsageError(f"TF_CONFIG needs a 'cluster' dict of task lists; expected {TF_CONFIG_EXAMPLE}")
    for kind, hosts in cluster.items():
        if not isinstance(hosts, list) or not hosts or not all(
            isinstance(h, str) and re.fullmatch(r"[^\s:]+:\d+", h) for h in hosts
        ):
            raise UsageError(f"TF_CONFIG cluster.{kind} must be a non-empty list of 'host:port'; got {hosts!r}")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        got = task.get("type") if isinstance(task, dict) else task
        raise UsageError(f"TF_CONFIG task.type must be one of the cluster's {', '.join(cluster)}; got {got!r}")
    index, hosts = task.get("index", 0), cluster[task["type"]]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(hosts):
        raise UsageError(
            f"TF_CONFIG task.index must be an integer from 0 to {len(hosts) - 1} (cluster.{task['type']} "
            f"has {len(hosts)}); got {index!r}"
        )


def _check_flags() -> tuple[int, int] | None:
    _check_tf_config()
    if FLAGS.jobs < 1:
        raise UsageError(f"--jobs must be an integer >= 1, got {FLAGS.jobs}")
    if FLAGS.jobs > 1 and os.environ.get("TF_CONFIG"):
        raise UsageError("--jobs must be 1 when TF_CONFIG is set (every host runs the same point)")
    if not FLAGS.claim_timeout > 0:
        raise UsageError(f"--claim_timeout must be > 0 seconds, got {FLAGS.claim_timeout}")
    if not FLAGS.progress_every > 0:
        raise UsageError(f"--progress_every must be > 0 seconds, got {FLAGS.progress_every}")
    _check_dir(FLAGS.runs_dir, "runs_dir")
    if FLAGS.report and not FLAGS.dry_run:
        _check_dir(FLAGS.report_dir, "report_dir")
    if FLAGS.smoke and not os.path.isfile(SMOKE_GIN):
        raise UsageError(f"--smoke needs {SMOKE_GIN}, which does not exist")
    try:
        return grid.parse_shard(FLAGS.shard) if FLAGS.shard is not None else None
    except grid.GridError as e:
        raise UsageError(str(e)) from None


def _check_gin_params(recipe: grid.Recipe) -> None:
    """A --gin_param must not rebind a grid macro: every point would silently get the same value."""
    for param in FLAGS.gin_param:
        for st in grid.parse_statements(param, f"--gin_param {param!r}"):
            name = getattr(st, "selector", "")
            if not getattr(st, "arg_name", "x") and name in recipe.keys:
                raise UsageError(
                    f"--gin_param {param!r} rebinds the grid axis {name}; use --only {name}=VALUE"
                )


def make_plan(argv: list[str]) -> Plan:
    """Checks flags and the recipe, expands the grid and applies --only and --shard (writes nothing)."""
    path = _check_recipe(argv)
    shard = _check_flags()
    overlays = [SMOKE_GIN] if FLAGS.smoke else []
    try:
        recipe = grid.load_recipe(path, overlays=overlays, gin_params=FLAGS.gin_param)
        _check_gin_params(recipe)
        other = grid.load_runs_of(recipe, overlays=overlays, gin_params=FLAGS.gin_param)
        points = grid.runs_of_points(recipe, other) if other else grid.expand(recipe)
        folder_ids = {p.id for p in grid.expand(other)} if other else {p.id for p in points}
        selected = grid.select(points, grid.parse_only(FLAGS.only, recipe.keys))
        if shard:
            selected = grid.shard(selected, *shard)
    except grid.GridError as e:
        raise UsageError(str(e)) from None
    sub = os.path.join("smoke", recipe.runs_stem) if FLAGS.smoke else recipe.runs_stem
    report_sub = os.path.join("smoke", recipe.stem) if FLAGS.smoke else recipe.stem
    plan = Plan(
        recipe=recipe,
        grid_points=points,
        points=selected,
        runs_root=os.path.abspath(os.path.join(FLAGS.runs_dir, sub)),
        report_out=os.path.abspath(os.path.join(FLAGS.report_dir, report_sub)),
        overlays=overlays,
        gin_params=list(FLAGS.gin_param),
        sharded=bool(shard),
        runs_of=other,
        folder_ids=folder_ids,
        trainer_params=trainer_params(recipe, other, list(FLAGS.gin_param)),
    )
    plan.dirs = locate_run_dirs(plan)
    for point in selected:
        plan.settings[point.id] = grid.point_settings(plan.trainer_recipe, point)
        try:
            plan.requests[point.id] = scoring.requested(recipe, point.values)
        except ValueError as e:
            raise UsageError(f"point {point.slug}: {' '.join(str(e).split())}") from None
    _check_existing(plan)
    plan.copies = plan_copies(plan)
    return plan


def trainer_params(recipe: grid.Recipe, other: grid.Recipe | None, gin_params: list) -> list:
    """The --gin_params the trainer gets: the runner's; with grid.runs_of (the trainer then reads the other
    recipe's file), those but the grid.* and report.* ones, plus this recipe's evaluation-only settings where they
    differ from the other's (e.g. "train_and_evaluate.corruptions = 'all'"), so its points are scored as it asks."""
    if other is None:
        return list(gin_params)
    return [p for p in gin_params if not grid.is_runner_param(p)] + eval_only_overrides(recipe, other)


def _training_params(params: list) -> list:
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
        where = _rel(plan.run_dir(point))
        problem = workdir.run_problem(plan.run_dir(point), point.id)
        if problem:
            plan.unusable[point.slug] = f"{problem}; move {where} away to run this point"
            continue
        old = workdir.read_json(os.path.join(plan.run_dir(point), workdir.POINT))
        if old and _training_params(old.get("gin_params", [])) != _training_params(plan.gin_params):
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


def _same_params(plan: Plan) -> Callable[[list], bool]:
    """Whether a run dir's --gin_params (point.json's `gin_params`) train like this plan's (`_training_params`)."""
    mine = _training_params(plan.trainer_params)
    return lambda params: _training_params(params) == mine


def plan_copies(plan: Plan) -> dict[str, str]:
    """{point id: run dir to copy} for the selected points with no trained run (no run dir, or status 'new') that a
    recipe of grid.reuse_from (the trainer recipe's) has finished with exactly their settings (supcon.experiment.reuse). None
    with TF_CONFIG: every host of a multi-host point must run the same points."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in plan.trainer_recipe.reuse_from_paths]
    if not stems or os.environ.get("TF_CONFIG"):
        return {}
    wanting = [
        p for p in plan.points if p.slug not in plan.unusable and workdir.point_status(plan.run_dir(p)) == reuse.NEW
    ]  # fmt: skip
    smoke = bool(plan.overlays)
    found = reuse.sources(reuse.folders(FLAGS.runs_dir, stems, smoke), smoke, _same_params(plan)) if wanting else {}
    copies = {p.id: reuse.match(found, plan.settings[p.id]) for p in wanting}
    return {pid: source for pid, source in copies.items() if source}


def copy_point(plan: Plan, point: grid.Point, claim_timeout: float) -> bool:
    """Copies the point's planned source run dir into its run dir with this recipe's point.json (`point_record`,
    the source's gin_files, `copied_from`); False when another runner got there first.

    Raises:
      reuse.CopyError: the copy failed or the source no longer qualifies (one line; nothing is left behind).
    """
    source, settings, same = plan.copies[point.id], plan.settings[point.id], _same_params(plan)

    def check(copy: str) -> str:
        recorded = workdir.recorded_settings(workdir.read_json(os.path.join(copy, workdir.POINT)))
        problem = reuse.source_problem(copy, bool(plan.overlays), same)
        return problem or ("" if recorded == settings else "it was trained with other settings")

    def record(theirs: dict) -> dict:
        return {**point_record(plan, point, theirs.get("gin_files", [])), reuse.COPIED_FROM: _shown_path(source)}

    return reuse.copy_run(source, plan.run_dir(point), record, check, claim_timeout)


def to_validate(plan: Plan, eval_only: bool) -> list:
    """The selected points a trainer process will get: those not done nor unusable (with --eval_only, only those
    that need scoring), a point to copy when its copy will lack metrics the recipe asks for."""
    todo = []
    for point in plan.points:
        status = plan.status(point)
        if status == reuse.COPY:
            status = NEEDS_EVAL if plan.missing_metrics(point, plan.copies[point.id]) else workdir.DONE
        if status not in (UNUSABLE, workdir.DONE) and (not eval_only or status == NEEDS_EVAL):
            todo.append(point)
    return todo


def describe_grid(plan: Plan) -> str:
    recipe = plan.recipe
    sizes = ([f"points {len(recipe.points)}"] if recipe.points else []) + [
        f"{k} {len(v)}" for k, v in recipe.axes.items()
    ]
    shape = f" ({' x '.join(sizes)})" if sizes else ""
    count = len(plan.grid_points)
    text = f"{_rel(recipe.path)}: {count} point{'' if count == 1 else 's'}{shape}"
    if len(plan.points) != len(plan.grid_points):
        text += f", {len(plan.points)} selected"
    return text + _runs_of_note(plan)


def _runs_of_note(plan: Plan) -> str:
    """'; runs of recipes/other.gin in runs/other' for a recipe with grid.runs_of, else ''."""
    if plan.runs_of is None:
        return ""
    return f"; runs of {_rel(plan.runs_of.path)} in {_rel(plan.runs_root)}"


def dry_run(plan: Plan) -> int:
    """Prints every selected point with its run directory and status; writes nothing."""
    print(describe_grid(plan))
    counts: dict[str, int] = {}
    for point in plan.points:
        run_dir = plan.run_dir(point)
        status = plan.status(point)
        counts[status] = counts.get(status, 0) + 1
        note = f"  {plan.unusable[point.slug]}" if status == UNUSABLE else ""
        recorded = "  (settings not recorded)" if point.id in plan.unrecorded and status != UNUSABLE else ""
        note += recorded
        if status == reuse.COPY:
            source = plan.copies[point.id]
            lacking = plan.missing_metrics(point, source)
            note += f"  <- {_rel(source)}" + (
                f"  (lacks {_count(len(lacking), 'metric')}: then scored in eval mode)" if lacking else ""
            )
        if status == NEEDS_EVAL:
            note += f"  (lacks {_count(len(plan.missing_metrics(point)), 'metric')}: scored in eval mode, no training)"
        elif FLAGS.eval_only and status not in (workdir.DONE, UNUSABLE, reuse.COPY):
            note += "  (not run: --eval_only)"
        _, why = workdir.read_object(os.path.join(run_dir, workdir.STATUS))
        if why and status != UNUSABLE:
            note += f"  ({why}; training rewrites it)"
        if status == workdir.FAILED:
            note = recorded + "  " + (workdir.read_json(os.path.join(run_dir, workdir.STATUS), {}) or {}).get(
                "reason", ""
            )
        holder = Claim(run_dir, FLAGS.claim_timeout).holder()
        if holder and status != workdir.DONE:
            note += f"  [claimed by {holder}]"
        print(f"  {status:<8} {point.id}  {_rel(run_dir)}{note}")
    print("status: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0


def child_env(threads: int) -> dict:
    """The environment of trainer subprocesses: SUPCON_THREADS and the repo on PYTHONPATH."""
    env = dict(os.environ, SUPCON_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return env


def threads_per_job(jobs: int) -> int:
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    return max(1, cores // jobs)


def validate(plan: Plan, points: list, reuse: bool = False) -> Worker | None:
    """Validates `points` in one trainer process before anything is written.

    With `reuse`, the process is a serving trainer (supcon.experiment.worker) that is returned, ready to train points;
    else a one-shot `--validate SPEC.json` subprocess.

    Raises:
      UsageError: some point is invalid (one line per distinct error) or the validator crashed.
    """
    with tempfile.TemporaryDirectory(prefix="supcon-validate-") as tmp:
        spec, names = [], {}
        for i, point in enumerate(points):
            bindings = os.path.join(tmp, f"point{i}.gin")
            workdir.write_text_atomic(bindings, point.gin_text())
            names[bindings] = f"<bindings of {point.slug}>"
            files = [plan.trainer_recipe.path, bindings, *plan.overlays]
            spec.append({"name": point.slug, "gin_files": files, "gin_params": plan.trainer_params})
        spec_path = os.path.join(tmp, "spec.json")
        workdir.write_json_atomic(spec_path, spec)
        if reuse:
            server = Worker(FLAGS.main_module, child_env(threads_per_job(FLAGS.jobs)),
                            os.path.join(tmp, "worker.log"))
            reply = server.request({"op": "validate", "spec": spec_path})
            results = (reply or {}).get("results", [])
            code = server.exit_code() if reply is None else reply.get("code")
            with open(os.path.join(tmp, "worker.log")) as f:
                output = f.read()
        else:
            server = None
            cmd = [sys.executable, "-m", FLAGS.main_module, "--validate", spec_path]
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=child_env(threads_per_job(1))
            )
            results, code, output = [], proc.returncode, proc.stderr
            for line in proc.stdout.splitlines():
                try:
                    results.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    errors, seen = {}, set()
    for result in results:
        if isinstance(result, dict) and "name" in result:
            seen.add(result["name"])
            if result.get("error"):
                message = str(result["error"])
                for path, name in names.items():
                    message = message.replace(path, name)
                errors.setdefault(" ".join(message.split()), []).append(result["name"])
    failed = errors or seen != {p.slug for p in points} or code != 0
    if failed and server is not None:
        server.close()
    if errors:
        lines = [f"invalid point {', '.join(slugs)}: {msg}" for msg, slugs in errors.items()]
        raise UsageError("\n".join(lines))
    if failed:
        tail = (output.strip().splitlines() or ["no output"])[-1]
        how = "--serve" if reuse else "--validate"
        raise UsageError(f"validation failed (python -m {FLAGS.main_module} {how} exited {code}): {tail}")
    return server


@dataclasses.dataclass
class Outcome:
    point: grid.Point
    state: str  # trained | copied | evaluated | skipped | not run | failed | unusable | busy | interrupted
    detail: str = ""


class Launcher:
    """Runs points in trainer processes (up to `jobs` at once), holding and refreshing their claims.

    With `reuse`, each job sends its points to a long-lived serving trainer process (supcon.experiment.worker), starting
    one when none is idle; `workers` are processes already started (the validator). Else one subprocess per
    point. `display` prints the runner's messages and follows each running point's log for its progress.
    """

    def __init__(self, plan: Plan, jobs: int, main_module: str, claim_timeout: float,
                 reuse: bool = False, workers: tuple = (), display: progress.Display | None = None,
                 eval_only: bool = False):
        self.plan = plan
        self.eval_only = eval_only
        self.jobs = jobs
        self.main_module = main_module
        self.claim_timeout = claim_timeout
        self.threads = threads_per_job(jobs)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.active: dict[str, tuple[Claim, subprocess.Popen]] = {}
        self.lost: set[str] = set()  # run dirs whose claim another runner took over
        self.secondary = _secondary_worker()
        self.reuse = reuse
        self.idle: list[Worker] = list(workers)
        self.workers: list[Worker] = list(workers)
        self.display = display or progress.Display("off")

    def say(self, n: int, verb: str, point: grid.Point, text: str = "") -> None:
        self.display.message(f"[{n}/{len(self.plan.points)}] {verb:<7} {point.slug}{text}")

    def run(self) -> list[Outcome]:
        beat = threading.Thread(target=self._heartbeat, daemon=True)
        beat.start()
        self.display.start()
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs) as pool:
                futures = [pool.submit(self.run_point, n, p) for n, p in enumerate(self.plan.points, 1)]
                try:
                    outcomes = [f.result() for f in futures]
                except KeyboardInterrupt:
                    self.stop.set()
                    self._terminate_all()
                    outcomes = [f.result() for f in futures]
        finally:
            self.stop.set()
            self.display.close()
            for worker in self.workers:
                worker.close()
        return outcomes

    def run_point(self, n: int, point: grid.Point) -> Outcome:
        run_dir = self.plan.run_dir(point)
        if self.stop.is_set():
            return Outcome(point, "interrupted", "not started")
        if point.slug in self.plan.unusable:  # never trained over, and its result.json never overwritten
            self.say(n, "skip", point, f" ({self.plan.unusable[point.slug]})")
            return Outcome(point, UNUSABLE, self.plan.unusable[point.slug])
        if self.plan.status(point) == reuse.COPY:
            copied = self._copy(n, point)
            if copied is not None:
                return copied
        finished = os.path.exists(os.path.join(run_dir, workdir.RESULT))
        if finished and not self.plan.missing_metrics(point):
            self.say(n, "skip", point, " (done)")
            return Outcome(point, "skipped", "done")
        if not finished and self.eval_only:
            self.say(n, "skip", point, f" ({workdir.point_status(run_dir)}, not run: --eval_only)")
            return Outcome(point, NOT_RUN, "not finished")
        os.makedirs(run_dir, exist_ok=True)
        claim = Claim(run_dir, self.claim_timeout)
        if not self.secondary and not claim.acquire():
            holder = claim.holder() or "another runner"
            self.say(n, "busy", point, f" (claimed by {holder})")
            return Outcome(point, "busy", f"claimed by {holder}")
        try:
            finished = os.path.exists(os.path.join(run_dir, workdir.RESULT))
            if finished and not self.plan.missing_metrics(point):
                self.say(n, "skip", point, " (done by another runner)")
                return Outcome(point, "skipped", "done")
            if not finished and self.eval_only:  # another runner's point that failed meanwhile, say
                return Outcome(point, NOT_RUN, "not finished")
            return self._train(n, point, run_dir, claim, scoring=finished)
        finally:
            with self.lock:
                self.active.pop(run_dir, None)
            self.display.remove(run_dir)
            if not self.secondary:
                claim.release()

    def _copy(self, n: int, point: grid.Point) -> Outcome | None:
        """Copies the point's run from another recipe (grid.reuse_from, `copy_point`). Its outcome, or None to carry
        on as for any point: the copy lacks metrics the recipe asks for (it is scored), or another runner got there
        first."""
        source = self.plan.copies[point.id]
        try:
            placed = copy_point(self.plan, point, self.claim_timeout)
        except reuse.CopyError as e:
            self.say(n, "failed", point, f" copying {_rel(source)}: {e}")
            return Outcome(point, "failed", f"copying {_rel(source)} failed: {e}")
        if not placed:
            return None
        with self.lock:
            self.plan.copied[point.id] = source
        self.say(n, reuse.COPIED, point, f" <- {_rel(source)}")
        return None if self.plan.missing_metrics(point) else Outcome(point, reuse.COPIED, _rel(source))

    def _train(self, n: int, point: grid.Point, run_dir: str, claim: Claim, scoring: bool = False) -> Outcome:
        """Trains the point, or with `scoring` evaluates its finished run in eval mode (no training)."""
        status = workdir.point_status(run_dir)
        how = {"partial": "resuming", workdir.FAILED: "retrying after a failure"}.get(status, "new")
        if scoring:
            how = f"scoring: {_count(len(self.plan.missing_metrics(point)), 'metric')} missing, eval mode"
        bindings = POINT_GIN if not self.secondary else f"point-{self.secondary}.gin"
        gin_files = [self.plan.trainer_recipe.path, os.path.join(run_dir, bindings), *self.plan.overlays]
        gin_params = self.plan.trainer_params + ([EVAL_MODE_PARAM] if scoring else [])
        workdir.write_text_atomic(
            gin_files[1],
            f"# Grid point {point.id} of {_rel(self.plan.trainer_recipe.path)}\n" + point.gin_text(),
        )
        if not self.secondary and not scoring:  # a scored point keeps the point.json it was trained with
            workdir.write_json_atomic(
                os.path.join(run_dir, workdir.POINT), point_record(self.plan, point, gin_files)
            )
        self.say(n, "running", point, f" ({how}) -> {_rel(run_dir)}")
        start = time.time()
        log_name = workdir.LOG if not self.secondary else f"log-{self.secondary}.txt"
        self.display.add(run_dir, f"[{n}/{len(self.plan.points)}]", point.slug, os.path.join(run_dir, log_name))
        if self.reuse:
            code = self._serve_point(run_dir, gin_files, gin_params, os.path.join(run_dir, log_name), claim)
            if code is None:
                return Outcome(point, "interrupted", "not started")
            return self._outcome(n, point, run_dir, code, start, scoring)
        cmd = [sys.executable, "-m", self.main_module, "--workdir", run_dir]
        cmd += [arg for f in gin_files for arg in ("--gin_file", f)]
        cmd += [arg for b in gin_params for arg in ("--gin_param", b)]
        with open(os.path.join(run_dir, log_name), "a") as log:
            log.write(
                f"\n=== runner.py on {HOST} (pid {os.getpid()}) at {time.ctime(start)}: {' '.join(cmd)}\n"
            )
            log.flush()
            with self.lock:
                if self.stop.is_set():
                    return Outcome(point, "interrupted", "not started")
                proc = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=child_env(self.threads),
                )
                self.active[run_dir] = (claim, proc)
            claim.child_pid = proc.pid
            if not self.secondary:
                claim.refresh()
            code = proc.wait()
        return self._outcome(n, point, run_dir, code, start, scoring)

    def _take_worker(self, log: str, fresh: bool) -> Worker | None:
        """An idle trainer process (or a new one, output to `log` until its first point); None once stopped."""
        with self.lock:
            if self.stop.is_set():
                return None
            while self.idle and not fresh:
                worker = self.idle.pop()
                if worker.alive():  # an idle process can die too (e.g. the OOM killer): skip it
                    return worker
                worker.close()
            worker = Worker(self.main_module, child_env(self.threads), log)
            self.workers.append(worker)
            return worker

    def _serve_point(self, run_dir: str, gin_files: list[str], gin_params: list[str], log: str,
                     claim: Claim) -> int | None:
        """Trains (or, with EVAL_MODE_PARAM among gin_params, scores) a point in a serving trainer process; its exit
        code (negative: killed), None if stopped."""
        request = {"op": "train", "workdir": run_dir, "gin_files": gin_files, "gin_params": gin_params, "log": log}
        for fresh in (False, True):
            worker = self._take_worker(log, fresh)
            if worker is None:
                return None
            with open(log, "a") as f:
                f.write(
                    f"\n=== runner.py on {HOST} (pid {os.getpid()}) at {time.ctime()}: trainer process "
                    f"{worker.pid} (python -m {self.main_module} --serve), its point {worker.points + 1}\n"
                )
            with self.lock:
                self.active[run_dir] = (claim, worker.proc)
            claim.child_pid = worker.pid
            if not self.secondary:
                claim.refresh()
            reply = worker.request(request)
            if reply is None:  # the process died: a crash, a signal, a lost claim or an interrupt
                code = worker.exit_code()
                return code if code else 1
            if reply.get("restart"):  # the point needs a fresh process (see supcon.experiment.worker)
                worker.close()
                continue
            if reply.get("retire"):
                worker.close()
            else:
                with self.lock:
                    self.idle.append(worker)
            return int(reply["code"])
        raise RuntimeError(f"a fresh trainer process refused {run_dir}")

    def _outcome(self, n: int, point: grid.Point, run_dir: str, code: int, start: float,
                 scoring: bool = False) -> Outcome:
        self.display.remove(run_dir)  # its progress goes before its outcome prints
        seconds = time.time() - start
        if run_dir in self.lost:
            self.say(n, "stopped", point, " (another runner took over its stale claim)")
            return Outcome(point, "busy", "taken over by another runner")
        result = workdir.read_json(os.path.join(run_dir, workdir.RESULT))
        if scoring:
            return self._scored(n, point, run_dir, code, start)
        if code == 0 and result is not None:
            top1 = result.get("eval/top1")
            score = f", eval/top1 {top1:.4f}" if isinstance(top1, int | float) else ""
            self.say(n, "done", point, f" in {seconds:.0f} s{score}")
            return Outcome(point, "trained", f"{seconds:.0f} s")
        reason = failure_reason(run_dir, code, start, self.stop.is_set())
        self.say(
            n,
            "stopped" if self.stop.is_set() else "failed",
            point,
            f" after {seconds:.0f} s: {reason} (log: {_rel(os.path.join(run_dir, workdir.LOG))})",
        )
        return Outcome(point, "interrupted" if self.stop.is_set() else "failed", reason)

    def _scored(self, n: int, point: grid.Point, run_dir: str, code: int, start: float) -> Outcome:
        """The outcome of scoring a finished point: done when its result.json now holds every asked-for key."""
        seconds = time.time() - start
        missing = self.plan.missing_metrics(point)
        if code == 0 and not missing:
            result = workdir.read_json(os.path.join(run_dir, workdir.RESULT), {}) or {}
            mean = result.get(corruption_spec.MEAN_TOP1)
            score = f", {corruption_spec.MEAN_TOP1} {mean:.4f}" if isinstance(mean, int | float) else ""
            self.say(n, "scored", point, f" in {seconds:.0f} s{score}")
            return Outcome(point, EVALUATED, f"{seconds:.0f} s")
        if code == 0:
            reason = f"eval mode exited 0 but result.json still lacks {_count(len(missing), 'metric')}, e.g. {missing[0]}"
        else:
            reason = failure_reason(run_dir, code, start, self.stop.is_set())
        verb = "stopped" if self.stop.is_set() else "failed"
        self.say(n, verb, point, f" scoring after {seconds:.0f} s: {reason} (log: {_rel(os.path.join(run_dir, workdir.LOG))})")
        return Outcome(point, "interrupted" if self.stop.is_set() else "failed", reason)

    def _heartbeat(self) -> None:
        interval = max(0.2, min(30.0, self.claim_timeout / 4))
        while not self.stop.wait(interval):
            with self.lock:
                active = list(self.active.items())
            for run_dir, (claim, proc) in active:
                if not self.secondary and proc.poll() is None and not claim.refresh():
                    self.lost.add(run_dir)
                    proc.terminate()

    def _terminate_all(self) -> None:
        with self.lock:
            for _, proc in self.active.values():
                if proc.poll() is None:
                    proc.terminate()


def _secondary_worker() -> str:
    """'worker-1' etc. when TF_CONFIG makes this host a non-chief task of a multi-host point."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
        kind, index = task.get("type", "chief"), int(task.get("index", 0) or 0)
    except (ValueError, AttributeError, TypeError):
        return ""
    return "" if kind == "chief" or (kind == "worker" and index == 0) else f"{kind}-{index}"


def failure_reason(run_dir: str, code: int, start: float, interrupted: bool) -> str:
    """Why a point failed: the trainer's status.json, else the last line of its log, else the exit code."""
    if interrupted:
        return "interrupted"
    status = workdir.read_json(os.path.join(run_dir, workdir.STATUS), {}) or {}
    if (
        status.get("state") == workdir.FAILED
        and status.get("reason")
        and status.get("time", 0) >= start
    ):
        return " ".join(str(status["reason"]).split())
    exit_text = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    try:
        with open(os.path.join(run_dir, workdir.LOG)) as f:
            lines = [line.strip() for line in f.readlines()[-50:] if line.strip()]
    except OSError:
        lines = []
    last = lines[-1][:300] if lines and not lines[-1].startswith("=== runner.py") else ""
    if code == 0:
        return "exited 0 without writing result.json"
    return f"{last} ({exit_text})" if last else exit_text


def point_record(plan: Plan, point: grid.Point, gin_files: list[str]) -> dict:
    """The content of point.json: with grid.runs_of, the other recipe's point as its own runner writes it (its
    recipe, report settings and header), and `runs_of_by`, the recipe whose runner wrote it."""
    recipe = plan.trainer_recipe
    record = {
        "recipe": _repo_path(recipe.path),
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
        record["runs_of_by"] = _repo_path(plan.recipe.path)
    return record


def _repo_path(path: str) -> str:
    """A path relative to the repository when inside it, else absolute."""
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def summarize(plan: Plan, outcomes: list[Outcome]) -> int:
    """Prints done / skipped / failed counts and the reasons; returns 1 if any point failed."""
    count = {
        s: [o for o in outcomes if o.state == s]
        for s in ("trained", "skipped", "failed", UNUSABLE, "busy", "interrupted", EVALUATED, NOT_RUN)
    }
    copied = [o for o in outcomes if o.point.id in plan.copied]  # scored copies are also among the evaluated
    parts = [f"{len(count['trained'])} trained"] + ([f"{len(copied)} copied from other recipes"] if copied else [])
    parts += [f"{len(count['skipped'])} already done", f"{len(count['failed'])} failed"]
    parts += [f"{len(count[s])} {s}" for s in (EVALUATED, UNUSABLE, "busy", "interrupted") if count[s]]
    if count[NOT_RUN]:
        parts.append(f"{len(count[NOT_RUN])} not finished (not run: --eval_only)")
    shared = f" (runs of {_rel(plan.runs_of.path)})" if plan.runs_of is not None else ""
    print(f"summary: {_count(len(outcomes), 'point')} in {_rel(plan.runs_root)}{shared}: " + ", ".join(parts))
    for o in count["failed"]:
        print(f"  failed {o.point.slug}: {o.detail}")
    for o in count[UNUSABLE]:
        print(f"  unusable {o.point.slug}: {o.detail}")
    for o in count["busy"]:
        print(f"  busy   {o.point.slug}: {o.detail}")
    return 1 if count["failed"] or count[UNUSABLE] else 130 if count["interrupted"] else 0


def _shown_path(path: str) -> str:
    """A path as a command shows it: relative to the repository (where `python runner.py` runs) or to the working
    directory when inside either, else absolute."""
    path = os.path.abspath(path)
    for base in (ROOT, os.getcwd()):
        rel = os.path.relpath(path, base)
        if not rel.startswith(".."):
            return rel
    return path


def runner_command(plan: Plan) -> str:
    """The runner command a report names as its author: the recipe and the flags that decide which runs it
    reads and where it goes (--smoke, --gin_param, --runs_dir, --report_dir)."""
    parts = ["python", "runner.py", _shown_path(plan.recipe.path)]
    parts += ["--smoke"] if FLAGS.smoke else []
    parts += [arg for b in plan.gin_params for arg in ("--gin_param", b)]
    for name in ("runs_dir", "report_dir"):
        if FLAGS[name].value != FLAGS[name].default:
            parts += [f"--{name}", _shown_path(FLAGS[name].value)]
    return shlex.join(parts)


def report_args(plan: Plan, shown=lambda path: path) -> list[str]:
    """The reporter's arguments: the runs folder, the report folder and the recipe as the runner read it (its
    overlays and --gin_params), whose grid selects the runs and whose report.* settings shape the report."""
    args = [shown(plan.runs_root), "--out", shown(plan.report_out), "--recipe", shown(plan.recipe.path)]
    args += [arg for f in plan.overlays for arg in ("--overlay", shown(f))]
    return args + [arg for b in plan.gin_params for arg in ("--gin_param", b)]


def make_report(plan: Plan) -> int:
    """Runs `python -m supcon.report` over the recipe's run directories when it makes sense."""
    if not FLAGS.report or _secondary_worker():
        return 0
    if not os.path.exists(REPORTER):
        print("report: skipped (supcon/report/build.py is not available)")
        return 0
    waiting = [p for p in plan.grid_points if workdir.point_status(plan.run_dir(p)) != workdir.DONE]
    if plan.sharded and waiting:
        print(
            f"report: skipped, {_count(len(waiting), 'point')} of other shards {'is' if len(waiting) == 1 else 'are'} "
            f"not done; when they are, run {shlex.join(['python', '-m', 'supcon.report', *report_args(plan, _rel)])}"
        )
        return 0
    cmd = [sys.executable, "-m", "supcon.report", *report_args(plan), "--command", runner_command(plan)]
    code = subprocess.run(cmd, env=child_env(threads_per_job(1))).returncode
    if code != 0:
        print(f"report: failed (exit code {code}): {' '.join(cmd)}")
        return 1
    print(f"report: {_rel(os.path.join(plan.report_out, 'README.md'))}")
    return 0


def _interrupt(signum: int, frame) -> None:
    """SIGTERM (a scheduler's or `kill`'s stop) takes the path of Ctrl-C: the trainers are stopped and the points
    left to resume, instead of the runner dying alone while its trainers train on."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    """Plans, validates, runs the points, summarizes and reports; returns the exit code."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        plan = make_plan(argv)
        if FLAGS.show_config and not FLAGS.dry_run:
            raise UsageError("--show_config goes with --dry_run (it prints what each point would run)")
        if FLAGS.dry_run:
            code = dry_run(plan)
            if FLAGS.show_config:

                code = show_config.show(plan.trainer_recipe.path, plan.points, plan.overlays, plan.trainer_params,
                                        child_env(threads_per_job(1))) or code
            return code
        print(describe_grid(plan), flush=True)
        todo = to_validate(plan, FLAGS.eval_only)
        reuse = FLAGS.reuse_process and not os.environ.get("TF_CONFIG")  # a multi-host point: a process each
        if todo:
            how = "--serve (it then trains them)" if reuse else "--validate"
            print(f"validating {_count(len(todo), 'point')} with python -m {FLAGS.main_module} {how} ...", flush=True)
        server = validate(plan, todo, reuse=reuse) if todo else None
    except UsageError as e:
        print(f"runner.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before anything ran", file=sys.stderr)
        return 130
    display = progress.Display(FLAGS.progress, FLAGS.progress_every)
    launcher = Launcher(plan, FLAGS.jobs, FLAGS.main_module, FLAGS.claim_timeout, reuse=reuse,
                        workers=(server,) if server else (), display=display, eval_only=FLAGS.eval_only)
    outcomes = launcher.run()
    code = summarize(plan, outcomes)
    if code == 130:
        return code
    return make_report(plan) or code


def parse_flags(argv: list[str]) -> list[str]:
    """Parses flags; a bad flag ends with one line on stderr and exit code 2."""
    try:
        return FLAGS(argv)
    except SystemExit:
        if {"--help", "-h", "-?", "--helpshort", "--helpfull"} & set(argv[1:]):
            sys.exit(0)  # absl exits 1 after printing help
        raise
    except flags.Error as e:
        print(f"runner.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
