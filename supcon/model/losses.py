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

import gin
import tensorflow as tf

from supcon.model import losses_blockwise
from supcon.model.loss_inputs import (  # noqa: F401  (re-exported: the loss's public names live here)
    CONTRAST_MODES,
    DENOMINATOR_MODES,
    MASKED,
    SUMMATION_LOCATIONS,
    LossInputs,
    cap_positives,
    cross_replica_concat,
    option,
    prepare_inputs,
    same_class,
)

# Above this many [anchors x contrast] entries, `contrastive_loss` runs blockwise (supcon.model.losses_blockwise):
# the same values and gradients without any [A, M] matrix. Measured crossover: reports/benchmarks/README.md.
BLOCKWISE_MIN_ENTRIES = 1 << 22


def _masked_logsumexp(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """log(sum(exp(values) * mask)) over axis 1, keepdims; about -1e30 for an empty mask."""
    return tf.reduce_logsumexp(tf.where(mask > 0, values, MASKED), axis=1, keepdims=True)


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
        return losses_blockwise.loss_from_inputs(x, temperature, scale_by_temperature)
    batch = x.batch
    diagonal = tf.one_hot(tf.range(batch) + x.offset, x.global_batch)  # [B, G]
    mask = diagonal if x.labels is None else same_class(x.labels, x.global_labels)  # [B, G]
    if x.has_extra:  # K may vary: a memory queue fills up over the first steps
        extra_mask = (
            tf.zeros([batch, x.num_extra]) if x.labels is None else same_class(x.labels, x.contrast_labels)
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
        capped = cap_positives(mask, diagonal, keep)
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
    option(contrast_mode, "contrast_mode", CONTRAST_MODES)
    option(summation_location, "summation_location", SUMMATION_LOCATIONS)
    option(denominator_mode, "denominator_mode", DENOMINATOR_MODES)
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
    loss_fn.options = {  # what the loss runs with, for `runner.py --show_config` (supcon.experiment.show_config)
        "name": "@contrastive", "temperature": temperature, "use_labels": use_labels, "contrast_mode": contrast_mode,
        "summation_location": summation_location, "denominator_mode": denominator_mode,
        "positives_cap": positives_cap, "scale_by_temperature": scale_by_temperature,
    }
    return loss_fn
