"""The 15 ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019) at 5 severities, as stateless TF functions.

`corrupt(image, name, severity, seed, table=None)` corrupts one [H, W, C] image in [0, 1]; the same seed gives the
same image, eagerly or inside `tf.data`. Severity parameters, scaling to small images and every deliberate
difference from the reference code: docs/robustness.md.
"""

import numpy as np
import tensorflow as tf

from supcon.robust import ops
from supcon.robust.tables import (
    FROST_PROFILES,
    REFERENCE_SIZE,
    SEVERITIES,
    SEVERITY_PARAMETERS,
    TABLES,
)

__all__ = [
    "CORRUPTIONS",
    "FROST_PROFILES",
    "RANDOM",
    "REFERENCE_SIZE",
    "SEVERITIES",
    "SEVERITY_PARAMETERS",
    "SPATIAL",
    "TABLES",
    "corrupt",
    "table_for",
    "working_scale",
]


# ----------------------------------------------------------------------------------------------------------
# The corruptions at working size: impl(x [H, W, C] float32, params, seed [2] int64, table) -> [H, W, C].
# ----------------------------------------------------------------------------------------------------------


def _gaussian_noise(x, std, seed, table):
    """Additive Gaussian noise: x + N(0, std^2), per pixel and channel."""
    return x + std * tf.random.stateless_normal(tf.shape(x), seed)


def _shot_noise(x, photons, seed, table):
    """Poisson (shot) noise: Poisson(x * photons) / photons."""
    return tf.random.stateless_poisson(tf.shape(x), seed, x * photons, tf.float32) / photons


def _impulse_noise(x, amount, seed, table):
    """Salt-and-pepper noise (skimage mode='s&p'): each value is hit with probability `amount`, then set to
    1 or 0 with equal odds."""
    hit_seed, salt_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    hit = tf.random.stateless_uniform(tf.shape(x), hit_seed) < amount
    salt = tf.random.stateless_uniform(tf.shape(x), salt_seed) < 0.5
    return tf.where(hit, tf.cast(salt, tf.float32), x)


def _defocus_blur(x, params, seed, table):
    """Defocus: correlation with an anti-aliased disk (radius, alias sigma), reflect101 border."""
    return ops.filter2d(x, ops.disk_kernel(*params))


def _glass_blur(x, params, seed, table):
    """Glass: Gaussian blur, local pixel copies (max shift, iterations; numpy), Gaussian blur again."""
    sigma, max_delta, iterations = params
    height, width, channels = x.shape
    blurred = ops.gaussian_blur(x, sigma, truncate=4.0, border="nearest")
    source = tf.numpy_function(
        lambda s: ops.glass_shuffle(height, width, max_delta, iterations, s),
        [seed],
        tf.int32,
        stateful=False,
    )
    source = tf.ensure_shape(source, [height * width])  # pixel i takes the value of pixel source[i]
    shuffled = tf.reshape(tf.gather(tf.reshape(blurred, [-1, channels]), source), x.shape)
    return ops.gaussian_blur(shuffled, sigma, truncate=4.0, border="nearest")


def _motion_blur(x, params, seed, table):
    """Motion: ImageMagick's one-sided motion blur (radius, sigma) at an angle uniform in [-45, 45) degrees."""
    angle = tf.random.stateless_uniform([], seed, -45.0, 45.0)
    return ops.motion_blur(x, *params, angle)


def _zoom_blur(x, params, seed, table):
    """Zoom: the mean of the image and its centre zooms by arange(start, stop, step)."""
    zooms = ops.centre_zooms(x, np.arange(*params))  # [Z, H, W, C]
    return (x + tf.reduce_sum(zooms, axis=0)) / (zooms.shape[0] + 1)


def _snow(x, params, seed, table):
    """Snow: thresholded, zoomed Gaussian flakes streaked by motion blur at [-135, -45) degrees, added twice
    (the layer and its 180-degree rotation) to the image whitened towards 1.5 grey + 0.5."""
    loc, scale, zoom, threshold, radius, sigma, mix = params
    flake_seed, angle_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    layer = loc + scale * tf.random.stateless_normal(x.shape[:2] + (1,), flake_seed)  # [H, W, 1]
    layer = ops.centre_zooms(layer, [zoom])[0]
    layer = tf.clip_by_value(tf.where(layer < threshold, 0.0, layer), 0.0, 1.0)
    angle = tf.random.stateless_uniform([], angle_seed, -135.0, -45.0)
    layer = ops.motion_blur(layer, radius, sigma, angle)
    grey = x if x.shape[-1] == 1 else tf.image.rgb_to_grayscale(x)
    x = mix * x + (1 - mix) * tf.maximum(x, grey * 1.5 + 0.5)
    return x + layer + tf.reverse(layer, axis=[0, 1])


def _frost(x, params, seed, table):
    """Frost: keep * image + weight * a synthetic frost layer (see the module docstring)."""
    keep, weight = params
    pick_seed, texture_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    profiles = np.asarray(FROST_PROFILES[table], np.float32)  # [5, 2, 3]
    pick = tf.random.stateless_uniform([], pick_seed, 0, len(profiles), tf.int32)
    mean, std = tf.unstack(tf.gather(tf.constant(profiles), pick))
    texture = ops.frost_texture(x.shape[0], x.shape[1], texture_seed)
    layer = tf.clip_by_value(mean + std * texture[..., None], 0.0, 1.0)  # [H, W, 3]
    if x.shape[-1] == 1:
        layer = tf.image.rgb_to_grayscale(layer)
    return keep * x + weight * layer


def _fog(x, params, seed, table):
    """Fog: a diamond-square plasma fractal (strength, decay) added, then rescaled by max / (max + strength)."""
    strength, decay = params
    size = 1 << (max(x.shape[0], x.shape[1]) - 1).bit_length()
    plasma = ops.plasma_fractal(size, decay, seed)[: x.shape[0], : x.shape[1], None]
    peak = tf.reduce_max(x)
    return (x + strength * plasma) * peak / (peak + strength)


def _brightness(x, added, seed, table):
    """Brightness: HSV value + `added` (clipped to 1); the grey level itself for a grey image."""
    if x.shape[-1] == 1:
        return tf.minimum(x + added, 1.0)
    hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(x), axis=-1)
    return tf.image.hsv_to_rgb(tf.stack([hue, saturation, tf.minimum(value + added, 1.0)], axis=-1))


def _contrast(x, factor, seed, table):
    """Contrast: (x - mean) * factor + mean, the mean per channel over the image."""
    mean = tf.reduce_mean(x, axis=[0, 1], keepdims=True)
    return (x - mean) * factor + mean


def _elastic_transform(x, params, seed, table):
    """Elastic: a random affine warp (3 points moved by up to `affine` px, reflect101 border) followed by a
    displacement field alpha * Gaussian(sigma, truncate 3)-smoothed uniform noise (reflect border)."""
    alpha, sigma, affine = params
    height, width = x.shape[0], x.shape[1]
    affine_seed, dx_seed, dy_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    centre, square = np.float32([width // 2, height // 2]), min(height, width) // 3  # (x, y) points
    source = np.float32(
        [centre + square, [centre[0] + square, centre[1] - square], centre - square]
    )
    target = source + tf.random.stateless_uniform([3, 2], affine_seed, -affine, affine)
    forward = ops.affine_from_points(tf.constant(source), target)  # [2, 3]: source -> target
    cols, rows = tf.meshgrid(tf.range(width, dtype=tf.float32), tf.range(height, dtype=tf.float32))
    # cv2.warpAffine: output pixel p reads the source at forward^-1(p).
    inverse = tf.linalg.inv(tf.concat([forward, [[0.0, 0.0, 1.0]]], axis=0))  # [3, 3]
    src_cols = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
    src_rows = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
    warped = ops.bilinear_sample(x, src_rows, src_cols, "reflect101")
    dx = alpha * ops.gaussian_blur(
        tf.random.stateless_uniform([height, width], dx_seed, -1.0, 1.0), sigma, 3.0, "reflect"
    )
    dy = alpha * ops.gaussian_blur(
        tf.random.stateless_uniform([height, width], dy_seed, -1.0, 1.0), sigma, 3.0, "reflect"
    )
    return ops.bilinear_sample(warped, rows + dy, cols + dx, "reflect")


def _pixelate(x, factor, seed, table):
    """Pixelate: PIL BOX resize to int(factor * size), then BOX back."""
    height, width = x.shape[0], x.shape[1]
    small = ops.box_resize(x, int(height * factor), int(width * factor))
    return ops.box_resize(small, height, width)


def _jpeg_compression(x, quality, seed, table):
    """JPEG: encode at `quality` (libjpeg, 4:2:0 chroma for colour, as PIL) and decode."""
    pixels = tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)
    decoded = tf.io.decode_jpeg(tf.io.encode_jpeg(pixels, quality=quality), channels=x.shape[-1])
    return tf.cast(decoded, tf.float32) / 255.0


# ----------------------------------------------------------------------------------------------------------
# Public functions: validation, table choice, working size, clipping.
# ----------------------------------------------------------------------------------------------------------

SPATIAL = frozenset(
    {
        "defocus_blur",
        "glass_blur",
        "motion_blur",
        "zoom_blur",
        "snow",
        "frost",
        "fog",
        "elastic_transform",
    }
)
RANDOM = frozenset(
    {
        "gaussian_noise",
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "motion_blur",
        "snow",
        "frost",
        "fog",
        "elastic_transform",
    }
)


def table_for(height, width):
    """The severity table used by default for an image of this size: 'cifar10-c' up to 32 px short side."""
    return "cifar10-c" if min(height, width) <= REFERENCE_SIZE["cifar10-c"] else "imagenet-c"


def working_scale(height, width, table):
    """k: spatial corruptions run on the image enlarged k times, k = round(R / short side) (1 if >= R)."""
    short, reference = min(height, width), REFERENCE_SIZE[table]
    return 1 if short >= reference else max(1, int(reference / short + 0.5))


def _as_image(image):
    """float32 [H, W, C] in [0, 1] with static H, W and C in {1, 3}; uint8 is divided by 255."""
    image = tf.convert_to_tensor(image)
    if image.shape.rank != 3:
        raise ValueError(f"image must be one [H, W, C] image (rank 3), got shape {image.shape}")
    if None in image.shape.as_list() or image.shape[-1] not in (1, 3):
        raise ValueError(
            f"image needs a static height and width and C in (1, 3), got shape {image.shape}"
        )
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    if not image.dtype.is_floating:
        raise ValueError(
            f"image dtype must be floating (values in [0, 1]) or uint8, got {image.dtype.name}"
        )
    return tf.cast(image, tf.float32)


def _as_seed(seed):
    """An int or a [2] int tensor -> [2] int64 (an int s becomes [s, 0])."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([seed, tf.constant(0, tf.int64)])
    if seed.shape.as_list() != [2]:
        raise ValueError(f"seed must be an int or a [2] int tensor, got shape {seed.shape}")
    return seed


def _check_severity(severity):
    if (
        isinstance(severity, bool)
        or not isinstance(severity, (int, np.integer))
        or severity not in SEVERITIES
    ):
        raise ValueError(f"severity must be an int in 1..5, got {severity!r}")
    return int(severity)


def _check_table(table, image):
    if table is None:
        return table_for(image.shape[0], image.shape[1])
    if table not in TABLES:
        raise ValueError(f"table must be None or one of {', '.join(TABLES)}, got {table!r}")
    return table


def _enlarge(image, scale):
    """Nearest-neighbour enlargement by an integer factor: [H, W, C] -> [H k, W k, C]."""
    return tf.repeat(tf.repeat(image, scale, axis=0), scale, axis=1)


def _shrink(image, scale):
    """The mean of each k x k block: [H k, W k, C] -> [H, W, C] (undoes `_enlarge` exactly)."""
    height, width, channels = image.shape[0] // scale, image.shape[1] // scale, image.shape[2]
    return tf.reduce_mean(tf.reshape(image, [height, scale, width, scale, channels]), axis=[1, 3])


def _public(name, impl):
    """Wraps impl into the public corruption `name(image, severity, seed, table=None)`."""

    def corruption(image, severity, seed, table=None):
        image = _as_image(image)
        table = _check_table(table, image)
        params = SEVERITY_PARAMETERS[table][name][_check_severity(severity) - 1]
        seed = _as_seed(seed)
        if name in SPATIAL:
            scale = working_scale(image.shape[0], image.shape[1], table)
            out = _shrink(impl(_enlarge(image, scale), params, seed, table), scale)
        else:
            out = impl(image, params, seed, table)
        return tf.ensure_shape(tf.clip_by_value(out, 0.0, 1.0), image.shape)

    corruption.__name__ = corruption.__qualname__ = name
    corruption.__doc__ = (
        f"{impl.__doc__}\n\n    Args:\n      image: [H, W, C] float in [0, 1] (or uint8), C in (1, 3), static H, W.\n"
        "      severity: int in 1..5.\n      seed: int or [2] int tensor (stateless).\n"
        "      table: 'imagenet-c', 'cifar10-c' or None (by size, see `table_for`).\n\n"
        "    Returns:\n      float32 [H, W, C] in [0, 1].\n"
    )
    return corruption


gaussian_noise = _public("gaussian_noise", _gaussian_noise)
shot_noise = _public("shot_noise", _shot_noise)
impulse_noise = _public("impulse_noise", _impulse_noise)
defocus_blur = _public("defocus_blur", _defocus_blur)
glass_blur = _public("glass_blur", _glass_blur)
motion_blur = _public("motion_blur", _motion_blur)
zoom_blur = _public("zoom_blur", _zoom_blur)
snow = _public("snow", _snow)
frost = _public("frost", _frost)
fog = _public("fog", _fog)
brightness = _public("brightness", _brightness)
contrast = _public("contrast", _contrast)
elastic_transform = _public("elastic_transform", _elastic_transform)
pixelate = _public("pixelate", _pixelate)
jpeg_compression = _public("jpeg_compression", _jpeg_compression)

# The 15 ImageNet-C corruptions in the paper's order (noise, blur, weather, digital).
CORRUPTIONS = {
    fn.__name__: fn
    for fn in (
        gaussian_noise,
        shot_noise,
        impulse_noise,
        defocus_blur,
        glass_blur,
        motion_blur,
        zoom_blur,
        snow,
        frost,
        fog,
        brightness,
        contrast,
        elastic_transform,
        pixelate,
        jpeg_compression,
    )
}


def corrupt(image, name, severity, seed, table=None):
    """Applies corruption `name` at `severity` (1..5) to one image; see the module docstring.

    Args:
      image: [H, W, C] float in [0, 1] (or uint8), C in (1, 3), static H and W.
      name: one of CORRUPTIONS.
      severity: int in 1..5.
      seed: int or [2] int tensor; the same seed gives the same image.
      table: 'imagenet-c', 'cifar10-c' or None (chosen by size, `table_for`).

    Returns:
      float32 [H, W, C] in [0, 1].
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid names: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name](image, severity, seed, table=table)
