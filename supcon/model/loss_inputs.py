"""The checked inputs of the contrastive loss, shared by its direct and blockwise paths.

`supcon.model.losses.contrastive_loss` (the [anchors x contrast] matrices at once) and
`supcon.model.losses_blockwise` (anchor blocks) validate their arguments, gather the global contrast set across
replicas and build same-class masks the same way; both import this module, and neither imports the other's
internals at import time. See `supcon.model.losses` for the notation and the equations.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

CONTRAST_MODES = ("all_views", "one_view")
SUMMATION_LOCATIONS = ("outside", "inside")
DENOMINATOR_MODES = ("all", "one_positive", "only_negatives")


def option(value, name: str, allowed: tuple[str, ...]) -> str:
    """Normalises an option given as a string or an enum member (by name) and validates it."""
    text = getattr(value, "name", value)
    if isinstance(text, str) and text.lower() in allowed:
        return text.lower()
    raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def replica_context():
    """Returns (num_replicas, replica_id, context or None) of the current replica context."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return 1, 0, None
    return ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group, ctx


def cross_replica_concat(tensor: tf.Tensor) -> tf.Tensor:
    """Concatenates `tensor` along axis 0 over all replicas, in replica order; identity on one replica.

    Gradients flow back through the gather: each replica receives the sum over replicas of the upstream
    gradient of its slice.
    """
    replicas, replica_id, ctx = replica_context()
    if ctx is None:
        return tensor
    # Scatter into this replica's slot of a zero [replicas, ...] tensor and all-reduce (sum): the official
    # TPU construction. Unlike ReplicaContext.all_gather it works under every strategy (all_gather fails
    # under MultiWorkerMirroredStrategy in TF 2.21), and the all-reduce passes gradients back.
    dtype = tensor.dtype
    values = tf.cast(tensor, tf.float32) if not dtype.is_floating else tensor
    slots = tf.scatter_nd(
        [[tf.cast(replica_id, tf.int32)]], values[None], tf.concat([[replicas], tf.shape(values)], 0)
    )  # [R, B, ...]
    gathered = ctx.all_reduce(tf.distribute.ReduceOp.SUM, slots)
    gathered = tf.reshape(gathered, tf.concat([[-1], tf.shape(values)[1:]], 0))  # [R*B, ...]
    return tf.cast(gathered, dtype) if not dtype.is_floating else gathered


def _validate(features, labels, positives_cap, contrast_features, contrast_labels):
    """Checks ranks and shapes up front; returns (local_batch, num_views)."""
    if features.shape.rank is None or features.shape.rank < 3:
        raise ValueError(
            f"features must have rank >= 3 with shape [batch, views, ...]; got shape {features.shape}"
        )
    batch, views = features.shape[0], features.shape[1]
    if batch is None or views is None:
        raise ValueError(f"features must have static batch and views dimensions; got {features.shape}")
    if labels is not None and (labels.shape.rank not in (1, 2) or labels.shape[0] != batch):
        raise ValueError(
            f"labels must be int class ids [batch={batch}] or one-/multi-hot [batch={batch}, classes]; "
            f"got shape {labels.shape}"
        )
    if positives_cap > -1 and positives_cap % views != 0:
        raise ValueError(
            f"positives_cap (= {positives_cap}) must be -1 (no cap) or a multiple of the number of "
            f"views (= {views})"
        )
    if contrast_features is None:
        if contrast_labels is not None:
            raise ValueError("contrast_labels given without contrast_features")
        return batch, views
    if contrast_features.shape.rank != 2:
        raise ValueError(f"contrast_features must be [K, D]; got shape {contrast_features.shape}")
    if labels is not None and contrast_labels is None:
        raise ValueError("contrast_labels [K] are required with labels and contrast_features")
    if contrast_labels is not None:
        if labels is None:
            raise ValueError("contrast_labels given without labels")
        if contrast_labels.shape.rank != labels.shape.rank:
            raise ValueError(
                f"contrast_labels must have the same format as labels (rank {labels.shape.rank}); "
                f"got shape {contrast_labels.shape}"
            )
    return batch, views


def same_class(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """0/1 float mask [len(a), len(b)]: int ids compare equal, or one-/multi-hot rows share a class."""
    if a.shape.rank == 1:
        return tf.cast(tf.equal(a[:, None], b[None, :]), tf.float32)
    shared = tf.matmul(tf.cast(a, tf.float32), tf.cast(b, tf.float32), transpose_b=True)
    return tf.minimum(shared, 1.0)


def cap_positives(mask: tf.Tensor, diagonal: tf.Tensor, keep: int) -> tf.Tensor:
    """Keeps, per anchor row, the first `keep` same-class columns (in order) besides the anchor itself.

    `tf.math.top_k` on the 0/1 mask returns the lowest column indices among ties, i.e. the first same-class
    samples in batch order. Extra picks on rows with fewer positives are removed by the final product.
    """
    without_self = tf.minimum(mask, 1.0 - diagonal)  # [B, M]
    if isinstance(keep, int) and keep == 0:
        return mask * diagonal
    _, cols = tf.math.top_k(without_self, k=keep)  # [B, keep]
    rows = tf.tile(tf.range(tf.shape(mask)[0])[:, None], [1, keep])
    picked = tf.scatter_nd(
        tf.reshape(tf.stack([rows, cols], axis=-1), [-1, 2]),
        tf.ones([tf.shape(mask)[0] * keep], tf.float32),
        tf.shape(mask),
    )
    return mask * tf.maximum(tf.minimum(picked, 1.0), diagonal)


@dataclasses.dataclass(frozen=True)
class LossInputs:
    """The checked inputs of the contrastive loss, as its direct and blockwise paths both use them."""

    features: tf.Tensor  # [B, V, D] float32, local batch
    labels: tf.Tensor | None  # [B] ids or [B, C] one-/multi-hot; None for SimCLR
    global_labels: tf.Tensor | None  # [G] or [G, C], gathered over replicas
    contrast_labels: tf.Tensor | None  # [K] or [K, C]
    contrast: tf.Tensor  # [V*G + K, D]: the global batch view-major, then the extra rows (no gradient)
    has_extra: bool  # contrast_features were given
    num_extra: int | tf.Tensor  # K, static when known (a filling memory queue has a dynamic K)
    batch: int  # B
    views: int  # V
    global_batch: int  # G
    offset: tf.Tensor  # replica_id * B: the global index of the first local sample
    contrast_mode: str
    summation_location: str
    denominator_mode: str
    positives_cap: int

    def anchors(self) -> tuple[tf.Tensor, int]:
        """The anchor rows [A, D] (view-major) and the number of anchor views."""
        if self.contrast_mode == "one_view":
            return self.features[:, 0], 1  # [B, D]
        return tf.reshape(tf.transpose(self.features, [1, 0, 2]), [self.views * self.batch, -1]), self.views


def prepare_inputs(
    features, labels, contrast_mode, summation_location, denominator_mode, positives_cap, contrast_features,
    contrast_labels,
) -> LossInputs:
    """Validates the arguments of `contrastive_loss` and builds the global contrast set (see LossInputs)."""
    contrast_mode = option(contrast_mode, "contrast_mode", CONTRAST_MODES)
    summation_location = option(summation_location, "summation_location", SUMMATION_LOCATIONS)
    denominator_mode = option(denominator_mode, "denominator_mode", DENOMINATOR_MODES)
    features = tf.convert_to_tensor(features)
    labels = None if labels is None else tf.convert_to_tensor(labels)
    contrast_features = None if contrast_features is None else tf.convert_to_tensor(contrast_features)
    contrast_labels = None if contrast_labels is None else tf.convert_to_tensor(contrast_labels)
    batch, views = _validate(features, labels, positives_cap, contrast_features, contrast_labels)
    features = tf.cast(tf.reshape(features, [batch, views, -1]), tf.float32)  # [B, V, D]

    replicas, replica_id, _ = replica_context()
    global_batch = batch * replicas  # G
    global_features = cross_replica_concat(features)  # [G, V, D]
    contrast = tf.reshape(tf.transpose(global_features, [1, 0, 2]), [views * global_batch, -1])  # [V*G, D]
    num_extra = 0
    if contrast_features is not None:
        extra = tf.stop_gradient(tf.cast(contrast_features, tf.float32))  # [K, D]
        contrast = tf.concat([contrast, extra], axis=0)  # [V*G + K, D]
        num_extra = extra.shape[0] if extra.shape[0] is not None else tf.shape(extra)[0]
    return LossInputs(
        features=features, labels=labels,
        global_labels=None if labels is None else cross_replica_concat(labels),
        contrast_labels=contrast_labels, contrast=contrast, has_extra=contrast_features is not None,
        num_extra=num_extra, batch=batch, views=views, global_batch=global_batch,
        offset=tf.cast(replica_id, tf.int32) * batch, contrast_mode=contrast_mode,
        summation_location=summation_location, denominator_mode=denominator_mode, positives_cap=positives_cap,
    )  # fmt: skip


MASKED = -1e30  # stands for log(0) in masked log-sum-exps; finite so that gradients stay finite
