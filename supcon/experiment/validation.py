"""Validating the points that will run, in one trainer process, before anything is written (no TensorFlow).

The trainer (`python -m supcon.main --validate SPEC.json`, or a serving process's `validate` request, which then
trains the points: `supcon.experiment.worker`) checks each point's gin configuration and answers one JSON line per
point; the runner turns its errors into one `invalid point SLUG, ...: message` line per distinct error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from supcon import workdir
from supcon.experiment import reuse
from supcon.experiment.environment import child_env, threads_per_job
from supcon.experiment.options import UsageError
from supcon.experiment.plan import NEEDS_EVAL, UNUSABLE, Plan
from supcon.experiment.worker import Worker


def to_validate(plan: Plan, eval_only: bool) -> list:
    """The selected points a trainer process will get: those not done nor unusable (with --eval_only, only those
    that need scoring), a point to copy when its copy will lack metrics the recipe asks for (never one whose run
    record is copied: it is recorded, not trained)."""
    todo = []
    for point in plan.points:
        status = plan.status(point)
        if status == reuse.COPY:
            status = NEEDS_EVAL if plan.missing_metrics(point, plan.copies[point.id]) else workdir.DONE
        if status not in (UNUSABLE, workdir.DONE, workdir.RECORDED, reuse.COPY_RECORD) and (not eval_only or status == NEEDS_EVAL):
            todo.append(point)
    return todo


def validate(plan: Plan, points: list, main_module: str, jobs: int, serve: bool = False) -> Worker | None:
    """Validates `points` in one trainer process (`python -m main_module`) before anything is written.

    With `serve`, the process is a serving trainer (supcon.experiment.worker, with the threads of one of `jobs`)
    that is returned, ready to train points; else a one-shot `--validate SPEC.json` subprocess.

    Raises:
      UsageError: some point is invalid (one line per distinct error) or the validator crashed.
    """
    with tempfile.TemporaryDirectory(prefix="supcon-validate-") as tmp:
        spec_path, names = _write_spec(plan, points, tmp)
        if serve:
            server = Worker(main_module, child_env(threads_per_job(jobs)), os.path.join(tmp, "worker.log"))
            reply = server.request({"op": "validate", "spec": spec_path})
            results = (reply or {}).get("results", [])
            code = server.exit_code() if reply is None else reply.get("code")
            with open(os.path.join(tmp, "worker.log")) as f:
                output = f.read()
        else:
            server = None
            results, code, output = run_spec(main_module, spec_path)
    errors, seen = _errors(results, names)
    failed = errors or seen != {p.slug for p in points} or code != 0
    if failed and server is not None:
        server.close()
    if errors:
        lines = [f"invalid point {', '.join(slugs)}: {msg}" for msg, slugs in errors.items()]
        raise UsageError("\n".join(lines))
    if failed:
        tail = (output.strip().splitlines() or ["no output"])[-1]
        how = "--serve" if serve else "--validate"
        raise UsageError(f"validation failed (python -m {main_module} {how} exited {code}): {tail}")
    return server


def _write_spec(plan: Plan, points: list, tmp: str) -> tuple[str, dict[str, str]]:
    """Writes the points' bindings and the spec file listing them into `tmp`; returns the spec's path and
    {bindings file: how an error names it}."""
    spec, names = [], {}
    for i, point in enumerate(points):
        bindings = os.path.join(tmp, f"point{i}.gin")
        workdir.write_text_atomic(bindings, point.gin_text())
        names[bindings] = f"<bindings of {point.slug}>"
        files = [plan.trainer_recipe.path, bindings, *plan.overlays]
        spec.append({"name": point.slug, "gin_files": files, "gin_params": plan.trainer_params})
    spec_path = os.path.join(tmp, "spec.json")
    workdir.write_json_atomic(spec_path, spec)
    return spec_path, names


def run_spec(main_module: str, spec_path: str, flag: str = "--validate") -> tuple[list, int, str]:
    """Runs `python -m main_module --validate SPEC` (or `--describe`); its results (one JSON line each), exit code
    and stderr."""
    cmd = [sys.executable, "-m", main_module, flag, spec_path]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=child_env(threads_per_job(1))
    )
    results = []
    for line in proc.stdout.splitlines():
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return results, proc.returncode, proc.stderr


def _errors(results: list, names: dict[str, str]) -> tuple[dict[str, list[str]], set[str]]:
    """{error message, one line, bindings files named: [slugs of the points it names]} and the slugs answered."""
    errors: dict[str, list[str]] = {}
    seen = set()
    for result in results:
        if isinstance(result, dict) and "name" in result:
            seen.add(result["name"])
            if result.get("error"):
                message = str(result["error"])
                for path, name in names.items():
                    message = message.replace(path, name)
                errors.setdefault(" ".join(message.split()), []).append(result["name"])
    return errors, seen
