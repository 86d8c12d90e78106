"""The run-directory contract: file names, atomic writes, status.

The run directory is the only interface between the runner, the trainer and the reporter. The trainer
writes, the runner writes `point.json` and the claim, the reporter only reads. This module imports no
TensorFlow so that the runner and the reporter stay fast.

Layout of one run directory::

    point.json            the grid point: recipe, id, slug, bindings (written by the runner), and the settings it
                          trains with: "training_settings" {binding: gin text} (every final binding of its
                          configuration it may read but grid.*, report.* and the evaluation-only ones, sorted;
                          supcon.experiment.bindings.training_settings) and their "training_settings_hash"; a run dir whose
                          recorded settings differ from its recipe's is not used (absent: written before they were
                          recorded, used as it is)
    config.gin            the gin config as parsed (files + bindings)
    operative_config.gin  the values gin actually used
    env.json              git SHA and dirty flag (supcon/, runner.py or recipes/ differ from the commit), the dirty
                          paths and the patch's sha256, package versions, devices, strategy, replicas, the precision
                          ("mixed_precision") and what decided it ("precision_by": PRECISION_BY)
    uncommitted.patch     only when the code was dirty: `git diff HEAD` of supcon/, runner.py and recipes/ with their
                          untracked files as new files; `git apply` on the commit gives the code the run ran
    metrics.jsonl         append-only, one JSON object per log interval and per evaluation
    tb/                   TensorBoard events
    hparams/              TensorBoard's HParams session of the run: its grid values and main settings (at the start)
                          and its final metrics (at the end), for the HParams dashboard of `tensorboard --logdir
                          runs/<recipe>`
    ckpt/                 checkpoints (tf.train.CheckpointManager)
    stage_ckpt/           <stage>-<step>.*: the whole training state at the end of each stage but the last, kept
                          (the pretrained encoder of a SupCon / SimCLR run), and <stage>-<step>.json {"stage", "step",
                          "train_seconds" by then}; grid.share_pretraining starts other
                          points' final stage from it (supcon.experiment.sharing), and train_and_evaluate.init_checkpoint
                          may name it
    export/               SavedModel: images -> embeddings, logits
    embeddings.npz        test-set encoder embeddings and labels (for the reporter's plots)
    calibration.json      reliability diagrams (15 bins): {"clean": {"bin_edges" [16], "counts" [15], "accuracy"
                          [15], "confidence" [15]}, "severity_<s>": the same pooled over every corruption scored
                          at severity s}; NaN (an empty bin) is null. Written before result.json
    status.json           {"state": running|done|failed, "step", "reason", "time"}
    result.json           final flat metrics, written last and atomically: its presence means done. Scoring a
                          finished run again (mode 'eval', e.g. with train_and_evaluate.corruptions) rewrites it
                          atomically with the old fields kept and the new metrics added or updated
    eval_config.gin, eval_operative_config.gin, eval_env.json, eval_uncommitted.patch
                          what config.gin, operative_config.gin, env.json and uncommitted.patch record, for the
                          latest run in mode 'eval' (which leaves the training's records as they are)
    claim.json            the runner's claim on the point (host, pid, heartbeat time)
    log.txt               the subprocess's stdout and stderr (written by the runner)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import tempfile
import time
import tokenize
from collections.abc import Iterator
from typing import Any

from gin import config_parser  # the parser only: reading config.gin configures nothing

POINT = "point.json"
CONFIG = "config.gin"
CONFIG_GZ = "config.gin.gz"  # a run record keeps its run's config.gin gzipped (supcon.report.records)
OPERATIVE_CONFIG = "operative_config.gin"
ENV = "env.json"
METRICS = "metrics.jsonl"
TB_DIR = "tb"
HPARAMS_DIR = "hparams"  # TensorBoard's HParams session (supcon.train.hparams)
PATCH = "uncommitted.patch"  # the uncommitted changes the run ran with (supcon.train.runinfo)
# What `train_and_evaluate.mixed_precision = 'auto'` resolves to in a trainer process: the runner's --auto_precision
# sets it for the trainers it starts. 'hardware' (also when unset): mixed bfloat16 on a GPU, a TPU or a CPU with
# bfloat16 instructions, float32 elsewhere. Not a training setting (a point's id and settings stay as they are):
# it lets a grid continue on a machine of another kind in the precision its finished runs have.
AUTO_PRECISION_ENV = "SUPCON_AUTO_PRECISION"
AUTO_PRECISIONS = ("hardware", "float32", "mixed_bfloat16")
# env.json "precision_by": what decided the run's precision (a True / False binding, the hardware, or the runner's
# --auto_precision naming one).
PRECISION_BY = ("binding", "hardware", "--auto_precision")
CKPT_DIR = "ckpt"
STAGE_CKPT_DIR = "stage_ckpt"  # the state at the end of each stage but the last: <stage>-<step>.index / .data-*
EXPORT_DIR = "export"
EMBEDDINGS = "embeddings.npz"
STATUS = "status.json"
RESULT = "result.json"
CLAIM = "claim.json"
LOG = "log.txt"
CALIBRATION = "calibration.json"
# A report keeps the records of its runs (their small files) in <report folder>/runs/<slug>/: supcon.report.records
# writes them, the reporter reads them, and the runner counts a finished record as a finished point.
RECORDS_DIR = "runs"
RECORDED = "recorded"  # a point finished on another machine: its record is committed beside the report
EVAL_CONFIG = "eval_config.gin"
EVAL_OPERATIVE_CONFIG = "eval_operative_config.gin"
EVAL_ENV = "eval_env.json"
EVAL_PATCH = "eval_uncommitted.patch"

# point.json fields: the settings a point trains with (see the layout above).
TRAINING_SETTINGS = "training_settings"
TRAINING_SETTINGS_HASH = "training_settings_hash"

RUNNING = "running"
DONE = "done"
FAILED = "failed"

# Scores on corrupted test sets (supcon.robust): result.json keys corruption/<name>/<severity>/{top1,ece}, the
# per-severity means corruption/severity_<s>/{top1,ece} and corruption/mean/top1. The names are the 15 ImageNet-C
# corruptions in the paper's order (noise, blur, weather, digital); supcon.robust.tables holds their parameters.
CORRUPTION_NAMES = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
SEVERITIES = (1, 2, 3, 4, 5)
CORRUPTION_PREFIX = "corruption/"
MEAN_TOP1 = "corruption/mean/top1"


def cell_key(name: str, severity: int, metric: str) -> str:
    """'corruption/<name>/<severity>/<metric>', metric 'top1' or 'ece'."""
    return f"{CORRUPTION_PREFIX}{name}/{int(severity)}/{metric}"


def severity_key(severity: int, metric: str) -> str:
    """'corruption/severity_<s>/<metric>': the mean over the corruptions scored at that severity."""
    return f"{CORRUPTION_PREFIX}severity_{int(severity)}/{metric}"


# Keys of result.json that every finished run carries.
RESULT_KEYS = ("eval/top1", "eval/top5", "step", "train_seconds", "images_per_second")
# Every key a finished run may write to result.json (supcon.train.run._finish: supcon.train.evaluate's eval/*, the k-NN
# probe's knn/top1 when knn_k > 0, then the run's totals, and the corruption summaries when
# train_and_evaluate.corruptions is set): the metrics report.metrics, the claims and the paper numbers may name.
# The per-set keys corruption/<name>/<severity>/{top1,ece} are CORRUPTION_CELL_METRICS.
RESULT_METRICS = (
    "eval/top1", "eval/top5", "eval/loss", "eval/ece", "eval/examples", "knn/top1",
    "step", "train_seconds", "images_per_second", "train_examples", "replicas",
    MEAN_TOP1,
    *(severity_key(s, m) for s in SEVERITIES for m in ("top1", "ece")),
)  # fmt: skip
CORRUPTION_CELL_METRICS = tuple(
    cell_key(n, s, m) for n in CORRUPTION_NAMES for s in SEVERITIES for m in ("top1", "ece")
)  # fmt: skip


def _json_default(value: Any) -> Any:
    """Makes numpy scalars and arrays JSON-serialisable without importing numpy here."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _clean(value: Any) -> Any:
    """Replaces non-finite floats by None (JSON has no NaN) recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def dumps(obj: Any) -> str:
    """Serialises `obj` as compact, sorted JSON (numpy values allowed, NaN becomes null)."""
    return json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default))), sort_keys=True)


def write_text_atomic(path: str, text: str | bytes) -> None:
    """Writes `text` (or bytes, as they are) to `path` so that readers see the old file or the new one, never half
    of it."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes `obj` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(json.loads(dumps(obj)), indent=2, sort_keys=True) + "\n")


GIN_FILES = "gin_files"  # point.json: the trainer's gin files (absolute in a run dir, portable in a record)
PRETRAINING_FROM = "pretraining_from"  # point.json: the run dir whose pretraining the point started from
PRETRAINING_SECONDS = "pretraining_seconds"  # point.json: that pretraining's train_seconds (in the point's own)
PATH_FIELDS = ("recipe", "copied_from", PRETRAINING_FROM)  # point.json's other paths


def pretraining_from(point: Any) -> str | None:
    """The run dir a point.json (`point`, as read) says its pretraining came from (`grid.share_pretraining`), None
    when it trained its own."""
    source = point.get(PRETRAINING_FROM) if isinstance(point, dict) else None
    return source if isinstance(source, str) else None


def portable_point(point: Any, root: str) -> Any:
    """A point.json as a committed record keeps it: its paths (the recipe, the gin files, where it was copied from)
    relative to `root` (the checkout the runner ran in) when they lie inside it, else their base names, so no
    machine's paths are committed. Anything that is not a point.json object is returned as it is."""
    if not isinstance(point, dict):
        return point
    root = os.path.abspath(root)

    def portable(path: Any) -> Any:
        if not isinstance(path, str) or not os.path.isabs(path):
            return path
        inside = os.path.commonpath([root, os.path.abspath(path)]) == root
        return os.path.relpath(path, root) if inside else os.path.basename(path)

    found = {key: portable(point[key]) for key in PATH_FIELDS if key in point}
    if isinstance(point.get(GIN_FILES), list):
        found[GIN_FILES] = [portable(p) for p in point[GIN_FILES]]
    return {**point, **found}


def read_json(path: str, default: Any = None) -> Any:
    """Returns the JSON content of `path`, or `default` when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):  # ValueError: not JSON (truncated) or not UTF-8
        return default


def read_object(path: str) -> tuple[dict | None, str]:
    """A run file that must hold a JSON object: (content, '') when it does, (None, '') when it is missing,
    (None, why) when it is unreadable, e.g. 'result.json is not JSON (truncated?): Expecting ...'."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None, ""
    except UnicodeDecodeError:
        return None, f"{name} is not UTF-8 text"
    except OSError as e:
        return None, f"{name} cannot be read: {e.strerror or e}"
    if not text.strip():
        return None, f"{name} is empty (truncated?)"
    try:
        content = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"{name} is not JSON (truncated?): {e.msg} (line {e.lineno} column {e.colno})"
    if not isinstance(content, dict):
        return None, f"{name} holds a {type(content).__name__}, not a JSON object"
    return content, ""


def append_jsonl(path: str, record: dict) -> None:
    """Appends one JSON object as a line; a crash can at worst leave a truncated last line."""
    with open(path, "a") as f:
        f.write(dumps(record) + "\n")
        f.flush()


def read_jsonl(path: str) -> Iterator[dict]:
    """Yields the JSON objects of a `.jsonl` file, skipping lines that are not one (a truncated last line)."""
    yield from read_jsonl_checked(path)[0]


def read_jsonl_checked(path: str) -> tuple[list[dict], list[int]]:
    """The JSON objects of a `.jsonl` file and the numbers of the lines that are not one (truncated, not
    JSON, not UTF-8, or JSON but not an object); ([], []) when the file is missing or unreadable."""
    records, bad = [], []
    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return [], []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad.append(number)
    return records, bad


def run_problem(run_dir: str, point_id: str | None = None) -> str:
    """Why a run directory cannot be resumed or reported as it is, or '' when it can.

    A problem is a point.json that is unreadable, from an older version of the runner (no id or values) or of
    another point (`point_id` given and different: another recipe, or ids of an older version), or a
    result.json that is unreadable or has no eval/top1. Neither the runner nor the reporter uses such a
    directory, and the runner never overwrites its result.json.
    A missing point.json or result.json is no problem (a new or unfinished point).
    """
    point, why = read_object(os.path.join(run_dir, POINT))
    if why:
        return why
    if point is not None:
        needed = ("recipe_stem", "values") + (("id",) if point_id is not None else ())
        lacking = [k for k in needed if k not in point]
        if lacking or not isinstance(point.get("values"), dict):
            return f"{POINT} is from an older version of the runner (no {', '.join(lacking) or 'values dict'})"
        if point_id is not None and point["id"] != point_id:
            return (
                f"holds point {point['id']} of recipe {point.get('recipe', point['recipe_stem'])} "
                f"{point.get('bindings', point['values'])}, not this one"
            )
    result, why = read_object(os.path.join(run_dir, RESULT))
    if why:
        return why
    if result is not None and "eval/top1" not in result:  # the one metric every version has written
        return f"{RESULT} has no eval/top1 (written by an older version?)"
    return ""


def recorded_settings(point: Any) -> dict[str, str] | None:
    """A point.json's recorded training settings {binding: gin text}, or None when it has none (a run dir written
    before they were recorded, or no point.json)."""
    settings = point.get(TRAINING_SETTINGS) if isinstance(point, dict) else None
    if not isinstance(settings, dict):
        return None
    return {str(k): str(v) for k, v in settings.items()}


def write_status(run_dir: str, state: str, step: int = 0, reason: str = "") -> None:
    """Records the run's state (`running`, `done` or `failed`) with the step and a reason."""
    if state not in (RUNNING, DONE, FAILED):
        raise ValueError(f"state must be one of running, done, failed; got {state!r}")
    write_json_atomic(
        os.path.join(run_dir, STATUS),
        {"state": state, "step": int(step), "reason": reason, "time": time.time()},
    )


def point_status(run_dir: str) -> str:
    """Classifies a run directory: `done`, `failed`, `partial` (has a checkpoint or started) or `new`."""
    if os.path.exists(os.path.join(run_dir, RESULT)):
        return DONE
    status = read_json(os.path.join(run_dir, STATUS), {})
    if isinstance(status, dict) and status.get("state") == FAILED:
        return FAILED
    ckpt = os.path.join(run_dir, CKPT_DIR)
    if (os.path.isdir(ckpt) and os.listdir(ckpt)) or os.path.exists(os.path.join(run_dir, STATUS)):
        return "partial"  # started (a status.json, even an unreadable one, or a checkpoint)
    return "new"


# ---------------------------------------------------------------------------------------------------------------
# A point's training settings as point.json records them: {binding: gin text}; equal texts train alike.


def settings_hash(texts: dict[str, str]) -> str:
    """8 hex digits of a settings mapping (`settings_text`), for people and quick comparisons."""
    return hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()[:8]


def settings_differences(mine: dict[str, str], theirs: dict[str, str]) -> list[tuple[str, str | None, str | None]]:
    """The keys whose gin text differs between two settings mappings, in order of appearance (`mine`'s keys first):
    (key, mine's text or None, theirs or None); a key in one mapping only is a difference."""
    return [
        (key, mine.get(key), theirs.get(key))
        for key in dict.fromkeys([*mine, *theirs])
        if mine.get(key) != theirs.get(key)
    ]  # fmt: skip


def describe_differences(found: list[tuple[str, str | None, str | None]], labels: tuple[str, str],
                         limit: int = 3) -> str:
    """'PRETRAIN_EPOCHS = 20 (run) vs 50 (recipe now), train_and_evaluate.max_examples = 5000 vs 20000': the first
    `limit` differences (`settings_differences`), the first one with its `labels`, then how many more."""
    parts = []
    for i, (key, mine, theirs) in enumerate(found[:limit]):
        a, b = mine if mine is not None else "not bound", theirs if theirs is not None else "not bound"
        parts.append(f"{key} = {a} ({labels[0]}) vs {b} ({labels[1]})" if i == 0 else f"{key} = {a} vs {b}")
    more = len(found) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def run_settings_mismatch(recorded: dict, current: dict[str, str]) -> str:
    """'' when a run's recorded settings (its point.json `training_settings`) equal the current ones, else the first
    differences in the current settings' order: 'PRETRAIN_EPOCHS = 20 (run) vs 50 (recipe now), ...'."""
    found = [(key, theirs, mine) for key, mine, theirs in settings_differences(current, recorded)]
    return describe_differences(found, ("run", "recipe now")) if found else ""


# ---------------------------------------------------------------------------------------------------------------
# config.gin as data


class _GinTextDelegate(config_parser.ParserDelegate):
    """Keeps references and macros as text ('@name', '@name()', '%name'): nothing is looked up or called."""

    def configurable_reference(self, scoped_configurable_name, evaluate):
        return "@" + scoped_configurable_name + ("()" if evaluate else "")

    def macro(self, macro_name):
        return "%" + macro_name


def read_gin_bindings(path: str) -> dict[tuple[str, str], Any]:
    """{(scope, 'selector.arg'): value} and {('', MACRO): value} of a config.gin (gzipped when `path` ends in .gz, as
    a record keeps it), macros resolved."""
    with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
        text = f.read()
    try:
        statements = list(config_parser.ConfigParser(text, _GinTextDelegate()))
    except (SyntaxError, tokenize.TokenError) as e:
        raise ValueError(f"{path}: cannot parse: {e}") from None
    raw, macros = {}, {}
    for st in statements:
        if getattr(st, "arg_name", None):
            raw[(st.scope or "", f"{st.selector}.{st.arg_name}")] = st.value
        elif hasattr(st, "selector") and not st.scope:
            macros[st.selector] = st.value

    def resolve(value: Any, depth: int = 0) -> Any:
        if isinstance(value, str) and value.startswith("%") and value[1:] in macros and depth < 20:
            return resolve(macros[value[1:]], depth + 1)
        return value

    out = {key: resolve(value) for key, value in raw.items()}
    out.update({("", name): resolve(value) for name, value in macros.items()})
    return out
