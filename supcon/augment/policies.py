"""RandAugment and AutoAugment (ImageNet policy v0) with the TF Model Garden semantics, stateless.

The official SupCon code calls `official.vision.image_classification.augment` (tf-models) for its
RANDAUGMENT, AUTOAUGMENT and STACKED_RANDAUGMENT options (seed.md §1.6). This module re-implements those
operations in pure TF with stateless random ops. The tf-models operations work on uint8 images; here an image is
float32 holding integer values in [0, 255] ("img255"), and every operation rounds down to integers as the
uint8 casts do. Magnitudes live on tf-models' 0-10 scale (`_MAX_LEVEL`).

Level -> argument (tf-models): rotate 30 deg, shear 0.3, translate `translate_const` px (all with a random
sign), enhance factor 0.1 + 1.8 level/10 (Color, Contrast, Brightness, Sharpness), posterize int(4 level/10)
bits, solarize threshold int(256 level/10), solarize-add int(110 level/10), cutout half-side
int(cutout_const level/10). Empty pixels after geometric operations and cutout are grey (128).

Deliberate difference: tf-models' `contrast` uses the pixel count / 256 as the grey "mean" (a bug); this
uses the true mean of the grayscale image, as PIL's ImageEnhance.Contrast does.
"""

from __future__ import annotations

import functools
import math

import keras
import tensorflow as tf

from supcon.augment.ops import split_seed, uniform

MAX_LEVEL = 10.0
GREY = 128.0

RANDAUGMENT_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd",
)

# AutoAugment ImageNet policy "v0": 25 sub-policies of two (operation, probability, level) steps.
POLICY_V0 = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)), (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)), (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)), (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)), (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)), (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)), (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)), (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)), (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)), (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)), (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)), (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)), (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)


# ---------------------------------------------------------------------------------------------------------
# Pixel operations on img255 ([H, W, C] float32, integer values in [0, 255]).


def _blend(image1, image2, factor):
    """image1 + factor (image2 - image1), clipped to [0, 255] and floored (tf-models `blend`)."""
    return tf.floor(tf.clip_by_value(image1 + factor * (image2 - image1), 0.0, 255.0))


def _gray(img):
    """Rounded luma, broadcast back to the channel count."""
    if img.shape[-1] == 1:
        return img
    gray = tf.round(tf.reduce_sum(img * tf.constant([0.2989, 0.5870, 0.1140]), axis=-1, keepdims=True))
    return tf.tile(gray, [1, 1, 3])


def color(img, factor):
    return _blend(_gray(img), img, factor)


def contrast(img, factor):
    mean = tf.floor(tf.reduce_mean(_gray(img)[..., :1]))
    return _blend(tf.fill(tf.shape(img), mean), img, factor)


def brightness(img, factor):
    return _blend(tf.zeros_like(img), img, factor)


def sharpness(img, factor):
    """Blend with PIL's SMOOTH filter (3x3, centre 5, /13); the 1-px border keeps the original."""
    num = img.shape[-1]
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, num, 1])  # [3, 3, C, 1]
    smooth = tf.nn.depthwise_conv2d(img[None], kernel, [1, 1, 1, 1], padding="VALID")[0]
    smooth = tf.floor(tf.clip_by_value(smooth, 0.0, 255.0))  # [H-2, W-2, C]
    inner = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
    degenerate = tf.where(inner > 0, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), img)
    return _blend(degenerate, img, factor)


def posterize(img, bits):
    step = tf.pow(2.0, 8.0 - tf.cast(bits, tf.float32))
    return tf.floor(img / step) * step


def solarize(img, threshold):
    return tf.where(img < threshold, img, 255.0 - img)


def solarize_add(img, addition, threshold=128.0):
    return tf.where(img < threshold, tf.clip_by_value(img + addition, 0.0, 255.0), img)


def invert(img):
    return 255.0 - img


@functools.cache
def _autocontrast_layer():
    return keras.layers.AutoContrast(value_range=(0, 255))


def autocontrast(img):
    """Per-channel stretch of [min, max] to [0, 255] (Keras `AutoContrast`), floored as a uint8 cast."""
    return tf.floor(_autocontrast_layer()(img))


def _equalize_channel(channel):
    """PIL ImageOps.equalize on one [H, W] channel."""
    values = tf.cast(channel, tf.int32)
    histo = tf.math.bincount(tf.reshape(values, [-1]), minlength=256, maxlength=256)  # [256]
    nonzero = tf.boolean_mask(histo, histo > 0)
    step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

    def equalized():
        safe_step = tf.maximum(step, 1)
        lut = (tf.cumsum(histo) + safe_step // 2) // safe_step
        lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
        return tf.cast(tf.gather(lut, values), tf.float32)

    return tf.cond(step > 0, equalized, lambda: channel)


def equalize(img):
    return tf.stack([_equalize_channel(img[..., c]) for c in range(img.shape[-1])], axis=-1)


def _affine(img, transform):
    """Nearest-neighbour projective transform (output -> input map), grey fill (Keras `affine_transform`)."""
    out = keras.ops.image.affine_transform(
        img, tf.convert_to_tensor(transform, tf.float32), interpolation="nearest", fill_mode="constant",
        fill_value=GREY,
    )
    return tf.ensure_shape(out, img.shape)


def rotate(img, degrees):
    """Rotation about the image centre (positive = clockwise, as tf-models)."""
    radians = degrees * math.pi / 180.0
    height, width = float(img.shape[0]), float(img.shape[1])
    cos, sin = tf.cos(radians), tf.sin(radians)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
    return _affine(img, tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0]))


def shear_x(img, level):
    return _affine(img, tf.stack([1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]))


def shear_y(img, level):
    return _affine(img, tf.stack([1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0]))


def translate_x(img, pixels):
    return _affine(img, tf.stack([1.0, 0.0, pixels, 0.0, 1.0, 0.0, 0.0, 0.0]))


def translate_y(img, pixels):
    return _affine(img, tf.stack([1.0, 0.0, 0.0, 0.0, 1.0, pixels, 0.0, 0.0]))


def cutout(img, half_size, seed):
    """A grey square of side 2 half_size centred at a uniformly random pixel (clipped to the image)."""
    height, width = img.shape[0], img.shape[1]
    center = tf.random.stateless_uniform([2], seed=seed, minval=0, maxval=2**30, dtype=tf.int32)
    center = center % tf.constant([height, width])
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (
        (rows >= center[0] - half_size) & (rows < center[0] + half_size)
        & (cols >= center[1] - half_size) & (cols < center[1] + half_size)
    )  # [H, W]
    return tf.where(inside[:, :, None], GREY, img)


# ---------------------------------------------------------------------------------------------------------
# Operations by index, at a (possibly traced) level: one switch over the 16 operations serves both policies.


def _signed(value, seed):
    """`value` with a random sign (tf-models `_randomly_negate_tensor`)."""
    return tf.where(uniform(seed) < 0.5, -value, value)


def _branches(img, level, seed, cutout_const, translate_const):
    """Zero-argument callables, one per name in RANDAUGMENT_OPS, applying it to img255 at `level`."""
    fraction = tf.cast(level, tf.float32) / MAX_LEVEL
    enhance = fraction * 1.8 + 0.1
    angle, shear = _signed(fraction * 30.0, seed), _signed(fraction * 0.3, seed)
    shift = _signed(fraction * tf.cast(translate_const, tf.float32), seed)
    table = {
        "AutoContrast": lambda: autocontrast(img),
        "Equalize": lambda: equalize(img),
        "Invert": lambda: invert(img),
        "Rotate": lambda: rotate(img, angle),
        "Posterize": lambda: posterize(img, tf.floor(fraction * 4.0)),
        "Solarize": lambda: solarize(img, tf.floor(fraction * 256.0)),
        "SolarizeAdd": lambda: solarize_add(img, tf.floor(fraction * 110.0)),
        "Color": lambda: color(img, enhance),
        "Contrast": lambda: contrast(img, enhance),
        "Brightness": lambda: brightness(img, enhance),
        "Sharpness": lambda: sharpness(img, enhance),
        "ShearX": lambda: shear_x(img, shear),
        "ShearY": lambda: shear_y(img, shear),
        "TranslateX": lambda: translate_x(img, shift),
        "TranslateY": lambda: translate_y(img, shift),
        "Cutout": lambda: cutout(img, tf.cast(tf.floor(fraction * tf.cast(cutout_const, tf.float32)), tf.int32), seed),
    }
    return [table[name] for name in RANDAUGMENT_OPS]


@tf.function(autograph=False)
def _switch(index, img, level, seed, cutout_const, translate_const):
    # A tf.function so that the 17-branch switch is traced once per (shape, constants) and reused by every
    # RandAugment layer, AutoAugment step and augmenter (tracing it costs seconds).
    branches = _branches(img, level, seed, cutout_const, translate_const)
    branches.append(lambda: tf.identity(img))
    return tf.switch_case(index, branches)


def apply_op(index, img, level, seed, cutout_const: float, translate_const: float):
    """Applies operation RANDAUGMENT_OPS[index] at `level` (0-10) to img255; index 16 is the identity.

    `seed` draws the random sign of rotate / shear / translate and the cutout position.
    """
    out = _switch(
        tf.cast(index, tf.int32), img, tf.cast(level, tf.float32), tf.cast(seed, tf.int64),
        tf.constant(cutout_const, tf.float32), tf.constant(translate_const, tf.float32),
    )
    return tf.ensure_shape(out, img.shape)


def op_index(name: str) -> int:
    """Index of an operation name in RANDAUGMENT_OPS."""
    if name not in RANDAUGMENT_OPS:
        raise ValueError(f"operation must be one of {RANDAUGMENT_OPS}; got {name!r}")
    return RANDAUGMENT_OPS.index(name)


def to_img255(image01):
    """[0, 1] float -> integer-valued float in [0, 255] (as a uint8 conversion with rounding)."""
    return tf.round(tf.clip_by_value(image01, 0.0, 1.0) * 255.0)


def rand_augment(image01, seed, num_layers=2, magnitude=10.0, cutout_const=40.0, translate_const=100.0):
    """tf-models RandAugment: `num_layers` times, one of 16 operations or identity (uniformly), at `magnitude`.

    Args:
      image01: [H, W, C] float32 in [0, 1] with a static size.
      seed: [2] stateless seed.
      num_layers: N, the number of operations applied in sequence.
      magnitude: M on the 0-10 scale, shared by all operations.
      cutout_const, translate_const: pixel scales of Cutout and Translate at level 10 (tf-models defaults,
        tuned for 224-px images).

    Returns:
      [H, W, C] float32 in [0, 1].
    """
    img = to_img255(image01)
    seeds = split_seed(seed, 2 * max(num_layers, 1))
    for layer in range(num_layers):
        choice = tf.random.stateless_uniform(
            [], seed=seeds[2 * layer], minval=0, maxval=len(RANDAUGMENT_OPS) + 1, dtype=tf.int32
        )
        img = apply_op(choice, img, magnitude, seeds[2 * layer + 1], cutout_const, translate_const)
    return img / 255.0


def auto_augment(image01, seed, policy=POLICY_V0, cutout_const=100.0, translate_const=250.0):
    """tf-models AutoAugment: one sub-policy chosen uniformly; each step applied with its probability.

    Args:
      image01: [H, W, C] float32 in [0, 1] with a static size.
      seed: [2] stateless seed.
      policy: sub-policies of the same number of (operation, probability, level) steps (default ImageNet v0).
      cutout_const, translate_const: pixel scales at level 10 (tf-models AutoAugment defaults).

    Returns:
      [H, W, C] float32 in [0, 1].
    """
    num_steps = len(policy[0])
    if any(len(sub) != num_steps for sub in policy):
        raise ValueError("policy: every sub-policy must have the same number of steps")
    table_op = tf.constant([[op_index(name) for name, _, _ in sub] for sub in policy])  # [P, S]
    table_p = tf.constant([[float(p) for _, p, _ in sub] for sub in policy])  # [P, S]
    table_level = tf.constant([[float(level) for _, _, level in sub] for sub in policy])  # [P, S]
    img = to_img255(image01)
    seeds = split_seed(seed, 1 + 2 * num_steps)
    choice = tf.random.stateless_uniform([], seed=seeds[0], minval=0, maxval=len(policy), dtype=tf.int32)
    for k in range(num_steps):
        skip = uniform(seeds[1 + 2 * k]) >= table_p[choice, k]
        index = tf.where(skip, len(RANDAUGMENT_OPS), table_op[choice, k])  # identity when skipped
        img = apply_op(index, img, table_level[choice, k], seeds[2 + 2 * k], cutout_const, translate_const)
    return img / 255.0
