"""What the runner says about a plan before anything runs (no TensorFlow): the grid's one-line description, and
`--dry_run`'s list of the selected points with their run dirs, status and notes (it writes nothing)."""

from __future__ import annotations

import os

from supcon import workdir
from supcon.experiment import reuse, sharing
from supcon.experiment.claim import Claim
from supcon.experiment.plan import NEEDS_EVAL, UNUSABLE, Plan
from supcon.experiment.shown import count, rel


def describe_grid(plan: Plan) -> str:
    """`recipes/x.gin: 6 points (points 2 x SEED 3)`, with how many are selected and whose runs it reads; then a
    line per damaged file of the run records beside the report (`Plan.damaged_records`) and per run record of a
    grid.reuse_from recipe skipped as damaged or unfinished (`Plan.reuse_notes`)."""
    recipe = plan.recipe
    sizes = ([f"points {len(recipe.points)}"] if recipe.points else []) + [
        f"{k} {len(v)}" for k, v in recipe.axes.items()
    ]
    shape = f" ({' x '.join(sizes)})" if sizes else ""
    n = len(plan.grid_points)
    text = f"{rel(recipe.path)}: {n} point{'' if n == 1 else 's'}{shape}"
    if len(plan.points) != len(plan.grid_points):
        text += f", {len(plan.points)} selected"
    notes = [p.line(rel) for p in plan.damaged_records] + plan.reuse_notes
    return text + _runs_of_note(plan) + "".join("\n" + line for line in notes)


def _runs_of_note(plan: Plan) -> str:
    """'; runs of recipes/other.gin in runs/other' for a recipe with grid.runs_of, else ''."""
    if plan.runs_of is None:
        return ""
    return f"; runs of {rel(plan.runs_of.path)} in {rel(plan.runs_root)}"


def list_points(plan: Plan, eval_only: bool, claim_timeout: float) -> int:
    """Prints every selected point with its run directory and status (as --eval_only would treat it, claims older
    than `claim_timeout` seconds not shown as held); writes nothing; returns 0."""
    print(describe_grid(plan))
    counts: dict[str, int] = {}
    sharers: dict[str, str] = {}  # pretraining hash -> the slug of the first point here that will pretrain it
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
            note += f"  <- {rel(source)}" + (
                f"  (lacks {count(len(lacking), 'metric')}: then scored in eval mode)" if lacking else ""
            )
        if status == NEEDS_EVAL:
            note += f"  (lacks {count(len(plan.missing_metrics(point)), 'metric')}: scored in eval mode, no training)"
        elif eval_only and status not in (workdir.DONE, UNUSABLE, reuse.COPY, reuse.COPY_RECORD):
            note += "  (not run: --eval_only)"
        _, why = workdir.read_object(os.path.join(run_dir, workdir.STATUS))
        if why and status != UNUSABLE:
            note += f"  ({why}; training rewrites it)"
        if status == workdir.FAILED:
            note = recorded + "  " + (workdir.read_json(os.path.join(run_dir, workdir.STATUS), {}) or {}).get(
                "reason", ""
            )
        holder = Claim(run_dir, claim_timeout).holder()
        if holder and status != workdir.DONE:
            note += f"  [claimed by {holder}]"
        if status == reuse.NEW and plan.trainer_recipe.share_pretraining:
            note += _sharing_note(plan, point, sharers)
        if status == reuse.COPY_RECORD:  # nothing goes to the run dir: the record is copied beside the report
            run_dir, note = plan.record_dir(point), f"{note}  <- {rel(plan.record_copies[point.id])}"
        print(f"  {status:<8} {point.id}  {rel(run_dir)}{note}")
    print("status: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0


def _sharing_note(plan: Plan, point, sharers: dict[str, str]) -> str:
    """grid.share_pretraining: where a new point's pretraining will come from (supcon.experiment.sharing), else ''.
    An earlier point of the list with the same pretraining settings is its source: the runner starts it first and,
    with several jobs, a point waits for a source still in its pretraining (supcon.experiment.launch)."""
    key = sharing.pretraining_hash(plan.settings[point.id])
    if key is None or os.environ.get("TF_CONFIG"):  # multi-host: nothing is shared (supcon.experiment.launch)
        return ""
    found = sharing.find_source(plan.runs_root, key, plan.trainer_params, plan.run_dir(point))
    if found is not None:
        return f"  <- pretraining of {rel(found[0])}"
    if key in sharers:
        return f"  <- pretraining of {sharers[key]} (once it has trained it)"
    sharers[key] = point.slug
    return ""
