"""The `antialias` option of the augmenters and eval_preprocess: per-image and batched resizes equal
`tf.image.resize(..., 'bilinear', antialias=True)` and a hand-computed triangle filter, the option reaches every
path, and leaving it off changes nothing."""

import functools

import gin
import numpy as np
import pytest
import tensorflow as tf

from supcon import augment
from supcon.augment import batched, keys, ops


def images(num, height, width, channels, seed=0):
    """Rough random images in [0, 1] (detail at the pixel scale, where filtering matters), [N, H, W, C]."""
    return tf.constant(np.random.default_rng(seed).uniform(size=(num, height, width, channels)).astype(np.float32))


def view_keys(num, seed=1):
    return augment.example_keys(seed, 7, tf.range(num, dtype=tf.int64), 0)


def halve_by_hand(image, antialias):
    """28 -> 14 along both axes of [H, W, C] in numpy, from the kernels written out: without antialias the
    bilinear sample at 2i + 0.5 is the mean of inputs 2i and 2i + 1 (a 2 x 2 box); with it, the triangle of
    half-width 2 centred there weighs inputs 2i - 1 .. 2i + 2 by (1, 3, 3, 1) / 8, and (3, 3, 1) / 7 at the
    first output, whose left tap falls outside the image."""
    size = image.shape[0]
    weights = np.zeros((size // 2, size))
    for i in range(size // 2):
        taps = {2 * i: 1.0, 2 * i + 1: 1.0} if not antialias else {
            2 * i - 1: 1.0, 2 * i: 3.0, 2 * i + 1: 3.0, 2 * i + 2: 1.0}
        taps = {j: w for j, w in taps.items() if 0 <= j < size}
        total = sum(taps.values())
        for j, w in taps.items():
            weights[i, j] = w / total
    return np.einsum("ih,jw,hwc->ijc", weights, weights, np.asarray(image, np.float64))


# ---------------------------------------------------------------------------------------------------------
# The batched interpolation matrices


def test_triangle_weights_equal_tf_and_the_hand_computed_kernel():
    """Every window length 1..40 resized to sizes down and up: the weights are TF's, read off by resizing unit
    impulses (bit for bit here; a tolerance of 1e-7 allows for another summation order)."""
    in_size = 48
    for length in range(1, 41):
        for out in (1, 3, 7, 13, 14, 16, 28, 40):
            start = (in_size - length) // 3
            got = batched.interpolation_matrix(tf.constant([start]), tf.constant([length]), in_size, out,
                                               antialias=True).numpy()[0]  # [out, in]
            impulses = np.eye(length, dtype=np.float32)[None, :, :, None]  # column j: an impulse at row j
            want = tf.image.resize(impulses, (out, length), "bilinear", antialias=True).numpy()[0, :, :, 0]
            np.testing.assert_allclose(got[:, start:start + length], want, rtol=0, atol=1e-7,
                                       err_msg=f"length {length} -> {out}")
            assert not got[:, :start].any() and not got[:, start + length:].any()
    halve = batched.interpolation_matrix(tf.constant([0]), tf.constant([28]), 28, 14, antialias=True).numpy()[0]
    np.testing.assert_allclose(halve[0, :3], [3 / 7, 3 / 7, 1 / 7], atol=1e-7)
    np.testing.assert_allclose(halve[5, 9:13], [1 / 8, 3 / 8, 3 / 8, 1 / 8], atol=1e-7)


def test_off_keeps_the_plain_bilinear_matrix():
    plain = batched.interpolation_matrix(tf.constant([0, 3]), tf.constant([28, 9]), 28, 14).numpy()
    np.testing.assert_array_equal(
        plain, batched.interpolation_matrix(tf.constant([0, 3]), tf.constant([28, 9]), 28, 14, False).numpy())
    np.testing.assert_array_equal(plain[0, 5, 10:12], [0.5, 0.5])  # 28 -> 14: the 2 x 2 box


@pytest.mark.parametrize("height, width, size", [(28, 28, (14, 14)), (28, 28, (40, 40)), (20, 30, (9, 13))])
def test_batched_antialiased_crops_equal_tf_resize_of_each_box(height, width, size):
    """Many random boxes (5-100% of the area), every other one flipped: the batched crop-resize with antialias is
    the per-example `tf.image.resize(crop, size, 'bilinear', antialias=True)`, flipped."""
    num = 96
    batch = images(num, height, width, 3)
    boxes = batched.sample_crop_boxes(view_keys(num), height, width, (0.05, 1.0)).numpy()
    flips = np.arange(num) % 2 == 0
    got = batched.resize_boxes(batch, tf.constant(boxes), size, tf.constant(flips), antialias=True).numpy()
    plain = batched.resize_boxes(batch, tf.constant(boxes), size, tf.constant(flips)).numpy()
    for n, (top, left, crop_h, crop_w) in enumerate(boxes):
        want = tf.image.resize(batch[n, top:top + crop_h, left:left + crop_w], size, "bilinear", antialias=True)
        want = tf.image.flip_left_right(want) if flips[n] else want
        np.testing.assert_allclose(got[n], want.numpy(), atol=1e-5)
    downscaled = (boxes[:, 2] > size[0]) | (boxes[:, 3] > size[1])
    assert downscaled.any() == (size[0] < height)
    if downscaled.any():  # antialiasing changes the downscaled crops, and only those
        assert np.abs(got - plain)[downscaled].max() > 0.05
    np.testing.assert_allclose(got[~downscaled], plain[~downscaled], atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# The augmenters pass the option through


def test_batched_crop_flip_and_simclr_use_antialiased_crops():
    """Batched crop_flip with antialias: the sampled box of each key, resized as TF with antialias and flipped
    where the key's flip draw is below 1/2; simclr_augment without colour or blur is that crop_flip."""
    num = 24
    batch, k = images(num, 28, 28, 1), view_keys(num)
    got = augment.crop_flip(batch, k, image_size=14, antialias=True).numpy()
    boxes = batched.sample_crop_boxes(k, 28, 28).numpy()
    flips = keys.uniform(k, keys.FLIP).numpy() < 0.5
    for n, (top, left, crop_h, crop_w) in enumerate(boxes):
        want = tf.image.resize(batch[n, top:top + crop_h, left:left + crop_w], (14, 14), "bilinear",
                               antialias=True)
        want = tf.image.flip_left_right(want) if flips[n] else want
        np.testing.assert_allclose(got[n], want.numpy(), atol=1e-5)
    plain = augment.simclr_augment(batch, k, image_size=14, color_jitter_probability=0.0, grayscale_probability=0.0,
                                   blur_probability=0.0, antialias=True)
    np.testing.assert_array_equal(plain.numpy(), got)
    assert np.abs(got - augment.crop_flip(batch, k, image_size=14).numpy()).max() > 0.05


def tf_box(seed, height, width, area_range=(0.08, 1.0)):
    """(top, left, h, w) that ops.random_resized_crop takes for `seed`: TF's sampler as it calls it."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        [height, width, 1], tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed, min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=area_range, max_attempts=100,
        use_image_if_no_bounding_boxes=True)
    return [int(v) for v in (begin[0], begin[1], size[0], size[1])]  # a square image: no centre fallback needed


@pytest.mark.parametrize("channels", [1, 3])
def test_per_image_crop_flip_and_simclr_use_antialiased_crops(channels):
    """Per-image crop_flip (no flip) with antialias: TF's box for the crop seed, resized by TF with antialias;
    simclr_augment without colour or blur is crop_flip with its first seed; in tf.data as eagerly, in [0, 1]."""
    image = images(1, 28, 28, channels, seed=channels)[0]
    crop_flip = functools.partial(augment.crop_flip, image_size=14, flip=False, antialias=True)
    simclr = functools.partial(augment.simclr_augment, image_size=14, flip=False, antialias=True,
                               color_jitter_probability=0.0, grayscale_probability=0.0, blur_probability=0.0)
    changed = 0.0
    for s in range(12):
        seed = tf.constant([s, 5], tf.int64)
        got = crop_flip(image, seed).numpy()
        top, left, crop_h, crop_w = tf_box(ops.split_seed(seed, 2)[0], 28, 28)
        want = tf.image.resize(image[top:top + crop_h, left:left + crop_w], (14, 14), "bilinear", antialias=True)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-6)
        assert 0.0 <= got.min() and got.max() <= 1.0
        np.testing.assert_array_equal(simclr(image, seed).numpy(), crop_flip(image, ops.split_seed(seed, 3)[0]).numpy())
        changed = max(changed, np.abs(got - augment.crop_flip(image, seed, image_size=14, flip=False).numpy()).max())
    assert changed > 0.05
    ds = tf.data.Dataset.from_tensors((image, tf.constant([3, 5], tf.int64))).map(
        functools.partial(augment.simclr_augment, image_size=14, antialias=True))
    eager = augment.simclr_augment(image, tf.constant([3, 5], tf.int64), image_size=14, antialias=True).numpy()
    np.testing.assert_allclose(next(iter(ds)).numpy(), eager, atol=1e-5)


def test_identity_and_eval_preprocess_halve_with_the_triangle_filter():
    """28 -> 14: without antialias the 2 x 2 box average (as before); with it, the (1, 3, 3, 1) / 8 triangle,
    which is TF's antialiased resize and not the box; per image, batched and in eval_preprocess alike."""
    batch = images(4, 28, 28, 3, seed=3)
    box = np.stack([halve_by_hand(x, antialias=False) for x in batch.numpy()])
    triangle = np.stack([halve_by_hand(x, antialias=True) for x in batch.numpy()])
    assert np.abs(triangle - box).max() > 0.05
    tf_triangle = tf.image.resize(batch, (14, 14), "bilinear", antialias=True).numpy()
    np.testing.assert_allclose(triangle, tf_triangle, atol=1e-6)
    for antialias, want in ((False, box), (True, triangle)):
        np.testing.assert_allclose(augment.identity_augment(batch, view_keys(4), 14, antialias).numpy(), want,
                                   atol=1e-6)
        for n in range(4):
            got = [augment.identity_augment(batch[n], tf.constant([0, 1]), image_size=14, antialias=antialias),
                   augment.eval_preprocess(batch[n], image_size=14, antialias=antialias),
                   augment.eval_preprocess(batch[n], "crop_then_resize", 14, crop_padding=0, antialias=antialias),
                   augment.eval_preprocess(batch[n], "resize_then_crop", 14, crop_padding=0, antialias=antialias)]
            for out in got:
                np.testing.assert_allclose(out.numpy(), want[n], atol=1e-6)
    np.testing.assert_array_equal(augment.eval_preprocess(batch[0], image_size=14).numpy(),
                                  tf.image.resize(batch[0], (14, 14), "bilinear").numpy())


def test_eval_preprocess_antialiases_its_crop_and_shorter_side_resizes():
    """48 x 40 to 16: resize_then_crop (padding 8) resizes the shorter side to 24, i.e. to 29 x 24, and keeps
    rows 7..22 and columns 4..19; crop_then_resize (padding 4) keeps the central 32 x 32 (16 / 20 * 40) and
    resizes it; both with TF's antialiased resize."""
    image = images(1, 48, 40, 3, seed=4)[0]
    want = tf.image.resize(image, (29, 24), "bilinear", antialias=True)[7:23, 4:20]
    got = augment.eval_preprocess(image, "resize_then_crop", 16, crop_padding=8, antialias=True)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    want = tf.image.resize(image[8:40, 4:36], (16, 16), "bilinear", antialias=True)
    got = augment.eval_preprocess(image, "crop_then_resize", 16, crop_padding=4, antialias=True)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    plain = augment.eval_preprocess(image, "crop_then_resize", 16, crop_padding=4)
    assert np.abs(got.numpy() - plain.numpy()).max() > 0.05


def test_off_by_default_everywhere():
    """Leaving antialias unset equals antialias=False, bit for bit, on every augmenter that takes it, per image
    and batched (the plain resizes themselves are checked against tf.image.resize in the other augment tests)."""
    batch, k = images(6, 28, 28, 3, seed=5), view_keys(6)
    for fn in (augment.crop_flip, augment.simclr_augment, augment.identity_augment):
        np.testing.assert_array_equal(fn(batch, k, image_size=14).numpy(),
                                      fn(batch, k, image_size=14, antialias=False).numpy())
    seed = tf.constant([2, 9], tf.int64)
    for fn in (augment.crop_flip, augment.simclr_augment, augment.identity_augment, augment.randaugment,
               augment.autoaugment, augment.stacked_randaugment):
        np.testing.assert_array_equal(fn(batch[0], seed, image_size=14).numpy(),
                                      fn(batch[0], seed, image_size=14, antialias=False).numpy())
    for method in augment.EVAL_METHODS:
        np.testing.assert_array_equal(augment.eval_preprocess(batch[0], method, 14, 4).numpy(),
                                      augment.eval_preprocess(batch[0], method, 14, 4, antialias=False).numpy())


@gin.configurable("test_antialias_holder")
def _holder(fns=gin.REQUIRED):
    return fns


def test_gin_bindings_reach_the_option():
    batch, k = images(4, 28, 28, 1, seed=6), view_keys(4)
    try:
        gin.parse_config("test_antialias_holder.fns = [@simclr_augment, @eval_preprocess]\n"
                         "simclr_augment.antialias = True\nsimclr_augment.image_size = 14\n"
                         "eval_preprocess.antialias = True\neval_preprocess.image_size = 14\n")
        simclr, evaluate = _holder()
        assert augment.supports_batches(simclr)
        np.testing.assert_array_equal(simclr(batch, k).numpy(),
                                      augment.simclr_augment(batch, k, image_size=14, antialias=True).numpy())
        np.testing.assert_array_equal(evaluate(batch[0]).numpy(),
                                      augment.eval_preprocess(batch[0], image_size=14, antialias=True).numpy())
    finally:
        gin.clear_config()
