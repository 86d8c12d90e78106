"""Batched colour jitter, grayscale and Gaussian blur over [N, H, W, C] with per-example randomness.

The same operations as ops.color_jitter / ops.grayscale / ops.gaussian_blur (see there), each applied with its
probability per example by a select, never a branch:
  * colour jitter: brightness, contrast, saturation (amount 0.8 s) and hue (0.2 s) in a random order per
    example, each followed by a clip to [0, 1], TF or torchvision style. For each of the 4 positions every
    candidate adjustment is computed for the whole batch and each example keeps the one its order names (one
    channel: saturation and hue are identities, so 2 candidates). Saturation and hue in HSV with per-example
    factors (tf.image.rgb_to_hsv / hsv_to_rgb), as tf.image.adjust_saturation / adjust_hue compute them;
  * grayscale: luma, kept at the channel count (identity for one channel);
  * blur: sigma ~ U(0.1, 2.0) per example, side from the static image height as ops.gaussian_blur (images
    under 20 px get none), as per-example banded matrices applied with two einsums.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from supcon.augment import keys, ops


def _select(mask, a, b):
    """a where mask [N] is true, else b (both [N, H, W, C])."""
    return tf.where(mask[:, None, None, None], a, b)


def _per_example(values):
    return tf.reshape(tf.cast(values, tf.float32), [-1, 1, 1, 1])  # [N] -> [N, 1, 1, 1]


def _scale(draw, low, high):
    """U(0, 1) draws mapped to U(low, high), in the same float32 arithmetic as ops' per-image draws."""
    return low + (high - low) * draw


def _brightness(images, draw, amount, torchvision):
    if torchvision:  # multiplicative
        return images * _scale(draw, max(0.0, 1.0 - amount), 1.0 + amount)
    return images + _scale(draw, -amount, amount)  # tf.image.adjust_brightness


def _contrast(images, draw, amount, torchvision):
    factor = _scale(draw, max(0.0, 1.0 - amount), 1.0 + amount)
    if torchvision:  # towards the mean of the grayscale image (one scalar per example)
        gray = tf.image.rgb_to_grayscale(images) if images.shape[-1] == 3 else images
        mean = tf.reduce_mean(gray, axis=[1, 2, 3], keepdims=True)
    else:  # tf.image.adjust_contrast: per-channel means
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return (images - mean) * factor + mean


def _saturation(images, hsv, draw, amount, torchvision):
    factor = _scale(draw, max(0.0, 1.0 - amount), 1.0 + amount)
    if torchvision:  # blend towards the grayscale image
        gray = tf.image.rgb_to_grayscale(images)
        return gray + (images - gray) * factor
    hue, sat, value = tf.unstack(hsv, axis=-1)
    sat = tf.clip_by_value(sat * factor[..., 0], 0.0, 1.0)  # tf.image.adjust_saturation
    return tf.image.hsv_to_rgb(tf.stack([hue, sat, value], -1))


def _hue(hsv, draw, amount):
    hue, sat, value = tf.unstack(hsv, axis=-1)
    hue = hue + _scale(draw, -amount, amount)[..., 0]
    hue = hue - tf.floor(hue)  # rotate modulo 1 (tf.image.adjust_hue)
    return tf.image.hsv_to_rgb(tf.stack([hue, sat, value], -1))


def apply_color_jitter(images, order, draws, strength: float = 1.0, torchvision: bool = False) -> tf.Tensor:
    """Batched `ops.apply_color_jitter`: example n applies adjustment order[n, p] at position p (0 brightness,
    1 contrast, 2 saturation, 3 hue) with the U(0, 1) draw draws[n, k] for adjustment k.

    Args:
      images: [N, H, W, C] float32 in [0, 1].
      order: [N, 4] int, a permutation of 0..3 per example.
      draws: [N, 4] float32 in [0, 1).
      strength, torchvision: as `ops.color_jitter`.

    Returns:
      [N, H, W, C] float32 in [0, 1].
    """
    amounts = ops.jitter_amounts(strength)
    factors = [_per_example(draws[:, k]) for k in range(4)]  # [N, 1, 1, 1] each
    clip = lambda x: tf.clip_by_value(x, 0.0, 1.0)  # noqa: E731
    for position in range(4):
        pick = order[:, position]  # [N]
        out = _select(tf.equal(pick, 0), clip(_brightness(images, factors[0], amounts[0], torchvision)), images)
        out = _select(tf.equal(pick, 1), clip(_contrast(images, factors[1], amounts[1], torchvision)), out)
        if images.shape[-1] == 3:  # one channel: saturation and hue leave the image as it is
            hsv = tf.image.rgb_to_hsv(images)
            saturated = _saturation(images, hsv, factors[2], amounts[2], torchvision)
            out = _select(tf.equal(pick, 2), clip(saturated), out)
            out = _select(tf.equal(pick, 3), clip(_hue(hsv, factors[3], amounts[3])), out)
        images = out
    return images


def random_color_jitter(images, view_keys, strength: float = 1.0, probability: float = 0.8,
                        torchvision: bool = False) -> tf.Tensor:
    """`ops.color_jitter` with probability `probability` per example (SimCLR's random colour jitter)."""
    if strength < 0:
        raise ValueError(f"strength must be >= 0; got {strength!r}")
    probability = ops.check_probability("color_jitter_probability", probability)
    if probability <= 0.0:
        return images
    order = tf.argsort(keys.uniform(view_keys, keys.JITTER_ORDER, (4,)), axis=1)  # [N, 4] permutations
    draws = keys.uniform(view_keys, keys.JITTER_FACTORS, (4,))  # [N, 4]
    jittered = apply_color_jitter(images, order, draws, strength, torchvision)
    if probability >= 1.0:
        return jittered
    return _select(keys.uniform(view_keys, keys.JITTER) < probability, jittered, images)


def apply_grayscale(images, mask) -> tf.Tensor:
    """Luma grayscale (as ops.grayscale) of the examples where mask [N] is true; identity for one channel."""
    if images.shape[-1] == 1:
        return images
    gray = tf.image.rgb_to_grayscale(images)  # [N, H, W, 1]
    return _select(mask, tf.broadcast_to(gray, tf.shape(images)), images)


def random_grayscale(images, view_keys, probability: float = 0.2) -> tf.Tensor:
    """Grayscale with probability `probability` per example."""
    probability = ops.check_probability("grayscale_probability", probability)
    if probability <= 0.0 or images.shape[-1] == 1:
        return images
    return apply_grayscale(images, keys.uniform(view_keys, keys.GRAYSCALE) < probability)


def blur_radius(height: int) -> int:
    """Kernel radius of ops.gaussian_blur for an image of this (static) height: side ~ H / 10, made odd."""
    return int(height) // 10 // 2


def _banded(size: int, kernels) -> tf.Tensor:
    """[N, size, size] matrices M_n with (M_n x)[i] = sum_j kernels[n, j - i + r] x[j] (zero 'SAME' padding)."""
    radius = (int(kernels.shape[-1]) - 1) // 2
    offset = np.arange(size)[None, :] - np.arange(size)[:, None]  # [size, size], j - i
    taps = tf.gather(kernels, np.clip(offset + radius, 0, 2 * radius), axis=1)  # [N, size, size]
    return tf.where(np.abs(offset) <= radius, taps, 0.0)


def apply_blur(images, sigmas, radius: int) -> tf.Tensor:
    """Separable Gaussian blur of each example with its sigma [N] (kernel side 2 radius + 1, zero padding),
    then a clip to [0, 1], as ops.gaussian_blur's blur."""
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigmas = tf.cast(sigmas, tf.float32)[:, None]
    kernels = tf.exp(-tf.square(taps)[None, :] / (2.0 * tf.square(sigmas)))
    kernels = kernels / tf.reduce_sum(kernels, axis=1, keepdims=True)  # [N, 2r + 1]
    rows = _banded(int(images.shape[1]), kernels)  # [N, H, H]
    cols = _banded(int(images.shape[2]), kernels)  # [N, W, W]
    out = tf.einsum("nij,njwc->niwc", rows, images)
    out = tf.einsum("nhjc,nij->nhic", out, cols)
    return tf.clip_by_value(out, 0.0, 1.0)


def random_blur(images, view_keys, probability: float = 0.5) -> tf.Tensor:
    """SimCLR blur with probability `probability` per example: sigma ~ U(0.1, 2.0)."""
    probability = ops.check_probability("blur_probability", probability)
    radius = blur_radius(images.shape[1])
    if radius == 0 or probability <= 0.0:
        return images
    sigmas = keys.uniform(view_keys, keys.BLUR_SIGMA) * (np.float32(2.0) - np.float32(0.1)) + np.float32(0.1)
    blurred = apply_blur(images, sigmas, radius)
    if probability >= 1.0:
        return blurred
    return _select(keys.uniform(view_keys, keys.BLUR) < probability, blurred, images)
