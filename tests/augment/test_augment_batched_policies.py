"""Batched RandAugment: each operation and a whole layer against policies.py's per-image ones, the per-example
draws' frequencies, batch independence, the augmenter's batched path in the pipeline, and its validation."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from supcon import augment, data
from supcon.augment import batched_policies, keys, ops, policies
from supcon.data import pipeline

SHAPES = [(9, 11, 3), (14, 14, 1)]  # (H, W, C): non-square RGB, and one channel
CUTOUT_CONST, TRANSLATE_CONST = 4.0, 5.0


def img255(num, shape, seed=0):
    """[num, H, W, C] integer-valued float32 in [0, 255]: smooth random images, the second one constant and the
    third with a constant first channel (the degenerate cases of AutoContrast and Equalize)."""
    height, width, channels = shape
    rng = np.random.default_rng(seed)
    low = rng.uniform(size=(num, 3, 4, channels)).astype(np.float32)
    images = tf.image.resize(low, (height, width)).numpy().clip(0, 1)
    images[1] = 0.4
    images[2, ..., 0] = 0.0
    return policies.to_img255(tf.constant(images))


def batch01(num, side=28, channels=1, seed=0):
    return img255(num, (side, side, channels), seed) / 255.0


def view_keys(num, seed=1, view=0):
    return augment.example_keys(seed, 7, tf.range(num, dtype=tf.int64), view)


def per_image_arguments(seeds, height, width):
    """The sign (negative where the draw < 0.5) and the cutout centre that policies.apply_op draws from each
    [2] seed: [N] bool, [N, 2] int32."""
    negate = tf.stack([ops.uniform(seed) < 0.5 for seed in seeds])
    centres = tf.stack([tf.random.stateless_uniform([2], seed=seed, minval=0, maxval=2**30, dtype=tf.int32)
                        % tf.constant([height, width]) for seed in seeds])
    return negate, centres


def seeds_for(num):
    return tf.constant([[n, 5] for n in range(num)], tf.int64)


# tf-models' level -> argument maps written out (fraction = level / 10, float32), per image: op(img, f, negative).
def _signed(value, negative):
    return -value if negative else value


REFERENCE = {
    "AutoContrast": lambda img, f, neg: policies.autocontrast(img),
    "Equalize": lambda img, f, neg: policies.equalize(img),
    "Invert": lambda img, f, neg: policies.invert(img),
    "Rotate": lambda img, f, neg: policies.rotate(img, _signed(f * 30.0, neg)),
    "Posterize": lambda img, f, neg: policies.posterize(img, tf.floor(f * 4.0)),
    "Solarize": lambda img, f, neg: policies.solarize(img, tf.floor(f * 256.0)),
    "Color": lambda img, f, neg: policies.color(img, f * 1.8 + 0.1),
    "Contrast": lambda img, f, neg: policies.contrast(img, f * 1.8 + 0.1),
    "Brightness": lambda img, f, neg: policies.brightness(img, f * 1.8 + 0.1),
    "Sharpness": lambda img, f, neg: policies.sharpness(img, f * 1.8 + 0.1),
    "ShearX": lambda img, f, neg: policies.shear_x(img, _signed(f * 0.3, neg)),
    "ShearY": lambda img, f, neg: policies.shear_y(img, _signed(f * 0.3, neg)),
    "TranslateX": lambda img, f, neg: policies.translate_x(img, _signed(f * TRANSLATE_CONST, neg)),
    "TranslateY": lambda img, f, neg: policies.translate_y(img, _signed(f * TRANSLATE_CONST, neg)),
    "SolarizeAdd": lambda img, f, neg: policies.solarize_add(img, tf.floor(f * 110.0)),
}
LEVELS = np.array([10.0, 3.0, 7.3, 0.0, 5.5, 9.1, 1.7, 6.0], np.float32)  # per example


def test_reference_covers_every_operation():
    assert sorted([*REFERENCE, "Cutout"]) == sorted(policies.RANDAUGMENT_OPS)
    assert batched_policies.NUM_CHOICES == 17


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_each_operation_equals_the_per_image_one(name, shape):
    """The operation forced on every example, with per-example levels and signs: the same pixels exactly."""
    images, num = img255(len(LEVELS), shape), len(LEVELS)
    negate = np.arange(num) % 3 == 0
    index = tf.fill([num], policies.op_index(name))
    got = batched_policies.apply_op(images, index, LEVELS, negate, tf.zeros([num, 2], tf.int32), CUTOUT_CONST,
                                    TRANSLATE_CONST).numpy()
    for n in range(num):
        fraction = tf.constant(LEVELS[n]) / policies.MAX_LEVEL
        want = REFERENCE[name](images[n], fraction, bool(negate[n])).numpy()
        np.testing.assert_array_equal(got[n], want, err_msg=f"{name} example {n}")


@pytest.mark.parametrize("shape", SHAPES)
def test_cutout_equals_the_per_image_one(shape):
    height, width, _ = shape
    images, seeds = img255(len(LEVELS), shape), seeds_for(len(LEVELS))
    _, centres = per_image_arguments(seeds, height, width)
    index = tf.fill([len(LEVELS)], policies.op_index("Cutout"))
    got = batched_policies.apply_op(images, index, LEVELS, tf.zeros([len(LEVELS)], bool), centres, CUTOUT_CONST,
                                    TRANSLATE_CONST).numpy()
    for n, level in enumerate(LEVELS):
        half = int(np.floor(np.float32(level) / np.float32(10.0) * np.float32(CUTOUT_CONST)))
        want = policies.cutout(images[n], half, seeds[n]).numpy()
        np.testing.assert_array_equal(got[n], want)
    assert (got == policies.GREY).sum() > (images.numpy() == policies.GREY).sum()  # some squares are cut


def test_a_layer_equals_per_image_apply_op():
    """Every one of the 17 choices (twice, at several levels) against policies.apply_op with the sign and cutout
    centre it draws from its seed."""
    shape = SHAPES[0]
    num = 2 * batched_policies.NUM_CHOICES
    images, seeds = img255(num, shape, seed=3), seeds_for(num)
    index = np.arange(num) % batched_policies.NUM_CHOICES
    levels = np.resize(LEVELS, num)
    negate, centres = per_image_arguments(seeds, *shape[:2])
    assert 0 < negate.numpy().sum() < num
    got = batched_policies.apply_op(images, index, levels, negate, centres, CUTOUT_CONST, TRANSLATE_CONST).numpy()
    for n in range(num):
        want = policies.apply_op(index[n], images[n], levels[n], seeds[n], CUTOUT_CONST, TRANSLATE_CONST).numpy()
        np.testing.assert_array_equal(got[n], want, err_msg=f"choice {index[n]}")


def test_choice_sign_and_centre_frequencies():
    num, layers, height, width = 3400, 2, 9, 11
    index, negate, centres = (t.numpy() for t in batched_policies.draw_layers(view_keys(num), layers, height, width))
    assert index.shape == (num, layers) and negate.shape == (num, layers) and centres.shape == (num, layers, 2)
    draws = num * layers
    counts = np.bincount(index.ravel(), minlength=17)
    assert len(counts) == 17
    p = 1 / 17
    np.testing.assert_allclose(counts, draws * p, atol=5 * np.sqrt(draws * p * (1 - p)))  # 5 binomial sd
    assert abs(negate.mean() - 0.5) < 5 * np.sqrt(0.25 / draws)
    for axis, size in ((0, height), (1, width)):
        values = centres[..., axis].ravel()
        assert values.min() == 0 and values.max() == size - 1
        counts = np.bincount(values, minlength=size)
        np.testing.assert_allclose(counts, draws / size, atol=5 * np.sqrt(draws / size * (1 - 1 / size)))
    same = (index[:, 0] == index[:, 1]).mean()  # the two layers draw independently
    assert abs(same - p) < 5 * np.sqrt(p * (1 - p) / num)
    first = batched_policies.draw_layers(view_keys(num), 1, height, width)[0].numpy()
    np.testing.assert_array_equal(first[:, 0], index[:, 0])  # a layer's draws do not depend on num_layers


# ---------------------------------------------------------------------------------------------------------
# The augmenter on batches


RANDAUGMENT = functools.partial(augment.randaugment, image_size=14, crop_area_range=(0.5, 1.0),
                                cutout_const=3.0, translate_const=5.0)


def test_a_view_does_not_depend_on_its_batch():
    batch, k = batch01(12), view_keys(12)
    together = RANDAUGMENT(batch, k).numpy()
    assert together.shape == (12, 14, 14, 1) and together.dtype == np.float32
    assert together.min() >= 0.0 and together.max() <= 1.0
    np.testing.assert_array_equal(together * 255.0, np.round(together * 255.0))  # img255 / 255
    for order in ([5, 2, 7], [3], [11, 0, 9, 1, 8, 2, 7, 3]):
        np.testing.assert_array_equal(RANDAUGMENT(tf.gather(batch, order), tf.gather(k, order)).numpy(),
                                      together[order])
    others = RANDAUGMENT(batch, view_keys(12, view=1)).numpy()
    assert sum(np.abs(others[n] - together[n]).max() > 1e-3 for n in range(12)) >= 10


def test_batched_randaugment_is_crop_flip_then_the_policy():
    batch, k = batch01(6, channels=3), view_keys(6)
    cropped = augment.crop_flip(batch, k, image_size=14, crop_area_range=(0.5, 1.0))
    plain = augment.randaugment(batch, k, image_size=14, crop_area_range=(0.5, 1.0), num_layers=0)
    np.testing.assert_array_equal(plain.numpy(), policies.to_img255(cropped).numpy() / 255.0)
    np.testing.assert_array_equal(RANDAUGMENT(batch, k).numpy(),
                                  batched_policies.rand_augment(cropped, k, 2, 10.0, 3.0, 5.0).numpy())


def test_purposes_are_appended():
    """RandAugment's draws use new purpose indices after the existing ones, which keep their values."""
    existing = (keys.CROP_ASPECT, keys.CROP_INTEGERS, keys.FLIP, keys.JITTER, keys.JITTER_ORDER,
                keys.JITTER_FACTORS, keys.GRAYSCALE, keys.BLUR, keys.BLUR_SIGMA)
    assert existing == tuple(range(9))
    assert (keys.RANDAUGMENT_OP, keys.RANDAUGMENT_SIGN, keys.RANDAUGMENT_CUTOUT) == (9, 10, 11)


@pytest.mark.parametrize("kwargs", [{"magnitude": 11}, {"magnitude": -1}, {"num_layers": -1},
                                    {"num_layers": 1.5}, {"crop_area_range": (0.0, 1.0)}])
def test_invalid_options_raise_as_per_image(kwargs):
    with pytest.raises(ValueError) as single:
        augment.randaugment(batch01(3)[0], tf.constant([0, 1]), **kwargs)
    with pytest.raises(ValueError) as batch:
        augment.randaugment(batch01(3), view_keys(3), **kwargs)
    assert str(batch.value) == str(single.value)


def test_supports_batches_and_the_batched_training_pipeline():
    """The pipeline takes the batched path, inside tf.data, and its views equal the augmenter's eager ones."""
    assert augment.supports_batches(augment.randaugment) and augment.supports_batches(RANDAUGMENT)
    rng = np.random.default_rng(2)
    source = data.ArraySource("gray", {"train": ((rng.uniform(size=(20, 28, 28, 1)) * 255).astype(np.uint8),
                                                 np.arange(20) % 4)}, 4)
    kwargs = {"global_batch_size": 8, "seed": 3}
    views = next(iter(data.train_dataset(source, augmenter=RANDAUGMENT, normalize=lambda x: x, **kwargs)))
    raw = next(iter(data.train_dataset(source, augmenter=augment.identity_augment, normalize=lambda x: x,
                                       **kwargs)))["image"][:, 0]  # the examples, in the stream's order
    assert views["image"].shape == (8, 2, 14, 14, 1) and views["label"].dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(views["image"])) <= float(tf.reduce_max(views["image"])) <= 1.0
    for view in range(2):  # view v of position n from the key (seed, augment stream, pipeline 0, n, v)
        k = augment.example_keys(3, pipeline._AUGMENT_STREAM, 0, tf.range(8, dtype=tf.int64), view)
        np.testing.assert_array_equal(views["image"][:, view].numpy(), RANDAUGMENT(raw, k).numpy())
