"""The single configurable root of one run: `train_and_evaluate`, and its modes.

The gin root's arguments are the run's settings (recipes bind them, `train_and_evaluate.<arg> = ...`); they are
checked once into a `supcon.train.config.RunConfig` (mode 'validate' stops there and returns it: the runner's
check of every grid point, and `supcon.train.describe`'s input). Otherwise the process-wide TF settings (seed,
determinism, mixed precision) are set, the `supcon.train.run.Run` is built, its start records are written
(`supcon.train.record`; TensorBoard's HParams session, `supcon.train.hparams`) and the mode runs: train the stages
in order and/or evaluate (once, or each new checkpoint in 'continuous_eval'), then `record.finish` writes the
results.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import gin
import tensorflow as tf
from tensorflow.python.framework import (
    config as tf_config,  # disable_op_determinism has no public name
)

from supcon import augment
from supcon import workdir as wd
from supcon.model import heads
from supcon.train import config as run_config
from supcon.train import hparams, record
from supcon.train import run as trainer

MODES = ("train", "eval", "train_then_eval", "continuous_eval")


def _continuous_eval(run: trainer.Run, logger: record.Logger, poll_seconds: float, timeout_seconds: float):
    """Evaluates every new checkpoint until the final one; returns the final (metrics, test)."""
    seen, deadline = None, time.time() + timeout_seconds
    while True:
        latest = tf.train.latest_checkpoint(run.manager.directory)
        if latest and latest != seen:
            seen = latest
            run.checkpoint.restore(latest).expect_partial()
            final = int(run.step.numpy()) >= run.total_steps  # the corrupted sets are scored at the end only
            metrics, test = run.evaluate(corruptions=final)
            if final:
                return metrics, test
            logger.eval(metrics)
            deadline = time.time() + timeout_seconds
        elif time.time() > deadline:
            raise TimeoutError(f"no new checkpoint in {run.manager.directory} for {timeout_seconds:.0f} s")
        time.sleep(poll_seconds)


def validate_config() -> run_config.RunConfig:
    """Evaluates the parsed gin bindings of the root and checks them (no model, no data); returns the RunConfig."""
    return train_and_evaluate(workdir="", mode="validate")


@gin.configurable
def train_and_evaluate(
    workdir: str,
    mode: str = "train_then_eval",
    stages: list = gin.REQUIRED,
    dataset: str = "digits",
    data_dir: str | None = None,
    train_split: str = "train",
    eval_split: str = "test",
    max_examples: int | None = None,
    label_noise: float = 0.0,
    encoder: Callable = gin.REQUIRED,
    projection_head: Callable | None = None,
    classification_head: Callable = heads.classification_head,
    normalize_embedding: bool = True,
    stop_gradient_before_projection_head: bool = False,
    stop_gradient_before_classification_head: bool = True,
    contrastive_loss: Callable | None = None,
    batch_size: int = 256,
    eval_batch_size: int = 256,
    normalize: Callable = augment.normalize,
    eval_preprocess: Callable = augment.eval_preprocess,
    memory_size: int = 0,
    topology: str = "one_device",
    num_devices: int | None = None,
    tpu_name: str = "",
    seed: int = 0,
    mixed_precision: bool | str = "auto",
    deterministic: bool = True,
    steps_per_execution: int = 20,
    jit_compile: bool = False,
    batched_augmentation: bool = True,
    log_every_steps: int = 50,
    checkpoint_every_steps: int = 500,
    keep_checkpoints: int = 2,
    knn_k: int = 200,
    knn_train_examples: int | None = None,
    save_embeddings: int = 5000,
    export_model: bool = True,
    eval_poll_seconds: float = 10.0,
    eval_timeout_seconds: float = 3600.0,
    fallback_dataset: str | None = None,
    eval_max_examples: int | None = None,
    inject_nan_at_step: int = -1,
    init_checkpoint: str | None = None,
    init_parts: tuple = ("encoder",),
    corruptions: str | list | None = None,
    corruption_severities: tuple = (1, 2, 3, 4, 5),
    corruption_source: str = "auto",
    corruption_cache_dir: str | None = "auto",
) -> dict | run_config.RunConfig | None:
    """Trains and/or evaluates one run in `workdir` (the gin root; see the module docstring).

    Args:
      workdir: the run directory (created; rerunning resumes from its last checkpoint).
      mode: 'train', 'eval' (one pass over the latest checkpoint), 'train_then_eval' or
        'continuous_eval' (evaluate each new checkpoint until the final one).
      stages: the stages, e.g. `[@pretrain/stage(), @linear/stage()]` (supcon.train.stages.stage).
      dataset, data_dir, train_split, eval_split, max_examples, label_noise: the data (supcon.data).
      encoder: encoder factory, e.g. `@resnet`; projection_head: factory or None (cross-entropy);
        classification_head: factory called with num_classes.
      normalize_embedding, stop_gradient_before_*: how the heads see the encoder output.
      contrastive_loss: the configured loss, e.g. `@contrastive()`.
      batch_size: global training batch (stages may override); eval_batch_size: global eval batch.
      normalize: model-range scaling after augmentation (official [-1, 1], optional whitening).
      eval_preprocess: evaluation preprocessing (e.g. resize-then-crop).
      memory_size: size K of the label-aware memory queue (0: none).
      topology, num_devices, tpu_name: the tf.distribute strategy (supcon.train.distribute.make_strategy).
      seed: seeds initialisation, data order and augmentation.
      mixed_precision: bfloat16 compute with float32 variables and float32 loss math: True, False, or 'auto'
        (on where bfloat16 is fast: a TPU topology, a GPU, or a CPU with AVX-512 BF16 / AMX; see
        `supcon.train.config.bfloat16_is_fast`).
      deterministic: enable TF op determinism (a resumed run reproduces an uninterrupted one).
      steps_per_execution: training steps per `tf.function` call (a `tf.while_loop` inside it), as Keras'
        option of that name; an execution never crosses a logging, checkpoint or stage boundary, so those
        cadences, resume and the per-step loss log do not depend on it.
      jit_compile: compile the training step with XLA (off: on CPU, oneDNN's convolutions are faster than
        XLA's at every size measured, benchmarks/small_scale.py).
      batched_augmentation: augment a whole batch per op where the augmenter has a batched form
        (crop_flip, simclr_augment, randaugment, identity_augment; supcon.augment.batched and
        batched_policies), else one image at a time.
      log_every_steps, checkpoint_every_steps, keep_checkpoints: logging and checkpointing cadence.
      knn_k: k of the cosine k-NN probe (0 disables); knn_train_examples: cap on its reference set.
      save_embeddings: how many test embeddings to keep for plots (0: none).
      export_model: write a SavedModel (uint8 images -> embeddings, logits).
      eval_poll_seconds, eval_timeout_seconds: continuous_eval polling.
      fallback_dataset: used when `dataset` is not available here (smoke runs: 'digits'); None: fail.
      eval_max_examples: evaluate only the first N test examples (smoke runs); None: the whole split.
      inject_nan_at_step: test hook that makes the loss at that step NaN (-1: off).
      init_checkpoint: warm start from another run (a run directory, a recipe's runs folder with one run, or a
        checkpoint path; supcon.train.warm_start), applied only when this run has no checkpoint of its own.
      init_parts: the parts restored from init_checkpoint ('encoder', 'projection_head', 'classification_head').
      corruptions: also score the final weights on corrupted eval splits: None, 'all' (the 15 ImageNet-C
        corruptions) or a list of their names (supcon.robust.spec: result keys corruption/<name>/<s>/top1
        and /ece, per-severity means and corruption/mean/top1; reliability diagrams in calibration.json).
        Setting it on a finished run and running it in mode 'eval' adds these metrics to its result.json.
      corruption_severities: the severities scored (1..5).
      corruption_source: 'synthetic' (supcon.robust.corrupt, on the eval_preprocess'ed images), 'tfds' (the
        published cifar10_corrupted / imagenet2012_corrupted, prepared in data_dir) or 'auto' (tfds when prepared
        for cifar10 or imagenet2012, else synthetic); see supcon.robust.evaluation.
      corruption_cache_dir: where synthetic corrupted sets are kept as uint8 files ('auto':
        <data_dir or the default data dir>/corrupted; None: none), shared by runs on the same data.

    Returns:
      The result dict (also in result.json) when the run finished, else None; with mode 'validate' (the
      runner's check), the checked RunConfig.
    """
    # Every argument but workdir and mode, checked once (before training, not at the evaluation after it).
    arguments = {k: v for k, v in locals().items() if k not in ("workdir", "mode")}
    if mode != "validate" and mode not in MODES:
        raise ValueError(f"train_and_evaluate.mode must be one of {', '.join(MODES)}; got {mode!r}")
    config = run_config.build_config(**arguments)
    if mode == "validate":
        return config
    os.makedirs(workdir, exist_ok=True)
    tf.keras.utils.set_random_seed(config.seed)
    # Process-wide TF settings are set both ways: a served trainer process runs many points (supcon.experiment.worker).
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    bfloat16 = run_config.resolve_mixed_precision(config.mixed_precision, config.topology)
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16" if bfloat16 else "float32")
    run = trainer.Run(workdir, config, bfloat16)
    record.write_start(run, mode)
    if run.dir == workdir:  # the chief: the other workers of a multi-host run write under worker-<i>/
        hparams.start(run)  # the run's HParams session, listed in TensorBoard from now on
    logger = record.Logger(run)
    try:
        return _run_mode(run, logger, mode)
    finally:
        logger.close()


def _run_mode(run: trainer.Run, logger: record.Logger, mode: str):
    """The body of train_and_evaluate once the run is built: train and/or evaluate as `mode` says."""
    workdir = run.dir
    if mode == "continuous_eval":
        metrics, test = _continuous_eval(run, logger, run.config.eval_poll_seconds, run.config.eval_timeout_seconds)
        return record.finish(run, metrics, test, logger)
    step = run.restore()
    if mode == "eval":
        previous = wd.read_json(os.path.join(workdir, wd.RESULT))
        if previous is not None and not run.manager.latest_checkpoint:
            raise FileNotFoundError(
                f"mode 'eval' on the finished run {workdir} needs its final checkpoint, but {wd.CKPT_DIR}/ holds none"
            )
        metrics, test = run.evaluate()
        if step >= run.total_steps:
            return record.finish(run, metrics, test, logger, previous if isinstance(previous, dict) else None)
        logger.eval(metrics)
        return None
    wd.write_status(workdir, wd.RUNNING, step)
    for p in run.plan:
        if step < p.end:
            print(f"stage {p.stage.name}: steps {max(step, p.start)}..{p.end} of {run.total_steps}", flush=True)
            run.train_stage(p, logger)
            step = int(run.step.numpy())
    if mode == "train":
        wd.write_status(workdir, wd.RUNNING, step, "trained; waiting for evaluation")
        return None
    metrics, test = run.evaluate()
    return record.finish(run, metrics, test, logger)
