"""Distribution: a `tf.distribute` strategy from a topology name, and global-batch checks.

Topologies (gin: `train_and_evaluate.topology = 'mirrored'`):
  * ``one_device``: the first GPU if there is one, else the CPU.
  * ``mirrored``: all local GPUs; without GPUs, ``num_devices`` logical CPU devices (the CI stand-in for a
    multi-GPU host; the logical devices must be configured before TensorFlow initialises, see
    `configure_logical_cpus`).
  * ``multi_worker``: MultiWorkerMirroredStrategy over the workers listed in the ``TF_CONFIG`` environment
    variable (one process per host).
  * ``tpu``: TPUStrategy on the TPU named by ``tpu_name`` (a Cloud TPU name, or '' / 'local').
"""

from __future__ import annotations

import json
import os

import gin
import tensorflow as tf

TOPOLOGIES = ("one_device", "mirrored", "multi_worker", "tpu")


def configure_logical_cpus(num_devices: int) -> None:
    """Splits the physical CPU into `num_devices` logical devices; call before any TF op runs."""
    if num_devices < 1:
        raise ValueError(f"num_devices must be >= 1; got {num_devices}")
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0]) or [None]
    if len(current) >= num_devices:
        return
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_devices)]
    )


def _mirrored(num_devices: int | None) -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        devices = [d.name for d in gpus[: num_devices or len(gpus)]]
        return tf.distribute.MirroredStrategy(devices)
    cpus = tf.config.list_logical_devices("CPU")
    wanted = num_devices or len(cpus)
    if wanted > len(cpus):
        raise ValueError(
            f"num_devices={wanted} but only {len(cpus)} logical CPU device(s) exist; configure them first "
            "(supcon.train.distribute.configure_logical_cpus) or lower num_devices"
        )
    # ReductionToOneDevice: CPU all-reduce without collective-instance keys, so several strategies can
    # live in one process (a test session) without "Shape mismatch in the collective instance".
    return tf.distribute.MirroredStrategy(
        [d.name for d in cpus[:wanted]], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


def _multi_worker() -> tf.distribute.Strategy:
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise ValueError("topology 'multi_worker' needs the TF_CONFIG environment variable (cluster + task)")
    try:
        json.loads(config)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _tpu(tpu_name: str) -> tf.distribute.Strategy:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


@gin.register
def make_strategy(
    topology: str = "one_device", num_devices: int | None = None, tpu_name: str = ""
) -> tf.distribute.Strategy:
    """Builds the strategy for a topology name (see the module docstring).

    Args:
      topology: one of 'one_device', 'mirrored', 'multi_worker', 'tpu'.
      num_devices: for 'mirrored', how many local devices to use (default: all).
      tpu_name: for 'tpu', the TPU to connect to.
    """
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}; got {topology!r}")
    if topology == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if topology == "mirrored":
        return _mirrored(num_devices)
    if topology == "multi_worker":
        return _multi_worker()
    return _tpu(tpu_name)


def task_index(strategy: tf.distribute.Strategy) -> int:
    """This worker's index in a multi-worker cluster (0: the chief, or no cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 0
    if resolver.task_type == "chief":
        return 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return int(resolver.task_id) + (1 if has_chief else 0)


def check_global_batch(global_batch_size: int, num_replicas: int, name: str = "batch_size") -> int:
    """Returns the per-replica batch; raises if the global batch does not split evenly over replicas."""
    if global_batch_size < 1:
        raise ValueError(f"{name} must be >= 1; got {global_batch_size}")
    if global_batch_size % num_replicas:
        raise ValueError(
            f"{name}={global_batch_size} is not divisible by the {num_replicas} replicas of the strategy; "
            f"use a multiple of {num_replicas}"
        )
    return global_batch_size // num_replicas
