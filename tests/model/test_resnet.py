"""Tests for supcon.model.resnet: shapes, parameter counts, initialisation, padding, validation, SyncBN."""

import numpy as np
import pytest

from supcon.model import resnet as resnet_lib
from supcon.model.resnet import resnet


def _bn_layers(model):
    import keras

    return [
        lay for lay in model._flatten_layers() if isinstance(lay, keras.layers.BatchNormalization)
    ]


@pytest.mark.parametrize(
    "depth, width, kernel, stride, max_pool, shape, features",
    [
        (10, 0.125, 3, 1, False, (2, 8, 8, 1), 64),  # the trainer tests' encoder (tests/fixtures/train)
        (18, 0.125, 3, 1, False, (2, 8, 8, 1), 64),  # 1-channel 8x8 digits, CIFAR stem
        (34, 0.0625, 7, 2, True, (2, 32, 32, 3), 32),  # ImageNet stem on a small image
        (50, 0.0625, 3, 1, False, (2, 16, 12, 3), 128),  # bottleneck, non-square
    ],
)
def test_output_shapes(tf_two_cpus, depth, width, kernel, stride, max_pool, shape, features):
    tf = tf_two_cpus
    model = resnet(depth, width, kernel, stride, max_pool)
    out = model(tf.random.normal(shape), training=True)
    assert tuple(out.shape) == (shape[0], features)
    assert model.num_features == features
    assert np.all(np.isfinite(out.numpy()))


@pytest.mark.parametrize(
    "depth, blocks, features",
    [(10, 4, 512), (18, 8, 512), (34, 16, 512), (50, 16, 2048), (101, 33, 2048), (200, 66, 2048)],
)
def test_block_counts_per_depth(depth, blocks, features):
    model = resnet(depth)  # constructor only: nothing is built
    assert len(model.blocks) == blocks
    assert model.num_features == features
    kinds = {len(block.convs) for block in model.blocks}
    assert kinds == ({2} if depth < 50 else {3})  # basic vs bottleneck


def test_any_input_size_after_first_call(tf_two_cpus):
    tf = tf_two_cpus
    model = resnet(18, 0.0625, 3, 1, False)
    assert tuple(model(tf.zeros([1, 8, 8, 3])).shape) == (1, 32)
    assert tuple(model(tf.zeros([3, 13, 9, 3])).shape) == (3, 32)


def test_tiny_width_keeps_one_channel(tf_two_cpus):
    tf = tf_two_cpus
    model = resnet(18, 0.001, 3, 1, False)
    assert tuple(model(tf.zeros([1, 8, 8, 3])).shape) == (1, 1)  # int(64 * 8 * 0.001) = 0 -> 1


# ResNet-10 by hand: stem 7*7*3*64 + 128; stage i (c_in -> c): 9*c_in*c + 9*c*c + 2 BNs, and from stage 2 a 1x1
# shortcut c_in*c + BN: 9,536 + 73,984 + 230,144 + 919,040 + 3,673,088 = 4,905,792 (torchvision-style ResNet-10
# with its 513,000-parameter ImageNet classifier: 5.42 M).
@pytest.mark.parametrize("depth, expected", [(10, 4_905_792), (18, 11_176_512), (50, 23_508_032)])
def test_imagenet_parameter_counts(tf_two_cpus, depth, expected):
    model = resnet(depth)
    model.build((None, 224, 224, 3))
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert abs(trainable - expected) / expected < 0.01, trainable
    # the paper's ResNet-50 has 2048-d features
    assert model.num_features == (512 if depth < 50 else 2048)


@pytest.mark.parametrize("depth", [18, 50])
def test_last_bn_gamma_zero_initialised(tf_two_cpus, depth):
    model = resnet(depth, 0.0625, 3, 1, False)
    model.build((None, 8, 8, 3))
    for block in model.blocks:
        gammas = [bn.gamma.numpy() for bn in block.bns]
        assert np.all(gammas[-1] == 0.0)
        assert all(np.all(g == 1.0) for g in gammas[:-1])
    off = resnet(depth, 0.0625, 3, 1, False, zero_init_last_bn=False)
    off.build((None, 8, 8, 3))
    assert all(np.all(bn.gamma.numpy() == 1.0) for bn in _bn_layers(off))


def test_bn_hyperparameters_and_names(tf_two_cpus):
    model = resnet(18, 0.0625, 3, 1, False)
    model.build((None, 8, 8, 3))
    layers = _bn_layers(model)
    assert len(layers) == 1 + 8 * 2 + 3  # stem, 2 per basic block, 3 projection shortcuts
    assert all(bn.momentum == 0.9 and bn.epsilon == 1e-5 and not bn.synchronized for bn in layers)
    assert all("batch_norm" in bn.name for bn in layers)
    custom = resnet(
        18, 0.0625, 3, 1, False, bn_momentum=0.99, bn_epsilon=1e-3, sync_batch_norm=True
    )
    custom.build((None, 8, 8, 3))
    assert all(
        bn.momentum == 0.99 and bn.epsilon == 1e-3 and bn.synchronized for bn in _bn_layers(custom)
    )


def test_convolutions_have_no_bias(tf_two_cpus):
    model = resnet(50, 0.0625, 3, 1, False)
    model.build((None, 8, 8, 3))
    paths = [v.path for v in model.trainable_variables]
    assert not [p for p in paths if p.endswith("bias")]
    assert any(p.endswith("conv/kernel") for p in paths)


def test_conv_init_scale_sets_the_kernels_variance(tf_two_cpus):
    """Every convolution (stem, blocks, shortcuts) draws fan-in variance-scaled kernels: variance scale / fan_in,
    so He's scale 2 doubles the official scale 1's variance."""
    official, he = resnet(18, 0.5, 3, 1, False), resnet(18, 0.5, 3, 1, False, conv_init_scale=2.0)
    for model in (official, he):
        model.build((None, 8, 8, 3))
    for a, b in zip(official.trainable_variables, he.trainable_variables, strict=True):
        if not a.path.endswith("conv/kernel"):
            continue
        kernel = a.numpy()
        fan_in = np.prod(kernel.shape[:-1])
        ratio = np.var(b.numpy()) / np.var(kernel)
        assert abs(np.var(kernel) * fan_in - 1.0) < 0.35, a.path
        assert 1.6 < ratio < 2.5, (a.path, ratio)


def test_strided_conv_uses_fixed_padding(tf_two_cpus):
    """Fixed padding splits k-1 = 2 pixels as 1 before + 1 after; TF 'same' would pad 0 before, 1 after."""
    tf = tf_two_cpus
    layer = resnet_lib.ConvFixedPadding(1, 3, strides=2)
    image = np.zeros([1, 8, 8, 1], np.float32)
    image[0, 2, 2, 0] = 1.0
    layer(tf.constant(image))
    layer.conv.kernel.assign(tf.ones_like(layer.conv.kernel))
    out = layer(tf.constant(image)).numpy()[0, :, :, 0]  # [4, 4]
    assert out.shape == (4, 4)
    assert np.argwhere(out).tolist() == [[1, 1]]  # 'same' would give 4 non-zero outputs


@pytest.mark.parametrize("size", [8, 7])
def test_strided_1x1_conv_has_no_padding_op_and_samples_the_even_pixels(tf_two_cpus, size):
    """k = 1: fixed padding pads k - 1 = 0 pixels, so no pad op; a 1x1 stride-2 'valid' convolution reads the
    pixels (0, 0), (0, 2), ... exactly as TF's strided slice does."""
    tf = tf_two_cpus
    layer = resnet_lib.ConvFixedPadding(3, 1, strides=2)
    image = tf.random.stateless_normal([2, size, size, 4], seed=[5, 6])
    out = layer(image)
    assert layer.pad is None
    expected = tf.einsum("bhwc,cf->bhwf", image[:, ::2, ::2, :], layer.conv.kernel[0, 0])
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_resnext_grouped_block(tf_two_cpus):
    tf = tf_two_cpus
    model = resnet(50, 0.5, 3, 1, False, architecture="resnext")
    assert tuple(model(tf.zeros([1, 8, 8, 3])).shape) == (1, 1024)
    grouped = model.blocks[0].convs[1].conv
    assert grouped.groups == 64 and grouped.filters == 64
    # ResNeXt's last BN is not zero-initialised (official)
    assert np.all(model.blocks[0].bns[-1].gamma.numpy() == 1.0)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"depth": 42}, "depth"),
        ({"architecture": "vgg"}, "architecture"),
        ({"depth": 18, "architecture": "resnext"}, "depth"),
        ({"depth": 10, "architecture": "resnext"}, "depth"),
        ({"width_multiplier": 0.0}, "width_multiplier"),
        ({"width_multiplier": 0.125, "architecture": "resnext"}, "width_multiplier"),
        ({"first_conv_stride": 0}, "first_conv_stride"),
        ({"conv_init_scale": 0.0}, "conv_init_scale"),
    ],
)
def test_bad_arguments_raise(kwargs, word):
    with pytest.raises(ValueError, match=word):
        resnet(**kwargs)


def test_sync_batch_norm_uses_global_batch_statistics(tf_two_cpus):
    """Two replicas with SyncBN update the moving statistics exactly like one device on the whole batch."""
    tf = tf_two_cpus
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    with strategy.scope():
        synced = resnet(18, 0.0625, 3, 1, False, sync_batch_norm=True)
        synced.build((None, 8, 8, 3))
    single = resnet(18, 0.0625, 3, 1, False)
    single.build((None, 8, 8, 3))
    single.set_weights(synced.get_weights())
    rng = np.random.default_rng(0)
    halves = [
        rng.normal(size=(2, 8, 8, 3)).astype(np.float32) + i for i in range(2)
    ]  # different stats

    @tf.function
    def step(images):
        return strategy.run(lambda x: synced(x, training=True), args=(images,))

    step(
        strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(halves[ctx.replica_id_in_sync_group])
        )
    )
    single(tf.constant(np.concatenate(halves)), training=True)
    for a, b in zip(_bn_layers(synced), _bn_layers(single), strict=True):
        np.testing.assert_allclose(
            a.moving_mean.numpy(), b.moving_mean.numpy(), rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            a.moving_variance.numpy(), b.moving_variance.numpy(), rtol=1e-3, atol=1e-5
        )


@pytest.mark.parametrize("momentum, epsilon, width", [(0.9, 1e-3, 1.0), (0.5, 2e-5, 3.0)])
def test_fused_batch_norm_equals_keras_batch_norm(tf_two_cpus, momentum, epsilon, width):
    """The fused training pass: same outputs, gradients and moving statistics as Keras' BatchNormalization."""
    import keras

    tf = tf_two_cpus
    x = tf.random.stateless_normal([4, 5, 6, 3], seed=[1, 2]) * width + 0.7
    layers = {}
    for cls in (keras.layers.BatchNormalization, resnet_lib.FusedBatchNormalization):
        layer = cls(momentum=momentum, epsilon=epsilon, gamma_initializer="random_normal",
                    beta_initializer="random_normal")
        layer.build(x.shape)
        layers[cls] = layer
    plain, fused = layers.values()
    for a, b in zip(plain.weights, fused.weights, strict=True):
        b.assign(a)
    results = {}
    for name, layer in (("plain", plain), ("fused", fused)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(y))
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results[name] = [y, *grads, layer.moving_mean, layer.moving_variance]
    for a, b in zip(results["plain"], results["fused"], strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5)
    assert not np.allclose(fused.moving_mean.numpy(), 0.0)  # the statistics moved
    # Inference and frozen layers take the Keras path.
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [16, 8])
def test_fused_batch_norm_bfloat16_paths_equal_float32_between_casts(tf_two_cpus, channels):
    """bfloat16 input: the direct kernel call (channels % 16 == 0) and the cast path (other channel counts) give
    the values of float32 batch norm on the same bfloat16 numbers, rounded to bfloat16."""
    tf = tf_two_cpus
    assert (channels % resnet_lib.BF16_BATCH_NORM_CHANNEL_BLOCK == 0) == (channels == 16)
    x32 = tf.cast(tf.cast(tf.random.stateless_normal([6, 5, 4, channels], seed=[3, 4]) * 2 + 0.5, tf.bfloat16),
                  tf.float32)  # values exactly representable in bfloat16
    results = {}
    for dtype in ("mixed_bfloat16", "float32"):
        layer = resnet_lib.FusedBatchNormalization(momentum=0.9, epsilon=1e-5, dtype=dtype,
                                                   gamma_initializer="random_normal", beta_initializer="ones")
        layer.build(x32.shape)
        layer.gamma.assign(tf.linspace(0.5, 1.5, channels))
        x = tf.cast(x32, layer.compute_dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.linspace(-1.0, 1.0, channels))
        dx, dgamma = tape.gradient(loss, [x, layer.gamma])
        assert y.dtype == layer.compute_dtype
        results[dtype] = [tf.cast(v, tf.float32).numpy() for v in (y, dx, dgamma)] + [
            layer.moving_mean.numpy(), layer.moving_variance.numpy()]
    bf16, fp32 = results["mixed_bfloat16"], results["float32"]
    np.testing.assert_allclose(bf16[0], fp32[0], rtol=1e-2, atol=1e-2)  # y: bfloat16 rounding
    np.testing.assert_allclose(bf16[1], fp32[1], rtol=2e-2, atol=2e-2)  # dx
    np.testing.assert_allclose(bf16[2], fp32[2], rtol=2e-2, atol=2e-2)  # dgamma
    np.testing.assert_allclose(bf16[3], fp32[3], rtol=1e-5, atol=1e-6)  # statistics: float32 in both
    np.testing.assert_allclose(bf16[4], fp32[4], rtol=1e-5, atol=1e-6)


def test_resnet_uses_fused_batch_norm_unless_synchronized(tf_two_cpus):
    fused = [type(b).__name__ for b in _bn_layers(resnet(18, 0.125, 3, 1, False))]
    assert set(fused) == {"FusedBatchNormalization"}
    plain = [type(b).__name__ for b in _bn_layers(resnet(18, 0.125, 3, 1, False, fused_batch_norm=False))]
    assert set(plain) == {"BatchNormalization"}
    synced = [type(b).__name__ for b in _bn_layers(resnet(18, 0.125, 3, 1, False, sync_batch_norm=True))]
    assert set(synced) == {"BatchNormalization"}
