"""Test session setup: two logical CPU devices, so MirroredStrategy can be tested without a GPU; what the tests
build once per session and share (one tiny finished run, among others); and the order in which the workers take
the tests.

TensorFlow is imported and configured here, before any test touches a device. Tests that prove a module does
not import TensorFlow (runner, grid, report) therefore check it in a fresh subprocess.

Training is the expensive part of the suite (a trainer process costs ~10 s of CPU, mostly TensorFlow's import and
tracing). What several tests read is built once per session, whichever xdist workers ask for it (`built_once`: a
lock file in the session's temporary folder): `tiny_run`, and the module fixtures of the slower modules.

The workers take one test at a time in FIRST's order (`--dist load --maxschedchunk 1`, pyproject.toml). Not
`--dist loadgroup`: with pytest 9.2 and pytest-xdist 3.8 its groups are lost (pytest-xdist issue 1386) and a
worker that crashes (a segfault in a kernel) hangs the session instead of failing its test
(tests/test_suite_setup.py).
"""
import fcntl
import os
import shutil
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as supcon/main.py: tests run the trainer's kernels
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

NUM_LOGICAL_CPUS = 2


def _configure_tensorflow():
    """Splits the CPU into NUM_LOGICAL_CPUS logical devices (must run before TF initialises devices)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS
    )
    return tf


_tf = _configure_tensorflow()

from tiny_params import TINY  # noqa: E402

from supcon.data import sources  # noqa: E402  (after the devices are configured: it imports TensorFlow)


@pytest.fixture(scope="session")
def tf_two_cpus():
    """Returns the tensorflow module with two logical CPU devices configured."""
    assert len(_tf.config.list_logical_devices("CPU")) >= NUM_LOGICAL_CPUS
    return _tf


# Tests that start trainer processes (seconds to tens of seconds each), started first so that no worker is left
# with one of them at the end while the other idles: each worker takes the next test in this order when it is done.
FIRST = (
    "tests/train/test_train.py::test_short_run_lowers_loss_and_writes_every_file",  # trains tiny_run
    "tests/train/test_train.py::test_two_logical_cpus_match_one_device",
    "tests/train/test_train.py::test_multi_worker_mirrored_with_two_local_workers",
    "tests/train/test_train.py::test_sigkill_then_rerun_gives_identical_metrics",
    "tests/train/test_train.py::test_served_process_trains_a_later_point_exactly_as_a_fresh_process",
    "tests/data/test_first_run.py::test_the_run_that_prepares_the_dataset_equals_a_later_run",
    "tests/train/test_warm_start.py::",
    "tests/train/test_train.py::test_eval_mode_on_latest_checkpoint",
    "tests/experiment/test_legacy_run.py::",
    "tests/robust/test_robust_eval.py::",
    "tests/train/test_show_config.py::",
    "tests/train/test_hparams.py::",
    "tests/experiment/test_recipes.py::",
)


def _first(item):
    """0 for the tests of FIRST (in its order), 1 for the others (kept in collection order: the sort is stable)."""
    return next((i for i, prefix in enumerate(FIRST) if item.nodeid.startswith(prefix)), len(FIRST))


def pytest_collection_modifyitems(config, items):
    items.sort(key=_first)


@pytest.fixture(scope="session")
def built_once(tmp_path_factory):
    """`built_once(name, build)`: the folder that `build(folder)` filled, built once per test session whichever
    xdist workers ask for it: the first builds under a lock file, the others wait and read it. A build that fails
    leaves no mark, so the next test that asks builds again (and fails the same way). Shared by every worker:
    tests must not write into it (copy it first)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above the workers' own

    def get(name, build):
        folder = root / name
        with open(root / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (root / f"{name}.done").exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                build(folder)
                (root / f"{name}.done").touch()
        return folder

    return get


@pytest.fixture(scope="session")
def tiny_run(built_once):
    """One uninterrupted tiny SupCon run (digits_tiny.gin: 24 pretraining + 8 linear steps, with its export),
    trained once per session by `python -m supcon.main` and read by the trainer's tests (resume, served process,
    eval mode, export, warm start, first run = later run). Its default data dir is a fresh folder of the session
    (`tiny_run_data_dir`), so it is the run that prepares the digits; its output is kept (`tiny_run_log`).
    Shared by every xdist worker: tests must not write into it (copy it first)."""

    def train(folder):
        workdir = folder / "full"
        env = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2",
               sources.DATA_DIR_ENV: str(tiny_run_data_dir(workdir))}  # fmt: skip
        cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(workdir), "--gin_file", TINY]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        tiny_run_log(workdir).write_text(proc.stdout + proc.stderr)

    return built_once("tiny_run", train) / "full"


def tiny_run_data_dir(workdir):
    """The fresh data dir of `tiny_run`: the run prepares the digits there (tests/data/test_first_run.py)."""
    return workdir.parent / "datasets"


def tiny_run_log(workdir):
    """What the `tiny_run` process printed (stdout, then stderr)."""
    return workdir.parent / "process.log"


@pytest.fixture(scope="session")
def tiny_run_origin(tiny_run):
    """(data dir, printed output) of `tiny_run`: the folder where it prepared the digits, and its log text."""
    return tiny_run_data_dir(tiny_run), tiny_run_log(tiny_run).read_text()
