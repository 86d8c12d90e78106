"""Seeded image operations on float images in [0, 1]: crops, flips, colour jitter, grayscale, blur.

Every random choice draws from a stateless op (`tf.random.stateless_*`, `tf.image.stateless_*`) keyed by an
explicit `seed` (a [2] integer tensor), so an operation gives the same output for the same seed eagerly, inside
`tf.function` and inside `tf.data.Dataset.map`. Images are [H, W, C] float32 with C = 1 or 3; for one channel the
hue, saturation and grayscale operations are no-ops.

Semantics follow the official SupCon/SimCLR preprocessing (shared/reference/seed.md §1.6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf


def split_seed(seed, num: int) -> tf.Tensor:
    """Splits a [2] stateless seed into `num` independent seeds, [num, 2]."""
    return tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), num=num)


def uniform(seed, minval: float = 0.0, maxval: float = 1.0) -> tf.Tensor:
    """A scalar float32 drawn uniformly from [minval, maxval) with a stateless seed."""
    return tf.random.stateless_uniform([], seed=seed, minval=minval, maxval=maxval)


def channels(image: tf.Tensor) -> int:
    """The static channel count of an [H, W, C] image; raises ValueError unless it is 1 or 3."""
    if image.shape.rank != 3:
        raise ValueError(f"image must be [H, W, C]; got shape {image.shape}")
    num = image.shape[-1]
    if num not in (1, 3):
        raise ValueError(f"image must have 1 or 3 channels (static); got shape {image.shape}")
    return num


def size_pair(image_size, image: tf.Tensor) -> tuple[int, int]:
    """(height, width) from `image_size` (int, pair or None = the image's own static size)."""
    if image_size is None:
        height, width = image.shape[0], image.shape[1]
        if height is None or width is None:
            raise ValueError(f"image_size is required for images of unknown size; got shape {image.shape}")
        return int(height), int(width)
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be a positive int or (height, width); got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def random_apply(fn: Callable, probability: float, seed, image: tf.Tensor) -> tf.Tensor:
    """`fn(image)` with the given probability (decided by `seed`), else `image`."""
    if probability <= 0.0:
        return image
    if probability >= 1.0:
        return fn(image)
    return tf.cond(uniform(seed) < probability, lambda: fn(image), lambda: image)


def bilinear(image: tf.Tensor, size, antialias: bool = False) -> tf.Tensor:
    """`tf.image.resize(image, size, 'bilinear', antialias=antialias)` of [H, W, C] or [N, H, W, C] in [0, 1].

    Without antialias (the official code) an output pixel interpolates its 2 x 2 nearest inputs; with it, a
    downscale averages under a triangle kernel stretched to the scale factor (TF's ScaleAndTranslate; what
    torchvision does by default). The antialiased result is clipped to [0, 1]: its normalised weights sum to one
    only up to rounding, and overshoot by a few ulps.
    """
    if not antialias:
        return tf.image.resize(image, size, method="bilinear")
    return tf.clip_by_value(tf.image.resize(image, size, method="bilinear", antialias=True), 0.0, 1.0)


def resize(image: tf.Tensor, size: tuple[int, int], antialias: bool = False) -> tf.Tensor:
    """Bilinear resize to `size` (skipped when the static size already matches); see `bilinear`."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    out = bilinear(image, size, antialias)
    return tf.ensure_shape(out, [size[0], size[1], image.shape[-1]])


def random_resized_crop(image, seed, size, area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
                        antialias: bool = False):
    """Inception-style random crop, then bilinear resize to `size` (antialiased if `antialias`, see `bilinear`).

    The box comes from `stateless_sample_distorted_bounding_box` (min_object_covered 0.1, 100 attempts).
    When sampling fails it returns the whole image; as the official code does, that case falls back to the
    centre square of side min(H, W).

    Args:
      image: [H, W, C] float32.
      seed: [2] stateless seed.
      size: (height, width) of the output.
      area_range: (min, max) fraction of the image area kept.
      aspect_ratio_range: (min, max) width / height of the crop.
      antialias: filter the downscale (see `bilinear`).

    Returns:
      [height, width, C] float32.
    """
    shape = tf.shape(image)  # [3]
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed, min_object_covered=0.1,
        aspect_ratio_range=aspect_ratio_range, area_range=area_range, max_attempts=100,
        use_image_if_no_bounding_boxes=True,
    )
    side = tf.minimum(shape[0], shape[1])
    square_begin = tf.stack([(shape[0] - side + 1) // 2, (shape[1] - side + 1) // 2, 0])
    square_size = tf.stack([side, side, -1])
    failed = tf.reduce_all(tf.equal(crop_size[:2], shape[:2]))
    begin = tf.where(failed, square_begin, begin)
    crop_size = tf.where(failed, square_size, crop_size)
    crop = tf.slice(image, begin, crop_size)
    out = bilinear(crop, size, antialias)
    return tf.ensure_shape(out, [size[0], size[1], image.shape[-1]])


def random_flip(image: tf.Tensor, seed) -> tf.Tensor:
    """Horizontal flip with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def grayscale(image: tf.Tensor) -> tf.Tensor:
    """Luma grayscale, kept at the input's channel count (identity for one channel)."""
    if channels(image) == 1:
        return image
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def _brightness(image, draw, amount, torchvision):
    if torchvision:  # multiplicative: torchvision adjust_brightness
        return image * _scale(draw, max(0.0, 1.0 - amount), 1.0 + amount)
    return tf.image.adjust_brightness(image, _scale(draw, -amount, amount))


def _contrast(image, draw, amount, torchvision):
    factor = _scale(draw, max(0.0, 1.0 - amount), 1.0 + amount)
    if torchvision:  # blend towards the mean of the grayscale image (one scalar)
        mean = tf.reduce_mean(tf.image.rgb_to_grayscale(image) if channels(image) == 3 else image)
        return (image - mean) * factor + mean
    return tf.image.adjust_contrast(image, factor)  # per-channel mean


def _saturation(image, draw, amount, torchvision):
    if channels(image) == 1:
        return image
    factor = _scale(draw, max(0.0, 1.0 - amount), 1.0 + amount)
    if torchvision:  # blend towards the grayscale image
        gray = tf.image.rgb_to_grayscale(image)  # [H, W, 1], broadcast over channels
        return gray + (image - gray) * factor
    return tf.image.adjust_saturation(image, factor)  # scales S in HSV


def _hue(image, draw, amount, torchvision):
    del torchvision  # both styles rotate the hue in HSV
    if channels(image) == 1:
        return image
    return tf.image.adjust_hue(image, _scale(draw, -amount, amount))


def _scale(draw, low, high):
    """A U(0, 1) draw mapped to U(low, high)."""
    return low + (high - low) * draw


def color_jitter(image: tf.Tensor, seed, strength: float = 1.0, torchvision: bool = False) -> tf.Tensor:
    """SimCLR colour jitter: brightness, contrast, saturation (0.8 s) and hue (0.2 s) in random order.

    Each adjustment is followed by a clip to [0, 1]. The TF style (official default) shifts brightness
    additively and uses tf.image's contrast/saturation; the torchvision style (`use_pytorch_color_jitter`)
    scales brightness and blends contrast/saturation towards grey.

    Args:
      image: [H, W, C] float32 in [0, 1].
      seed: [2] stateless seed.
      strength: s, the colour strength (official `augmentation_magnitude`).
      torchvision: use the torchvision-style adjustments.

    Returns:
      [H, W, C] float32 in [0, 1].
    """
    seeds = split_seed(seed, 2)
    order = tf.argsort(tf.random.stateless_uniform([4], seed=seeds[0]))  # a random permutation of 0..3
    draws = tf.random.stateless_uniform([4], seed=seeds[1])  # one U(0, 1) per adjustment, drawn up front
    return apply_color_jitter(image, order, draws, strength, torchvision)


def jitter_amounts(strength: float) -> tuple[float, float, float, float]:
    """Brightness, contrast, saturation and hue amounts for colour strength s: 0.8 s, 0.8 s, 0.8 s, 0.2 s."""
    return (0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)


def apply_color_jitter(image: tf.Tensor, order, draws, strength: float = 1.0, torchvision: bool = False):
    """`color_jitter` with explicit randomness: adjustment order[p] at position p (0 brightness, 1 contrast,
    2 saturation, 3 hue), adjustment k with the U(0, 1) draw draws[k]; each followed by a clip to [0, 1]."""
    amounts = jitter_amounts(strength)
    adjustments = (_brightness, _contrast, _saturation, _hue)
    for position in range(4):
        # Branches stay small (no random ops inside): in tf.data every branch's nodes are visited.
        branches = [
            (lambda fn=fn, k=k, x=image: tf.clip_by_value(fn(x, draws[k], amounts[k], torchvision), 0.0, 1.0))
            for k, fn in enumerate(adjustments)
        ]
        image = tf.switch_case(order[position], branches)
    return image


def _blur_matrix(size: int, kernel: tf.Tensor) -> tf.Tensor:
    """[size, size] banded matrix M with (M x)[i] = sum_j kernel[j - i + r] x[j]: a 1-D convolution with
    zero 'SAME' padding, as a matmul."""
    radius = (int(kernel.shape[0]) - 1) // 2
    offset = tf.range(size)[None, :] - tf.range(size)[:, None]  # [size, size], j - i
    taps = tf.gather(kernel, tf.clip_by_value(offset + radius, 0, 2 * radius))
    return tf.where(tf.abs(offset) <= radius, taps, 0.0)


def blur(image: tf.Tensor, sigma, radius: int) -> tf.Tensor:
    """Separable Gaussian blur (kernel side 2 radius + 1, std sigma, zero 'SAME' padding) of [H, W, C]."""
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-tf.square(taps) / (2.0 * tf.square(tf.cast(sigma, tf.float32))))
    kernel = kernel / tf.reduce_sum(kernel)  # [2r + 1]
    rows = _blur_matrix(int(image.shape[0]), kernel)  # [H, H]
    cols = _blur_matrix(int(image.shape[1]), kernel)  # [W, W]
    out = tf.einsum("ij,jwc->iwc", rows, image)
    return tf.einsum("hjc,ij->hic", out, cols)


def gaussian_blur(image: tf.Tensor, seed, probability: float = 0.5) -> tf.Tensor:
    """SimCLR blur: with `probability`, a Gaussian of sigma ~ U(0.1, 2.0) and side ~ H/10 (made odd).

    The official code blurs with a separable depthwise convolution and zero 'SAME' padding; this computes the
    same sums as two banded matmuls (~60x faster on CPU at 224 px than a 2-D depthwise kernel). Images shorter
    than 20 px get a 1-tap kernel (as in the official code), i.e. no blur.
    """
    radius = int(image.shape[0]) // 10 // 2
    if radius == 0:
        return image
    seeds = split_seed(seed, 2)

    def apply(x):
        return tf.clip_by_value(blur(x, uniform(seeds[1], 0.1, 2.0), radius), 0.0, 1.0)

    return random_apply(apply, probability, seeds[0], image)


def center_crop(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """The central [height, width] window (offsets rounded up, as the official eval crop)."""
    shape = tf.shape(image)
    top, left = (shape[0] - height + 1) // 2, (shape[1] - width + 1) // 2
    out = tf.slice(image, tf.stack([top, left, 0]), tf.stack([height, width, -1]))
    return tf.ensure_shape(out, [height, width, image.shape[-1]])


def padded_center_square(image: tf.Tensor, side: int, padding: int) -> tf.Tensor:
    """The central square of side side / (side + padding) * min(H, W) (official CROP_THEN_RESIZE crop)."""
    shape = tf.shape(image)
    crop = tf.cast(float(side) / (side + padding) * tf.cast(tf.minimum(shape[0], shape[1]), tf.float32), tf.int32)
    begin = tf.stack([(shape[0] - crop + 1) // 2, (shape[1] - crop + 1) // 2, 0])
    return tf.slice(image, begin, tf.stack([crop, crop, -1]))


def resize_shorter_side(image: tf.Tensor, side: int, antialias: bool = False) -> tf.Tensor:
    """Bilinear resize (antialiased if `antialias`) keeping the aspect ratio so that min(H, W) == side."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = float(side) / tf.reduce_min(shape)
    new_size = tf.cast(tf.round(shape * scale), tf.int32)
    new_size = tf.maximum(new_size, side)  # guard rounding below the target
    return bilinear(image, new_size, antialias)


def check_range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """Validates a (min, max) pair with low < min <= max <= high; returns it as floats."""
    if len(value) != 2 or not (low < value[0] <= value[1] <= high):
        raise ValueError(f"{name} must be (min, max) with {low} < min <= max <= {high}; got {value!r}")
    return float(value[0]), float(value[1])


def check_probability(name: str, value: float) -> float:
    """Validates a probability in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value!r}")
    return float(value)
