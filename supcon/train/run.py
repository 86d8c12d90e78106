"""The `Run` of one configured run: what `train_and_evaluate` (supcon.train.root) builds, trains and evaluates.

Builds the strategy first, then data, model, optimizers and queue inside `strategy.scope()`; trains a planned
stage with `strategy.run` steps (several per `tf.function` call), checkpointing through a CheckpointManager
and keeping the state at the end of each stage but the last (`stage_ckpt/<stage>-<step>`, see supcon.workdir);
restores the latest checkpoint (or a warm start); evaluates the current weights on the eval split (top-1/5, loss,
ECE), with a k-NN probe and, when asked, on the corrupted test sets (`supcon.robust.evaluation`). Every setting
comes from the run's `supcon.train.config.RunConfig`; the run directory's records are written by
`supcon.train.record`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable

import tensorflow as tf

from supcon import augment, data
from supcon import workdir as wd
from supcon.model import heads, optim, resnet
from supcon.robust import evaluation as robust_eval
from supcon.train import distribute, evaluate, stages, steps, warm_start
from supcon.train.config import RunConfig

del resnet  # imported to register @resnet with gin


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite at `step`."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def _load_source(config: RunConfig):
    """(data source, config): the dataset, or the fallback dataset (smoke runs) when it is not available here, and
    the config with the dataset used (the fallback's splits are 'train' and 'test', not the recipe's)."""
    try:
        return data.load_source(config.dataset, config.data_dir), config
    except (FileNotFoundError, ValueError) as e:
        if not config.fallback_dataset:
            raise
        print(f"dataset {config.dataset!r} unavailable ({e}); using {config.fallback_dataset!r}", flush=True)
        config = dataclasses.replace(config, dataset=config.fallback_dataset, train_split="train", eval_split="test")
        return data.load_source(config.fallback_dataset, None), config


def _by_path(variables) -> dict:
    """{variable path: variable}; the paths must be unique."""
    found = {v.path: v for v in variables}
    if len(found) != len(variables):
        raise ValueError("variable paths are not unique; cannot checkpoint them by path")
    return found


class Run:
    """The state of one run: strategy, data source, model, optimizers, checkpoint and the run directory."""

    def __init__(self, workdir: str, config: RunConfig, mixed_precision: bool):
        """`mixed_precision`: config.mixed_precision resolved (the global Keras policy is already set by it)."""
        self.mixed_precision = mixed_precision
        self.strategy = distribute.make_strategy(config.topology, config.num_devices, config.tpu_name)
        self.replicas = self.strategy.num_replicas_in_sync
        # Multi-host: every worker takes part in checkpointing and export, but only the chief writes the run
        # directory; the others write under workdir/worker-<i>/ (so a shared workdir sees one writer).
        task = distribute.task_index(self.strategy)
        self.dir = workdir if task == 0 else os.path.join(workdir, f"worker-{task}")
        os.makedirs(self.dir, exist_ok=True)
        # A warm start (supcon.train.warm_start) only for a run without a checkpoint of its own; a missing source fails
        # here, before the data and the model are built.
        own = tf.train.latest_checkpoint(os.path.join(self.dir, wd.CKPT_DIR))
        self.init_checkpoint = warm_start.resolve(config.init_checkpoint) if config.init_checkpoint and not own else None
        self.source, config = _load_source(config)
        self.config = config  # the dataset it names is the one used
        examples = self.source.num_examples(config.train_split)
        self.train_examples = min(examples, config.max_examples or examples)
        self.plan = stages.plan(config.stages, self.train_examples, config.batch_size)
        for p in self.plan:
            distribute.check_global_batch(p.batch_size, self.replicas, f"{p.stage.name} batch_size")
        self.total_steps = self.plan[-1].end
        self.normalize = config.normalize
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
            self.checkpoint, os.path.join(self.dir, wd.CKPT_DIR), max_to_keep=config.keep_checkpoints
        )

    def _input_shape(self) -> tuple:
        """[H, W, C] of the model input, from the evaluation preprocessing of a blank image."""
        blank = tf.zeros(self.source.image_shape, tf.float32)
        return tuple(self.normalize(self.config.eval_preprocess(blank)).shape)

    def _build_model(self):
        config = self.config
        self.encoder = config.encoder()
        projection = config.projection_head() if config.projection_head else None
        classifier = config.classification_head(num_classes=self.source.num_classes)
        self.model = heads.ContrastiveModel(
            self.encoder, projection, classifier, normalize_embedding=config.normalize_embedding,
            stop_gradient_before_projection_head=config.stop_gradient_before_projection_head,
            stop_gradient_before_classification_head=config.stop_gradient_before_classification_head,
        )
        self.model.build((None, *self.input_shape))
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=first, name="global_step")
        self.train_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, aggregation=first)
        self.queue = None
        if config.memory_size:
            if projection is None:
                raise ValueError("train_and_evaluate.memory_size needs a projection_head")
            dim = self.model(tf.zeros([1, *self.input_shape]))["projection"].shape[-1]
            self.queue = steps.MemoryQueue(config.memory_size, dim)

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
            weight_decay=s.weight_decay, contrastive_loss=self.config.contrastive_loss,
            contrastive_weight=s.contrastive_weight, cross_entropy_weight=s.cross_entropy_weight,
            label_smoothing=s.label_smoothing, global_batch_size=p.batch_size,
            encoder_batch_norm=s.encoder_batch_norm, frozen_statistics=frozen,
            queue=self.queue if s.contrastive_weight else None,
        )

    def _train_iterator(self, p: stages.PlannedStage):
        config, s = self.config, p.stage
        if s.contrastive_weight and config.contrastive_loss is None:
            raise ValueError(f"stage {s.name} has contrastive_weight > 0: bind train_and_evaluate.contrastive_loss")
        start_step = int(self.step.numpy()) - p.start

        def dataset_fn(ctx):
            return data.train_dataset(
                self.source, split=config.train_split, global_batch_size=p.batch_size,
                num_views=s.num_views, augmenter=s.augmenter or augment.identity_augment,
                normalize=self.normalize, seed=config.seed * 1000 + p.index, start_step=start_step,
                input_context=ctx, label_noise=config.label_noise, max_examples=config.max_examples,
                batched_augmentation=config.batched_augmentation,
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

        if self.config.jit_compile:  # XLA compiles the step; the loop and the input iterator stay outside it
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
        every, save_every = self.config.log_every_steps, self.config.checkpoint_every_steps
        n = min(self.config.steps_per_execution, end - step)
        n = min(n, every - step % every, save_every - step % save_every)
        nan_step = self.config.inject_nan_at_step
        if step < nan_step <= step + n:  # the test hook's step ends an execution, as a real NaN's would
            n = nan_step - step
        return max(1, n)

    def train_stage(self, p: stages.PlannedStage, log: Callable):
        execute = self._execution(self._step_parts(p), self._train_iterator(p), p.batch_size // self.replicas)
        every, save_every = self.config.log_every_steps, self.config.checkpoint_every_steps
        window = {"loss": [], "time": time.time(), "steps": 0}
        step = int(self.step.numpy())
        while step < p.end:
            tic = time.time()
            n = self._chunk(step, p.end)
            values = {k: v.numpy() for k, v in execute(tf.constant(n, tf.int32)).items()}  # {term: [n]}
            for i in range(n):
                loss = float(values["loss"][i])
                if step + i + 1 == self.config.inject_nan_at_step:
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
            if step == p.end and p.index < len(self.plan) - 1:  # kept: the next stages may start from it
                prefix = os.path.join(self.dir, wd.STAGE_CKPT_DIR, f"{p.stage.name}-{step}")
                self.checkpoint.write(prefix)
                wd.write_json_atomic(prefix + ".json", {"stage": p.stage.name, "step": step,
                                                        "train_seconds": float(self.train_seconds.numpy())})

    def restore(self) -> int:
        """Restores the latest checkpoint, if any; returns the step reached."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
        elif self.init_checkpoint:
            count = warm_start.restore(self.model, self.init_checkpoint, self.config.init_parts)
            print(f"warm start: {count} variables of {', '.join(self.config.init_parts)} from {self.init_checkpoint}",
                  flush=True)
        return int(self.step.numpy())

    # ----------------------------------------------------------------------------------------------------
    # Evaluation

    def _eval_dataset(self, split: str, limit: int | None = None):
        ds = data.eval_dataset(
            self.source, split=split, batch_size=self.config.eval_batch_size,
            preprocess=self.config.eval_preprocess, normalize=self.normalize,
        )
        if limit:
            ds = ds.unbatch().take(limit).batch(self.config.eval_batch_size)
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
        config = self.config
        test = self._predictor()(self._eval_dataset(config.eval_split, config.eval_max_examples))
        metrics = evaluate.classifier_metrics(test)
        self.calibration = {"clean": robust_eval.clean_calibration(test["logits"], test["label"])}
        if self.config.knn_k:
            train = self._predictor()(
                self._eval_dataset(config.train_split, config.knn_train_examples or self.train_examples)
            )
            metrics["knn/top1"] = evaluate.knn_accuracy(
                train["embedding"], train["label"], test["embedding"], test["label"],
                k=self.config.knn_k, num_classes=self.source.num_classes,
            )
        if corruptions and config.corruptions is not None:
            scores, diagrams = robust_eval.evaluate_corruptions(
                self._predictor("logits", "label"), self.source, config.corruption_request(), config.eval_split,
                config.eval_max_examples, config.eval_batch_size, config.eval_preprocess, self.normalize,
                self.input_shape, log=lambda line: print(line, flush=True),
            )
            metrics.update(scores)
            self.calibration.update(diagrams)
        metrics["step"] = int(self.step.numpy())
        return metrics, test
