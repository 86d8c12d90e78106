"""Projection and classification heads, and the `ContrastiveModel` that ties them to an encoder.

Official semantics (shared/reference/seed.md §1.5): the encoder's pooled features are optionally L2-normalised
before both heads; the projection head is a Dense stack whose last layer has no bias and whose output is
L2-normalised; the classifier sees a stop-gradient input by default, so a linear probe can train jointly with
the contrastive loss without touching the encoder.
"""

import gin
import keras
from keras import ops

_L2_EPSILON = 1e-12  # on the squared norm, as tf.math.l2_normalize


def l2_normalize(x, axis=-1):
    """Divides `x` by its L2 norm along `axis` (norm floored at sqrt(1e-12), like `tf.math.l2_normalize`)."""
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)  # [B, 1]
    return x * ops.rsqrt(ops.maximum(squared, _L2_EPSILON))


class L2Normalize(keras.layers.Layer):
    """A layer that L2-normalises its input along the last axis: `[B, D] -> [B, D]` with unit rows.

    It computes in float32 by default, also under a mixed-precision policy (bf16 rows are ~0.3% off unit norm).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        return l2_normalize(inputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape


def _as_sizes(layer_sizes):
    sizes = (layer_sizes,) if isinstance(layer_sizes, int) else tuple(layer_sizes)
    if not sizes or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
        raise ValueError(
            f"layer_sizes must be a non-empty sequence of positive ints, got {layer_sizes!r}"
        )
    return sizes


@gin.register
def projection_head(
    layer_sizes=(2048, 128),
    use_batch_norm=False,
    use_batch_norm_beta=True,
    normalize_output=True,
    sync_batch_norm=False,
    name="projection_head",
):
    """Builds the MLP projection head: `[B, F] -> [B, layer_sizes[-1]]`.

    Each non-last layer is Dense -> (optional BN) -> ReLU; the last layer is a Dense without bias. Hidden Dense
    layers drop their bias when followed by BN. Kernels start from N(0, 0.01²). Official choices: `128` (SupCon
    ImageNet), `(2048, 128)` (SupCon CIFAR), `(2048, 2048, 128)` with BN (SimCLR).

    Args:
        layer_sizes: output width of every Dense layer (an int means a single linear projection).
        use_batch_norm: BN after every hidden Dense.
        use_batch_norm_beta: whether those BN layers have a learned offset (`center`).
        normalize_output: L2-normalise the output rows (the official launcher always does).
        sync_batch_norm: cross-replica BN statistics under a `tf.distribute` strategy.
        name: the head's name (the prefix of its variables' paths).

    Returns:
        An unbuilt `keras.Sequential`, built on its first call.
    """
    sizes = _as_sizes(layer_sizes)
    layers = []
    for i, size in enumerate(sizes):
        last = i == len(sizes) - 1
        layers.append(
            keras.layers.Dense(
                size,
                use_bias=not last and not use_batch_norm,
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                name=f"dense_{i + 1}",
            )
        )
        if not last:
            if use_batch_norm:
                layers.append(
                    keras.layers.BatchNormalization(
                        momentum=0.9,
                        epsilon=1e-5,
                        center=bool(use_batch_norm_beta),
                        synchronized=bool(sync_batch_norm),
                        name=f"batch_norm_{i + 1}",
                    )
                )
            layers.append(keras.layers.ReLU(name=f"relu_{i + 1}"))
    if normalize_output:
        layers.append(L2Normalize(name="l2_normalize"))
    return keras.Sequential(layers, name=name)


@gin.register
def classification_head(num_classes, zero_init=False, name="classification_head"):
    """Builds the linear classifier `[B, F] -> [B, num_classes]` logits (glorot-uniform or zero kernel).

    Args:
        num_classes: number of output logits (>= 1).
        zero_init: start the kernel at zero (official SimCLR setting) instead of glorot-uniform.
        name: the layer's name.

    Returns:
        An unbuilt `keras.layers.Dense` with bias.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return keras.layers.Dense(
        num_classes,
        kernel_initializer="zeros" if zero_init else "glorot_uniform",
        bias_initializer="zeros",
        name=name,
    )


class ContrastiveModel(keras.Model):
    """Encoder -> (L2 norm) -> projection head, and (L2 norm, stop-gradient) -> classification head.

    `call(images, training)` returns a dict:
    - `embedding`: encoder output `[B, F]`;
    - `normalized_embedding`: its L2-normalised rows `[B, F]`;
    - `projection`: projection-head output `[B, P]` (absent when `projection_head` is None, e.g. the
      cross-entropy baseline);
    - `logits`: classifier output `[B, K]` (absent when `classification_head` is None).

    Every output is float32 (also under a mixed-precision policy, so losses and norms stay accurate).
    Both heads read `normalized_embedding` when `normalize_embedding`, else `embedding`; each input is wrapped in
    a stop-gradient when its flag is set (classifier: by default, so the joint linear probe never moves the
    encoder).

    Args:
        encoder: a layer mapping images `[B, H, W, C]` to features `[B, F]`.
        projection_head: a layer `[B, F] -> [B, P]`, or None.
        classification_head: a layer `[B, F] -> [B, K]`, or None.
        normalize_embedding: feed the heads L2-normalised features.
        stop_gradient_before_projection_head: block the projection loss's gradient into the encoder.
        stop_gradient_before_classification_head: block the classification loss's gradient into the encoder.
    """

    def __init__(
        self,
        encoder,
        projection_head,
        classification_head,
        normalize_embedding=True,
        stop_gradient_before_projection_head=False,
        stop_gradient_before_classification_head=True,
        **kwargs,
    ):
        kwargs.setdefault("name", "contrastive_model")
        super().__init__(**kwargs)
        if encoder is None:
            raise ValueError(
                "encoder must be a keras layer mapping images to [B, F] features, got None"
            )
        self.encoder = encoder
        self.projection_head = projection_head
        self.classification_head = classification_head
        self.normalize_embedding = bool(normalize_embedding)
        self.stop_gradient_before_projection_head = bool(stop_gradient_before_projection_head)
        self.stop_gradient_before_classification_head = bool(
            stop_gradient_before_classification_head
        )

    def build(self, input_shape):
        """Creates every variable from the image shape (B, H, W, C) alone (B, H, W may be None)."""
        if self.built:
            return
        self.encoder.build(tuple(input_shape))
        features = tuple(self.encoder.compute_output_shape(tuple(input_shape)))  # (B, F)
        for head in (self.projection_head, self.classification_head):
            if head is not None:
                head.build(features)
        self.built = True

    def _head_input(self, embedding, normalized, stop_gradient):
        x = normalized if self.normalize_embedding else embedding  # [B, F]
        return ops.stop_gradient(x) if stop_gradient else x

    def call(self, images, training=False):
        embedding = ops.cast(self.encoder(images, training=training), "float32")  # [B, F]
        normalized = l2_normalize(embedding, axis=-1)  # [B, F]
        outputs = {"embedding": embedding, "normalized_embedding": normalized}
        if self.projection_head is not None:
            x = self._head_input(embedding, normalized, self.stop_gradient_before_projection_head)
            outputs["projection"] = ops.cast(
                self.projection_head(x, training=training), "float32"
            )  # [B, P]
        if self.classification_head is not None:
            x = self._head_input(
                embedding, normalized, self.stop_gradient_before_classification_head
            )
            outputs["logits"] = ops.cast(
                self.classification_head(x, training=training), "float32"
            )  # [B, K]
        return outputs
