"""Runs the grid of a gin recipe: trains every point in `python -m supcon.main` trainer processes, then reports.

Usage:
  python runner.py RECIPE.gin [--gin_param B]... [--smoke] [--dry_run] [--jobs N] [--shard I/N]
      [--runs_dir runs] [--report_dir reports] [--only KEY=VALUE]... [--noreport] [--noreuse_process]
      [--progress auto|bar|lines|off] [--progress_every SECONDS] [--eval_only] [--report_only]
      [--auto_precision hardware|float32|mixed_bfloat16]

The manual is docs/running.md: the flags, what a run prints, exit codes, resuming, claims, settings records,
grid.runs_of, grid.reuse_from and scoring finished points. This file holds the flags and `main`; the work is done
in supcon/experiment/ (plan, validation, launch, outcome, dry_run, reporting), which takes the flag values as
`Options`. No TensorFlow is imported here: --help, --dry_run and flag errors are fast.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from supcon import workdir
from supcon.experiment import dry_run, launch, progress, show_config, validation
from supcon.experiment.options import REPORT_DIR, RUNS_DIR, Options, UsageError
from supcon.experiment.outcome import summarize
from supcon.experiment.plan import make_plan
from supcon.experiment.reporting import make_report, rebuild_report
from supcon.experiment.shown import count

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
    "runs_dir", RUNS_DIR, "Where run directories go: <runs_dir>/<recipe>/<slug>/ (grid.runs_of: the other recipe's)."
)
flags.DEFINE_string(
    "report_dir", REPORT_DIR, "Where the report goes: <report_dir>/<recipe>/README.md."
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
flags.DEFINE_boolean(
    "report_only", False,
    "Train nothing and read no run directory: rebuild <report_dir>/<recipe>/README.md and its plots from the run "
    "records committed beside it (<report_dir>/<recipe>/runs/); needs no TensorFlow.",
)
flags.DEFINE_enum(
    "auto_precision", "hardware", list(workdir.AUTO_PRECISIONS),
    "What train_and_evaluate.mixed_precision = 'auto' (the default) resolves to in the trainers this runner starts: "
    "'hardware' (mixed bfloat16 on a GPU, a TPU or a CPU with bfloat16 instructions, float32 elsewhere), 'float32' "
    "or 'mixed_bfloat16'. Not a training setting (points and their ids stay as they are; env.json records the "
    "precision and `precision_by`): continue a grid on another kind of machine in its finished runs' precision.",
)
flags.DEFINE_string(
    "main_module", "supcon.main", "Internal: the trainer module (tests use a fake)."
)


def options_from_flags() -> Options:
    """The parsed flags as the plain values supcon.experiment takes."""
    return Options(
        gin_params=tuple(FLAGS.gin_param),
        smoke=FLAGS.smoke,
        dry_run=FLAGS.dry_run,
        show_config=FLAGS.show_config,
        jobs=FLAGS.jobs,
        shard=FLAGS.shard,
        runs_dir=FLAGS.runs_dir,
        report_dir=FLAGS.report_dir,
        only=tuple(FLAGS.only),
        report=FLAGS.report,
        claim_timeout=FLAGS.claim_timeout,
        reuse_process=FLAGS.reuse_process,
        progress=FLAGS.progress,
        progress_every=FLAGS.progress_every,
        eval_only=FLAGS.eval_only,
        report_only=FLAGS.report_only,
        auto_precision=FLAGS.auto_precision,
        main_module=FLAGS.main_module,
    )


def main(argv: list[str]) -> int:
    """Plans, validates, runs the points, summarizes and reports; returns the exit code."""
    launch.stop_on_sigterm()
    options = options_from_flags()
    os.environ[workdir.AUTO_PRECISION_ENV] = options.auto_precision  # the trainer processes inherit it (child_env)
    try:
        plan = make_plan(argv, options)
        if options.show_config and not options.dry_run:
            raise UsageError("--show_config goes with --dry_run (it prints what each point would run)")
        if options.report_only:
            return rebuild_report(plan, options)
        if options.dry_run:
            code = dry_run.list_points(plan, options.eval_only, options.claim_timeout)
            if options.show_config:
                code = show_config.show(plan.trainer_recipe.path, plan.points, plan.overlays,
                                        plan.trainer_params) or code
            return code
        print(dry_run.describe_grid(plan), flush=True)
        todo = validation.to_validate(plan, options.eval_only)
        reuse = options.reuse_process and not os.environ.get("TF_CONFIG")  # a multi-host point: a process each
        if todo:
            how = "--serve (it then trains them)" if reuse else "--validate"
            print(f"validating {count(len(todo), 'point')} with python -m {options.main_module} {how} ...", flush=True)
        server = validation.validate(plan, todo, options.main_module, options.jobs, serve=reuse) if todo else None
    except UsageError as e:
        print(f"runner.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted before anything ran", file=sys.stderr)
        return 130
    display = progress.Display(options.progress, options.progress_every)
    launcher = launch.Launcher(plan, options.jobs, options.main_module, options.claim_timeout, reuse=reuse,
                               workers=(server,) if server else (), display=display, eval_only=options.eval_only)
    outcomes = launcher.run()
    code = summarize(plan, outcomes)
    if code == 130:
        return code
    return make_report(plan, options) or code


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
