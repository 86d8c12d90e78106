"""Test session setup: two logical CPU devices, so MirroredStrategy can be tested without a GPU; one tiny
finished run that the trainer's tests share; and xdist groups, so a worker builds each expensive fixture once.

TensorFlow is imported and configured here, before any test touches a device. Tests that prove a module does
not import TensorFlow (runner, grid, report) therefore check it in a fresh subprocess.

Training is the expensive part of the suite (a trainer process costs ~12 s of CPU, mostly TensorFlow's import and
tracing). Tests that read a trained run share one (`tiny_run`, and the module fixtures named in SHARED), and
`--dist loadgroup` (pyproject.toml) sends every test of a shared fixture to the same worker, which builds it
once; other tests spread over the workers.
"""

import os
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


@pytest.fixture(scope="session")
def tf_two_cpus():
    """Returns the tensorflow module with two logical CPU devices configured."""
    assert len(_tf.config.list_logical_devices("CPU")) >= NUM_LOGICAL_CPUS
    return _tf


TINY = os.path.join(ROOT, "tests", "fixtures", "train", "digits_tiny.gin")
# Fixtures that train (or start a trainer process) once per worker: their tests go to one worker.
SHARED = ("tiny_run", "scored", "described")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for name in SHARED:
            if name in item.fixturenames:
                item.add_marker(pytest.mark.xdist_group(name))
                break


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One uninterrupted tiny SupCon run (digits_tiny.gin: 24 pretraining + 8 linear steps, with its export),
    trained once by `python -m supcon.main` and read by the trainer's tests (resume, served process, steps per
    execution, eval mode, export, warm start)."""
    workdir = tmp_path_factory.mktemp("run") / "full"
    env = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(workdir), "--gin_file", TINY]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir
