"""One training step of a stage: losses, weight decay, batch-norm handling and the memory queue.

A stage's step is built once per stage as a `tf.function` and run with `strategy.run`. Every replica divides
its summed per-sample losses by the *global* batch, so the all-reduced (summed) gradient is the gradient of
the global-batch mean, whatever the number of replicas.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from supcon.model import losses, optim


class MemoryQueue(tf.Module):
    """A label-aware FIFO of the last `size` projections (view 0 of every global-batch sample).

    The entries join the contrast of the loss (never as anchors) and receive no gradient. Every replica
    writes the same gathered global batch, and the variables aggregate ONLY_FIRST_REPLICA, so all replicas
    hold the same queue; it is part of the checkpoint.
    """

    def __init__(self, size: int, dim: int):
        super().__init__(name="memory_queue")
        if size < 1:
            raise ValueError(f"memory_size must be >= 1; got {size}")
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.size = size
        self.features = tf.Variable(tf.zeros([size, dim]), trainable=False, aggregation=first)  # [K, D]
        self.labels = tf.Variable(tf.fill([size], -1), trainable=False, aggregation=first)  # [K]
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False, aggregation=first)  # entries ever written

    def contents(self):
        """Returns the filled part: features [k, D] and labels [k], k = min(count, size)."""
        filled = tf.cast(tf.minimum(self.count, self.size), tf.int32)
        return self.features[:filled], self.labels[:filled]

    def push(self, features: tf.Tensor, labels: tf.Tensor) -> None:
        """Enqueues [N, D] features and [N] labels (the oldest entries are overwritten)."""
        features = tf.stop_gradient(tf.cast(features[-self.size :], tf.float32))
        labels = tf.cast(labels[-self.size :], tf.int32)
        n = tf.shape(labels)[0]
        slots = tf.cast((self.count + tf.range(n, dtype=tf.int64)) % self.size, tf.int32)[:, None]
        self.features.scatter_nd_update(slots, features)
        self.labels.scatter_nd_update(slots, labels)
        self.count.assign_add(tf.cast(n, tf.int64))


@dataclasses.dataclass
class StepParts:
    """Everything a stage's step needs (built in the strategy scope by the trainer)."""

    model: tf.keras.Model
    optimizer: tf.keras.optimizers.Optimizer
    trainable: list  # variables updated by this stage
    decayed: list  # variables with explicit L2 (empty when the optimizer decays internally, e.g. LARS)
    weight_decay: float
    contrastive_loss: object  # fn(features, labels, contrast_features, contrast_labels) or None
    contrastive_weight: float
    cross_entropy_weight: float
    label_smoothing: float
    global_batch_size: int
    encoder_batch_norm: str  # 'update' | 'batch_stats' | 'frozen'
    frozen_statistics: list  # BN moving statistics restored after the forward pass ('batch_stats')
    queue: MemoryQueue | None = None


def _forward(parts: StepParts, images: tf.Tensor):
    """Runs the model on all views: images [B, V, H, W, C] -> dict of [B, V, ...] outputs."""
    batch, views = tf.shape(images)[0], images.shape[1]
    flat = tf.reshape(images, tf.concat([[batch * views], tf.shape(images)[2:]], axis=0))
    training = parts.encoder_batch_norm != "frozen"
    outputs = parts.model(flat, training=training)
    return {
        k: tf.reshape(v, tf.concat([[batch, views], tf.shape(v)[1:]], axis=0))
        for k, v in outputs.items()
        if v is not None
    }


def _losses(parts: StepParts, outputs: dict, labels: tf.Tensor) -> dict:
    """Per-replica loss terms, each already divided by the global batch."""
    scale = 1.0 / parts.global_batch_size
    terms = {}
    if parts.contrastive_weight:
        projection = outputs["projection"]  # [b, V, D]
        extra, extra_labels = (None, None)
        if parts.queue is not None:
            extra, extra_labels = parts.queue.contents()
        per_sample = parts.contrastive_loss(projection, labels, extra, extra_labels)  # [b]
        terms["contrastive"] = tf.reduce_sum(per_sample) * scale
    if parts.cross_entropy_weight:
        logits = outputs["logits"][:, 0]  # [b, classes]: the first view's logits
        per_sample = losses.cross_entropy_loss(logits, labels, parts.label_smoothing)
        terms["cross_entropy"] = tf.reduce_sum(per_sample) * scale
    if parts.weight_decay and parts.decayed:
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        # The L2 term is a global quantity: each replica adds 1/replicas of it.
        terms["weight_decay"] = optim.weight_decay_loss(parts.decayed, parts.weight_decay) / replicas
    return terms


def term_names(parts: StepParts) -> list[str]:
    """The keys of `train_step`'s result for these parts, sorted: the loss terms a stage has, and 'loss'."""
    names = ["loss"]
    names += ["contrastive"] if parts.contrastive_weight else []
    names += ["cross_entropy"] if parts.cross_entropy_weight else []
    names += ["weight_decay"] if parts.weight_decay and parts.decayed else []
    return sorted(names)


def train_step(parts: StepParts, batch: dict) -> dict:
    """One optimisation step on one replica; returns the loss terms (to be summed over replicas)."""
    images, labels = batch["image"], batch["label"]
    saved = [tf.identity(v) for v in parts.frozen_statistics]
    with tf.GradientTape() as tape:
        outputs = _forward(parts, images)
        terms = _losses(parts, outputs, labels)
        total = (
            parts.contrastive_weight * terms.get("contrastive", 0.0)
            + parts.cross_entropy_weight * terms.get("cross_entropy", 0.0)
            + terms.get("weight_decay", 0.0)
        )
    grads = tape.gradient(total, parts.trainable)
    pairs = [(g, v) for g, v in zip(grads, parts.trainable, strict=True) if g is not None]
    parts.optimizer.apply_gradients(pairs)
    for variable, value in zip(parts.frozen_statistics, saved, strict=True):
        variable.assign(value)
    if parts.queue is not None and "projection" in outputs:
        gathered = losses.cross_replica_concat(outputs["projection"][:, 0])  # [G, D]
        parts.queue.push(gathered, losses.cross_replica_concat(labels))
    terms["loss"] = total
    return terms
