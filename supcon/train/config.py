"""The settings of one run: `RunConfig`, built and checked once from the gin root's arguments.

`build_config` makes the frozen `RunConfig` from `train_and_evaluate`'s arguments (all but workdir and mode) and
checks it without building anything (no data, no model): every check raises a one-line ValueError naming the
`train_and_evaluate.<argument>` (or the stage) at fault. The runner validates every grid point this way (mode
'validate'), and a run does before it trains. The Run, the evaluation, `supcon.train.describe` and env.json read
the config's attributes; the corruption evaluation gets its part as a `supcon.robust.evaluation.Request`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import gin
import tensorflow as tf

from supcon import workdir as wd
from supcon.robust import evaluation as robust_eval
from supcon.train import distribute, stages, warm_start

# Registered functions a recipe may leave at their Python default; see `configured`.
CONFIGURED_DEFAULTS = ("classification_head", "normalize", "eval_preprocess")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """`train_and_evaluate`'s arguments but workdir and mode, checked; see its docstring for each one's meaning."""

    stages: Sequence[stages.Stage]  # in training order (@<scope>/stage() references)
    dataset: str  # a supcon.data source name, e.g. 'digits', 'cifar10'
    data_dir: str | None  # tfds data folder; None: supcon.data's default
    train_split: str
    eval_split: str
    max_examples: int | None  # train on the split's first N examples; None: all
    label_noise: float  # fraction of training labels replaced at random, in [0, 1]
    encoder: Callable  # factory of the encoder, e.g. @resnet
    projection_head: Callable | None  # factory, or None (no contrastive loss)
    classification_head: Callable  # factory called with num_classes (gin-configured)
    normalize_embedding: bool  # heads read the L2-normalised encoder output
    stop_gradient_before_projection_head: bool
    stop_gradient_before_classification_head: bool
    contrastive_loss: Callable | None  # the configured loss, e.g. @contrastive()
    batch_size: int  # global training batch (a stage may override it)
    eval_batch_size: int  # global evaluation batch
    normalize: Callable  # image in [0, 1] -> model range, after augmentation (gin-configured)
    eval_preprocess: Callable  # evaluation preprocessing of an image in [0, 1] (gin-configured)
    memory_size: int  # entries K of the label-aware memory queue; 0: no queue
    topology: str  # one of supcon.train.distribute.TOPOLOGIES
    num_devices: int | None  # 'mirrored' replicas; None: every GPU (or logical CPU)
    tpu_name: str
    seed: int
    mixed_precision: bool | str  # True, False or 'auto' as bound (`resolve_mixed_precision` decides 'auto')
    deterministic: bool  # TF op determinism
    steps_per_execution: int  # training steps per tf.function call
    jit_compile: bool  # XLA-compile the training step
    batched_augmentation: bool  # augment a batch per op where the augmenter has a batched form
    log_every_steps: int
    checkpoint_every_steps: int
    keep_checkpoints: int  # checkpoints kept on disk
    knn_k: int  # k of the cosine k-NN probe; 0: no probe
    knn_train_examples: int | None  # cap on the k-NN reference set; None: the training examples
    save_embeddings: int  # test embeddings kept in embeddings.npz; 0: none
    export_model: bool  # write a SavedModel
    eval_poll_seconds: float  # continuous_eval: seconds between looks for a new checkpoint
    eval_timeout_seconds: float  # continuous_eval: give up after this many seconds without one
    fallback_dataset: str | None  # used when `dataset` is not available here; None: fail
    eval_max_examples: int | None  # evaluate the eval split's first N examples; None: all
    inject_nan_at_step: int  # test hook: the loss at this step is NaN; -1: off
    init_checkpoint: str | None  # warm start source (supcon.train.warm_start); None: none
    init_parts: Sequence[str] | str  # the parts restored from init_checkpoint
    corruptions: str | Sequence[str] | None  # None, 'all' or ImageNet-C corruption names (supcon.robust.spec)
    corruption_severities: Sequence[int]  # of 1..5
    corruption_source: str  # 'synthetic', 'tfds' or 'auto'
    corruption_cache_dir: str | None  # 'auto', None (no cache) or a folder

    def corruption_request(self) -> robust_eval.Request:
        """The corruption evaluation's settings (supcon.robust.evaluation), for this config's dataset."""
        return robust_eval.Request(
            corruptions=self.corruptions, corruption_severities=self.corruption_severities,
            corruption_source=self.corruption_source, corruption_cache_dir=self.corruption_cache_dir,
            dataset=self.dataset, data_dir=self.data_dir,
        )


def configured(fn: Callable) -> Callable:
    """The gin-configured version of a registered function, else `fn` itself.

    `gin.register` leaves the function object unwrapped, so a registered function used as a Python default
    (e.g. `eval_preprocess=augment.eval_preprocess`) would ignore the recipe's bindings (`eval_preprocess.method
    = ...`); a recipe's `@name` reference is already configured and passes through unchanged.
    """
    try:
        return gin.get_configurable(fn)
    except (ValueError, TypeError):  # not registered with gin: a plain callable
        return fn


def bfloat16_is_fast(cpu_flags: set[str] | None = None) -> bool:
    """True where bfloat16 matmuls beat float32: a GPU, or a CPU with AVX-512 BF16 or AMX-BF16.

    On an AVX2-only CPU TensorFlow emulates bfloat16 and mixed precision is slower than float32.
    `cpu_flags` defaults to the flags of /proc/cpuinfo (empty where it does not exist).
    """
    if tf.config.list_physical_devices("GPU"):
        return True
    if cpu_flags is None:
        cpu_flags = read_cpu_flags()
    return bool(cpu_flags & {"avx512_bf16", "amx_bf16"})


# The CPU flags that decide which kernels a training step runs, and so its speed (4-16x between AVX2 and AVX-512
# BF16 machines) and its last bits: env.json records the ones the machine has.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def read_cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The flags of the first processor in `path` (empty where it does not exist or lists none)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def auto_precision() -> str:
    """What 'auto' resolves to in this process: $SUPCON_AUTO_PRECISION (the runner's --auto_precision), one of
    `workdir.AUTO_PRECISIONS`; 'hardware' when unset or empty.

    Raises:
      ValueError: one line naming the variable and the values it takes.
    """
    choice = os.environ.get(wd.AUTO_PRECISION_ENV, "").strip() or "hardware"
    if choice not in wd.AUTO_PRECISIONS:
        raise ValueError(
            f"{wd.AUTO_PRECISION_ENV}={choice!r} (the runner's --auto_precision) must be one of "
            + ", ".join(wd.AUTO_PRECISIONS)
        )
    return choice


def resolve_mixed_precision(value, topology: str) -> bool:
    """train_and_evaluate.mixed_precision: True / False as given; 'auto' as `auto_precision()` says: float32,
    mixed bfloat16, or by the hardware (a TPU, or `bfloat16_is_fast`)."""
    if isinstance(value, bool):
        return value
    if value != "auto":
        raise ValueError(f"train_and_evaluate.mixed_precision must be True, False or 'auto'; got {value!r}")
    choice = auto_precision()
    if choice != "hardware":
        return choice == "mixed_bfloat16"
    return topology == "tpu" or bfloat16_is_fast()


def precision_by(value) -> str:
    """env.json's "precision_by" for a train_and_evaluate.mixed_precision binding (`workdir.PRECISION_BY`)."""
    binding, hardware, flag = wd.PRECISION_BY
    if isinstance(value, bool):
        return binding
    return hardware if auto_precision() == "hardware" else flag


def build_config(**arguments: Any) -> RunConfig:
    """The checked RunConfig of the root's arguments (all but workdir and mode), without building anything.

    The registered functions among CONFIGURED_DEFAULTS are replaced by their gin-configured versions.

    Raises:
      ValueError: one line naming the argument (`train_and_evaluate.<arg>`) or the stage at fault.
    """
    for name in CONFIGURED_DEFAULTS:
        arguments[name] = configured(arguments[name])
    config = RunConfig(**arguments)
    check(config)
    return config


def check(config: RunConfig) -> None:
    """Checks a configuration without building anything (the runner validates every point this way)."""
    resolve_mixed_precision(config.mixed_precision, config.topology)
    if not isinstance(config.stages, list | tuple) or not all(isinstance(s, stages.Stage) for s in config.stages):
        raise ValueError("train_and_evaluate.stages must be a list of @<scope>/stage() references")
    planned = stages.plan(list(config.stages), 1, config.batch_size)
    for p in planned:
        if p.stage.contrastive_weight and config.contrastive_loss is None:
            raise ValueError(
                f"stage {p.stage.name} has contrastive_weight > 0 but train_and_evaluate.contrastive_loss "
                "is not bound (e.g. @contrastive())"
            )
        if p.stage.contrastive_weight and not config.projection_head:
            raise ValueError(f"stage {p.stage.name} is contrastive but train_and_evaluate.projection_head is None")
    replicas = 1
    if config.topology == "mirrored":
        replicas = config.num_devices or max(1, len(tf.config.list_physical_devices("GPU")))
    elif config.topology not in distribute.TOPOLOGIES:
        raise ValueError(f"train_and_evaluate.topology must be one of {', '.join(distribute.TOPOLOGIES)}")
    for p in planned:
        distribute.check_global_batch(p.batch_size, replicas, f"{p.stage.name} batch_size")
    if config.memory_size < 0:
        raise ValueError(f"train_and_evaluate.memory_size must be >= 0; got {config.memory_size}")
    spe = config.steps_per_execution
    if not isinstance(spe, int) or isinstance(spe, bool) or spe < 1:
        raise ValueError(f"train_and_evaluate.steps_per_execution must be an int >= 1; got {spe!r}")
    for name in ("jit_compile", "batched_augmentation"):
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise ValueError(f"train_and_evaluate.{name} must be True or False; got {value!r}")
    warm_start.check(config.init_checkpoint, config.init_parts, bool(config.projection_head))
    robust_eval.check_settings(config.corruption_request())
