"""Batched RandAugment: policies.rand_augment over [N, H, W, C] in a fixed number of ops per layer, whatever N.

Each example of a batch gets its own operation (one of the 16 of RANDAUGMENT_OPS or the identity), level, sign
and cutout centre, and its result equals the per-image operation of policies.py with those arguments, bit for
bit (tested). Instead of a 17-way switch per image, a layer partitions the batch by operation
(tf.dynamic_partition), applies each operation once to its part with per-example arguments, and stitches the
parts back (tf.dynamic_stitch): every example passes through its own operation only, so a layer costs about
one pass over the batch plus a fixed number of small ops (~250, whatever N). The five geometric operations share one part: a
projective transform with a row per example (Keras `affine_transform`, nearest neighbour, grey fill, as
policies._affine).

Images are img255 (integer values in [0, 255] as float32, policies.to_img255). Rotation matrices take their
sine and cosine from scalar ops, one per distinct angle: TF's vectorised sin/cos differ from its scalar ones
(libm's, which the per-image op runs) in the last bit for a few per cent of float32 arguments, which can move a
nearest-neighbour sample and would make a view depend on its place in the batch. Posterize's step 2^(8 - bits)
is an integer shift, exact as the per-image op's scalar pow, where a vectorised pow need not be. The equality holds eagerly and
in tf.data (tested); inside a tf.function, grappler's constant push-down may reassociate a product such as
degrees * pi / 180 (in the per-image ops too, outside their tf.switch_case), a last-bit difference.

Randomness per example and layer from its key (keys.py): the operation uniform over the 17 choices
(RANDAUGMENT_OP), the sign of rotate / shear / translate (RANDAUGMENT_SIGN, negative with p 1/2), the cutout
centre uniform over the pixels (RANDAUGMENT_CUTOUT).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from supcon.augment import batched, keys, policies

NUM_CHOICES = len(policies.RANDAUGMENT_OPS) + 1  # 16 operations and the identity (the last index)
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
_VALUES = 256  # pixel values 0..255


def _per_example(values) -> tf.Tensor:
    return tf.reshape(tf.cast(values, tf.float32), [-1, 1, 1, 1])  # [N] -> [N, 1, 1, 1]


def _blend(degenerate, image, factor):
    """degenerate + factor (image - degenerate), clipped to [0, 255] and floored (policies' blend)."""
    return tf.floor(tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0))


def _gray(images) -> tf.Tensor:
    """Rounded luma [N, H, W, 1] (the image itself for one channel), as policies' grey image."""
    if images.shape[-1] == 1:
        return images
    return tf.round(tf.reduce_sum(images * tf.constant([0.2989, 0.5870, 0.1140]), axis=-1, keepdims=True))


# ---------------------------------------------------------------------------------------------------------
# Operations on img255 batches [N, H, W, C] with per-example arguments [N] (invert, solarize, solarize_add and
# brightness are policies' own, which broadcast over a batch).


def autocontrast(images) -> tf.Tensor:
    """policies.autocontrast (Keras AutoContrast, floored) of each example and channel: v scale + offset with
    scale = 255 / (max - min) and offset = -min scale, clipped to [0, 255] and floored, in Keras' float32 steps; a
    constant channel is kept, as Keras' NaN check keeps it. (Keras' layer itself fails eagerly on an empty
    batch, which a partition can be.)"""
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)  # [N, 1, 1, C]
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    scale = 255.0 / (high - low)
    offset = -low * scale
    stretched = tf.floor(tf.clip_by_value(images * scale + offset, 0.0, 255.0))
    return tf.where(high > low, stretched, images)


def equalize(images) -> tf.Tensor:
    """policies.equalize (PIL's ImageOps.equalize) of each example and channel: with step = (pixels - count of
    the channel's top value) // 255, value v -> (cdf(v - 1) + step // 2) // step (0 for v = 0), clipped to 255;
    the channel is kept when step is 0. Histograms of all channels in one bincount, the maps in one gather."""
    num, channels = tf.shape(images)[0], images.shape[-1]
    rows = tf.range(num)[:, None] * channels + tf.range(channels)[None, :]  # [N, C]: (example, channel) row
    ids = tf.cast(images, tf.int32) + tf.reshape(rows * _VALUES, [num, 1, 1, channels])  # into [N C 256]
    size = num * channels * _VALUES
    histograms = tf.reshape(tf.math.bincount(tf.reshape(ids, [-1]), minlength=size, maxlength=size),
                            [num, channels, _VALUES])
    high = tf.reduce_max(tf.where(histograms > 0, tf.range(_VALUES), 0), axis=-1, keepdims=True)  # [N, C, 1]
    top = tf.gather(histograms, high, batch_dims=2)  # [N, C, 1]
    step = (tf.reduce_sum(histograms, axis=-1, keepdims=True) - top) // 255
    safe_step = tf.maximum(step, 1)
    lut = (tf.cumsum(histograms, axis=-1) + safe_step // 2) // safe_step  # [N, C, 256]
    lut = tf.clip_by_value(tf.pad(lut[..., :-1], [[0, 0], [0, 0], [1, 0]]), 0, 255)
    lut = tf.where(step > 0, lut, tf.range(_VALUES))  # the identity map where step is 0
    return tf.cast(tf.gather(tf.reshape(lut, [-1]), ids), tf.float32)


def posterize(images, bits) -> tf.Tensor:
    """policies.posterize with per-example bits [N]: keeps the top `bits` bits of each value."""
    step = tf.bitwise.left_shift(1, 8 - tf.cast(bits, tf.int32))  # 2^(8 - bits), exact
    step = _per_example(step)
    return tf.floor(images / step) * step


def color(images, factor) -> tf.Tensor:
    """policies.color with per-example factors [N]: blend with the grey image (the identity for one channel)."""
    return _blend(_gray(images), images, _per_example(factor))


def contrast(images, factor) -> tf.Tensor:
    """policies.contrast with per-example factors [N]: blend with the floored mean of the example's grey image."""
    mean = tf.floor(tf.reduce_mean(_gray(images)[..., :1], axis=[1, 2, 3], keepdims=True))  # [N, 1, 1, 1]
    return _blend(mean, images, _per_example(factor))


def sharpness(images, factor) -> tf.Tensor:
    """policies.sharpness with per-example factors [N]: blend with PIL's SMOOTH filter (3x3, centre 5, /13),
    floored; the 1-px border keeps the original.

    The filter is a 'SAME' convolution whose border is discarded: its interior sums equal policies' 'VALID'
    one's (tested), and unlike 'VALID' it keeps its shape for an empty batch (TF 2.21 returns the input's)."""
    height, width, channels = batched.image_dims(images)
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])  # [3, 3, C, 1]
    smooth = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], padding="SAME")  # [N, H, W, C]
    smooth = tf.floor(tf.clip_by_value(smooth, 0.0, 255.0))
    inner = np.pad(np.ones([max(height - 2, 0), max(width - 2, 0)], bool), 1)[None, :, :, None]  # [1, H, W, 1]
    return _blend(tf.where(inner, smooth, images), images, _per_example(factor))


def cutout(images, half_sizes, centres) -> tf.Tensor:
    """policies.cutout per example: grey over rows and columns [centre - half, centre + half), clipped to the
    image; half_sizes [N] int, centres [N, 2] int (row, column)."""
    height, width, _ = batched.image_dims(images)
    half_sizes, centres = tf.cast(half_sizes, tf.int32)[:, None], tf.cast(centres, tf.int32)
    low, high = centres - half_sizes, centres + half_sizes  # [N, 2]
    rows, cols = tf.range(height)[None, :], tf.range(width)[None, :]
    inside_rows = (rows >= low[:, :1]) & (rows < high[:, :1])  # [N, H]
    inside_cols = (cols >= low[:, 1:]) & (cols < high[:, 1:])  # [N, W]
    inside = inside_rows[:, :, None, None] & inside_cols[:, None, :, None]  # [N, H, W, 1]
    return tf.where(inside, policies.GREY, images)


def _each_distinct(fn, values) -> tf.Tensor:
    """fn of each distinct element of values [N] as a scalar op (one per distinct value), gathered back."""
    distinct, position = tf.unique(values)
    return tf.gather(tf.map_fn(fn, distinct), position)


def transform_rows(index, fraction, negate, height: int, width: int, translate_const) -> tf.Tensor:
    """Projective transform rows [N, 8] (output -> input map) of policies' geometric operations, example n
    applying operation index[n] (one of GEOMETRIC; the identity row for any other) at level 10 fraction[n]:
    rotate 30 fraction degrees about the centre, shear 0.3 fraction, translate translate_const fraction pixels,
    each negated where negate [N]."""

    def signed(value):
        return tf.where(negate, -value, value)

    radians = signed(fraction * 30.0) * math.pi / 180.0  # [N]
    cos, sin = _each_distinct(tf.cos, radians), _each_distinct(tf.sin, radians)
    shear = signed(fraction * 0.3)
    shift = signed(fraction * tf.cast(translate_const, tf.float32))
    x_offset = ((width - 1.0) - (cos * (width - 1.0) - sin * (height - 1.0))) / 2.0
    y_offset = ((height - 1.0) - (sin * (width - 1.0) + cos * (height - 1.0))) / 2.0
    is_op = {name: tf.equal(index, policies.op_index(name)) for name in GEOMETRIC}
    rotate, zero, one = is_op["Rotate"], tf.zeros_like(fraction), tf.ones_like(fraction)
    row = [
        tf.where(rotate, cos, one),
        tf.where(rotate, -sin, tf.where(is_op["ShearX"], shear, zero)),
        tf.where(rotate, x_offset, tf.where(is_op["TranslateX"], shift, zero)),
        tf.where(rotate, sin, tf.where(is_op["ShearY"], shear, zero)),
        tf.where(rotate, cos, one),
        tf.where(rotate, y_offset, tf.where(is_op["TranslateY"], shift, zero)),
        zero,
        zero,
    ]
    return tf.stack(row, axis=1)


def transform(images, rows) -> tf.Tensor:
    """Nearest-neighbour projective transform of each example by its row [N, 8], grey fill (policies._affine)."""
    out = keras.ops.image.affine_transform(images, rows, interpolation="nearest", fill_mode="constant",
                                           fill_value=policies.GREY)
    return tf.ensure_shape(out, images.shape)


# ---------------------------------------------------------------------------------------------------------
# A layer: partition by operation, apply, stitch.


class _Args(NamedTuple):
    """Per-example arguments of one part: operation index, level / 10, negate, cutout centre ([N], [N, 2])."""

    index: tf.Tensor
    fraction: tf.Tensor
    negate: tf.Tensor
    centres: tf.Tensor


def _operations(height: int, width: int, cutout_const, translate_const) -> dict:
    """Part name -> fn(img255 [M, H, W, C], _Args) -> [M, H, W, C], with tf-models' level -> argument maps."""
    enhance = lambda a: a.fraction * 1.8 + 0.1  # noqa: E731
    half_size = lambda a: tf.floor(a.fraction * tf.cast(cutout_const, tf.float32))  # noqa: E731
    return {
        "AutoContrast": lambda img, a: autocontrast(img),
        "Equalize": lambda img, a: equalize(img),
        "Invert": lambda img, a: policies.invert(img),
        "Posterize": lambda img, a: posterize(img, tf.floor(a.fraction * 4.0)),
        "Solarize": lambda img, a: policies.solarize(img, _per_example(tf.floor(a.fraction * 256.0))),
        "SolarizeAdd": lambda img, a: policies.solarize_add(img, _per_example(tf.floor(a.fraction * 110.0))),
        "Color": lambda img, a: color(img, enhance(a)),
        "Contrast": lambda img, a: contrast(img, enhance(a)),
        "Brightness": lambda img, a: policies.brightness(img, _per_example(enhance(a))),
        "Sharpness": lambda img, a: sharpness(img, enhance(a)),
        "Cutout": lambda img, a: cutout(img, tf.cast(half_size(a), tf.int32), a.centres),
        "Geometric": lambda img, a: transform(
            img, transform_rows(a.index, a.fraction, a.negate, height, width, translate_const)),
        "Identity": lambda img, a: img,
    }


def _part_of_choice(names) -> tf.Tensor:
    """[NUM_CHOICES] int32: the part (position in `names`) of each operation index; GEOMETRIC share one."""
    parts = [names.index("Geometric" if name in GEOMETRIC else name) for name in policies.RANDAUGMENT_OPS]
    return tf.constant(parts + [names.index("Identity")], tf.int32)


def apply_op(images, index, level, negate, centres, cutout_const: float, translate_const: float) -> tf.Tensor:
    """Batched policies.apply_op: example n gets operation index[n] at level[n], with its sign and cutout centre.

    Args:
      images: [N, H, W, C] img255 (static H, W, C; C = 1 or 3).
      index: [N] int operation indices into RANDAUGMENT_OPS; NUM_CHOICES - 1 is the identity.
      level: [N] (or a scalar for all) levels on the 0-10 scale.
      negate: [N] bool, negative rotate / shear / translate arguments (policies' sign draw < 0.5).
      centres: [N, 2] int cutout centres (row, column).
      cutout_const, translate_const: Cutout half-side and translation in pixels at level 10.

    Returns:
      [N, H, W, C] img255.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    height, width, _ = batched.image_dims(images)
    operations = _operations(height, width, cutout_const, translate_const)
    names = list(operations)
    index = tf.cast(index, tf.int32)
    fraction = tf.broadcast_to(tf.cast(level, tf.float32), tf.shape(index)) / policies.MAX_LEVEL  # [N]
    parts = tf.gather(_part_of_choice(names), index)  # [N]
    positions = tf.dynamic_partition(tf.range(tf.shape(index)[0]), parts, len(names))
    split = lambda x: tf.dynamic_partition(x, parts, len(names))  # noqa: E731
    args = [_Args(*fields) for fields in zip(split(index), split(fraction), split(tf.cast(negate, tf.bool)),
                                             split(tf.cast(centres, tf.int32)), strict=True)]
    outputs = [operations[name](img, arg) for name, img, arg in zip(names, split(images), args, strict=True)]
    return tf.ensure_shape(tf.dynamic_stitch(positions, outputs), images.shape)


def _uniform_ints(view_keys, purpose: int, shape, bounds) -> tf.Tensor:
    """Integers uniform in [0, bound) ([N, *shape] int32; bounds broadcast against shape), from 53-bit
    uniforms."""
    draws = keys.uniform(view_keys, purpose, shape, tf.float64)
    bounds = tf.constant(bounds, tf.float64)
    return tf.cast(tf.minimum(tf.floor(draws * bounds), bounds - 1.0), tf.int32)


def draw_layers(view_keys, num_layers: int, height: int, width: int):
    """Per-example RandAugment draws for `num_layers` layers from keys [N]: operation indices [N, L] uniform over
    the NUM_CHOICES, negate [N, L] bool with p 1/2, cutout centres [N, L, 2] uniform over the pixels. Layer l
    uses draw l of each purpose, so a layer's draws do not depend on num_layers."""
    index = _uniform_ints(view_keys, keys.RANDAUGMENT_OP, (num_layers,), NUM_CHOICES)
    negate = keys.uniform(view_keys, keys.RANDAUGMENT_SIGN, (num_layers,)) < 0.5
    centres = _uniform_ints(view_keys, keys.RANDAUGMENT_CUTOUT, (num_layers, 2), [height, width])
    return index, negate, centres


def rand_augment(images01, view_keys, num_layers=2, magnitude=10.0, cutout_const=40.0,
                 translate_const=100.0) -> tf.Tensor:
    """Batched policies.rand_augment: per example, `num_layers` times one of the 16 operations or the identity
    (uniformly), at `magnitude`, on the img255 rounding of the image.

    Args:
      images01: [N, H, W, C] float32 in [0, 1] (static H, W, C; C = 1 or 3).
      view_keys: [N] per-example keys.
      num_layers, magnitude, cutout_const, translate_const: as policies.rand_augment.

    Returns:
      [N, H, W, C] float32 in [0, 1].
    """
    images = policies.to_img255(tf.convert_to_tensor(images01, tf.float32))
    height, width, _ = batched.image_dims(images)
    view_keys = keys.check_keys(view_keys, images.shape[0])
    if num_layers > 0:
        index, negate, centres = draw_layers(view_keys, num_layers, height, width)
        for layer in range(num_layers):
            images = apply_op(images, index[:, layer], float(magnitude), negate[:, layer], centres[:, layer],
                              cutout_const, translate_const)
    return images / 255.0


def randaugment(images, view_keys, image_size=None, num_layers=2, magnitude=10, crop_area_range=(0.08, 1.0),
                aspect_ratio_range=(3 / 4, 4 / 3), flip=True, cutout_const=40, translate_const=100,
                antialias=False) -> tf.Tensor:
    """Batched `augmenters.randaugment`: batched crop and flip (batched.crop_flip), then `rand_augment`.

    Args:
      images: [N, H, W, C] float32 in [0, 1] (static H, W, C; C = 1 or 3).
      view_keys: [N] per-example keys.
      the rest: as `augmenters.randaugment` (which validates num_layers and magnitude).

    Returns:
      [N, h, w, C] float32 in [0, 1].
    """
    view_keys = keys.check_keys(view_keys, images.shape[0])
    out = batched.crop_flip(images, view_keys, image_size, crop_area_range, flip, aspect_ratio_range, antialias)
    return rand_augment(out, view_keys, num_layers, magnitude, cutout_const, translate_const)
