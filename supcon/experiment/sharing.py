"""`grid.share_pretraining = True`: points that differ only in their final stage share one pretraining (no TensorFlow).

A run of several stages (SupCon / SimCLR: `pretrain`, then `linear`) keeps its whole training state at the end
of each stage but the last in `stage_ckpt/<stage>-<step>` (supcon.train.run, supcon.workdir). With
`grid.share_pretraining = True` the runner starts a point that has nothing of its own yet from such a stage
checkpoint of another run dir in the same runs folder whose *pretraining settings* are the point's, and the
point trains its final stage only.

A point's pretraining settings (`pretraining_settings`) are its training settings (point.json's
`training_settings`) without those of its final stage: the bindings in the final stage's gin scope (the last
reference of `train_and_evaluate.stages`, e.g. `linear/stage.epochs`, `linear/sgd.momentum`) and the macros that
only they read (e.g. LINEAR_EPOCHS), found by reading the gin texts. A macro that an earlier stage reads too
(IMAGE_SIZE) stays, so points that differ in it never share. Points share only when the final stage is scoped, no
other setting refers to its scope, and their --gin_params are the same; point.json records the hash of the
pretraining settings (`pretraining_settings_hash`) and, for a point that started from another's stage checkpoint,
where it came from (`pretraining_from`) and that pretraining's train_seconds (`pretraining_seconds`, from the
stage checkpoint's `.json`).

Seeding a point (`seed_run_dir`) copies the stage checkpoint into the point's `ckpt/` (with the checkpoint state
file naming it) and `stage_ckpt/`, and the source's metrics.jsonl records up to that step into the point's, so
its training curves and the reporter's convergence checks see the pretraining it rests on. The copy is made in a
temporary folder inside the run dir and renamed into place: the point has the whole checkpoint or none.

A shared pretraining pairs the points of one seed on one encoder: their differences measure the final stage
alone (the design of a linear-stage ablation). Their train_seconds (restored with the state) count the shared
pretraining in each of them; the report's total counts it once (`pretraining_seconds`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from supcon import workdir

SHARED_HASH = "pretraining_settings_hash"  # point.json: the hash of the point's pretraining settings
SHARED_FROM = workdir.PRETRAINING_FROM  # point.json: the run dir whose stage checkpoint the point started from
SHARED_SECONDS = workdir.PRETRAINING_SECONDS  # point.json: the train_seconds of that pretraining
STAGES_ARG = "train_and_evaluate.stages"
_STAGE_REF = re.compile(r"@((?:[A-Za-z_][\w.]*/)*)stage\(\)")  # '@pretrain/stage()' -> 'pretrain/'
_MACRO_REF = re.compile(r"%([A-Za-z_][\w.]*)")
_STAGE_CKPT = re.compile(r"(?P<stage>.+)-(?P<step>\d+)\.index")


def _scope_of(key: str) -> list[str]:
    """The scope components of a settings key ('linear/sgd.momentum' -> ['linear']; a macro -> [])."""
    head = key.rpartition(".")[0] if "." in key else ""
    return head.split("/")[:-1] if head else []


def final_stage_scope(settings: dict[str, str]) -> str | None:
    """The gin scope of the final stage (`linear` of `[@pretrain/stage(), @linear/stage()]`), or None when the
    point has one stage, no stages binding, or an unscoped stage reference."""
    keys = [k for k in settings if k.split("/")[-1] == STAGES_ARG]
    if not keys:
        return None
    key = max(keys, key=lambda k: k.count("/"))  # gin applies the most specific scope
    refs = _STAGE_REF.findall(settings[key])
    if len(refs) < 2 or not all(refs):
        return None
    return refs[-1].rstrip("/")


def pretraining_settings(settings: dict[str, str]) -> dict[str, str] | None:
    """The settings without the final stage's (see the module docstring), or None when the point cannot share."""
    scope = final_stage_scope(settings)
    if scope is None:
        return None
    parts = scope.split("/")

    def in_final(key: str) -> bool:
        components = _scope_of(key)
        return any(components[i:i + len(parts)] == parts for i in range(len(components)))

    kept = {k: v for k, v in settings.items() if not in_final(k)}
    while True:  # drop the macros only dropped settings read (a macro may read another)
        readers: dict[str, list[str]] = {}
        for key, text in settings.items():
            for name in _MACRO_REF.findall(text):
                readers.setdefault(name, []).append(key)
        dropped = [m for m in kept if "." not in m and readers.get(m) and all(r not in kept for r in readers[m])]
        if not dropped:
            break
        for m in dropped:
            del kept[m]
    reference = re.compile(r"@(?:[\w.]+/)*" + re.escape(scope) + r"/")
    if any(reference.search(text) for key, text in kept.items() if key.split("/")[-1] != STAGES_ARG):
        return None  # something outside the final stage refers to its scope: it is not the final stage's alone
    return kept


def pretraining_hash(settings: dict[str, str]) -> str | None:
    """The hash of the point's pretraining settings (workdir.settings_hash), None when it cannot share."""
    kept = pretraining_settings(settings)
    return None if kept is None else workdir.settings_hash(kept)


def stage_checkpoint(run_dir: str) -> tuple[str, int] | None:
    """(prefix, step) of the run dir's latest complete stage checkpoint (an index and its data), or None."""
    folder = os.path.join(run_dir, workdir.STAGE_CKPT_DIR)
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    found = []
    for name in names:
        match = _STAGE_CKPT.fullmatch(name)
        if match and any(n.startswith(name[: -len(".index")] + ".data-") for n in names):
            found.append((int(match["step"]), os.path.join(folder, name[: -len(".index")])))
    if not found:
        return None
    step, prefix = max(found)
    return prefix, step


def find_source(runs_folder: str, key: str, gin_params: list, exclude: str) -> tuple[str, str, int] | None:
    """(run dir, stage checkpoint prefix, step) of a run dir in `runs_folder` (not `exclude`) whose point.json
    records the pretraining hash `key` and the same --gin_params, and that has a stage checkpoint; the one with
    the latest step, then one that trained that pretraining itself over one that copied it (so that point.json
    names where a pretraining was trained, not a copy of a copy), then by name. None when there is none."""
    best, best_rank = None, None
    try:
        names = sorted(os.listdir(runs_folder))
    except OSError:
        return None
    for name in names:
        run_dir = os.path.join(runs_folder, name)
        if os.path.abspath(run_dir) == os.path.abspath(exclude) or name.startswith("."):
            continue
        point = workdir.read_json(os.path.join(run_dir, workdir.POINT))
        if not isinstance(point, dict) or point.get(SHARED_HASH) != key or point.get("gin_params") != gin_params:
            continue
        found = stage_checkpoint(run_dir)
        if not found:
            continue
        rank = (found[1], workdir.pretraining_from(point) is None)
        if best_rank is None or rank > best_rank:
            best, best_rank = (run_dir, *found), rank
    return best


def first_of_each_pretraining(keys: list[str | None]) -> list[int]:
    """The order in which several jobs should start points whose pretraining keys (`pretraining_hash`, None: shares
    nothing) are `keys`: every pretraining's first point before any point that could share it, else the grid's
    order (a stable sort by how many earlier points have the same key). Started together, two points of one
    pretraining would each train their own; started in this order, the later one finds the earlier one's stage
    checkpoint, or waits for it (supcon.experiment.launch)."""
    seen: dict[str, int] = {}
    rank = []
    for key in keys:
        rank.append(0 if key is None else seen.get(key, 0))
        if key is not None:
            seen[key] = seen.get(key, 0) + 1
    return sorted(range(len(keys)), key=lambda i: rank[i])


def can_seed(run_dir: str) -> bool:
    """Whether the run dir has nothing a seeding would overwrite: no checkpoint, status or metrics of its own."""
    ckpt = os.path.join(run_dir, workdir.CKPT_DIR)
    if os.path.isdir(ckpt) and os.listdir(ckpt):
        return False
    return not any(os.path.exists(os.path.join(run_dir, n)) for n in (workdir.STATUS, workdir.METRICS, workdir.RESULT))


def _metrics_until(path: str, step: int) -> str:
    """The metrics.jsonl records of `path` whose step is at most `step`, as lines (unreadable lines are left out)."""
    return "".join(
        workdir.dumps(r) + "\n" for r in workdir.read_jsonl(path) if isinstance(r.get("step"), int) and r["step"] <= step
    )


def seed_run_dir(source: str, prefix: str, step: int, run_dir: str) -> float | None:
    """Gives `run_dir` (which `can_seed`) the stage checkpoint `prefix` of `source` as its latest checkpoint, the
    stage checkpoint itself and the source's metrics records up to `step` (see the module docstring).

    Returns:
      The train_seconds of the source at the stage checkpoint (its `<prefix>.json`), None where not recorded.

    Raises:
      OSError: a copy failed; nothing of it is left in `run_dir`.
    """
    base = os.path.basename(prefix)
    files = [n for n in os.listdir(os.path.dirname(prefix)) if n == base + ".index" or n.startswith(base + ".data-")]
    info = workdir.read_json(prefix + ".json")
    seconds = info.get("train_seconds") if isinstance(info, dict) else None
    tmp = tempfile.mkdtemp(prefix=".seed-", dir=run_dir)
    try:
        ckpt, stage = os.path.join(tmp, workdir.CKPT_DIR), os.path.join(tmp, workdir.STAGE_CKPT_DIR)
        os.makedirs(ckpt)
        os.makedirs(stage)
        for name in files:
            src = os.path.join(os.path.dirname(prefix), name)
            shutil.copy2(src, os.path.join(stage, name))
            shutil.copy2(src, os.path.join(ckpt, f"ckpt-{step}" + name[len(base):]))
        if isinstance(info, dict):
            workdir.write_json_atomic(os.path.join(stage, base + ".json"), info)
        with open(os.path.join(ckpt, "checkpoint"), "w") as f:  # tf.train.CheckpointManager's state file
            f.write(f'model_checkpoint_path: "ckpt-{step}"\nall_model_checkpoint_paths: "ckpt-{step}"\n')
        metrics = _metrics_until(os.path.join(source, workdir.METRICS), step)
        if metrics:
            workdir.write_text_atomic(os.path.join(tmp, workdir.METRICS), metrics)
        for name in (workdir.STAGE_CKPT_DIR, workdir.METRICS, workdir.CKPT_DIR):  # the checkpoint last
            if os.path.exists(os.path.join(tmp, name)):
                if name == workdir.CKPT_DIR and os.path.isdir(os.path.join(run_dir, name)):
                    os.rmdir(os.path.join(run_dir, name))  # empty (`can_seed`)
                os.replace(os.path.join(tmp, name), os.path.join(run_dir, name))
    except OSError:  # the checkpoint goes last, so it was not placed: take back what was
        shutil.rmtree(os.path.join(run_dir, workdir.STAGE_CKPT_DIR), ignore_errors=True)
        if os.path.exists(os.path.join(run_dir, workdir.METRICS)):
            os.remove(os.path.join(run_dir, workdir.METRICS))
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return float(seconds) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else None

