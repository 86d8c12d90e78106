r"""Contrastive (SupCon / SimCLR) and cross-entropy losses.

Notation (Khosla et al., 2020): z are the projections, I the multi-viewed batch, A(i) = I \ {i}, P(i) the
positives of anchor i (other views of the same sample and, with labels, every view of every same-class sample).

* Eq. 2, summation ``outside`` the log (L_out, the paper's recommended loss)::

      L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i.z_p/t) / sum_{a in A(i)} exp(z_i.z_a/t) )

* Eq. 3, summation ``inside`` the log (L_in)::

      L_i = -log( 1/|P(i)| * sum_{p in P(i)} exp(z_i.z_p/t) / sum_{a in A(i)} exp(z_i.z_a/t) )

* SimCLR (Eq. 1) is the case without labels: P(i) = the other views of sample i.

The semantics follow the official implementation option for option (shared/reference/seed.md §1.4). Inside
`strategy.run` the local batch supplies the anchors and the global batch (gathered from all replicas, with
gradients flowing through the gather) supplies positives and negatives, so that the per-replica losses of all
replicas together equal the single-device loss of the concatenated batch.
"""

from __future__ import annotations

import dataclasses

import gin
import tensorflow as tf

CONTRAST_MODES = ("all_views", "one_view")
SUMMATION_LOCATIONS = ("outside", "inside")
DENOMINATOR_MODES = ("all", "one_positive", "only_negatives")


def _option(value, name: str, allowed: tuple[str, ...]) -> str:
    """Normalises an option given as a string or an enum member (by name) and validates it."""
    text = getattr(value, "name", value)
    if isinstance(text, str) and text.lower() in allowed:
        return text.lower()
    raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _replica_context():
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
    replicas, replica_id, ctx = _replica_context()
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


def _same_class(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """0/1 float mask [len(a), len(b)]: int ids compare equal, or one-/multi-hot rows share a class."""
    if a.shape.rank == 1:
        return tf.cast(tf.equal(a[:, None], b[None, :]), tf.float32)
    shared = tf.matmul(tf.cast(a, tf.float32), tf.cast(b, tf.float32), transpose_b=True)
    return tf.minimum(shared, 1.0)


def _cap_positives(mask: tf.Tensor, diagonal: tf.Tensor, keep: int) -> tf.Tensor:
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
    contrast_mode = _option(contrast_mode, "contrast_mode", CONTRAST_MODES)
    summation_location = _option(summation_location, "summation_location", SUMMATION_LOCATIONS)
    denominator_mode = _option(denominator_mode, "denominator_mode", DENOMINATOR_MODES)
    features = tf.convert_to_tensor(features)
    labels = None if labels is None else tf.convert_to_tensor(labels)
    contrast_features = None if contrast_features is None else tf.convert_to_tensor(contrast_features)
    contrast_labels = None if contrast_labels is None else tf.convert_to_tensor(contrast_labels)
    batch, views = _validate(features, labels, positives_cap, contrast_features, contrast_labels)
    features = tf.cast(tf.reshape(features, [batch, views, -1]), tf.float32)  # [B, V, D]

    replicas, replica_id, _ = _replica_context()
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


# Above this many [anchors x contrast] entries, `contrastive_loss` runs blockwise (supcon.losses_blockwise):
# the same values and gradients without any [A, M] matrix. Measured crossover: reports/benchmarks/README.md.
BLOCKWISE_MIN_ENTRIES = 1 << 22

_MASKED = -1e30  # stands for log(0) in masked log-sum-exps; finite so that gradients stay finite


def _masked_logsumexp(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """log(sum(exp(values) * mask)) over axis 1, keepdims; about -1e30 for an empty mask."""
    return tf.reduce_logsumexp(tf.where(mask > 0, values, _MASKED), axis=1, keepdims=True)


def _tile_views(mask: tf.Tensor, global_batch: int, anchor_views: int, views: int) -> tf.Tensor:
    """Tiles a [B, G (+K)] sample mask to [anchor_views*B, views*G (+K)] in view-major order.

    The batch columns are repeated once per view; extra (queue) columns have a single view.
    """
    batch_part = tf.tile(mask[:, :global_batch], [anchor_views, views])  # [A, V*G]
    extra_part = tf.tile(mask[:, global_batch:], [anchor_views, 1])  # [A, K]
    return tf.concat([batch_part, extra_part], axis=1)


def contrastive_loss(
    features,
    labels=None,
    temperature=1.0,
    contrast_mode="all_views",
    summation_location="outside",
    denominator_mode="all",
    positives_cap: int = -1,
    scale_by_temperature: bool = True,
    contrast_features=None,
    contrast_labels=None,
) -> tf.Tensor:
    r"""Supervised (or self-supervised) contrastive loss, Eq. 2 / Eq. 3 of Khosla et al. (2020).

    Args:
      features: [batch, views, ...] projections (flattened to [batch, views, D]); L2-normalised rows are
        expected (the projection head does it). Cast to float32, also under mixed precision.
      labels: None for SimCLR (each sample its own class), int class ids [batch], or one-/multi-hot
        [batch, classes] (samples sharing a class are positives).
      temperature: softmax temperature tau.
      contrast_mode: 'all_views' (every view is an anchor) or 'one_view' (only view 0 is an anchor).
      summation_location: 'outside' the log (Eq. 2, L_out) or 'inside' (Eq. 3, L_in).
      denominator_mode: 'all' (A(i): every other entry), 'one_positive' (negatives plus the one positive in
        the numerator) or 'only_negatives'.
      positives_cap: the maximum number of positives other than the anchor's own views, -1 for no cap; a
        multiple of the number of views. The first cap/views same-class samples in (global) batch order are
        kept; capped-out positives leave the denominator too (they are not negatives).
      scale_by_temperature: multiply the loss by tau (the gradient has a 1/tau factor; this counteracts it).
      contrast_features: optional [K, D] extra contrast (e.g. a memory queue): joins the denominator and the
        positives, never serves as anchors, gets no gradient.
      contrast_labels: labels of `contrast_features` in the format of `labels` ([K] or [K, classes]).

    Returns:
      The per-sample loss [batch] (mean over anchor views), float32. Rows without any positive (possible
      only with one view) give 0.

    Raises:
      ValueError: bad ranks/shapes or an option outside its allowed values.
    """
    x = prepare_inputs(
        features, labels, contrast_mode, summation_location, denominator_mode, positives_cap, contrast_features,
        contrast_labels,
    )
    if _blockwise_pays(x):
        # Imported here, not at the top: losses_blockwise builds on this module.
        from supcon import losses_blockwise

        return losses_blockwise.loss_from_inputs(x, temperature, scale_by_temperature)
    batch = x.batch
    diagonal = tf.one_hot(tf.range(batch) + x.offset, x.global_batch)  # [B, G]
    mask = diagonal if x.labels is None else _same_class(x.labels, x.global_labels)  # [B, G]
    if x.has_extra:  # K may vary: a memory queue fills up over the first steps
        extra_mask = (
            tf.zeros([batch, x.num_extra]) if x.labels is None else _same_class(x.labels, x.contrast_labels)
        )
        mask = tf.concat([mask, extra_mask], axis=1)  # [B, G + K]
        diagonal = tf.concat([diagonal, tf.zeros([batch, x.num_extra])], axis=1)
    return _loss_from_masks(x, mask, diagonal, temperature, scale_by_temperature)


def _blockwise_pays(x: LossInputs) -> bool:
    """Whether the [anchors x contrast] matrices would have at least BLOCKWISE_MIN_ENTRIES entries."""
    anchors = x.batch * (1 if x.contrast_mode == "one_view" else x.views)
    extra = x.num_extra if isinstance(x.num_extra, int) else 0  # a dynamic queue counts as empty
    return anchors * (x.views * x.global_batch + extra) >= BLOCKWISE_MIN_ENTRIES


def _loss_from_masks(x: LossInputs, mask, diagonal, temperature, scale_by_temperature):
    """Computes the loss once the sample masks [B, G (+K)] are built."""
    batch, views, global_batch, offset = x.batch, x.views, x.global_batch, x.offset
    contrast, positives_cap = x.contrast, x.positives_cap
    summation_location, denominator_mode = x.summation_location, x.denominator_mode
    anchors, anchor_views = x.anchors()
    temperature = tf.cast(temperature, tf.float32)
    logits = tf.matmul(anchors, contrast, transpose_b=True) / temperature  # [A, M]
    logits -= tf.reduce_max(tf.stop_gradient(logits), axis=1, keepdims=True)

    capped = mask
    if positives_cap > -1:
        keep = positives_cap // views
        if mask.shape[1] is not None:
            keep = min(keep, int(mask.shape[1]))
        else:
            keep = tf.minimum(keep, tf.shape(mask)[1]) if keep else 0
        capped = _cap_positives(mask, diagonal, keep)
    self_cols = tf.reshape(
        tf.range(anchor_views)[:, None] * global_batch + (tf.range(batch) + offset)[None, :], [-1]
    )  # [A]: the column of each anchor itself
    not_self = 1.0 - tf.one_hot(self_cols, tf.shape(contrast)[0])  # [A, M]
    positives = _tile_views(capped, global_batch, anchor_views, views) * not_self
    negatives = 1.0 - _tile_views(mask, global_batch, anchor_views, views)
    num_positives = tf.reduce_sum(positives, axis=1)  # [A]
    has_positive = num_positives > 0

    # Log-denominators by log-sum-exp over the masked logits: exact, and finite even when every
    # exp(logit - rowmax) underflows (unnormalised features at a low temperature).
    lse_negatives = _masked_logsumexp(logits, negatives)  # [A, 1]
    if denominator_mode == "all":
        log_denominator = _masked_logsumexp(logits, negatives + positives)  # [A, 1]
    elif denominator_mode == "one_positive":
        log_denominator = tf.math.reduce_logsumexp(  # [A, M]: one per positive column
            tf.stack([logits, tf.broadcast_to(lse_negatives, tf.shape(logits))], axis=-1), axis=-1
        )
    else:
        log_denominator = lse_negatives
    log_ratio = logits - log_denominator  # [A, M]: log p_ip
    safe_count = tf.where(has_positive, num_positives, 1.0)
    if summation_location == "outside":
        log_probs = tf.reduce_sum(tf.where(positives > 0, log_ratio, 0.0), axis=1) / safe_count
    else:
        log_probs = tf.squeeze(_masked_logsumexp(log_ratio, positives), 1) - tf.math.log(safe_count)
    loss = tf.where(has_positive, -log_probs, 0.0)  # [A]
    if scale_by_temperature:
        loss *= temperature
    return tf.reduce_mean(tf.reshape(loss, [anchor_views, batch]), axis=0)  # [B]


def cross_entropy_loss(logits, labels, label_smoothing: float = 0.0) -> tf.Tensor:
    """Softmax cross-entropy per sample [batch], in float32, with optional label smoothing.

    Args:
      logits: [batch, classes].
      labels: int class ids [batch] or one-hot [batch, classes].
      label_smoothing: eps in [0, 1): the target is (1 - eps) * one_hot + eps / classes.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
    logits = tf.cast(logits, tf.float32)
    if logits.shape.rank != 2:
        raise ValueError(f"logits must be [batch, classes]; got shape {logits.shape}")
    num_classes = logits.shape[-1]
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 1:
        labels = tf.one_hot(tf.cast(labels, tf.int32), num_classes)
    elif labels.shape.rank != 2:
        raise ValueError(f"labels must be [batch] ids or [batch, classes]; got shape {labels.shape}")
    targets = tf.cast(labels, tf.float32) * (1.0 - label_smoothing) + label_smoothing / num_classes
    return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)


@gin.register
def contrastive(
    temperature: float = 0.1,
    use_labels: bool = True,
    contrast_mode: str = "all_views",
    summation_location: str = "outside",
    denominator_mode: str = "all",
    positives_cap: int = -1,
    scale_by_temperature: bool = True,
):
    """Returns the configured loss `fn(features, labels, contrast_features=None, contrast_labels=None)`.

    The gin-facing factory: recipes write `contrastive.temperature = 0.1` and `use_labels = False` for
    SimCLR. Options are validated here, at configuration time.
    """
    _option(contrast_mode, "contrast_mode", CONTRAST_MODES)
    _option(summation_location, "summation_location", SUMMATION_LOCATIONS)
    _option(denominator_mode, "denominator_mode", DENOMINATOR_MODES)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")

    def loss_fn(features, labels, contrast_features=None, contrast_labels=None):
        return contrastive_loss(
            features,
            labels=labels if use_labels else None,
            temperature=temperature,
            contrast_mode=contrast_mode,
            summation_location=summation_location,
            denominator_mode=denominator_mode,
            positives_cap=positives_cap,
            scale_by_temperature=scale_by_temperature,
            contrast_features=contrast_features,
            contrast_labels=contrast_labels if use_labels else None,
        )

    loss_fn.use_labels = use_labels
    return loss_fn
