"""ResNet v1 and ResNeXt encoders (Keras 3), following the official SupCon `resnet.py` / `blocks.py`.

The encoder maps images `[B, H, W, C]` (channels last, any H, W, C) to globally average-pooled features
`[B, F]`, with F = 512·w for depths 10/18/34 and 2048·w for depths 50 and deeper (w = width multiplier).
ResNet-10 (the [1, 1, 1, 1] member of He et al.'s basic-block family: one block per stage) is no encoder of the
paper or the official code: it is the cheapest real ResNet, the encoder of the trainer's tests.

Architecture facts (shared/reference/seed.md §1.5):
- Post-activation (v1) residual blocks; stride on the 3×3 convolution of bottleneck blocks.
- Stem: conv(k, s) + BN + ReLU, then an optional 3×3/2 max-pool. Strided convolutions pad explicitly
  (`FixedPadding`: total k-1, split floor/ceil) and use 'valid'; stride-1 convolutions use 'same'.
- Convolutions have no bias and a variance-scaling (fan-in, truncated normal) initialiser.
- BN momentum 0.9, epsilon 1e-5; the last BN of every ResNet v1 block starts with gamma = 0.
- A projection shortcut (1×1 conv + BN) is used whenever the block changes the shape.

Every BatchNormalization layer has `batch_norm` in its name, so `supcon.model.optim.is_batch_norm_variable` also
recognises its variables by path; `supcon.model.optim.batch_norm_variables(model)` does not need names at all.
"""

import gin
import keras
from keras import ops

# depth -> (block kind, blocks per stage)
_DEPTHS = {
    10: ("basic", (1, 1, 1, 1)),  # not in the official code: the trainer's tests' encoder (tests/fixtures/train)
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}
_RESNEXT_DEPTHS = (50, 101, 152, 200)
_RESNEXT_GROUPS = 64
ARCHITECTURES = ("resnet_v1", "resnext")


# bfloat16 inputs with a channel count divisible by this skip the float32 round trip (FusedBatchNormalization).
BF16_BATCH_NORM_CHANNEL_BLOCK = 16


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras BatchNormalization whose training pass on [B, H, W, C] runs TF's fused kernel.

    Keras 3 computes batch norm from `moments` and a dozen element-wise ops, forward and backward; TF's
    `FusedBatchNormV3` (oneDNN on CPU) does it in one op each way. Same variables, same normalisation (biased
    batch variance), same moving-average updates; other cases (inference, frozen layers, masks, synchronized
    statistics, other ranks) take the Keras path. The fused kernel needs epsilon >= 1.001e-5.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and mask is None and not self.synchronized
                and len(inputs.shape) == 4 and self.axis in (-1, 3)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        # bfloat16 activations go to the kernel as they are where oneDNN has a fast bfloat16 kernel (channels a
        # multiple of 16, its AVX-512 block); it computes in float32 and rounds y to bfloat16, the same values
        # as casting around a float32 call, without two full-tensor casts each way (2x faster at 64 channels,
        # 8x slower at 8 or 24 channels: benchmarks/batch_norm.py).
        direct = inputs.dtype == tf.bfloat16 and channels % BF16_BATCH_NORM_CHANNEL_BLOCK == 0
        x = inputs if direct else tf.cast(inputs, tf.float32)  # [B, H, W, C]
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels])
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels])
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=max(float(self.epsilon), 1.001e-5), is_training=True)
        # The kernel returns the unbiased variance for the moving average; Keras tracks the biased one.
        count = tf.cast(tf.size(x) // channels, tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + tf.cast(mean, self.moving_mean.dtype) * (1 - momentum))
        self.moving_variance.assign(
            self.moving_variance * momentum + tf.cast(variance, self.moving_variance.dtype) * (1 - momentum))
        return tf.cast(y, self.compute_dtype)


def _batch_norm(name, momentum, epsilon, synchronized, fused=False, zero_gamma=False):
    """A BatchNormalization layer whose name marks it as batch norm (for weight-decay exclusion)."""
    layer = FusedBatchNormalization if fused and not synchronized else keras.layers.BatchNormalization
    return layer(
        axis=-1,
        momentum=momentum,
        epsilon=epsilon,
        synchronized=synchronized,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
    )


class ConvFixedPadding(keras.layers.Layer):
    """Conv2D without bias; explicit fixed padding when strided, 'same' padding otherwise.

    Fixed padding pads `kernel_size - 1` pixels in total, `(k-1)//2` before and the rest after, independently of
    the input size (the official `FixedPadding` semantics), then convolves with 'valid' padding.
    """

    def __init__(self, filters, kernel_size, strides=1, groups=1, initializer_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
        self.pad = None
        if strides > 1 and kernel_size > 1:  # a 1x1 kernel pads nothing: no op (its gradient is a full-tensor copy)
            total = kernel_size - 1
            begin = total // 2
            self.pad = keras.layers.ZeroPadding2D(((begin, total - begin), (begin, total - begin)))
        self.conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="valid" if strides > 1 else "same",
            groups=groups,
            use_bias=False,
            kernel_initializer=keras.initializers.VarianceScaling(scale=initializer_scale),
            name="conv",
        )

    def _padded_shape(self, input_shape):
        if self.pad is None:
            return tuple(input_shape)
        b, h, w, c = input_shape
        grow = self.kernel_size - 1
        return (b, None if h is None else h + grow, None if w is None else w + grow, c)

    def build(self, input_shape):
        self.conv.build(self._padded_shape(input_shape))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(self._padded_shape(input_shape))

    def call(self, inputs):
        x = (
            self.pad(inputs) if self.pad is not None else inputs
        )  # [B, H+k-1, W+k-1, C] when strided
        return self.conv(x)  # [B, H/s, W/s, filters]


def _build_conv_bn(conv, bn, input_shape):
    """Builds a conv and its BN from shapes alone (no tracing); returns the output shape."""
    conv.build(input_shape)
    shape = conv.compute_output_shape(input_shape)
    bn.build(shape)
    return shape


class ResidualBlock(keras.layers.Layer):
    """A post-activation residual block: basic (two 3×3), bottleneck (1×1, 3×3, 1×1×4) or ResNeXt.

    Args:
        kind: 'basic', 'bottleneck' or 'resnext'.
        filters: the stage width f; basic blocks output f channels, bottleneck and ResNeXt blocks 4f.
        strides: stride of the block (on the 3×3 convolution, and on the projection shortcut).
        use_projection: whether the shortcut is a 1×1 conv + BN (needed when the shape changes).
        bn_kwargs: momentum, epsilon and synchronized for every BatchNormalization.
        zero_init_last_bn: whether the last BN's gamma starts at 0 (ignored for ResNeXt, as officially).
        init_scale: the convolutions' variance-scaling factor (1: official; 2: He).
    """

    def __init__(
        self, kind, filters, strides, use_projection, bn_kwargs, zero_init_last_bn, init_scale=1.0, **kwargs
    ):
        super().__init__(**kwargs)
        if kind == "basic":
            specs = [(filters, 3, strides, 1), (filters, 3, 1, 1)]
        elif kind == "bottleneck":
            specs = [(filters, 1, 1, 1), (filters, 3, strides, 1), (4 * filters, 1, 1, 1)]
        else:  # resnext: 1×1 (2f) -> grouped 3×3 (2f) -> 1×1 (4f); last BN not zero-initialised
            specs = [
                (2 * filters, 1, 1, 1),
                (2 * filters, 3, strides, _RESNEXT_GROUPS),
                (4 * filters, 1, 1, 1),
            ]
            zero_init_last_bn = False
        self.convs, self.bns = [], []
        for i, (f, k, s, g) in enumerate(specs):
            last = i == len(specs) - 1
            self.convs.append(ConvFixedPadding(f, k, s, groups=g, initializer_scale=init_scale, name=f"conv_{i + 1}"))
            self.bns.append(
                _batch_norm(
                    f"batch_norm_{i + 1}", zero_gamma=last and zero_init_last_bn, **bn_kwargs
                )
            )
        self.shortcut_conv = self.shortcut_bn = None
        if use_projection:
            self.shortcut_conv = ConvFixedPadding(
                specs[-1][0], 1, strides, initializer_scale=init_scale, name="shortcut_conv")
            self.shortcut_bn = _batch_norm("shortcut_batch_norm", **bn_kwargs)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, bn in zip(self.convs, self.bns, strict=True):
            shape = _build_conv_bn(conv, bn, shape)
        if self.shortcut_conv is not None:
            _build_conv_bn(self.shortcut_conv, self.shortcut_bn, tuple(input_shape))

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.convs:
            shape = conv.compute_output_shape(shape)
        return shape

    def call(self, inputs, training=False):
        shortcut = inputs  # [B, H, W, C_in]
        if self.shortcut_conv is not None:
            shortcut = self.shortcut_bn(
                self.shortcut_conv(inputs), training=training
            )  # [B, H/s, W/s, C_out]
        x = inputs
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            x = bn(conv(x), training=training)
            if i < len(self.convs) - 1:
                x = ops.relu(x)
        return ops.relu(x + shortcut)  # [B, H/s, W/s, C_out]


class ResNet(keras.Model):
    """ResNet v1 / ResNeXt encoder: stem, four stages of residual blocks, global average pool -> `[B, F]`.

    Built on the first call, or by `build((B, H, W, C))` from the shape alone (B, H, W may be None), so any
    image size and channel count works. Under `tf.distribute`, create it inside `strategy.scope()`; its variables
    are then mirrored whether it is built there (`enc.build(...)`, the clearest) or lazily on its first call
    inside `strategy.run`.
    """

    def __init__(
        self,
        depth,
        width_multiplier,
        first_conv_kernel_size,
        first_conv_stride,
        use_initial_max_pool,
        bn_kwargs,
        zero_init_last_bn,
        architecture,
        init_scale=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.depth, self.width_multiplier, self.architecture = depth, width_multiplier, architecture
        self.cifar_stem = first_conv_stride == 1 and not use_initial_max_pool
        kind, blocks_per_stage = _DEPTHS[depth]
        kind = "resnext" if architecture == "resnext" else kind
        stem_channels = max(1, int(64 * width_multiplier))
        self.stem_conv = ConvFixedPadding(
            stem_channels, first_conv_kernel_size, first_conv_stride, initializer_scale=init_scale, name="stem_conv"
        )
        self.stem_bn = _batch_norm("stem_batch_norm", **bn_kwargs)
        self.max_pool = None
        if use_initial_max_pool:
            self.max_pool = keras.layers.MaxPooling2D(
                3, strides=2, padding="same", name="stem_max_pool"
            )
        expansion = 1 if kind == "basic" else 4
        self.blocks, in_channels = [], stem_channels
        for stage, num_blocks in enumerate(blocks_per_stage):
            filters = max(1, int(64 * 2**stage * width_multiplier))
            for b in range(num_blocks):
                strides = 2 if (b == 0 and stage > 0) else 1
                out_channels = filters * expansion
                self.blocks.append(
                    ResidualBlock(
                        kind,
                        filters,
                        strides,
                        strides != 1 or in_channels != out_channels,
                        bn_kwargs,
                        zero_init_last_bn,
                        init_scale,
                        name=f"stage_{stage + 1}_block_{b + 1}",
                    )
                )
                in_channels = out_channels
        self.num_features = in_channels
        self.pool = keras.layers.GlobalAveragePooling2D(name="global_pool")

    def build(self, input_shape):
        """Creates every variable from `input_shape` = (B, H, W, C) alone (B, H, W may be None)."""
        if self.built:
            return
        _check_image_shape(input_shape)
        shape = _build_conv_bn(self.stem_conv, self.stem_bn, tuple(input_shape))
        if self.max_pool is not None:
            shape = self.max_pool.compute_output_shape(shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_features)

    def call(self, images, training=False):
        x = ops.relu(self.stem_bn(self.stem_conv(images), training=training))  # [B, H/s, W/s, 64w]
        if self.max_pool is not None:
            x = self.max_pool(x)  # [B, H/2s, W/2s, 64w]
        for block in self.blocks:
            x = block(x, training=training)  # [B, h, w, c]
        return self.pool(x)  # [B, F]


def _check_image_shape(input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) != 4 or input_shape[-1] is None:
        raise ValueError(
            f"input_shape must be (batch, height, width, channels) with known channels, got {input_shape}"
        )


def _validate(depth, width_multiplier, first_conv_kernel_size, first_conv_stride, architecture):
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    allowed = _RESNEXT_DEPTHS if architecture == "resnext" else tuple(_DEPTHS)
    if depth not in allowed:
        raise ValueError(
            f"depth for architecture {architecture!r} must be one of {allowed}, got {depth!r}"
        )
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
    if int(first_conv_kernel_size) < 1 or int(first_conv_stride) < 1:
        raise ValueError(
            "first_conv_kernel_size and first_conv_stride must be >= 1, got "
            f"{first_conv_kernel_size!r} and {first_conv_stride!r}"
        )
    if architecture == "resnext":
        narrowest = int(64 * width_multiplier) * 2
        if narrowest < _RESNEXT_GROUPS or narrowest % _RESNEXT_GROUPS:
            raise ValueError(
                f"width_multiplier={width_multiplier!r} gives {narrowest} channels in the first grouped conv; "
                f"resnext needs a multiple of its {_RESNEXT_GROUPS} groups (use width_multiplier >= 0.5)"
            )


@gin.register
def resnet(
    depth=50,
    width_multiplier=1.0,
    first_conv_kernel_size=7,
    first_conv_stride=2,
    use_initial_max_pool=True,
    sync_batch_norm=False,
    bn_momentum=0.9,
    bn_epsilon=1e-5,
    fused_batch_norm=True,
    zero_init_last_bn=True,
    architecture="resnet_v1",
    conv_init_scale=1.0,
    name="encoder",
):
    """Builds a ResNet v1 (depth 10/18/34/50/101/152/200) or ResNeXt (50/101/152/200) encoder.

    Args:
        depth: network depth; 10, 18 and 34 use basic blocks (10: one per stage, the tests' cheap encoder), 50
            and deeper bottleneck blocks.
        width_multiplier: channels per stage are `int(64 * 2**i * width_multiplier)` (at least 1), so small
            values such as 0.125 give CPU-sized networks.
        first_conv_kernel_size: stem kernel size (7 for ImageNet, 3 for CIFAR).
        first_conv_stride: stem stride (2 for ImageNet, 1 for CIFAR).
        use_initial_max_pool: whether the stem ends with a 3×3/2 max-pool (False for CIFAR).
        sync_batch_norm: cross-replica BN statistics under a `tf.distribute` strategy
            (`BatchNormalization(synchronized=True)`); local statistics otherwise.
        bn_momentum: moving-average momentum of every BN (official 0.9).
        bn_epsilon: BN epsilon (official 1e-5; the fused kernel uses max(bn_epsilon, 1.001e-5)).
        fused_batch_norm: train BN with TF's fused kernel (`FusedBatchNormalization`); not with sync_batch_norm.
        zero_init_last_bn: start the last BN gamma of every ResNet v1 block at 0 (ResNeXt never does).
        architecture: 'resnet_v1' or 'resnext' (grouped 3×3 with 64 groups, 2f inner width).
        conv_init_scale: the convolutions' variance-scaling factor: 1.0 is the official
            `variance_scaling_initializer()` (fan-in, truncated normal); 2.0 is He's (PyTorch-style ReLU nets).
        name: the model's name (the prefix of its variables' paths).

    Returns:
        An unbuilt `keras.Model` mapping `[B, H, W, C]` images to `[B, F]` features; `model.num_features` is F.

    Raises:
        ValueError: on an unknown depth, architecture or a non-positive width.
    """
    _validate(depth, width_multiplier, first_conv_kernel_size, first_conv_stride, architecture)
    if not conv_init_scale > 0:
        raise ValueError(f"resnet.conv_init_scale must be > 0; got {conv_init_scale!r}")
    bn_kwargs = {
        "momentum": bn_momentum,
        "epsilon": bn_epsilon,
        "synchronized": bool(sync_batch_norm),
        "fused": bool(fused_batch_norm),
    }
    return ResNet(
        depth,
        float(width_multiplier),
        int(first_conv_kernel_size),
        int(first_conv_stride),
        bool(use_initial_max_pool),
        bn_kwargs,
        bool(zero_init_last_bn),
        architecture,
        float(conv_init_scale),
        name=name,
    )
