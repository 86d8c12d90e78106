"""One run: parse gin, call the root. Also validates many grid points in one process for the runner.

    python -m supcon.main --workdir DIR --gin_file FILE [--gin_file ...] [--gin_param 'BINDING' ...]
    python -m supcon.main --validate SPEC.json
    python -m supcon.main --describe SPEC.json     (each point's effective settings, for runner.py --show_config)
    python -m supcon.main --serve --reply_fd N      (the runner's long-lived trainer; see supcon.experiment.worker)

SPEC.json is a list of {"name", "gin_files", "gin_params"}; one JSON line {"name", "error"} is printed per
point, and the exit code is 0 iff every point is valid. Environment: SUPCON_THREADS caps TF's thread pools.
"""

from __future__ import annotations

import json
import logging as py_logging
import os
import re
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512 VNNI/BF16 or AMX; on an AVX2 CPU
# they are off, and a training step is 2-3x slower without them (benchmarks/train_step.py). Set it to 0 to
# opt out. Must be set before TensorFlow is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import app, flags  # noqa: E402
from absl import logging as absl_logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory (created; a rerun resumes from its last checkpoint).")
flags.DEFINE_multi_string("gin_file", [], "Gin files, in order.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings applied after the files.")
flags.DEFINE_string("validate", None, "Validate the points listed in this JSON file and exit.")
flags.DEFINE_string("describe", None, "Print each listed point's effective settings as JSON (runner.py --show_config).")
flags.DEFINE_boolean("serve", False, "Serve validate/train requests from stdin (supcon.experiment.worker protocol).")
flags.DEFINE_integer("reply_fd", None, "With --serve: the file descriptor replies are written to.")

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
RECIPES_DIR = os.path.join(os.path.dirname(PACKAGE_DIR), "recipes")


def _own_or_warning(record) -> bool:
    """A log record to keep: WARNING and above from anyone, INFO and below only from this package."""
    return record.levelno >= py_logging.WARNING or record.pathname.startswith(PACKAGE_DIR + os.sep)


def quiet_third_party_logs() -> None:
    """Keeps other libraries' INFO lines out of the run's log; theirs at WARNING and above, and ours, stay.

    tfds (dataset info, readers), TensorFlow's checkpoint saver ("Sharding callback duration") and the SavedModel
    writer log at INFO through absl's handler, one or two lines per checkpoint: noise between our progress lines.
    An explicit --verbosity (or -v) keeps everything at the level it asks for.
    """
    if FLAGS["verbosity"].present:
        return
    handler = absl_logging.get_absl_handler()
    if _own_or_warning not in handler.filters:
        handler.addFilter(_own_or_warning)


# Keras imports these at start-up when they are installed, for helpers a trainer never uses (its scikit-learn
# wrappers and plot_image_gallery): about 2.5 s of TensorFlow's 7.5 s import on 2 cores. They are hidden while
# TensorFlow is imported, and importable as usual afterwards (the digits source uses scikit-learn).
_HIDDEN_DURING_TF_IMPORT = ("sklearn", "matplotlib")


def _import_tensorflow_quietly():
    """Imports TF with file descriptor 2 redirected: hides the import-time oneDNN banner, keeps the speed."""
    hidden = [name for name in _HIDDEN_DURING_TF_IMPORT if name not in sys.modules]
    saved = os.dup(2)
    try:
        for name in hidden:
            sys.modules[name] = None  # `import name` raises ImportError, which Keras handles
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


# TensorFlow is imported here, before any project module that uses it, with its start-up noise hidden.
_import_tensorflow_quietly()

import gc  # noqa: E402

import gin  # noqa: E402
import tensorflow as tf  # noqa: E402
from gin import config  # noqa: E402

from supcon import workdir as wd  # noqa: E402
from supcon.experiment import bindings, grid, worker  # noqa: E402
from supcon.train import describe, distribute, root  # noqa: E402  (root registers the gin root and every component)


def _register():
    """Imports every module that registers gin configurables, plus the runner-only namespaces."""
    if "grid" not in _registered:  # gin keeps registrations across clear_config

        @gin.configurable("grid")
        def _grid(axes=None, points=None, runs_of=None, reuse_from=None, share_pretraining=False):
            return axes, points

        @gin.configurable("report")
        def _report(**kwargs):
            return kwargs

        _registered.add("grid")


_registered: set = set()


# gin appends "In call to configurable 'x' (<function x at 0x7f...>) [in scope 's']" to every error raised in a
# configurable: noise for the reader (and an address that differs per run).
_GIN_CALL_NOISE = re.compile(r"\s*In call to configurable '[^']*' \(<[^>]*>\)(?: in scope '[^']*')?")


def one_line(error: BaseException) -> str:
    """An exception as one line: type and message with newlines folded, without gin's call-site noise."""
    lines = [line.strip() for line in _GIN_CALL_NOISE.sub("", str(error)).splitlines()]
    text = " ".join(line for line in lines if line and set(line) != {"^"})  # gin's caret lines go
    text = " ".join(text.split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def parse(gin_files: list[str], gin_params: list[str]) -> None:
    """Parses gin files and bindings strictly (unknown configurables or parameters are errors).

    First the runner's checks on the text (`supcon.experiment.grid.load_recipe`: the first file is the recipe, later ones
    are overlays such as a point's bindings and smoke.gin, then the bindings): so a run started by hand fails on a
    non-UTF-8 file, an include cycle, a bad grid or report setting or a binding nothing reads just as the runner
    does. Then gin's own parse, whose unknown-name errors get the nearest registered name.
    """
    gin.clear_config()
    for path in gin_files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"gin file not found: {path}")
    if gin_files:  # the runner's checks on the text: encoding, includes, grid, bindings nothing reads
        grid.load_recipe(gin_files[0], overlays=gin_files[1:], gin_params=gin_params)
    # Includes resolve from the given files' folders, then recipes/, then the working directory (as
    # supcon.experiment.recipe reads them); set afresh per parse, as a served process parses many recipes.
    folders = [os.path.dirname(os.path.abspath(path)) for path in gin_files] + [RECIPES_DIR, ""]
    config._LOCATION_PREFIXES[:] = list(dict.fromkeys(folders))
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.FATAL)  # gin logs every include path it tries before it finds the file
    try:
        gin.parse_config_files_and_bindings(
            [os.path.abspath(path) for path in gin_files], gin_params, skip_unknown=False
        )
    except ValueError as e:
        raise bindings.with_registry_hint(e) from None
    finally:
        absl_logging.set_verbosity(verbosity)
    missing = unfilled_required()
    if missing:
        raise ValueError(f"unfilled %gin.REQUIRED: {', '.join(missing)}")


def unfilled_required() -> list[str]:
    """Bindings whose value is (a macro chain ending in) %gin.REQUIRED."""
    macros = {scope: v.get("value") for (scope, sel), v in config._CONFIG.items() if sel == "gin.macro"}
    missing = []
    for (scope, selector), params in config._CONFIG.items():
        if selector == "gin.macro":
            continue
        for name, value in params.items():
            seen = set()
            text = repr(value)
            while text.startswith("%") and text[1:] in macros and text not in seen:
                seen.add(text)
                text = repr(macros[text[1:]])
            if text == "%gin.REQUIRED":
                missing.append(f"{scope + '/' if scope else ''}{selector.split('.')[-1]}.{name}")
    return sorted(missing)


def method_scope() -> str | None:
    """The gin scope of the root: the METHOD macro (e.g. 'supcon'), or None when it is not bound.

    Protocols bind the root per method (`supcon/train_and_evaluate.stages = ...`), so one recipe can hold
    several methods and a grid point picks one by setting METHOD.
    """
    try:
        method = gin.query_parameter("%METHOD")
    except ValueError:
        return None
    if not isinstance(method, str) or not method:
        raise ValueError(f"METHOD must be a non-empty string; got {method!r}")
    if not any(scope == method for scope, _ in config._CONFIG):
        raise ValueError(
            f"METHOD = {method!r} names no method: nothing is bound in the scope {method}/ "
            "(the protocols define supcon, simclr, supcon_joint and cross_entropy)"
        )
    return method


def call_root(workdir: str, validate_only: bool = False):
    """Calls the gin root inside the method scope."""
    with gin.config_scope(method_scope()):
        if validate_only:
            return root.validate_config()
        return root.train_and_evaluate(workdir=workdir)


def validate_points(spec_path: str) -> list[dict]:
    """Parses and checks every point of a spec file: one {"name", "error"} per point (error None if valid)."""
    with open(spec_path) as f:
        points = json.load(f)
    results = []
    for point in points:
        error = None
        try:
            parse(point.get("gin_files", []), point.get("gin_params", []))
            call_root("", validate_only=True)
        except Exception as e:  # noqa: BLE001 - every error becomes the point's one-line message
            error = one_line(e)
        results.append({"name": point.get("name"), "error": error})
    return results


def describe_points(spec_path: str) -> list[dict]:
    """{"name", "error", "settings"} per point of a spec file (as `--validate` reads it): `--describe`, for `runner.py --show_config`."""
    with open(spec_path) as f:
        points = json.load(f)
    results = []
    for point in points:
        found, error = None, None
        try:
            parse(point.get("gin_files", []), point.get("gin_params", []))
            with gin.config_scope(method_scope()):
                found = describe.settings(root.validate_config())
        except Exception as e:  # noqa: BLE001 - every error becomes the point's one-line message
            error = one_line(e)
        results.append({"name": point.get("name"), "error": error, "settings": found})
    return results


def validate(spec_path: str, check=validate_points) -> int:
    """Validates (or, with `check=describe_points`, describes) a spec file's points; prints one JSON line per
    point; 0 iff every point is valid."""
    results = check(spec_path)
    for result in results:
        print(json.dumps(result), flush=True)
    return 1 if any(r["error"] for r in results) else 0


_threads_set = False


def _set_threads():
    """Applies SUPCON_THREADS to TF's thread pools (once per process: they are fixed at TF's start)."""
    global _threads_set
    threads = os.environ.get("SUPCON_THREADS")
    if threads and not _threads_set:
        n = max(1, int(threads))
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, n))
    _threads_set = True


def _query_root(name, default):
    try:
        return gin.query_parameter(f"train_and_evaluate.{name}")
    except ValueError:
        return default


def _configure_devices():
    """Makes the logical CPU devices a 'mirrored' topology asks for when there is no GPU."""
    if _query_root("topology", "one_device") == "mirrored" and not tf.config.list_physical_devices("GPU"):
        distribute.configure_logical_cpus(_query_root("num_devices", None) or 1)


# Topologies whose TF state (cluster resolver, collectives, TPU system) lives for the whole process: a served
# process runs such a point only as its first one, and then exits.
ONE_POINT_TOPOLOGIES = ("multi_worker", "tpu")
RESTART = "restart"  # run_one's answer when the point needs a fresh process


def _needs_fresh_process() -> bool:
    """For a parsed point in a served process: a one-point topology, or logical CPU devices that TF, already
    started here, can no longer make (they are configured when it still can)."""
    if _query_root("topology", "one_device") in ONE_POINT_TOPOLOGIES:
        return True
    try:
        _configure_devices()
    except RuntimeError:  # TF: "Virtual devices cannot be modified after being initialized"
        return True
    return False


def run_one(workdir: str, gin_files: list[str], gin_params: list[str], served: int = 0) -> int | str:
    """Trains/evaluates one point; on failure status.json says why and the exit code is 1.

    `served`: requests this process already answered (0 for a one-shot process). A served process answers
    RESTART, without touching the run directory, when the point needs logical devices TF can no longer make
    here or a one-point topology.
    """
    try:
        parse(gin_files, gin_params)
        if served and _needs_fresh_process():
            return RESTART
        os.makedirs(workdir, exist_ok=True)
        _set_threads()
        _configure_devices()
        # Mode 'eval' (e.g. scoring a finished run on corrupted test sets) keeps the training's config.gin.
        config = wd.EVAL_CONFIG if _query_root("mode", "train_then_eval") == "eval" else wd.CONFIG
        wd.write_text_atomic(os.path.join(workdir, config), gin.config_str())
        call_root(workdir)
    except Exception as e:  # noqa: BLE001 - recorded in status.json, then re-raised as exit code 1
        os.makedirs(workdir, exist_ok=True)
        status = wd.read_json(os.path.join(workdir, wd.STATUS), {}) or {}
        wd.write_status(workdir, wd.FAILED, getattr(e, "step", status.get("step", 0)), one_line(e))
        traceback.print_exc()
        print(f"FAILED: {one_line(e)}", file=sys.stderr, flush=True)
        return 1
    return 0


def serve(reply_fd: int) -> int:
    """Answers the runner's validate/train requests in this one process (supcon.experiment.worker)."""
    _set_threads()  # before any op: TF fixes its thread pools when it starts
    # The ~400k objects of the imported modules live as long as the process: keep them out of every later
    # garbage collection (Keras' clear_session after each point collects; 0.38 s -> 0.015 s measured).
    gc.collect()
    gc.freeze()
    served = 0

    def on_validate(request):
        nonlocal served
        served += 1
        results = validate_points(request["spec"])
        return {"code": 1 if any(r["error"] for r in results) else 0, "results": results}

    def on_train(request):
        nonlocal served
        code = run_one(request["workdir"], request["gin_files"], request.get("gin_params", []), served)
        if code == RESTART:
            return {"restart": True}
        served += 1
        one_point = _query_root("topology", "one_device") in ONE_POINT_TOPOLOGIES
        tf.keras.backend.clear_session()  # fresh layer names and graph state; collects garbage too
        return {"code": code, "retire": one_point}

    code = worker.serve(reply_fd, {"validate": on_validate, "train": on_train})
    # Every point's files are written and closed by now: skip the interpreter's teardown of TensorFlow, which
    # takes seconds.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    quiet_third_party_logs()
    _register()
    if FLAGS.serve:
        if FLAGS.reply_fd is None:
            raise app.UsageError("--serve needs --reply_fd")
        return serve(FLAGS.reply_fd)
    if FLAGS.validate:
        return validate(FLAGS.validate)
    if FLAGS.describe:
        return validate(FLAGS.describe, describe_points)
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required (or --validate SPEC.json)")
    if not FLAGS.gin_file:
        raise app.UsageError("at least one --gin_file is required")
    return run_one(FLAGS.workdir, FLAGS.gin_file, FLAGS.gin_param)


if __name__ == "__main__":
    app.run(main)
