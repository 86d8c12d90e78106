"""Batched augmentation: crop_flip, simclr_augment and identity_augment over [N, H, W, C] in a few ops per batch.

The per-image augmenters (augmenters.py) run ~30 tiny ops per view; at 14x14 that per-op dispatch, not
arithmetic, is the cost (512 views x 30 ops per batch). These functions compute the same operations for a whole
batch at once, each example with its own randomness from per-example uint64 keys (keys.py), so a view depends on
its key only, never on the batch it lands in. randaugment's batched form (this crop and flip, then RandAugment)
is in batched_policies.py.

Semantics equal the per-image ops with the same options; only the random numbers differ (counter-based hashes
instead of tf.random's Philox streams), with the same distributions:
  * crop: `tf.image.stateless_sample_distorted_bounding_box` as `ops.random_resized_crop` calls it
    (min_object_covered 0.1 of the whole image, 100 attempts, the first that succeeds), TF's C++
    `GenerateRandomCrop` replicated in float32 with its rounding (lrintf = round half to even), then our fallback:
    a failed sample (the whole image) becomes the centre square;
  * resize: `tf.image.resize(crop, size, 'bilinear', antialias=antialias)` (half-pixel centres) as per-example
    interpolation matrices rows [N, h, H] and columns [N, w, W] (offset by the crop's top / left), applied with
    two batched einsums; the horizontal flip (p 1/2) reverses the rows of the column matrix. Without antialias
    a row holds the two bilinear neighbours; with it, TF ScaleAndTranslate's triangle kernel;
  * colour jitter, grayscale and blur: batched_color.py.
The weights sum to one up to rounding, so the resized views are clipped to [0, 1] (a no-op but for
1-ulp excursions; the per-image resize computes a + (b - a) t, which stays inside exactly, and its antialiased
form is clipped too: ops.bilinear).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from supcon.augment import batched_color, keys, ops

MAX_ATTEMPTS = 100  # as ops.random_resized_crop
QUICK_ATTEMPTS = 8  # attempts computed for every example; the rest only when one of them needs them
MIN_OBJECT_COVERED = 0.1


def image_dims(images) -> tuple[int, int, int]:
    """(H, W, C) of a [N, H, W, C] float32 batch with static H, W and C in (1, 3); ValueError otherwise."""
    if images.shape.rank != 4 or None in images.shape[1:] or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, C] with static H, W and C = 1 or 3; got shape {images.shape}")
    return int(images.shape[1]), int(images.shape[2]), int(images.shape[3])


def output_size(image_size, images) -> tuple[int, int]:
    """(h, w) from `image_size` (int, pair or None = the images' own size)."""
    height, width, _ = image_dims(images)
    return (height, width) if image_size is None else ops.size_pair(image_size, None)


def _lrint(x: tf.Tensor) -> tf.Tensor:
    """C's lrintf in the default rounding mode: round half to even (as tf.round), to int32."""
    return tf.cast(tf.round(x), tf.int32)


def _rectify(crop_h, crop_w, redo, step: int, aspect):
    """Where `redo`: height + step and its width lrintf(height * aspect); returns (height, width, area)."""
    crop_h = tf.where(redo, crop_h + step, crop_h)
    crop_w = tf.where(redo, _lrint(tf.cast(crop_h, tf.float32) * aspect), crop_w)
    return crop_h, crop_w, tf.cast(crop_w * crop_h, tf.float32)


def _crop_heights(aspect, draws, height, width, area_range):
    """GenerateRandomCrop's crop (height, width) for each aspect [N, A] (float32) and whether it is valid."""
    min_area = np.float32(area_range[0]) * np.float32(width) * np.float32(height)  # float32, as the C++
    max_area = np.float32(area_range[1]) * np.float32(width) * np.float32(height)
    low = _lrint(tf.sqrt(min_area / aspect))  # [N, A]
    high = _lrint(tf.sqrt(max_area / aspect))
    # The largest height whose rounded width still fits: (W + 0.5 - eps) / aspect in double, truncated, minus
    # one if rounding still overflows.
    capped = tf.cast((width + 0.5 - float(np.float32(1e-7))) / tf.cast(aspect, tf.float64), tf.int32)
    capped -= tf.cast(_lrint(tf.cast(capped, tf.float32) * aspect) > width, tf.int32)
    high = tf.where(_lrint(tf.cast(high, tf.float32) * aspect) > width, capped, high)
    high = tf.minimum(high, height)
    crop_h = tf.minimum(low, high)
    span = tf.cast(high - crop_h + 1, tf.float64)  # Uniform(n): [0, n)
    crop_h += tf.where(crop_h < high, tf.cast(tf.floor(draws * span), tf.int32), 0)
    crop_w = _lrint(tf.cast(crop_h, tf.float32) * aspect)
    area = tf.cast(crop_w * crop_h, tf.float32)
    # Rounding may leave the area outside the range: try one row taller, then one row shorter.
    crop_h, crop_w, area = _rectify(crop_h, crop_w, area < min_area, 1, aspect)
    crop_h, crop_w, area = _rectify(crop_h, crop_w, area > max_area, -1, aspect)
    valid = (area >= min_area) & (area <= max_area) & (crop_w <= width) & (crop_h <= height)
    valid &= (crop_w > 0) & (crop_h > 0)
    covered = area / np.float32(width * height) >= np.float32(MIN_OBJECT_COVERED)  # overlap with the image
    return crop_h, crop_w, valid & covered & (area >= 1.0)


def _first_valid(view_keys, begin: int, end: int, height: int, width: int, area_range, aspect_ratio_range):
    """The first valid box of attempts [begin, end): boxes [N, 4] (top, left, h, w) int32 and found [N] bool.

    Attempt a draws aspect a of CROP_ASPECT and integer draws 3a..3a+2 of CROP_INTEGERS, whatever the range."""
    count = end - begin
    low, high = np.float32(aspect_ratio_range[0]), np.float32(aspect_ratio_range[1])
    aspect = keys.uniform(view_keys, keys.CROP_ASPECT, (count,), offset=begin) * (high - low) + low  # [N, A]
    draws = keys.uniform(view_keys, keys.CROP_INTEGERS, (count, 3), tf.float64, offset=3 * begin)  # [N, A, 3]
    crop_h, crop_w, ok = _crop_heights(aspect, draws[..., 0], height, width, area_range)  # [N, A] each
    top = tf.where(crop_h < height, tf.cast(tf.floor(draws[..., 1] * tf.cast(height - crop_h, tf.float64)),
                                            tf.int32), 0)
    left = tf.where(crop_w < width, tf.cast(tf.floor(draws[..., 2] * tf.cast(width - crop_w, tf.float64)),
                                            tf.int32), 0)
    first = tf.reduce_min(tf.where(ok, tf.range(count)[None, :], count), axis=1)  # [N]; count: none valid
    boxes = tf.gather(tf.stack([top, left, crop_h, crop_w], -1), tf.minimum(first, count - 1), batch_dims=1)
    return boxes, first < count


def sample_crop_boxes(view_keys, height: int, width: int, area_range=(0.08, 1.0),
                      aspect_ratio_range=(3 / 4, 4 / 3), attempts: int = MAX_ATTEMPTS,
                      quick_attempts: int = QUICK_ATTEMPTS) -> tf.Tensor:
    """Per-example crop boxes [N, 4] int32 (top, left, crop height, crop width), as `ops.random_resized_crop`.

    Attempt a: aspect ~ U(aspect range) (float32), height uniform among the integers allowed by the area range,
    width = lrintf(height * aspect), then top ~ U{0, ..., H - h - 1} and left ~ U{0, ..., W - w - 1} (TF's
    Uniform(n) is exclusive of n; 0 when the crop spans the side). The first valid attempt of `attempts` wins;
    if none is valid, or the box is the whole image, the centre square of side min(H, W). The first
    `quick_attempts` are computed for the batch, the rest only if some example found no box in them (the same
    boxes, as attempt a's draws depend on (key, a) only).
    """
    area_range = ops.check_range("crop_area_range", area_range, 0.0, 1.0)
    aspect_ratio_range = ops.check_range("aspect_ratio_range", aspect_ratio_range, 0.0, float("inf"))
    quick = min(quick_attempts, attempts)
    boxes, found = _first_valid(view_keys, 0, quick, height, width, area_range, aspect_ratio_range)
    if attempts > quick:
        def rest():
            more, found_more = _first_valid(view_keys, quick, attempts, height, width, area_range, aspect_ratio_range)
            return tf.where(found[:, None], boxes, more), found | found_more

        boxes, found = tf.cond(tf.reduce_all(found), lambda: (boxes, found), rest)
    whole = tf.constant([0, 0, height, width], tf.int32)
    boxes = tf.where(found[:, None], boxes, whole)
    side = min(height, width)
    square = tf.constant([(height - side + 1) // 2, (width - side + 1) // 2, side, side], tf.int32)
    is_whole = tf.reduce_all(tf.equal(boxes, whole), axis=1, keepdims=True)  # as the per-image fallback test
    return tf.where(is_whole, square, boxes)


def interpolation_matrix(starts, lengths, in_size: int, out_size: int, antialias: bool = False) -> tf.Tensor:
    """[N, out_size, in_size] bilinear weights resizing the window [start, start + length) of each example.

    `tf.image.resize(..., 'bilinear')` in one dimension: x = (i + 0.5) * length / out_size - 0.5, lower =
    max(floor(x), 0), upper = min(ceil(x), length - 1), weight x - floor(x) on upper and the rest on lower.
    With `antialias`, `tf.image.resize(..., 'bilinear', antialias=True)`: see `triangle_matrix`.
    """
    if antialias:
        return triangle_matrix(starts, lengths, in_size, out_size)
    lengths = tf.cast(lengths, tf.int32)
    scale = tf.cast(lengths, tf.float32) / float(out_size)  # [N]
    centre = (tf.range(out_size, dtype=tf.float32) + 0.5)[None, :] * scale[:, None] - 0.5  # [N, out]
    floor = tf.floor(centre)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(centre), tf.int32), lengths[:, None] - 1)
    lerp = (centre - floor)[..., None]  # [N, out, 1]
    starts = tf.cast(starts, tf.int32)[:, None]
    return (tf.one_hot(starts + lower, in_size) * (1.0 - lerp)
            + tf.one_hot(starts + upper, in_size) * lerp)  # [N, out, in]


def triangle_matrix(starts, lengths, in_size: int, out_size: int) -> tf.Tensor:
    """[N, out_size, in_size] antialiased bilinear weights of the window [start, start + length) of each example.

    TF's ScaleAndTranslate with the triangle kernel (what `tf.image.resize(..., 'bilinear', antialias=True)`
    runs), in its float32 steps: inv_scale = 1 / (out / L), sample s_i = (i + 0.5) inv_scale, kernel scale
    k = max(inv_scale, 1), weight of window pixel j in [0, L): max(0, 1 - |j + 0.5 - s_i| / k), each row
    normalised to sum 1 (times the reciprocal of its sum). Upscaling (k = 1) gives the plain bilinear weights up to
    rounding.
    """
    lengths = tf.cast(lengths, tf.int32)
    scale = float(out_size) / tf.cast(lengths, tf.float32)  # [N], float32 as the op's `scale` input
    inv_scale = tf.cast(1.0 / tf.cast(scale, tf.float64), tf.float32)  # the C++ computes 1.0 / scale in double
    inverse_width = 1.0 / tf.maximum(inv_scale, 1.0)  # [N], 1 / kernel scale
    sample = (tf.range(out_size, dtype=tf.float32) + 0.5)[None, :] * inv_scale[:, None]  # [N, out]
    local = tf.range(in_size)[None, :] - tf.cast(starts, tf.int32)[:, None]  # [N, in], j in the window
    inside = (local >= 0) & (local < lengths[:, None])  # [N, in]
    offset = (tf.cast(local, tf.float32) + 0.5)[:, None, :] - sample[:, :, None]  # [N, out, in]
    distance = tf.abs(offset * inverse_width[:, None, None])
    weights = tf.where(inside[:, None, :] & (distance < 1.0), 1.0 - distance, 0.0)  # [N, out, in]
    # The op sums a row's span left to right; a running sum keeps that rounding (the zeros outside the span add
    # nothing), so the weights equal TF's bit for bit, where reduce_sum's order may differ by an ulp.
    total = tf.cumsum(weights, axis=-1)[..., -1:]  # [N, out, 1]
    return weights * (1.0 / total)


def resize_boxes(images, boxes, size, flips=None, antialias: bool = False) -> tf.Tensor:
    """Crops boxes [N, 4] (top, left, height, width) of images [N, H, W, C], resizes them bilinearly to `size`
    (as tf.image.resize with `antialias`) and flips the examples where flips [N] bool is true: [N, h, w, C] in
    [0, 1]."""
    images = tf.convert_to_tensor(images, tf.float32)
    height, width, _ = image_dims(images)
    rows = interpolation_matrix(boxes[:, 0], boxes[:, 2], height, size[0], antialias)  # [N, h, H]
    cols = interpolation_matrix(boxes[:, 1], boxes[:, 3], width, size[1], antialias)  # [N, w, W]
    if flips is not None:
        cols = tf.where(flips[:, None, None], tf.reverse(cols, [1]), cols)
    out = tf.einsum("nih,nhwc->niwc", rows, images)  # [N, h, W, C]
    out = tf.einsum("njw,niwc->nijc", cols, out)  # [N, h, w, C]
    return tf.clip_by_value(out, 0.0, 1.0)


def crop_flip(images, view_keys, image_size=None, crop_area_range=(0.08, 1.0), flip=True,
              aspect_ratio_range=(3 / 4, 4 / 3), antialias=False) -> tf.Tensor:
    """Batched `augmenters.crop_flip`: random resized crop, then a horizontal flip (p 1/2) if `flip`.

    Args:
      images: [N, H, W, C] float32 in [0, 1] (static H, W, C; C = 1 or 3).
      view_keys: [N] uint64 (or int64) per-example keys, e.g. `keys.example_keys(seed, ..., positions, view)`.
      image_size, crop_area_range, flip, aspect_ratio_range, antialias: as `augmenters.crop_flip`.

    Returns:
      [N, h, w, C] float32 in [0, 1].
    """
    images = tf.convert_to_tensor(images, tf.float32)
    height, width, _ = image_dims(images)
    size = output_size(image_size, images)
    view_keys = keys.check_keys(view_keys, images.shape[0])
    boxes = sample_crop_boxes(view_keys, height, width, crop_area_range, aspect_ratio_range)
    flips = keys.uniform(view_keys, keys.FLIP) < 0.5 if flip else None
    return resize_boxes(images, boxes, size, flips, antialias)


def identity_augment(images, view_keys=None, image_size=None, antialias=False) -> tf.Tensor:
    """Batched `augmenters.identity_augment`: a bilinear resize of the batch (antialiased if `antialias`) when
    `image_size` differs."""
    del view_keys
    images = tf.convert_to_tensor(images, tf.float32)
    size = output_size(image_size, images)
    if tuple(images.shape[1:3]) == size:
        return images
    out = ops.bilinear(images, size, antialias)
    return tf.ensure_shape(out, [images.shape[0], *size, images.shape[-1]])


def simclr_augment(images, view_keys, image_size=None, crop_area_range=(0.08, 1.0),
                   aspect_ratio_range=(3 / 4, 4 / 3), flip=True, strength=1.0, color_jitter_probability=0.8,
                   torchvision_jitter=False, grayscale_probability=0.2, blur_probability=0.5,
                   antialias=False) -> tf.Tensor:
    """Batched `augmenters.simclr_augment`: crop, flip, colour jitter (p), grayscale (p), Gaussian blur (p).

    Args:
      images: [N, H, W, C] float32 in [0, 1] (static H, W, C; C = 1 or 3).
      view_keys: [N] per-example keys.
      the rest: as `augmenters.simclr_augment`.

    Returns:
      [N, h, w, C] float32 in [0, 1].
    """
    view_keys = keys.check_keys(view_keys, images.shape[0])
    out = crop_flip(images, view_keys, image_size, crop_area_range, flip, aspect_ratio_range, antialias)
    out = batched_color.random_color_jitter(out, view_keys, strength, color_jitter_probability,
                                            torchvision_jitter)
    out = batched_color.random_grayscale(out, view_keys, grayscale_probability)
    return batched_color.random_blur(out, view_keys, blur_probability)
