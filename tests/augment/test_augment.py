"""Augmenters: shapes, dtypes and ranges eagerly and in tf.data, determinism per seed, PIL-faithful operations."""

import functools

import gin
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from supcon import augment
from supcon.augment import ops, policies

AUGMENTERS = {
    "simclr": functools.partial(augment.simclr_augment, blur_probability=1.0),
    "simclr_torchvision": functools.partial(augment.simclr_augment, torchvision_jitter=True),
    "randaugment": augment.randaugment,
    "autoaugment": augment.autoaugment,
    "stacked_randaugment": augment.stacked_randaugment,
    "crop_flip": augment.crop_flip,
    "identity": augment.identity_augment,
}
RANDOM = [name for name in AUGMENTERS if name != "identity"]


def image(channels, size=32, seed=0):
    """A smooth-ish random image in [0, 1], [size, size, channels]."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(size=(size // 4, size // 4, channels)).astype(np.float32)
    return tf.image.resize(low, (size, size)).numpy().clip(0, 1)


def in_dataset(fn, img, seed):
    """fn(img, seed) computed inside tf.data.Dataset.map."""
    ds = tf.data.Dataset.from_tensors((img, tf.constant(seed, tf.int64))).map(fn)
    return next(iter(ds)).numpy()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(AUGMENTERS))
def test_eager_matches_tf_data(name, channels):
    fn, img = AUGMENTERS[name], image(channels)
    eager = fn(tf.constant(img), tf.constant([7, 11], tf.int64)).numpy()
    assert eager.shape == (32, 32, channels) and eager.dtype == np.float32
    assert eager.min() >= 0.0 and eager.max() <= 1.0
    np.testing.assert_allclose(in_dataset(fn, img, [7, 11]), eager, atol=1e-5)


@pytest.mark.parametrize("name", RANDOM)
def test_same_seed_same_view_other_seed_other_view(name):
    fn, img = AUGMENTERS[name], tf.constant(image(3))
    first = fn(img, tf.constant([1, 2])).numpy()
    np.testing.assert_array_equal(fn(img, tf.constant([1, 2])).numpy(), first)
    others = [fn(img, tf.constant([1, s])).numpy() for s in range(3, 7)]
    assert all(np.abs(other - first).max() > 1e-3 for other in others)


@pytest.mark.parametrize("name", ["simclr", "randaugment", "crop_flip", "identity"])
def test_image_size_resizes(name):
    out = AUGMENTERS[name](tf.constant(image(3, size=40)), tf.constant([0, 1]), image_size=(24, 16))
    assert out.shape == (24, 16, 3)


def test_grayscale_and_one_channel_colour_ops():
    img = tf.constant(image(3))
    gray = augment.simclr_augment(img, [0, 1], color_jitter_probability=0.0, grayscale_probability=1.0,
                                  blur_probability=0.0).numpy()
    np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-6)
    one = tf.constant(image(1))
    np.testing.assert_array_equal(ops.grayscale(one).numpy(), one.numpy())
    for adjust in (ops._saturation, ops._hue):
        np.testing.assert_array_equal(adjust(one, tf.constant(0.3), 0.8, False).numpy(), one.numpy())


def test_color_jitter_styles_differ_and_strength_zero_is_identity():
    img, seed = tf.constant(image(3)), tf.constant([3, 4])
    tf_style = ops.color_jitter(img, seed, 1.0, torchvision=False).numpy()
    tv_style = ops.color_jitter(img, seed, 1.0, torchvision=True).numpy()
    assert np.abs(tf_style - tv_style).max() > 1e-3
    np.testing.assert_allclose(ops.color_jitter(img, seed, 0.0).numpy(), img.numpy(), atol=1e-6)


def test_blur_matches_a_zero_padded_gaussian_convolution():
    img = tf.constant(image(3, size=40))
    sigma, radius = 1.3, 2
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    taps /= taps.sum()
    kernel = np.outer(taps, taps)[:, :, None, None] * np.ones((1, 1, 3, 1))
    expected = tf.nn.depthwise_conv2d(img[None], kernel.astype(np.float32), [1, 1, 1, 1], "SAME")[0]
    np.testing.assert_allclose(ops.blur(img, sigma, radius).numpy(), expected.numpy(), atol=1e-5)
    small = tf.constant(image(3, size=8))  # kernel side 8 // 10 = 0: no blur, as the official code
    np.testing.assert_array_equal(ops.gaussian_blur(small, [0, 1], 1.0).numpy(), small.numpy())


def coordinate_image(height, width):
    """[H, W, 2] float32: channel 0 holds each pixel's row, channel 1 its column."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return tf.constant(np.stack([rows, cols], axis=-1).astype(np.float32))


def source_box(crop):
    """(top, left, height, width) of the source box a `random_resized_crop` output was resized from.

    The image and the output are both 64 x 64, so no box is larger than the output and bilinear resizing
    (half-pixel centres) only enlarges: the first and last output pixels clamp onto the box's first and last
    source pixel, whose coordinates they carry exactly.
    """
    rows, cols = crop[..., 0].numpy(), crop[..., 1].numpy()
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    return round(top), round(left), round(bottom - top) + 1, round(right - left) + 1


# Ranges from 0.1 up: the sampler also asks each box to cover min_object_covered = 0.1 of the image (as the
# official code), so a box below 10% of the image never qualifies.
@pytest.mark.parametrize("area_range", [(0.1, 0.15), (0.2, 0.3), (0.6, 0.9)])
def test_crop_covers_the_requested_area(area_range):
    img = coordinate_image(64, 64)
    fractions = []
    for s in range(200):
        crop = ops.random_resized_crop(img, tf.constant([s, 3]), (64, 64), area_range=area_range)
        assert crop.shape == (64, 64, 2)
        top, left, height, width = source_box(crop)
        assert top >= 0 and left >= 0 and top + height <= 64 and left + width <= 64
        # TF's sampler rounds the width to an integer after choosing the height: +-1 column of slack
        assert 3 / 4 - 1 / height <= width / height <= 4 / 3 + 1 / height, (s, height, width)
        fractions.append(height * width / (64 * 64))
    fractions = np.array(fractions)
    assert fractions.min() >= area_range[0] and fractions.max() <= area_range[1], fractions
    # the sampled areas spread over the range, not one size
    span = area_range[1] - area_range[0]
    assert fractions.min() < area_range[0] + span / 4 and fractions.max() > area_range[1] - span / 4


# ---------------------------------------------------------------------------------------------------------
# tf-models operations against PIL, on uint8-valued images.


def pil_pair(seed=0):
    rng = np.random.default_rng(seed)
    array = rng.integers(30, 220, size=(24, 20, 3)).astype(np.uint8)
    return array, Image.fromarray(array), tf.constant(array, tf.float32)


@pytest.mark.parametrize("op, pil_op, atol", [
    (policies.equalize, ImageOps.equalize, 0),
    (policies.autocontrast, ImageOps.autocontrast, 1),
    (policies.invert, ImageOps.invert, 0),
    (lambda x: policies.posterize(x, 3), lambda im: ImageOps.posterize(im, 3), 0),
    (lambda x: policies.solarize(x, 128.0), lambda im: ImageOps.solarize(im, 128), 0),
    (lambda x: policies.color(x, 1.9), lambda im: ImageEnhance.Color(im).enhance(1.9), 1),
    (lambda x: policies.contrast(x, 0.4), lambda im: ImageEnhance.Contrast(im).enhance(0.4), 1),
    (lambda x: policies.brightness(x, 1.3), lambda im: ImageEnhance.Brightness(im).enhance(1.3), 1),
    (lambda x: policies.sharpness(x, 1.9), lambda im: ImageEnhance.Sharpness(im).enhance(1.9), 1),
])
def test_policy_operations_match_pil(op, pil_op, atol):
    array, pil, img = pil_pair()
    expected = np.asarray(pil_op(pil), np.float32)
    out = op(img).numpy()
    assert np.abs(out - expected).max() <= atol
    assert np.array_equal(out, np.floor(out))  # integer-valued like a uint8 image


def test_geometric_operations_and_cutout():
    img = tf.reshape(tf.range(16, dtype=tf.float32), [4, 4, 1])
    moved = policies.translate_x(img, 1.0).numpy()[..., 0]
    np.testing.assert_array_equal(moved[:, :3], img.numpy()[:, 1:, 0])  # content moves left, grey fill
    np.testing.assert_array_equal(moved[:, 3], policies.GREY)
    np.testing.assert_array_equal(policies.rotate(img, 0.0).numpy(), img.numpy())
    quarter = policies.rotate(img, 90.0).numpy()[..., 0]
    assert sorted(quarter.ravel()) == list(range(16))  # a square rotated by 90 degrees loses nothing
    cut = policies.cutout(tf.zeros([10, 10, 3]), 2, tf.constant([1, 2])).numpy()
    assert 4 <= (cut[..., 0] == policies.GREY).sum() <= 16


def test_policies_are_well_formed():
    assert len(policies.POLICY_V0) == 25 and len(policies.RANDAUGMENT_OPS) == 16
    for sub in policies.POLICY_V0:
        for name, probability, level in sub:
            assert name in policies.RANDAUGMENT_OPS and 0 <= probability <= 1 and 0 <= level <= 10
    img = tf.constant(image(3)) * 255.0
    for index in range(len(policies.RANDAUGMENT_OPS) + 1):  # every branch runs at the maximum level
        out = policies.apply_op(index, tf.round(img), 10.0, tf.constant([0, index]), 40.0, 100.0).numpy()
        assert out.shape == (32, 32, 3) and out.min() >= 0 and out.max() <= 255


# ---------------------------------------------------------------------------------------------------------
# Evaluation preprocessing, normalisation, validation, gin.


def test_eval_preprocess_methods():
    img = tf.constant(image(3, size=48))[:, :40]  # [48, 40, 3]
    assert augment.eval_preprocess(img).shape == (48, 40, 3)
    np.testing.assert_array_equal(augment.eval_preprocess(img).numpy(), img.numpy())
    for method in ("resize_then_crop", "crop_then_resize", "identity"):
        out = augment.eval_preprocess(img, method=method, image_size=32, crop_padding=8)
        assert out.shape == (32, 32, 3) and 0 <= float(tf.reduce_min(out)) <= float(tf.reduce_max(out)) <= 1
    ramp = tf.tile(tf.reshape(tf.range(64, dtype=tf.float32) / 63, [64, 1, 1]), [1, 64, 1])
    centre = augment.eval_preprocess(ramp, method="crop_then_resize", image_size=32, crop_padding=32).numpy()
    assert 0.2 < centre.min() < centre.max() < 0.8  # the central half of the ramp


def test_normalize_scaling_and_whitening():
    img = tf.constant([[[0.0, 0.5, 1.0]]])
    np.testing.assert_allclose(augment.normalize(img).numpy(), [[[-1.0, 0.0, 1.0]]])
    out = augment.normalize(img, augment.CIFAR10_MEAN, augment.CIFAR10_STD).numpy()
    expected = (np.array([-1.0, 0.0, 1.0]) - augment.CIFAR10_MEAN) / augment.CIFAR10_STD
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="whitening_mean"):
        augment.normalize(img, (0.0,), (1.0,))
    with pytest.raises(ValueError, match="together"):
        augment.normalize(img, augment.CIFAR10_MEAN, None)


@pytest.mark.parametrize("call, message", [
    (lambda x: augment.simclr_augment(x, [0, 1], crop_area_range=(0.5, 0.1)), "crop_area_range"),
    (lambda x: augment.simclr_augment(x, [0, 1], blur_probability=1.5), "blur_probability"),
    (lambda x: augment.simclr_augment(x, [0, 1], strength=-1.0), "strength"),
    (lambda x: augment.randaugment(x, [0, 1], magnitude=11), "magnitude"),
    (lambda x: augment.randaugment(x, [0, 1], num_layers=-1), "num_layers"),
    (lambda x: augment.crop_flip(x, [0, 1], image_size=0), "image_size"),
    (lambda x: augment.eval_preprocess(x, method="center"), "method"),
    (lambda x: augment.crop_flip(tf.zeros([8, 8, 2]), [0, 1]), "channels"),
])
def test_invalid_options_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call(tf.constant(image(3)))


@gin.configurable("test_augment_holder")
def _holder(fns=gin.REQUIRED):
    return fns


def test_gin_names_are_registered():
    """Each `@name` resolves to gin's configurable wrapper of the intended augment function, and a binding on
    the name reaches that function."""
    intended = {  # written out by hand: the recipes' names and the functions they must call
        "simclr_augment": augment.simclr_augment,
        "randaugment": augment.randaugment,
        "autoaugment": augment.autoaugment,
        "stacked_randaugment": augment.stacked_randaugment,
        "crop_flip": augment.crop_flip,
        "identity_augment": augment.identity_augment,
        "eval_preprocess": augment.eval_preprocess,
        "normalize": augment.normalize,
    }
    try:
        references = ", ".join(f"@{name}" for name in intended)
        gin.parse_config(f"test_augment_holder.fns = [{references}]\nidentity_augment.image_size = 16\n")
        resolved = dict(zip(intended, _holder(), strict=True))
        for name, function in intended.items():
            assert resolved[name].__wrapped__ is function, name
        img = tf.constant(image(3))  # 32 x 32
        assert resolved["identity_augment"](img, tf.constant([0, 1])).shape == (16, 16, 3)  # the binding applies
        assert augment.identity_augment(img, tf.constant([0, 1])).shape == (32, 32, 3)  # the plain function: none
    finally:
        gin.clear_config()
