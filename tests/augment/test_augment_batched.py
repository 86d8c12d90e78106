"""Batched augmentation: shapes and ranges, determinism, batch independence, the crop sampler against TF's,
the batched operations against the per-image ones, gin dispatch, and the batched training pipeline."""

import functools

import gin
import numpy as np
import pytest
import tensorflow as tf

from supcon import augment, data
from supcon.augment import batched, batched_color, keys, ops
from supcon.data import pipeline, sources

AUGMENTERS = {
    "crop_flip": augment.crop_flip,
    "simclr": functools.partial(augment.simclr_augment, blur_probability=1.0),
    "simclr_torchvision": functools.partial(augment.simclr_augment, torchvision_jitter=True, strength=0.5),
    "identity": augment.identity_augment,
}
SIZES = [(28, 14), (32, 32)]  # (input side, output side)


def images(num, side, channels, seed=0, height=None):
    """Smooth-ish random images in [0, 1], [num, height or side, side, channels] float32."""
    rng = np.random.default_rng(seed)
    height = height or side
    low = rng.uniform(size=(num, height // 4, side // 4, channels)).astype(np.float32)
    return tf.clip_by_value(tf.image.resize(low, (height, side)), 0.0, 1.0)


@gin.configurable("test_augment_batched_holder")
def _holder(fn):
    return fn


def view_keys(num, seed=1, view=0):
    return augment.example_keys(seed, 7, tf.range(num, dtype=tf.int64), view)


# ---------------------------------------------------------------------------------------------------------
# Augmenters on batches


@pytest.mark.parametrize("side, out", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(AUGMENTERS))
def test_batched_views_shapes_ranges_and_determinism(name, channels, side, out):
    fn, batch, k = AUGMENTERS[name], images(6, side, channels), view_keys(6)
    views = fn(batch, k, image_size=out).numpy()
    assert views.shape == (6, out, out, channels) and views.dtype == np.float32
    assert views.min() >= 0.0 and views.max() <= 1.0
    np.testing.assert_array_equal(fn(batch, k, image_size=out).numpy(), views)
    ds = tf.data.Dataset.from_tensors((batch, k)).map(lambda x, y: fn(x, y, image_size=out))
    np.testing.assert_allclose(next(iter(ds)).numpy(), views, atol=1e-6)
    others = fn(batch, view_keys(6, view=1), image_size=out).numpy()
    if name != "identity":
        assert all(np.abs(others[n] - views[n]).max() > 1e-3 for n in range(6))


@pytest.mark.parametrize("name", ["crop_flip", "simclr", "simclr_torchvision"])
def test_a_view_does_not_depend_on_its_batch(name):
    fn, batch, k = AUGMENTERS[name], images(8, 32, 3), view_keys(8)
    together = fn(batch, k, image_size=16).numpy()
    order = [5, 2, 7]
    subset = fn(tf.gather(batch, order), tf.gather(k, order), image_size=16).numpy()
    np.testing.assert_allclose(subset, together[order], atol=1e-6)
    alone = fn(batch[3:4], k[3:4], image_size=16).numpy()
    np.testing.assert_allclose(alone[0], together[3], atol=1e-6)


def test_keys_are_splitmix64_and_uniforms_are_uniform():
    mask = (1 << 64) - 1

    def mix(x):  # the reference splitmix64 finaliser in Python integers
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    fold = lambda k, i: mix((k + (i + 1) * keys.GAMMA) & mask)  # noqa: E731
    got = augment.example_keys(-3, 1, tf.constant([0, 5], tf.int64)).numpy().tolist()
    assert got == [fold(fold(mix(-3 & mask), 1), p) for p in (0, 5)]
    draws = keys.uniform(augment.example_keys(0, tf.range(20000, dtype=tf.int64)), keys.FLIP, (3,)).numpy()
    assert 0.0 <= draws.min() and draws.max() < 1.0
    np.testing.assert_allclose(draws.mean(0), 0.5, atol=0.01)
    assert np.abs(np.corrcoef(draws.T) - np.eye(3)).max() < 0.03  # independent draw indices
    block = keys.uniform(view_keys(4), keys.CROP_INTEGERS, (5, 3), tf.float64).numpy()
    part = keys.uniform(view_keys(4), keys.CROP_INTEGERS, (2, 3), tf.float64, offset=6).numpy()
    np.testing.assert_array_equal(part, block[:, 2:4])  # a slice of attempts draws on its own


# ---------------------------------------------------------------------------------------------------------
# The crop sampler against tf.image.stateless_sample_distorted_bounding_box


def tf_boxes(num, height, width, area_range, aspect_range=(3 / 4, 4 / 3)):
    """[num, 4] (top, left, h, w) from TF's sampler as ops.random_resized_crop calls it, with its fallback."""

    def one(index):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            [height, width, 1], tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=tf.stack([index, 17]),
            min_object_covered=0.1, aspect_ratio_range=aspect_range, area_range=area_range, max_attempts=100,
            use_image_if_no_bounding_boxes=True)
        return tf.concat([begin[:2], size[:2]], 0)

    boxes = next(iter(tf.data.Dataset.range(num).map(one).batch(num))).numpy()
    side = min(height, width)
    whole = (boxes[:, 2] == height) & (boxes[:, 3] == width)
    boxes[whole] = [(height - side + 1) // 2, (width - side + 1) // 2, side, side]
    return boxes


@pytest.mark.parametrize("height, width, area_range", [(28, 28, (0.2, 1.0)), (24, 32, (0.08, 1.0))])
def test_crop_boxes_follow_tf_sampler_distribution(height, width, area_range):
    num = 4000
    ours = batched.sample_crop_boxes(view_keys(num), height, width, area_range).numpy()
    ref = tf_boxes(num, height, width, area_range)
    for boxes in (ours, ref):
        top, left, crop_h, crop_w = boxes.T
        assert (crop_h >= 1).all() and (top + crop_h <= height).all() and (left + crop_w <= width).all()
        assert (top[crop_h < height] < height - crop_h[crop_h < height]).all()  # Uniform(n) excludes n
        assert (left[crop_w < width] < width - crop_w[crop_w < width]).all()
    fraction = lambda b: b[:, 2] * b[:, 3] / (height * width)  # noqa: E731
    assert fraction(ours).min() >= min(area_range[0], 1.0) - 1e-6
    for column in (2, 3):  # crop height, width
        assert abs(ours[:, column].mean() - ref[:, column].mean()) < 0.35
        np.testing.assert_allclose(np.quantile(ours[:, column], [0.1, 0.25, 0.5, 0.75, 0.9]),
                                   np.quantile(ref[:, column], [0.1, 0.25, 0.5, 0.75, 0.9]), atol=1.0)
    assert abs(fraction(ours).mean() - fraction(ref).mean()) < 0.015
    for column, side, length in ((0, height, 2), (1, width, 3)):  # offsets: relative position in the slack
        slack = side - ours[:, length]
        ref_slack = side - ref[:, length]
        rel = ours[slack > 0, column] / slack[slack > 0]
        ref_rel = ref[ref_slack > 0, column] / ref_slack[ref_slack > 0]
        assert abs(rel.mean() - ref_rel.mean()) < 0.03
        assert abs((ours[:, column] == 0).mean() - (ref[:, column] == 0).mean()) < 0.03


@pytest.mark.parametrize("height, width, area_range", [(28, 28, (0.2, 0.3)), (24, 32, (0.1, 0.15)), (32, 24, (0.6, 0.9))])
def test_crop_boxes_cover_the_requested_area(height, width, area_range):
    """Every sampled box holds area_range of the image (from 0.1 up: min_object_covered), with aspect in 3/4..4/3
    up to the rounding of one side to whole pixels, and the areas spread over the range."""
    boxes = batched.sample_crop_boxes(view_keys(500, seed=3), height, width, area_range).numpy()
    top, left, crop_h, crop_w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + crop_h <= height).all() and (left + crop_w <= width).all()
    fraction = crop_h * crop_w / (height * width)
    assert fraction.min() >= area_range[0] and fraction.max() <= area_range[1], (fraction.min(), fraction.max())
    aspect = crop_w / crop_h
    assert (aspect >= 3 / 4 - 1 / crop_h).all() and (aspect <= 4 / 3 + 1 / crop_h).all()
    span = area_range[1] - area_range[0]
    assert fraction.min() < area_range[0] + span / 4 and fraction.max() > area_range[1] - span / 4


def test_crop_fallback_and_two_stage_attempts():
    k = view_keys(300)
    # aspect 3-4 and area >= 0.9 of a 20x30 image: no attempt fits, so the centre square 20x20
    boxes = batched.sample_crop_boxes(k, 20, 30, (0.9, 1.0), (3.0, 4.0)).numpy()
    np.testing.assert_array_equal(boxes, np.tile([0, 5, 20, 20], (300, 1)))
    # rare successes need the later attempts: the two-stage result equals all 100 attempts at once
    args = (k, 20, 20, (0.3, 1.0), (2.5, 6.0))
    staged = batched.sample_crop_boxes(*args).numpy()
    np.testing.assert_array_equal(staged, batched.sample_crop_boxes(*args, quick_attempts=100).numpy())
    assert (staged[:, 3] > staged[:, 2]).mean() > 0.5


# ---------------------------------------------------------------------------------------------------------
# Given the same parameters, the batched operations equal the per-image ones


@pytest.mark.parametrize("height, width, size", [(28, 28, (14, 14)), (32, 24, (32, 32)), (20, 30, (9, 13))])
def test_resize_boxes_match_slice_resize_flip(height, width, size):
    batch, k = images(16, width, 3, height=height), view_keys(16)
    boxes = batched.sample_crop_boxes(k, height, width, (0.05, 1.0)).numpy()
    flips = np.arange(16) % 2 == 0
    got = batched.resize_boxes(batch, tf.constant(boxes), size, tf.constant(flips)).numpy()
    for n, (top, left, crop_h, crop_w) in enumerate(boxes):
        crop = tf.slice(batch[n], [top, left, 0], [crop_h, crop_w, 3])
        want = tf.image.resize(crop, size, method="bilinear")
        want = tf.image.flip_left_right(want) if flips[n] else want
        np.testing.assert_allclose(got[n], want.numpy(), atol=1e-5)


@pytest.mark.parametrize("torchvision", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_color_jitter_matches_per_image(channels, torchvision):
    batch, k = images(12, 16, channels), view_keys(12)
    order = tf.argsort(keys.uniform(k, keys.JITTER_ORDER, (4,)), axis=1)
    draws = keys.uniform(k, keys.JITTER_FACTORS, (4,))
    for strength in (0.5, 1.0):
        got = batched_color.apply_color_jitter(batch, order, draws, strength, torchvision).numpy()
        for n in range(12):
            want = ops.apply_color_jitter(batch[n], order[n], draws[n], strength, torchvision).numpy()
            np.testing.assert_allclose(got[n], want, atol=1e-5)


def test_saturation_and_hue_match_tf_image():
    batch, draws = images(10, 16, 3), np.linspace(0.0, 1.0, 10, dtype=np.float32)
    hsv = tf.image.rgb_to_hsv(batch)
    factors = tf.reshape(tf.constant(draws), [-1, 1, 1, 1])
    saturated = batched_color._saturation(batch, hsv, factors, 0.8, False).numpy()
    rotated = batched_color._hue(hsv, factors, 0.2).numpy()
    for n, draw in enumerate(draws):
        want_s = tf.image.adjust_saturation(batch[n], 0.2 + 1.6 * draw)
        np.testing.assert_allclose(saturated[n], want_s.numpy(), atol=1e-5)
        np.testing.assert_allclose(rotated[n], tf.image.adjust_hue(batch[n], -0.2 + 0.4 * draw).numpy(), atol=1e-5)


def test_grayscale_and_blur_match_per_image():
    batch = images(6, 32, 3)
    mask = tf.constant([True, False, True, True, False, False])
    gray = batched_color.apply_grayscale(batch, mask).numpy()
    for n in range(6):
        want = ops.grayscale(batch[n]) if mask[n] else batch[n]
        np.testing.assert_allclose(gray[n], want.numpy(), atol=1e-6)
    sigmas = tf.constant([0.1, 0.5, 1.0, 1.5, 2.0, 0.7])
    radius = batched_color.blur_radius(32)
    assert radius == 32 // 10 // 2 and batched_color.blur_radius(14) == 0  # as ops.gaussian_blur
    blurred = batched_color.apply_blur(batch, sigmas, radius).numpy()
    for n in range(6):
        want = tf.clip_by_value(ops.blur(batch[n], sigmas[n], radius), 0.0, 1.0)
        np.testing.assert_allclose(blurred[n], want.numpy(), atol=1e-5)
    one = images(4, 14, 1)
    np.testing.assert_array_equal(batched_color.random_blur(one, view_keys(4), 1.0).numpy(), one.numpy())


def test_simclr_is_crop_flip_then_colour():
    batch, k = images(8, 28, 3), view_keys(8)
    plain = augment.simclr_augment(batch, k, image_size=14, color_jitter_probability=0.0, grayscale_probability=0.0,
                                   blur_probability=0.0)
    np.testing.assert_array_equal(plain.numpy(), augment.crop_flip(batch, k, image_size=14).numpy())
    gray = augment.simclr_augment(batch, k, image_size=14, grayscale_probability=1.0, blur_probability=0.0).numpy()
    np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-6)
    identity = augment.identity_augment(batch, k, image_size=14).numpy()
    np.testing.assert_allclose(identity, tf.image.resize(batch, (14, 14)).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="crop_area_range"):
        augment.crop_flip(batch, k, crop_area_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="strength"):
        augment.simclr_augment(batch, k, strength=-1.0)


def test_gin_configured_augmenters_find_their_batched_path():
    assert augment.supports_batches(augment.simclr_augment) and augment.supports_batches(augment.crop_flip)
    assert augment.supports_batches(functools.partial(augment.identity_augment, image_size=4))
    assert not augment.supports_batches(augment.autoaugment) and not augment.supports_batches(lambda x, s: x)

    try:
        gin.parse_config("test_augment_batched_holder.fn = @pretrain/simclr_augment\n"
                         "pretrain/simclr_augment.image_size = 10")
        configured = _holder()
        assert augment.supports_batches(configured)
        assert configured(images(3, 28, 1), view_keys(3)).shape == (3, 10, 10, 1)  # the binding applies
    finally:
        gin.clear_config()


# ---------------------------------------------------------------------------------------------------------
# The training pipeline


def rgb_source(num=30):
    rng = np.random.default_rng(2)
    return data.ArraySource("rgb", {"train": ((rng.uniform(size=(num, 12, 10, 3)) * 255).astype(np.uint8),
                                              np.arange(num) % 4)}, 4)


def take(dataset, num):
    return [{k: v.numpy() for k, v in batch.items()} for _, batch in zip(range(num), dataset, strict=False)]


def train(augmenter=None, **kwargs):
    kwargs = {"global_batch_size": 8, "seed": 3, "normalize": augment.normalize, **kwargs}
    augmenter = augmenter or functools.partial(augment.simclr_augment, image_size=8)
    return data.train_dataset(kwargs.pop("source", None) or rgb_source(), augmenter=augmenter, **kwargs)


@pytest.mark.parametrize("shuffle_buffer", [None, 7])
def test_batched_pipeline_spec_determinism_and_resume(shuffle_buffer):
    full = train(shuffle_buffer=shuffle_buffer, label_noise=0.3)
    per_element = train(shuffle_buffer=shuffle_buffer, label_noise=0.3, batched_augmentation=False)
    assert full.element_spec == per_element.element_spec
    assert full.element_spec["image"].shape == (8, 2, 8, 8, 3)
    batches = take(full, 7)  # crosses epoch boundaries (30 examples)
    again = take(train(shuffle_buffer=shuffle_buffer, label_noise=0.3), 7)
    for a, b in zip(batches, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    resumed = take(train(shuffle_buffer=shuffle_buffer, label_noise=0.3, start_step=4), 3)
    for a, b in zip(batches[4:], resumed, strict=True):
        np.testing.assert_array_equal(a["label"], b["label"])
        np.testing.assert_allclose(a["image"], b["image"], atol=1e-6)
    images01 = (batches[0]["image"] + 1) / 2
    assert images01.min() >= 0 and images01.max() <= 1
    assert np.abs(images01[:, 0] - images01[:, 1]).max() > 1e-3  # views drawn independently


@pytest.mark.parametrize("shuffle_buffer", [None, 7])
def test_batched_stream_equals_the_per_element_stream(shuffle_buffer):
    """identity_augment is deterministic: both paths must yield the same examples, labels and order."""
    kwargs = {"augmenter": augment.identity_augment, "shuffle_buffer": shuffle_buffer, "label_noise": 0.3}
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    for extra in ({}, {"input_context": context, "start_step": 2}):
        fast = take(train(**kwargs, **extra), 6)
        slow = take(train(**kwargs, **extra, batched_augmentation=False), 6)
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_array_equal(a["label"], b["label"])
            np.testing.assert_array_equal(a["image"], b["image"])


def test_views_do_not_depend_on_the_batch_size():
    small, large = take(train(global_batch_size=4), 4), take(train(global_batch_size=8), 2)
    np.testing.assert_allclose(np.concatenate([b["image"] for b in small]),
                               np.concatenate([b["image"] for b in large]), atol=1e-6)


def test_unbatched_path_keeps_the_per_element_views():
    """batched_augmentation=False: view v of element n is augmenter(image_n, split(seed(seed, 1, 0, n), V)[v])."""
    augmenter = functools.partial(augment.crop_flip, image_size=8)
    got = take(train(augmenter=augmenter, batched_augmentation=False), 2)
    stream = take(train(augmenter=augment.identity_augment, normalize=lambda x: x), 2)  # the raw examples
    for position in range(16):
        step, row = divmod(position, 8)
        image01 = tf.constant(stream[step]["image"][row, 0])
        seeds = tf.random.experimental.stateless_split(
            pipeline._seed(3, pipeline._AUGMENT_STREAM, 0, position), num=2)
        for view in range(2):
            want = augment.normalize(augmenter(image01, seeds[view])).numpy()
            np.testing.assert_allclose(got[step]["image"][row, view], want, atol=1e-6)


def test_batched_pipeline_on_the_bundled_digits(tmp_path, monkeypatch):
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "default"))
    source = data.load_source("digits", data_dir=str(tmp_path))
    batch = take(train(source=source, augmenter=augment.crop_flip, global_batch_size=16), 1)[0]
    assert batch["image"].shape == (16, 2, 8, 8, 1) and batch["label"].dtype == np.int32
    assert -1.0 <= batch["image"].min() <= batch["image"].max() <= 1.0
