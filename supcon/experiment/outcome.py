"""How each point of a run ended, why a point failed, and the runner's summary of them (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import os

from supcon import workdir
from supcon.experiment import grid
from supcon.experiment.plan import UNUSABLE, Plan
from supcon.experiment.shown import count, rel

EVALUATED = "evaluated"  # the outcome of scoring a finished point that lacked metrics the recipe asks for
NOT_RUN = "not run"  # the outcome of an unfinished point under --eval_only


@dataclasses.dataclass
class Outcome:
    point: grid.Point
    state: str  # trained | copied | evaluated | skipped | not run | failed | unusable | busy | interrupted
    detail: str = ""


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


def summarize(plan: Plan, outcomes: list[Outcome]) -> int:
    """Prints done / skipped / failed counts and the reasons; returns 1 if any point failed or is unusable, 130 if
    some were interrupted, else 0."""
    states = ("trained", "skipped", "failed", UNUSABLE, "busy", "interrupted", EVALUATED, NOT_RUN)
    by_state = {s: [o for o in outcomes if o.state == s] for s in states}
    copied = [o for o in outcomes if o.point.id in plan.copied]  # scored copies are also among the evaluated
    records = sum(o.point.id in plan.record_copies for o in copied)
    how = f" ({records} from their run records)" if records else ""
    parts = [f"{len(by_state['trained'])} trained"] + ([f"{len(copied)} copied from other recipes{how}"] if copied else [])
    parts += [f"{len(by_state['skipped'])} already done", f"{len(by_state['failed'])} failed"]
    parts += [f"{len(by_state[s])} {s}" for s in (EVALUATED, UNUSABLE, "busy", "interrupted") if by_state[s]]
    if by_state[NOT_RUN]:
        parts.append(f"{len(by_state[NOT_RUN])} not finished (not run: --eval_only)")
    shared = f" (runs of {rel(plan.runs_of.path)})" if plan.runs_of is not None else ""
    print(f"summary: {count(len(outcomes), 'point')} in {rel(plan.runs_root)}{shared}: " + ", ".join(parts))
    for o in by_state["failed"]:
        print(f"  failed {o.point.slug}: {o.detail}")
    for o in by_state[UNUSABLE]:
        print(f"  unusable {o.point.slug}: {o.detail}")
    for o in by_state["busy"]:
        print(f"  busy   {o.point.slug}: {o.detail}")
    return 1 if by_state["failed"] or by_state[UNUSABLE] else 130 if by_state["interrupted"] else 0
