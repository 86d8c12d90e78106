"""`grid.reuse_from`: copying another recipe's finished run of exactly a point's training (no TensorFlow).

A recipe that binds `grid.reuse_from = ['other', ...]` lets the runner copy, for each of its points that has no
run yet, a finished run dir of those recipes (`<runs_dir>/<other>/`, with --smoke `<runs_dir>/smoke/<other>/`)
that trained exactly the point's settings, instead of training it again. A source qualifies (`source_problem`)
when it is finished (status.json `done`, a readable result.json; `supcon.workdir.run_problem` finds nothing for its
own recorded id), recorded the settings it trained with (point.json's `training_settings`, equal to the point's
as a dict of gin texts: a run dir written before they were recorded is never copied) and trained with the same
--gin_params (the runner's comparison, passed in as `same_params`).

The copy (`copy_run`) is made in a temporary sibling of the point's run dir (`.<slug>.copy-*/run`), gets this
recipe's point.json (with `copied_from`) and is then renamed into place: readers see no run dir or the whole copy,
never half of one.

When no run dir qualifies, a finished run record of those recipes (`<report_dir>/<other>/runs/<slug>/`, committed
beside their reports, `supcon.report.records`) may: the same checks, and no damaged file
(`supcon.report.data.record_problems`). `find_record_copies` also returns what it skipped, one (file, problem) per
damaged or unfinished record that could have been the source, and `copy_record` copies the record folder into this
recipe's records the same way (`.<slug>.copy-*/record`, then renamed): the point is then `recorded`, not trained.
The runner imports this module: no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable

from supcon import workdir
from supcon.experiment.bindings import settings_hash
from supcon.experiment.claim import HOST, Claim
from supcon.report import data as report_data

COPY = "copy"  # the status of a point the runner will copy (--dry_run)
COPY_RECORD = "copy record"  # the status of a point whose run record the runner will copy from another report
COPIED = "copied"  # the outcome of a point the runner copied
COPIED_FROM = "copied_from"  # point.json: the run dir a copied run came from
NEW = "new"  # workdir.point_status of a run dir where nothing was trained


class CopyError(Exception):
    """A copy that failed; the message is one line. Nothing was left behind."""


@dataclasses.dataclass(frozen=True)
class Source:
    """A finished run dir of another recipe that may be copied, with the settings it trained with."""

    run_dir: str
    settings: dict[str, str]


def folders(runs_dir: str, stems: list[str], smoke: bool) -> list[str]:
    """The run folders of the recipes `stems` names: `<runs_dir>/<stem>` (--smoke: `<runs_dir>/smoke/<stem>`)."""
    return [os.path.abspath(os.path.join(runs_dir, "smoke", s) if smoke else os.path.join(runs_dir, s)) for s in stems]


def source_problem(run_dir: str, smoke: bool, same_params: Callable[[list], bool]) -> str:
    """Why a run dir cannot be copied, or '' when it can (see the module docstring).

    Args:
      run_dir: the candidate run directory.
      smoke: whether the copy is for a --smoke run (the source must be one too).
      same_params: whether a point.json's `gin_params` train like the runner's --gin_params.
    """
    point, why = workdir.read_object(os.path.join(run_dir, workdir.POINT))
    if why or point is None:
        return why or f"no {workdir.POINT}"
    if not isinstance(point.get("id"), str):
        return f"{workdir.POINT} has no id"
    problem = workdir.run_problem(run_dir, point["id"])
    if problem:
        return problem
    status = workdir.read_json(os.path.join(run_dir, workdir.STATUS), {}) or {}
    if workdir.point_status(run_dir) != workdir.DONE or status.get("state") != workdir.DONE:
        return f"not finished (status {status.get('state') or workdir.point_status(run_dir)})"
    if workdir.recorded_settings(point) is None:
        return "trained before settings were recorded"
    if bool(point.get("smoke")) != smoke:
        return "a --smoke run" if point.get("smoke") else "not a --smoke run"
    if not same_params(list(point.get("gin_params") or [])):
        return f"trained with --gin_param {point.get('gin_params')}"
    return ""


def sources(run_folders: list[str], smoke: bool, same_params: Callable[[list], bool]) -> dict[str, list[Source]]:
    """The run dirs of `run_folders` that may be copied (`source_problem`), by their settings' hash, in order:
    folder by folder, run dirs by name."""
    found: dict[str, list[Source]] = {}
    for folder in run_folders:
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        for name in names:
            run_dir = os.path.join(folder, name)
            if name.startswith(".") or not os.path.isdir(run_dir) or source_problem(run_dir, smoke, same_params):
                continue
            settings = workdir.recorded_settings(workdir.read_json(os.path.join(run_dir, workdir.POINT)))
            found.setdefault(settings_hash(settings), []).append(Source(run_dir, settings))
    return found


def match(found: dict[str, list[Source]], settings: dict[str, str]) -> str | None:
    """The first source whose recorded settings equal `settings` (as dicts, not only their hash), or None."""
    for source in found.get(settings_hash(settings), []):
        if source.settings == settings:
            return source.run_dir
    return None


def find_copies(run_folders: list[str], smoke: bool, same_params: Callable[[list], bool],
                wanting: dict[str, dict[str, str]]) -> dict[str, str]:
    """{point id: the run dir to copy} for the points of `wanting` ({id: the settings it trains with}) that a run dir
    of `run_folders` finished with exactly those settings (`sources`, `match`)."""
    found = sources(run_folders, smoke, same_params) if wanting else {}
    copies = {pid: match(found, settings) for pid, settings in wanting.items()}
    return {pid: source for pid, source in copies.items() if source}


def copy_source(source: str, target: str, settings: dict[str, str], smoke: bool,
                same_params: Callable[[list], bool], record: Callable[[dict], dict], claim_timeout: float) -> bool:
    """`copy_run` of a source `find_copies` found for a point that trains with `settings`: the copy must still
    qualify (`source_problem`) and have trained with exactly `settings`."""

    def check(copy: str) -> str:
        recorded = workdir.recorded_settings(workdir.read_json(os.path.join(copy, workdir.POINT)))
        problem = source_problem(copy, smoke, same_params)
        return problem or ("" if recorded == settings else "it was trained with other settings")

    return copy_run(source, target, record, check, claim_timeout)


def copy_run(source: str, target: str, record: Callable[[dict], dict], check: Callable[[str], str],
             claim_timeout: float) -> bool:
    """Copies the run dir `source` to `target` atomically, with point.json `record(source's point.json)`.

    The copy goes to a temporary sibling of `target` and is renamed into place. A `target` that exists holds an
    untrained point (status 'new'): it is replaced under its claim.

    Args:
      source: the run dir to copy.
      target: the point's run dir; it must not exist or hold nothing trained.
      record: the copy's point.json, given the source's.
      check: why the copy cannot be used ('' when it can), run on the copy (still the source's files) before its
        point.json is rewritten.
      claim_timeout: seconds after which another runner's claim on `target` is stale.

    Returns:
      True when the copy is in place; False when another runner got there first (`target` holds its run).

    Raises:
      CopyError: copying failed (one line); the temporary copy is removed.
    """
    tmp, copy = _stage_copy(source, target, "run")
    try:
        problem = check(copy)
        if problem:
            raise CopyError(f"the source no longer qualifies: {problem} (changed meanwhile?)")
        _make_own(copy, record)
        return _place(copy, target, tmp, claim_timeout)
    except OSError as e:
        raise CopyError(_one_line(e)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def record_folders(report_dir: str, stems: list[str], smoke: bool) -> list[str]:
    """The run records of the recipes `stems` names, beside their reports: `<report_dir>/<stem>/runs` (--smoke:
    `<report_dir>/smoke/<stem>/runs`)."""
    return [os.path.join(folder, workdir.RECORDS_DIR) for folder in folders(report_dir, stems, smoke)]


def record_problem(record: str, stem: str) -> tuple[str, str]:
    """What makes a run record of recipe `stem` no source to copy, as (the file, what is wrong with it, to follow
    its path), or ('', ''): a damaged file (`supcon.report.data.record_problems`, even one its own report still
    uses), or an unfinished run (failed, or no result.json)."""
    parent, slug = os.path.split(record)
    for problem in report_data.record_problems(parent, stem, only=slug):  # this record's files only
        return problem.path, problem.problem
    status = workdir.read_json(os.path.join(record, workdir.STATUS), {}) or {}
    if workdir.point_status(record) != workdir.DONE or status.get("state") != workdir.DONE:
        if status.get("state"):
            return os.path.join(record, workdir.STATUS), f"says {status['state']}, not done: not finished"
        return os.path.join(record, workdir.RESULT), "is missing: not finished"
    return "", ""


def find_record_copies(record_dirs: dict[str, str], smoke: bool, same_params: Callable[[list], bool],
                       wanting: dict[str, dict[str, str]]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """{point id: the run record to copy} for the points of `wanting` ({id: the settings it trains with}) whose
    settings a finished record in `record_dirs` ({folder: its recipe's stem}, searched in order, records by name)
    recorded exactly (`match`); and what was skipped: (file, problem) of each record that fails `record_problem`
    and could have been a source (its settings are a wanting point's, or its point.json cannot be read), for the
    runner to name in one line. A record that fails `source_problem` (another --smoke or --gin_params) is passed
    over silently, as a run dir is."""
    found: dict[str, list[Source]] = {}
    skipped: list[tuple[str, str]] = []
    wanted = {settings_hash(s): s for s in wanting.values()}
    for folder, stem in record_dirs.items() if wanting else ():
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            record = os.path.join(folder, name)
            if name.startswith(".") or not os.path.isdir(record):
                continue
            point, _ = workdir.read_object(os.path.join(record, workdir.POINT))
            settings = workdir.recorded_settings(point)
            if point is not None and (settings is None or wanted.get(settings_hash(settings)) != settings):
                continue  # no source for any point here, whatever its state
            path, problem = record_problem(record, stem)
            if problem:
                skipped.append((path, problem))
            elif settings is not None and not source_problem(record, smoke, same_params):
                found.setdefault(settings_hash(settings), []).append(Source(record, settings))
    copies = {pid: match(found, settings) for pid, settings in wanting.items()}
    return {pid: source for pid, source in copies.items() if source}, skipped


def copy_record(source: str, target: str, stem: str, settings: dict[str, str], smoke: bool,
                same_params: Callable[[list], bool], record: Callable[[dict], dict], point_id: str) -> bool:
    """Copies the run record `source` of recipe `stem` (from `find_record_copies`) to the record folder `target`,
    with point.json `record(source's point.json)`: into a temporary sibling of `target`, checked again
    (`record_problem`, `source_problem`, exactly `settings`), then renamed into place. A `target` that holds no finished record
    of point `point_id` (a failed or damaged one) is replaced.

    Returns:
      True when the copy is in place; False when `target` holds a finished record of the point (another runner's).

    Raises:
      CopyError: copying failed or the source no longer qualifies (one line); nothing is left behind.
    """
    tmp, copy = _stage_copy(source, target, "record")
    try:
        path, problem = record_problem(copy, stem)
        problem = f"{os.path.relpath(path, copy)} {problem}" if problem and path != copy else problem
        problem = problem or source_problem(copy, smoke, same_params)
        if not problem and workdir.recorded_settings(workdir.read_json(os.path.join(copy, workdir.POINT))) != settings:
            problem = "it was trained with other settings"
        if problem:
            raise CopyError(f"the source no longer qualifies: {problem} (changed meanwhile?)")
        new = record(workdir.read_json(os.path.join(copy, workdir.POINT), {}) or {})
        workdir.write_json_atomic(os.path.join(copy, workdir.POINT), new)
        return _place_record(copy, target, tmp, point_id)
    except OSError as e:
        raise CopyError(_one_line(e)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _stage_copy(source: str, target: str, name: str) -> tuple[str, str]:
    """Copies `source` into a new temporary sibling of `target`: (the temporary folder, the copy `<tmp>/<name>`).
    The caller removes the temporary folder; it is removed here when copying fails."""
    parent = os.path.dirname(target)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.copy-", dir=parent)
    except OSError as e:
        raise CopyError(f"cannot create a temporary copy in {parent}: {e.strerror or e}") from None
    copy = os.path.join(tmp, name)
    try:
        shutil.copytree(source, copy, symlinks=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CopyError(_one_line(e)) from None
    return tmp, copy


def _place_record(copy: str, target: str, tmp: str, point_id: str) -> bool:
    """Renames `copy` to `target`; a `target` that is not a finished record of `point_id` is first moved into
    `tmp`."""
    if os.path.lexists(target):
        if workdir.point_status(target) == workdir.DONE and not workdir.run_problem(target, point_id):
            return False
        os.rename(target, os.path.join(tmp, "replaced"))
    try:
        os.rename(copy, target)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False  # another runner placed a record meanwhile
        raise
    return True


def _make_own(copy: str, record: Callable[[dict], dict]) -> None:
    """Drops the copied claim, rewrites point.json with `record(the source's point.json)`, adds a line to log.txt."""
    for name in (workdir.CLAIM, workdir.CLAIM + ".lock"):
        if os.path.lexists(os.path.join(copy, name)):
            os.remove(os.path.join(copy, name))
    new = record(workdir.read_json(os.path.join(copy, workdir.POINT), {}) or {})
    workdir.write_json_atomic(os.path.join(copy, workdir.POINT), new)
    with open(os.path.join(copy, workdir.LOG), "a") as log:
        log.write(
            f"\n=== runner.py on {HOST} (pid {os.getpid()}) at {time.ctime()}: copied from {new[COPIED_FROM]} as "
            f"point {new.get('id')} of {new.get('recipe')} (grid.reuse_from); not trained again\n"
        )


def _place(copy: str, target: str, tmp: str, claim_timeout: float) -> bool:
    """Renames `copy` to `target`; an existing untrained `target` is first moved into `tmp` under its claim."""
    if os.path.isdir(target):
        claim = Claim(target, claim_timeout)
        if not claim.acquire():
            return False
        try:
            if workdir.point_status(target) != NEW:
                return False
            os.rename(target, os.path.join(tmp, "replaced"))  # its claim goes with it
        finally:
            claim.release()
    try:
        os.rename(copy, target)  # atomic; replaces at most an empty directory
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False  # another runner made the run dir meanwhile
        raise
    return True


def _one_line(error: OSError) -> str:
    """The error in one line of at most 300 characters; shutil.copytree's list of errors as its first one."""
    errors = error.args[0] if isinstance(error, shutil.Error) and error.args else None
    if isinstance(errors, list) and errors and isinstance(errors[0], tuple) and len(errors[0]) == 3:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        text = " ".join(f"{errors[0][2]}{more}".split())
    else:
        text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."
