"""The single configurable root of one run: `train_and_evaluate`.

Builds the strategy first, then data, model, optimizers and queue inside `strategy.scope()`, trains the
stages in order with `strategy.run` steps, checkpoints (and resumes) through a CheckpointManager, evaluates
the final classifier on the whole test split (top-1/5, loss, ECE) plus a k-NN probe and, when asked, on the
corrupted test sets (`supcon.robust.evaluation`), exports a SavedModel and writes the run directory described in
`supcon.workdir`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

import gin
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import (
    config as tf_config,  # disable_op_determinism has no public name
)

from supcon import augment, data
from supcon import workdir as wd
from supcon.model import heads, optim, resnet
from supcon.robust import evaluation as robust_eval
from supcon.robust import spec as corruption_spec
from supcon.train import distribute, evaluate, runinfo, stages, steps, warm_start

del resnet  # imported to register @resnet with gin

MODES = ("train", "eval", "train_then_eval", "continuous_eval")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite at `step`."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def _load_source(cfg: dict):
    """The dataset, or the fallback dataset (smoke runs) when it is not available here."""
    try:
        return data.load_source(cfg["dataset"], cfg["data_dir"])
    except (FileNotFoundError, ValueError) as e:
        if not cfg["fallback_dataset"]:
            raise
        print(f"dataset {cfg['dataset']!r} unavailable ({e}); using {cfg['fallback_dataset']!r}", flush=True)
        cfg["dataset"] = cfg["fallback_dataset"]
        cfg["train_split"], cfg["eval_split"] = "train", "test"  # the fallback's splits, not the recipe's
        return data.load_source(cfg["fallback_dataset"], None)


def _by_path(variables) -> dict:
    """{variable path: variable}; the paths must be unique."""
    found = {v.path: v for v in variables}
    if len(found) != len(variables):
        raise ValueError("variable paths are not unique; cannot checkpoint them by path")
    return found


class Run:
    """The state of one run: strategy, data source, model, optimizers, checkpoint and the run directory."""

    def __init__(self, workdir: str, cfg: dict):
        self.cfg = cfg
        self.strategy = distribute.make_strategy(cfg["topology"], cfg["num_devices"], cfg["tpu_name"])
        self.replicas = self.strategy.num_replicas_in_sync
        # Multi-host: every worker takes part in checkpointing and export, but only the chief writes the run
        # directory; the others write under workdir/worker-<i>/ (so a shared workdir sees one writer).
        task = distribute.task_index(self.strategy)
        self.dir = workdir if task == 0 else os.path.join(workdir, f"worker-{task}")
        os.makedirs(self.dir, exist_ok=True)
        # A warm start (supcon.train.warm_start) only for a run without a checkpoint of its own; a missing source fails
        # here, before the data and the model are built.
        own = tf.train.latest_checkpoint(os.path.join(self.dir, wd.CKPT_DIR))
        self.init_checkpoint = warm_start.resolve(cfg["init_checkpoint"]) if cfg["init_checkpoint"] and not own else None
        self.source = _load_source(cfg)
        examples = self.source.num_examples(cfg["train_split"])
        self.train_examples = min(examples, cfg["max_examples"] or examples)
        self.plan = stages.plan(cfg["stages"], self.train_examples, cfg["batch_size"])
        for p in self.plan:
            distribute.check_global_batch(p.batch_size, self.replicas, f"{p.stage.name} batch_size")
        self.total_steps = self.plan[-1].end
        self.normalize = cfg["normalize"]
        self.input_shape = self._input_shape()
        self._predictors: dict = {}  # outputs -> evaluate.Predictor (one traced step each)
        self.calibration: dict = {}  # calibration.json of the latest evaluation
        with self.strategy.scope():
            self._build_model()
            self._build_optimizers()
        # Variables by path, not through Keras object tracking: tf.train.Checkpoint does not see the layers a
        # Keras 3 model keeps in Python lists (e.g. the residual blocks' batch-norm statistics).
        self.checkpoint = tf.train.Checkpoint(
            model=_by_path(self.model.variables), step=self.step, train_seconds=self.train_seconds,
            **{f"optimizer_{p.stage.name}": _by_path(o.variables) for p, o in zip(self.plan, self.optimizers, strict=True)},
            **({"queue": self.queue} if self.queue is not None else {}),
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.dir, wd.CKPT_DIR), max_to_keep=cfg["keep_checkpoints"]
        )

    def _input_shape(self) -> tuple:
        """[H, W, C] of the model input, from the evaluation preprocessing of a blank image."""
        blank = tf.zeros(self.source.image_shape, tf.float32)
        return tuple(self.normalize(self.cfg["eval_preprocess"](blank)).shape)

    def _build_model(self):
        cfg = self.cfg
        self.encoder = cfg["encoder"]()
        projection = cfg["projection_head"]() if cfg["projection_head"] else None
        classifier = cfg["classification_head"](num_classes=self.source.num_classes)
        self.model = heads.ContrastiveModel(
            self.encoder, projection, classifier, normalize_embedding=cfg["normalize_embedding"],
            stop_gradient_before_projection_head=cfg["stop_gradient_before_projection_head"],
            stop_gradient_before_classification_head=cfg["stop_gradient_before_classification_head"],
        )
        self.model.build((None, *self.input_shape))
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=first, name="global_step")
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, aggregation=first)
        self.queue = None
        if cfg["memory_size"]:
            if projection is None:
                raise ValueError("train_and_evaluate.memory_size needs a projection_head")
            dim = self.model(tf.zeros([1, *self.input_shape]))["projection"].shape[-1]
            self.queue = steps.MemoryQueue(cfg["memory_size"], dim)

    def _parts_variables(self, p: stages.PlannedStage):
        """(trainable, decayed) variables of a stage, by the stage's flags."""
        s, m = p.stage, self.model
        groups = {
            "encoder": (m.encoder, s.decay_encoder),
            "projection": (m.projection_head, s.decay_projection_head),
            "classifier": (m.classification_head, s.decay_classification_head),
        }
        trainable, decayed = [], []
        for key, (layer, decay) in groups.items():
            if layer is None or (key != "classifier" and not s.train_encoder):
                continue
            trainable += layer.trainable_variables
            if decay and s.weight_decay:
                excluded = optim.batch_norm_variables(layer)
                decayed += optim.decayed_variables(layer.trainable_variables, s.decay_bias, excluded)
        return trainable, decayed

    def _build_optimizers(self):
        self.optimizers, self.variables = [], []
        for p in self.plan:
            s = p.stage
            schedule = optim.learning_rate_schedule(
                s.base_learning_rate, p.batch_size, p.steps_per_epoch, s.epochs, s.warmup_epochs,
                s.decay, s.decay_rate, s.boundary_epochs, s.epochs_per_decay,
            )
            opt = s.optimizer(learning_rate=schedule)
            trainable, decayed = self._parts_variables(p)
            if isinstance(opt, optim.LARS):  # LARS decays internally, with the same exclusions
                opt.weight_decay = s.weight_decay
                keep = {id(v) for v in decayed}
                opt.exclude_from_weight_decay = lambda v, keep=keep: id(v) not in keep
                decayed = []
            opt.build(trainable)
            self.optimizers.append(opt)
            self.variables.append((trainable, decayed))

    # ----------------------------------------------------------------------------------------------------
    # Training

    def _step_parts(self, p: stages.PlannedStage) -> steps.StepParts:
        s = p.stage
        trainable, decayed = self.variables[p.index]
        frozen = []
        if s.encoder_batch_norm == "batch_stats":
            frozen = [v for v in optim.batch_norm_variables(self.model) if not v.trainable]
        return steps.StepParts(
            model=self.model, optimizer=self.optimizers[p.index], trainable=trainable, decayed=decayed,
            weight_decay=s.weight_decay, contrastive_loss=self.cfg["contrastive_loss"],
            contrastive_weight=s.contrastive_weight, cross_entropy_weight=s.cross_entropy_weight,
            label_smoothing=s.label_smoothing, global_batch_size=p.batch_size,
            encoder_batch_norm=s.encoder_batch_norm, frozen_statistics=frozen,
            queue=self.queue if s.contrastive_weight else None,
        )

    def _train_iterator(self, p: stages.PlannedStage):
        cfg, s = self.cfg, p.stage
        if s.contrastive_weight and cfg["contrastive_loss"] is None:
            raise ValueError(f"stage {s.name} has contrastive_weight > 0: bind train_and_evaluate.contrastive_loss")
        start_step = int(self.step.numpy()) - p.start

        def dataset_fn(ctx):
            return data.train_dataset(
                self.source, split=cfg["train_split"], global_batch_size=p.batch_size,
                num_views=s.num_views, augmenter=s.augmenter or augment.identity_augment,
                normalize=self.normalize, seed=cfg["seed"] * 1000 + p.index, start_step=start_step,
                input_context=ctx, label_noise=cfg["label_noise"], max_examples=cfg["max_examples"],
                batched_augmentation=cfg["batched_augmentation"],
            )

        return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

    def _execution(self, parts: steps.StepParts, iterator, local_batch: int):
        """`execute(n) -> {term: [n] per-step values}`: n training steps in one `tf.function` call.

        The steps run in a `tf.while_loop` inside the function (as Keras' `steps_per_execution`), so Python,
        the function call and the host syncs are paid once per call instead of once per step. Each step's loss
        terms (summed over replicas) come back one value per step, so logging and the NaN check stay per step.
        """
        strategy = self.strategy

        def replica_step(batch):
            # Under MultiWorkerMirroredStrategy a batch taken from the iterator inside the loop has an unknown
            # batch dimension; the loss needs it static. Every replica gets local_batch examples.
            batch = {k: tf.ensure_shape(v, [local_batch, *v.shape[1:]]) for k, v in batch.items()}
            return steps.train_step(parts, batch)

        if self.cfg["jit_compile"]:  # XLA compiles the step; the loop and the input iterator stay outside it
            replica_step = tf.function(replica_step, jit_compile=True)
        keys = steps.term_names(parts)

        def one_step():
            terms = strategy.run(replica_step, args=(next(iterator),))
            return [tf.cast(strategy.reduce(tf.distribute.ReduceOp.SUM, terms[k], axis=None), tf.float32)
                    for k in keys]

        @tf.function
        def execute(n):
            arrays = [tf.TensorArray(tf.float32, size=n) for _ in keys]
            for i in tf.range(n):
                arrays = [a.write(i, v) for a, v in zip(arrays, one_step(), strict=True)]
            return {k: a.stack() for k, a in zip(keys, arrays, strict=True)}

        return execute

    def _chunk(self, step: int, end: int) -> int:
        """Steps of the next execution: up to steps_per_execution, never past a log, checkpoint or stage end."""
        every, save_every = self.cfg["log_every_steps"], self.cfg["checkpoint_every_steps"]
        n = min(self.cfg["steps_per_execution"], end - step)
        n = min(n, every - step % every, save_every - step % save_every)
        nan_step = self.cfg["inject_nan_at_step"]
        if step < nan_step <= step + n:  # the test hook's step ends an execution, as a real NaN's would
            n = nan_step - step
        return max(1, n)

    def train_stage(self, p: stages.PlannedStage, log: Callable):
        execute = self._execution(self._step_parts(p), self._train_iterator(p), p.batch_size // self.replicas)
        every, save_every = self.cfg["log_every_steps"], self.cfg["checkpoint_every_steps"]
        window = {"loss": [], "time": time.time(), "steps": 0}
        step = int(self.step.numpy())
        while step < p.end:
            tic = time.time()
            n = self._chunk(step, p.end)
            values = {k: v.numpy() for k, v in execute(tf.constant(n, tf.int32)).items()}  # {term: [n]}
            for i in range(n):
                loss = float(values["loss"][i])
                if step + i + 1 == self.cfg["inject_nan_at_step"]:
                    loss = float("nan")
                if not math.isfinite(loss):
                    self.step.assign(step + i + 1)
                    raise NonFiniteLossError(
                        f"non-finite loss {loss} at step {step + i + 1} (stage {p.stage.name})", step + i + 1)
                window["loss"].append({k: float(v[i]) for k, v in values.items()})
            step = int(self.step.assign_add(n).numpy())
            self.train_seconds.assign_add(time.time() - tic)
            window["steps"] += n
            if step % every == 0 or step == p.end:
                log(p, step, window)
                window = {"loss": [], "time": time.time(), "steps": 0}
            if step % save_every == 0 or step == p.end:
                self.manager.save(checkpoint_number=step)

    def restore(self) -> int:
        """Restores the latest checkpoint, if any; returns the step reached."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
        elif self.init_checkpoint:
            count = warm_start.restore(self.model, self.init_checkpoint, self.cfg["init_parts"])
            print(f"warm start: {count} variables of {', '.join(self.cfg['init_parts'])} from {self.init_checkpoint}",
                  flush=True)
        return int(self.step.numpy())

    # ----------------------------------------------------------------------------------------------------
    # Evaluation

    def _eval_dataset(self, split: str, limit: int | None = None):
        ds = data.eval_dataset(
            self.source, split=split, batch_size=self.cfg["eval_batch_size"],
            preprocess=self.cfg["eval_preprocess"], normalize=self.normalize,
        )
        if limit:
            ds = ds.unbatch().take(limit).batch(self.cfg["eval_batch_size"])
        return ds

    def _predictor(self, *outputs) -> evaluate.Predictor:
        """One traced inference step per set of outputs, reused by every evaluation of this run."""
        outputs = outputs or evaluate.Predictor.OUTPUTS
        if outputs not in self._predictors:
            self._predictors[outputs] = evaluate.Predictor(self.strategy, self.model, outputs)
        return self._predictors[outputs]

    def evaluate(self, corruptions: bool = True) -> tuple[dict, dict]:
        """Metrics of the current weights on the whole eval split (+ k-NN, + the corrupted sets asked for unless
        `corruptions` is False); returns (metrics, test preds). calibration.json's content goes to
        `self.calibration`."""
        cfg = self.cfg
        test = self._predictor()(self._eval_dataset(cfg["eval_split"], cfg["eval_max_examples"]))
        metrics = evaluate.classifier_metrics(test)
        self.calibration = {"clean": robust_eval.clean_calibration(test["logits"], test["label"])}
        if self.cfg["knn_k"]:
            train = self._predictor()(
                self._eval_dataset(cfg["train_split"], cfg["knn_train_examples"] or self.train_examples)
            )
            metrics["knn/top1"] = evaluate.knn_accuracy(
                train["embedding"], train["label"], test["embedding"], test["label"],
                k=self.cfg["knn_k"], num_classes=self.source.num_classes,
            )
        if corruptions and cfg["corruptions"] is not None:
            scores, diagrams = robust_eval.evaluate_corruptions(
                self._predictor("logits", "label"), self.source, cfg, self.normalize, self.input_shape,
                log=lambda line: print(line, flush=True),
            )
            metrics.update(scores)
            self.calibration.update(diagrams)
        metrics["step"] = int(self.step.numpy())
        return metrics, test


# --------------------------------------------------------------------------------------------------------
# Run-directory outputs


class Logger:
    """Per-interval progress: a log line, a metrics.jsonl record and TensorBoard scalars."""

    def __init__(self, run: Run):
        self.run = run
        self.writer = tf.summary.create_file_writer(os.path.join(run.dir, wd.TB_DIR))
        self.started = self.first_step = None  # set at the first window: after a resume has restored the step

    def __call__(self, p: stages.PlannedStage, step: int, window: dict):
        seconds = max(time.time() - window["time"], 1e-9)
        images = window["steps"] * p.batch_size
        means = {k: float(np.mean([w[k] for w in window["loss"]])) for k in window["loss"][0]}
        lr = float(self.run.optimizers[p.index].learning_rate.numpy())
        record = {
            "kind": "train", "stage": p.stage.name, "step": step, "learning_rate": lr,
            "images_per_second": images / seconds, "time": time.time(), **means,
        }
        wd.append_jsonl(os.path.join(self.run.dir, wd.METRICS), record)
        with self.writer.as_default(step=step):
            for key, value in record.items():
                if isinstance(value, float) and key != "time":
                    tf.summary.scalar(f"train/{key}", value)
        if self.first_step is None:
            self.first_step, self.started = step - window["steps"], window["time"]
        done = step - self.first_step
        rate = done / max(time.time() - self.started, 1e-9)
        eta = (self.run.total_steps - step) / rate if rate > 0 else float("inf")
        print(
            f"step {step}/{self.run.total_steps} [{p.stage.name}] loss {means['loss']:.4f} "
            f"lr {lr:.4g} {record['images_per_second']:.0f} img/s ETA {_duration(eta)}",
            flush=True,
        )

    def close(self):
        """Flushes and closes the TensorBoard writer (a served process does not exit after the point)."""
        self.writer.close()

    def eval(self, metrics: dict):
        wd.append_jsonl(os.path.join(self.run.dir, wd.METRICS), {"kind": "eval", **metrics})
        with self.writer.as_default(step=metrics["step"]):
            for key, value in metrics.items():
                if "/" in key:
                    tf.summary.scalar(key, value)
        shown = ", ".join(
            f"{k} {v:.4f}" for k, v in metrics.items()
            if "/" in k and isinstance(v, float) and k.count("/") == 1 or k == corruption_spec.MEAN_TOP1
        )  # fmt: skip
        print(f"eval at step {metrics['step']}: {shown}", flush=True)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def _finish(run: Run, metrics: dict, test: dict, logger: Logger, previous: dict | None = None):
    """Writes embeddings, the export, calibration.json and status, then result.json last (its presence means done).

    `previous`: the result.json of a finished run scored again (mode 'eval'); its fields are kept (the training's
    totals among them) and the new metrics added or updated; an existing export is kept.
    """
    cfg = run.cfg
    logger.eval(metrics)
    if cfg["save_embeddings"]:
        n = min(len(test["label"]), cfg["save_embeddings"])
        tmp = os.path.join(run.dir, f".{wd.EMBEDDINGS}.tmp.npz")
        np.savez_compressed(tmp, embeddings=test["embedding"][:n].astype(np.float32), labels=test["label"][:n])
        os.replace(tmp, os.path.join(run.dir, wd.EMBEDDINGS))
    if cfg["export_model"] and not (previous is not None and os.path.isdir(os.path.join(run.dir, wd.EXPORT_DIR))):
        evaluate.export(
            run.model, cfg["eval_preprocess"], run.normalize, run.source.image_shape,
            os.path.join(run.dir, wd.EXPORT_DIR),
        )
    seconds = float(run.train_seconds.numpy())
    images = sum((p.end - p.start) * p.batch_size for p in run.plan)
    result = {
        **{k: v for k, v in metrics.items() if k != "step"},
        "step": metrics["step"], "train_seconds": seconds,
        "images_per_second": images / seconds if seconds else 0.0,
        "train_examples": run.train_examples, "replicas": run.replicas,
    }
    if previous is not None:
        result = {**previous, **metrics}
    wd.write_json_atomic(os.path.join(run.dir, wd.CALIBRATION), run.calibration)
    logger.close()  # TensorBoard's events are on disk before result.json says the run is done
    wd.write_status(run.dir, wd.DONE, metrics["step"])
    wd.write_json_atomic(os.path.join(run.dir, wd.RESULT), result)
    return result


def _continuous_eval(run: Run, logger: Logger, poll_seconds: float, timeout_seconds: float):
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
        cpu_flags = set()
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        cpu_flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    return bool(cpu_flags & {"avx512_bf16", "amx_bf16"})


def resolve_mixed_precision(value, topology: str) -> bool:
    """train_and_evaluate.mixed_precision: True / False as given; 'auto' by the hardware."""
    if isinstance(value, bool):
        return value
    if value != "auto":
        raise ValueError(f"train_and_evaluate.mixed_precision must be True, False or 'auto'; got {value!r}")
    return topology == "tpu" or bfloat16_is_fast()


def _check_config(cfg: dict) -> dict:
    """Checks a configuration without building anything (the runner validates every point this way); returns it."""
    resolve_mixed_precision(cfg["mixed_precision"], cfg["topology"])
    planned = stages.plan(list(cfg["stages"]), 1, cfg["batch_size"])
    for p in planned:
        if not isinstance(p.stage, stages.Stage):
            raise ValueError("train_and_evaluate.stages must be a list of @<scope>/stage() references")
        if p.stage.contrastive_weight and cfg["contrastive_loss"] is None:
            raise ValueError(
                f"stage {p.stage.name} has contrastive_weight > 0 but train_and_evaluate.contrastive_loss "
                "is not bound (e.g. @contrastive())"
            )
        if p.stage.contrastive_weight and not cfg["projection_head"]:
            raise ValueError(f"stage {p.stage.name} is contrastive but train_and_evaluate.projection_head is None")
    replicas = 1
    if cfg["topology"] == "mirrored":
        replicas = cfg["num_devices"] or max(1, len(tf.config.list_physical_devices("GPU")))
    elif cfg["topology"] not in distribute.TOPOLOGIES:
        raise ValueError(f"train_and_evaluate.topology must be one of {', '.join(distribute.TOPOLOGIES)}")
    for p in planned:
        distribute.check_global_batch(p.batch_size, replicas, f"{p.stage.name} batch_size")
    if cfg["memory_size"] < 0:
        raise ValueError(f"train_and_evaluate.memory_size must be >= 0; got {cfg['memory_size']}")
    spe = cfg["steps_per_execution"]
    if not isinstance(spe, int) or isinstance(spe, bool) or spe < 1:
        raise ValueError(f"train_and_evaluate.steps_per_execution must be an int >= 1; got {spe!r}")
    for name in ("jit_compile", "batched_augmentation"):
        if not isinstance(cfg[name], bool):
            raise ValueError(f"train_and_evaluate.{name} must be True or False; got {cfg[name]!r}")
    warm_start.check(cfg["init_checkpoint"], cfg["init_parts"], bool(cfg["projection_head"]))
    robust_eval.check_settings(cfg)
    return cfg


def validate_config() -> dict:
    """Evaluates the parsed gin bindings of the root and checks them (no model, no data); returns them."""
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
) -> dict | None:
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
        `bfloat16_is_fast`).
      deterministic: enable TF op determinism (a resumed run reproduces an uninterrupted one).
      steps_per_execution: training steps per `tf.function` call (a `tf.while_loop` inside it), as Keras'
        option of that name; an execution never crosses a logging, checkpoint or stage boundary, so those
        cadences, resume and the per-step loss log do not depend on it.
      jit_compile: compile the training step with XLA (off: on CPU, oneDNN's convolutions are faster than
        XLA's at every size measured, benchmarks/small_scale.py).
      batched_augmentation: augment a whole batch per op where the augmenter has a batched form
        (crop_flip, simclr_augment, identity_augment; supcon.augment.batched), else one image at a time.
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
      runner's check), the checked settings.
    """
    if mode == "validate":
        return _check_config(locals())
    if mode not in MODES:
        raise ValueError(f"train_and_evaluate.mode must be one of {', '.join(MODES)}; got {mode!r}")
    robust_eval.check_settings(locals())  # before training, not at the evaluation after it
    os.makedirs(workdir, exist_ok=True)
    tf.keras.utils.set_random_seed(seed)
    # Process-wide TF settings are set both ways: a served trainer process runs many points (supcon.experiment.worker).
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    mixed_precision = resolve_mixed_precision(mixed_precision, topology)
    classification_head, normalize, eval_preprocess = (
        configured(f) for f in (classification_head, normalize, eval_preprocess))
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed_precision else "float32")
    cfg = {k: v for k, v in locals().items() if k not in ("workdir",)}
    run = Run(workdir, cfg)
    workdir = run.dir
    # Mode 'eval' (e.g. scoring a finished run on corrupted sets) keeps the training's records.
    runinfo.write_env(run, wd.EVAL_ENV if mode == "eval" else wd.ENV)
    operative = wd.EVAL_OPERATIVE_CONFIG if mode == "eval" else wd.OPERATIVE_CONFIG
    wd.write_text_atomic(os.path.join(workdir, operative), gin.operative_config_str())
    logger = Logger(run)
    try:
        return _run_mode(run, logger, mode, eval_poll_seconds, eval_timeout_seconds)
    finally:
        logger.close()


def _run_mode(run: Run, logger: Logger, mode: str, eval_poll_seconds: float, eval_timeout_seconds: float):
    """The body of train_and_evaluate once the run is built: train and/or evaluate as `mode` says."""
    workdir = run.dir
    if mode == "continuous_eval":
        metrics, test = _continuous_eval(run, logger, eval_poll_seconds, eval_timeout_seconds)
        return _finish(run, metrics, test, logger)
    step = run.restore()
    if mode == "eval":
        previous = wd.read_json(os.path.join(workdir, wd.RESULT))
        if previous is not None and not run.manager.latest_checkpoint:
            raise FileNotFoundError(
                f"mode 'eval' on the finished run {workdir} needs its final checkpoint, but {wd.CKPT_DIR}/ holds none"
            )
        metrics, test = run.evaluate()
        if step >= run.total_steps:
            return _finish(run, metrics, test, logger, previous if isinstance(previous, dict) else None)
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
    return _finish(run, metrics, test, logger)
