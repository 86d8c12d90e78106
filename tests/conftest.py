"""Test session setup: two logical CPU devices, so MirroredStrategy can be tested without a GPU.

TensorFlow is imported and configured here, before any test touches a device. Tests that prove a module does
not import TensorFlow (runner, grid, report) therefore check it in a fresh subprocess.
"""

import os
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
