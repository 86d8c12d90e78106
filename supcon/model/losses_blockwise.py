r"""The contrastive loss in anchor blocks: the same values and gradients, without any [A x M] matrix.

`supcon.model.losses.contrastive_loss` materialises the logits and several masks of shape [A, M] (A anchors =
anchor views x local batch, M = views x global batch + queue). At a global batch of 8192 x 2 views that is
16384 x 16384 float32 = 1 GiB per matrix. This path computes the same loss (Eq. 2 / Eq. 3 of Khosla et al.,
2020, with every option of the official implementation) one block of anchor rows at a time:

* forward: for each block of `rows` anchors, logits [rows, M] = anchors . contrast^T / tau, the block's masks
  (rebuilt from the labels, never stored for the whole batch), the per-row loss and two per-row log-sum-exps
  that the gradient needs. Only O(A) numbers survive a block.
* backward (`tf.custom_gradient`): each block's logits are recomputed, the gradient with respect to the
  logits is formed in closed form from the saved statistics, and
  d anchors = g . contrast / tau,  d contrast += g^T . anchors / tau.
* each block's forward and gradient are XLA-compiled when M is static: the element-wise passes over the
  block fuse, which makes this path faster than the direct one, not only smaller.

Closed-form gradients of one anchor row (l = logits, P positives, N negatives, D = P u N, w.r.t. l):

* denominator 'all' / 'only_negatives' (S = D or N): outside  softmax_S(l) - 1[P] / |P|,
  inside  softmax_S(l) - softmax_P(l).
* denominator 'one_positive' (sigma_p = sigmoid(l_p - lse_N(l))): with w_p = (1 - sigma_p) / |P| (outside) or
  sigma_p (1 - sigma_p) / sum_P sigma (inside):  -w 1[P] + softmax_N(l) sum_P w.

Rows without positives have loss and gradient 0; the loss (and so the gradient) is scaled by tau when
`scale_by_temperature`. Peak extra memory is a few [rows, M] blocks plus the [M, D] contrast gradient.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from supcon.model import loss_inputs

DEFAULT_BLOCK_ELEMENTS = 1 << 21  # entries of one [rows, M] block: 8 MiB of float32 per temporary
_MASKED = loss_inputs.MASKED


def block_rows(num_anchors: int, num_contrast: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Rows per anchor block: about `block_elements / num_contrast`, balanced so the last block is full-ish."""
    if num_anchors < 1 or num_contrast < 1 or block_elements < 1:
        raise ValueError(
            f"num_anchors, num_contrast and block_elements must be >= 1; got {num_anchors}, "
            f"{num_contrast}, {block_elements}"
        )
    widest = max(1, min(num_anchors, block_elements // num_contrast))
    blocks = -(-num_anchors // widest)
    return -(-num_anchors // blocks)


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What every block needs besides its anchors: labels, offsets and the loss options."""

    labels: tf.Tensor | None  # [B] or [B, C] local labels, None for SimCLR
    global_labels: tf.Tensor | None  # [G] or [G, C]
    extra_labels: tf.Tensor | None  # [K] or [K, C] labels of the extra contrast
    column_ids: tf.Tensor | None  # [M] class (or sample) id of every contrast column; None: sample masks
    num_extra: tf.Tensor | int  # K (0 without extra contrast; may be dynamic)
    offset: tf.Tensor  # replica_id * B: the global index of the first local sample
    batch: int  # B
    views: int  # V
    global_batch: int  # G
    temperature: tf.Tensor
    summation: str
    denominator: str
    positives_cap: int
    scale: bool


def _column_ids(labels, global_labels, extra_labels, views: int, global_batch: int, num_extra):
    """Id [M] of every contrast column, for masks by one comparison: int class ids, or (no labels) the
    global sample index with -1 for extra columns; None for one-/multi-hot labels."""
    if labels is None:
        ids = tf.tile(tf.range(global_batch), [views])  # [V*G]
        return tf.concat([ids, -tf.ones([num_extra], tf.int32)], axis=0)  # [M]
    if labels.shape.rank != 1:
        return None
    ids = tf.tile(global_labels, [views])  # [V*G]
    if extra_labels is None:
        return ids
    return tf.concat([ids, tf.cast(extra_labels, ids.dtype)], axis=0)  # [M]


def _sample_masks(spec: _Spec, sample: tf.Tensor, global_index: tf.Tensor):
    """Same-class and capped positive masks of the rows' samples over samples, float [n, G + K]."""
    diagonal = tf.one_hot(global_index, spec.global_batch)  # [n, G]
    extra_zeros = tf.zeros([tf.shape(sample)[0], spec.num_extra])  # [n, K]
    same, extra_same = diagonal, extra_zeros
    if spec.labels is not None:
        row_labels = tf.gather(spec.labels, sample)  # [n] or [n, C]
        same = loss_inputs.same_class(row_labels, spec.global_labels)  # [n, G]
        if spec.extra_labels is not None:
            extra_same = loss_inputs.same_class(row_labels, spec.extra_labels)  # [n, K]
    same = tf.concat([same, extra_same], axis=1)  # [n, G + K]
    if spec.positives_cap < 0:
        return same, same
    keep = spec.positives_cap // spec.views
    if same.shape[1] is not None:
        keep = min(keep, int(same.shape[1]))
    else:
        keep = tf.minimum(keep, tf.shape(same)[1]) if keep else 0
    return same, loss_inputs.cap_positives(same, tf.concat([diagonal, extra_zeros], axis=1), keep)


def _row_masks(spec: _Spec, rows: tf.Tensor, num_contrast):
    """Positive and negative masks (bool [n, M]) of the anchor rows `rows` [n] (row r = view*B + sample)."""
    sample = rows % spec.batch  # [n]
    global_index = sample + spec.offset  # [n]
    self_col = (rows // spec.batch) * spec.global_batch + global_index  # [n]: the anchor's own column
    not_self = tf.not_equal(tf.range(num_contrast)[None, :], self_col[:, None])  # [n, M]
    if spec.column_ids is not None:  # no cap; int labels or none: one comparison per entry
        row_id = global_index if spec.labels is None else tf.gather(spec.labels, sample)  # [n]
        same = tf.equal(tf.cast(row_id, spec.column_ids.dtype)[:, None], spec.column_ids[None, :])
        return tf.logical_and(same, not_self), tf.logical_not(same)
    same, capped = _sample_masks(spec, sample, global_index)

    def tile(mask):  # [n, G + K] -> [n, V*G + K], view-major batch columns then the extra columns
        g = spec.global_batch
        return tf.concat([tf.tile(mask[:, :g], [1, spec.views]), mask[:, g:]], axis=1) > 0

    return tf.logical_and(tile(capped), not_self), tf.logical_not(tile(same))


def _masked_lse(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """log(sum(exp(values) over mask)) per row [n]; about -1e30 for an empty mask (as the direct path)."""
    return tf.reduce_logsumexp(tf.where(mask, values, _MASKED), axis=1)


def _block_forward(spec: _Spec, anchors, contrast, rows):
    """Per-row loss [n] and the log-sum-exps the backward pass reuses: (loss, lse_a, lse_b).

    The logits are not shifted by their row max (the direct path's shift cancels in every log-ratio; the
    log-sum-exps shift internally), which saves two passes over the block.
    """
    logits = tf.matmul(anchors / spec.temperature, contrast, transpose_b=True)  # [n, M]
    positives, negatives = _row_masks(spec, rows, tf.shape(contrast)[0])
    count = tf.reduce_sum(tf.cast(positives, tf.float32), axis=1)  # [n]
    safe = tf.where(count > 0, count, 1.0)
    if spec.denominator == "one_positive":
        lse_a = _masked_lse(logits, negatives)  # [n]: log-sum of the negatives
        log_ratio = -tf.math.softplus(lse_a[:, None] - logits)  # [n, M]: log sigma = l_p - log(e^l_p + S_N)
    else:
        denominator_set = negatives if spec.denominator == "only_negatives" else positives | negatives
        lse_a = _masked_lse(logits, denominator_set)  # [n]: the log-denominator
        log_ratio = logits - lse_a[:, None]  # [n, M]
    if spec.summation == "outside":
        lse_b = tf.zeros_like(lse_a)
        log_probs = tf.reduce_sum(tf.where(positives, log_ratio, 0.0), axis=1) / safe
    else:
        source = log_ratio if spec.denominator == "one_positive" else logits
        lse_b = _masked_lse(source, positives)  # [n]: lse over the positives (of log sigma, or of l)
        log_probs = lse_b - tf.math.log(safe)
        if spec.denominator != "one_positive":
            log_probs -= lse_a
    loss = tf.where(count > 0, -log_probs, 0.0)
    if spec.scale:
        loss *= spec.temperature
    return loss, lse_a, lse_b


def _block_logit_grad(spec: _Spec, anchors, contrast, rows, stats, upstream):
    """d loss / d logits [n, M] of one block, in closed form (see the module docstring)."""
    lse_a, lse_b = stats
    logits = tf.matmul(anchors / spec.temperature, contrast, transpose_b=True)  # [n, M], recomputed
    positives, negatives = _row_masks(spec, rows, tf.shape(contrast)[0])
    count = tf.reduce_sum(tf.cast(positives, tf.float32), axis=1)  # [n]
    weight = tf.where(count > 0, upstream, 0.0)  # [n]
    if spec.scale:
        weight *= spec.temperature
    if spec.denominator == "one_positive":
        sigma = tf.where(positives, tf.math.sigmoid(logits - lse_a[:, None]), 0.0)  # [n, M]
        if spec.summation == "outside":
            w = tf.where(positives, 1.0 - sigma, 0.0) / tf.where(count > 0, count, 1.0)[:, None]
        else:
            w = sigma * (1.0 - sigma) / tf.maximum(tf.reduce_sum(sigma, axis=1, keepdims=True), 1e-30)
        softmax_n = tf.where(negatives, tf.exp(logits - lse_a[:, None]), 0.0)  # [n, M]
        grad = softmax_n * tf.reduce_sum(w, axis=1, keepdims=True) - w
    else:
        denominator_set = negatives if spec.denominator == "only_negatives" else positives | negatives
        grad = tf.where(denominator_set, tf.exp(logits - lse_a[:, None]), 0.0)  # softmax over the set
        if spec.summation == "outside":
            grad -= tf.where(positives, 1.0 / tf.where(count > 0, count, 1.0)[:, None], 0.0)
        else:
            grad -= tf.where(positives, tf.exp(logits - lse_b[:, None]), 0.0)  # softmax over P
    return grad * weight[:, None]  # [n, M]


def _blocked(anchors: tf.Tensor, rows_per_block: int):
    """Pads anchors [A, D] to whole blocks: ([blocks, rows, D], [blocks, rows] row ids, A)."""
    num_anchors, dim = anchors.shape[0], anchors.shape[1]
    blocks = -(-num_anchors // rows_per_block)
    padded = tf.pad(anchors, [[0, blocks * rows_per_block - num_anchors], [0, 0]])
    anchor_blocks = tf.reshape(padded, [blocks, rows_per_block, dim if dim is not None else -1])
    row_ids = tf.reshape(tf.range(blocks * rows_per_block), [blocks, rows_per_block])
    return anchor_blocks, row_ids, num_anchors


def _rows_loss(spec: _Spec, anchors, contrast, rows_per_block: int, jit_compile: bool) -> tf.Tensor:
    """Per-anchor-row loss [A] of anchors [A, D] against contrast [M, D], one block at a time.

    With `jit_compile`, each block's forward and gradient run as one XLA computation: its element-wise
    passes fuse, so a block's temporaries never reach memory (about 2x faster on CPU). It needs a static M.
    """
    anchor_blocks, row_ids, num_anchors = _blocked(anchors, rows_per_block)
    block_shape = tf.TensorShape([rows_per_block, anchors.shape[1]])  # one block of anchors
    forward = lambda a, c, r: _block_forward(spec, a, c, r)  # noqa: E731
    logit_grad = lambda a, c, r, s, u: _block_logit_grad(spec, a, c, r, s, u)  # noqa: E731
    if jit_compile:
        forward, logit_grad = (tf.function(f, jit_compile=True) for f in (forward, logit_grad))

    @tf.custom_gradient
    def blocked_loss(anchor_blocks, contrast):  # [blocks, rows, D], [M, D] -> [blocks, rows]
        loss, *saved = tf.map_fn(
            lambda args: forward(args[0], contrast, args[1]), (anchor_blocks, row_ids),
            fn_output_signature=(tf.float32,) * 3, parallel_iterations=1,
        )  # 3 x [blocks, rows]

        def grad(upstream):  # [blocks, rows]
            def body(i, d_contrast, d_anchors):
                a = anchor_blocks[i]  # [rows, D]
                g = logit_grad(a, contrast, row_ids[i], (saved[0][i], saved[1][i]), upstream[i])  # [rows, M]
                d_contrast += tf.matmul(g, a, transpose_a=True)  # [M, D]
                return i + 1, d_contrast, d_anchors.write(i, tf.matmul(g, contrast))

            blocks = tf.shape(anchor_blocks)[0]
            d_anchors = tf.TensorArray(tf.float32, size=blocks, element_shape=block_shape)
            _, d_contrast, d_anchors = tf.while_loop(
                lambda i, *_: i < blocks, body, (tf.constant(0), tf.zeros_like(contrast), d_anchors),
                parallel_iterations=1,
            )
            return d_anchors.stack() / spec.temperature, d_contrast / spec.temperature

        return loss, grad

    return tf.reshape(blocked_loss(anchor_blocks, contrast), [-1])[:num_anchors]  # [A]


def blockwise_contrastive_loss(
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
    block_size: int | None = None,
    jit_compile: bool | None = None,
) -> tf.Tensor:
    """`supcon.model.losses.contrastive_loss` computed in blocks of anchor rows (same arguments, same result).

    Args:
      features, labels, temperature, contrast_mode, summation_location, denominator_mode, positives_cap,
        scale_by_temperature, contrast_features, contrast_labels: as `supcon.model.losses.contrastive_loss`.
      block_size: anchor rows per block; None picks about `DEFAULT_BLOCK_ELEMENTS / M` (M = contrast size).
      jit_compile: compile each block with XLA; None: when the contrast size M is static (a memory queue
        that is still filling up has a dynamic M, and would recompile at every size).

    Returns:
      The per-sample loss [batch], float32, equal (to float32 rounding) to the direct path's, with equal
      gradients; no tensor of shape [anchors, contrast] is ever held whole.

    Raises:
      ValueError: as `contrastive_loss`, or `block_size` < 1.
    """
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be None (automatic) or >= 1; got {block_size}")
    x = loss_inputs.prepare_inputs(
        features, labels, contrast_mode, summation_location, denominator_mode, positives_cap, contrast_features,
        contrast_labels,
    )
    return loss_from_inputs(x, temperature, scale_by_temperature, block_size, jit_compile)


def loss_from_inputs(
    x: loss_inputs.LossInputs, temperature, scale_by_temperature: bool, block_size: int | None = None,
    jit_compile: bool | None = None,
) -> tf.Tensor:
    """The blockwise loss [B] of inputs already checked by `loss_inputs.prepare_inputs` (see the function above)."""
    column_ids = None
    if x.positives_cap < 0:
        column_ids = _column_ids(x.labels, x.global_labels, x.contrast_labels, x.views, x.global_batch,
                                 x.num_extra)
    spec = _Spec(
        labels=x.labels, global_labels=x.global_labels, extra_labels=x.contrast_labels, column_ids=column_ids,
        num_extra=x.num_extra, offset=x.offset, batch=x.batch, views=x.views, global_batch=x.global_batch,
        temperature=tf.cast(temperature, tf.float32),
        summation=x.summation_location, denominator=x.denominator_mode,
        positives_cap=x.positives_cap, scale=bool(scale_by_temperature),
    )  # fmt: skip
    anchors, anchor_views = x.anchors()
    num_anchors = anchor_views * x.batch
    num_contrast = x.views * x.global_batch + (x.num_extra if isinstance(x.num_extra, int) else 0)
    rows = min(block_size or block_rows(num_anchors, num_contrast), num_anchors)
    if jit_compile is None:
        jit_compile = x.contrast.shape[0] is not None
    loss = _rows_loss(spec, anchors, x.contrast, rows, bool(jit_compile))  # [A]
    return tf.reduce_mean(tf.reshape(loss, [anchor_views, x.batch]), axis=0)  # [B]
