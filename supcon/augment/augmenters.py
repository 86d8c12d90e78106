"""The augmenters, evaluation preprocessing and model-input scaling, registered with gin.

An augmenter maps one image to one view: `augmenter(image01 [H, W, C] float32 in [0, 1], seed [2] int) ->
image01 [h, w, C]`. It is a pure function of (image, seed, options): the data pipeline gives every view of every
example its own stateless seed, so a run's views are reproducible and resumable. crop_flip, simclr_augment,
randaugment and identity_augment also take a batch, `(images01 [N, H, W, C], keys [N] uint64) -> [N, h, w, C]`,
with the same options and semantics and per-example counter-based randomness (batched.py, batched_policies.py);
`supports_batches(augmenter)` says whether an augmenter, gin-configured or not, does. Recipes pick one by
reference and set its options, e.g. `augmenter = @simclr_augment` and `simclr_augment.strength = 0.5`.

Official options (seed.md §1.3, §1.6) and their counterparts here:
  augmentation_type SIMCLR / AUTOAUGMENT / RANDAUGMENT / STACKED_RANDAUGMENT / IDENTITY
    -> simclr_augment / autoaugment / randaugment / stacked_randaugment / identity_augment;
  augmentation_magnitude -> `strength` (SimCLR, stacked) or `magnitude` (RandAugment);
  crop_area_range, blur_probability, use_pytorch_color_jitter (-> torchvision_jitter), image_size;
  eval_crop_method RESIZE_THEN_CROP / CROP_THEN_RESIZE / IDENTITY, crop_padding -> eval_preprocess;
  x / 127.5 - 1 and apply_whitening -> normalize.
`crop_flip` is the crop-and-flip augmentation of cross-entropy baselines and linear heads.

Every resize is TF's bilinear one with half-pixel centres. `antialias` (off by default, as the official code)
filters downscales with a triangle kernel stretched to the scale factor, as torchvision's RandomResizedCrop and
Resize do by default; the augmenters and eval_preprocess all take it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import gin
import tensorflow as tf

from supcon.augment import batched, batched_policies, ops, policies

EVAL_METHODS = ("identity", "resize_then_crop", "crop_then_resize")

# Official whitening statistics of CIFAR-10, in [-1, 1] space (seed.md §1.6).
CIFAR10_MEAN = (-0.0172, -0.0356, -0.107)
CIFAR10_STD = (0.4046, 0.3988, 0.402)


_BATCHES = "supcon_accepts_batches"  # marker attribute of the augmenters that also take [N, H, W, C] batches


def _register(fn):
    """gin-registers `fn` and exempts it from AutoGraph (it uses explicit tf.cond / tf.switch_case), which
    otherwise re-converts every helper each time `tf.data.Dataset.map` or `tf.function` traces it."""
    return gin.register(tf.autograph.experimental.do_not_convert(fn))


def _register_batched(fn):
    """`_register`, marking `fn` as accepting a batch [N, H, W, C] with per-example keys [N] (batched.py)."""
    setattr(fn, _BATCHES, True)
    return _register(fn)


def supports_batches(augmenter) -> bool:
    """Whether `augmenter` (possibly gin-configured or a functools.partial) also accepts batches.

    A batch-accepting augmenter maps `(images [N, H, W, C] float32 in [0, 1], keys [N] uint64)` to
    `[N, h, w, C]` with the options bound to it (gin bindings, partial keywords), view n drawn from keys[n]
    only. The marker is found by walking the `__wrapped__` chain (gin and AutoGraph wrappers) and
    `functools.partial`s.
    """
    seen = set()
    while augmenter is not None and id(augmenter) not in seen:
        seen.add(id(augmenter))
        if getattr(augmenter, _BATCHES, False):
            return True
        augmenter = augmenter.func if isinstance(augmenter, functools.partial) else getattr(
            augmenter, "__wrapped__", None)
    return False


def _is_batch(image) -> bool:
    return tf.TensorShape(image.shape).rank == 4


def _crop_flip(image, seed, image_size, crop_area_range, aspect_ratio_range, flip, antialias=False):
    """Random resized crop then (optionally) a horizontal flip; validates the options."""
    ops.channels(image)
    size = ops.size_pair(image_size, image)
    area = ops.check_range("crop_area_range", crop_area_range, 0.0, 1.0)
    aspect = ops.check_range("aspect_ratio_range", aspect_ratio_range, 0.0, float("inf"))
    seeds = ops.split_seed(seed, 2)
    image = ops.random_resized_crop(image, seeds[0], size, area, aspect, antialias)
    return ops.random_flip(image, seeds[1]) if flip else image


@_register_batched
def crop_flip(image, seed, image_size=None, crop_area_range=(0.08, 1.0), flip=True,
              aspect_ratio_range=(3 / 4, 4 / 3), antialias=False):
    """Random resized crop and horizontal flip: the CE / linear-stage augmentation.

    Args:
      image: [H, W, C] float32 in [0, 1], C = 1 or 3; or a batch [N, H, W, C] (batched.crop_flip).
      seed: [2] int stateless seed; for a batch, per-example keys [N] uint64.
      image_size: output size (int or (h, w)); None keeps the input size.
      crop_area_range: (min, max) fraction of the area kept: (0.08, 1) ImageNet, (0.2, 1) CIFAR.
      flip: random horizontal flip with p = 0.5.
      aspect_ratio_range: (min, max) width / height of the crop.
      antialias: antialiased bilinear resize of the crop (torchvision's default; the official code's is not).

    Returns:
      [h, w, C] float32 in [0, 1].
    """
    if _is_batch(image):
        return batched.crop_flip(image, seed, image_size, crop_area_range, flip, aspect_ratio_range, antialias)
    return _crop_flip(image, seed, image_size, crop_area_range, aspect_ratio_range, flip, antialias)


def _simclr_color(image, seed, strength, color_jitter_probability, torchvision_jitter, grayscale_probability):
    """Colour jitter (p) then grayscale (p), as SimCLR's `random_color_jitter`."""
    if strength < 0:
        raise ValueError(f"strength must be >= 0; got {strength!r}")
    p_jitter = ops.check_probability("color_jitter_probability", color_jitter_probability)
    p_gray = ops.check_probability("grayscale_probability", grayscale_probability)
    seeds = ops.split_seed(seed, 3)
    jitter = lambda x: ops.color_jitter(x, seeds[1], strength, torchvision_jitter)  # noqa: E731
    image = ops.random_apply(jitter, p_jitter, seeds[0], image)
    return ops.random_apply(ops.grayscale, p_gray, seeds[2], image)


@_register_batched
def simclr_augment(image, seed, image_size=None, crop_area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
                   flip=True, strength=1.0, color_jitter_probability=0.8, torchvision_jitter=False,
                   grayscale_probability=0.2, blur_probability=0.5, antialias=False):
    """SimCLR augmentation: crop, flip, colour jitter (p 0.8), grayscale (p 0.2), Gaussian blur.

    Args:
      image: [H, W, C] float32 in [0, 1], C = 1 or 3 (one channel: no hue/saturation/grayscale); or a batch
        [N, H, W, C] (batched.simclr_augment).
      seed: [2] int stateless seed; for a batch, per-example keys [N] uint64.
      image_size: output size (int or (h, w)); None keeps the input size.
      crop_area_range, aspect_ratio_range, flip, antialias: see `crop_flip`.
      strength: colour strength s: brightness/contrast/saturation 0.8 s, hue 0.2 s.
      color_jitter_probability: probability of the colour jitter.
      torchvision_jitter: torchvision-style jitter (official `use_pytorch_color_jitter`).
      grayscale_probability: probability of converting to grayscale.
      blur_probability: probability of the Gaussian blur (sigma 0.1-2, side H/10); official CIFAR uses 0.

    Returns:
      [h, w, C] float32 in [0, 1].
    """
    if _is_batch(image):
        return batched.simclr_augment(image, seed, image_size, crop_area_range, aspect_ratio_range, flip, strength,
                                      color_jitter_probability, torchvision_jitter, grayscale_probability,
                                      blur_probability, antialias)
    p_blur = ops.check_probability("blur_probability", blur_probability)
    seeds = ops.split_seed(seed, 3)
    image = _crop_flip(image, seeds[0], image_size, crop_area_range, aspect_ratio_range, flip, antialias)
    image = _simclr_color(image, seeds[1], strength, color_jitter_probability, torchvision_jitter,
                          grayscale_probability)
    return ops.gaussian_blur(image, seeds[2], p_blur)


def _check_randaugment(num_layers, magnitude):
    if not isinstance(num_layers, int) or num_layers < 0:
        raise ValueError(f"num_layers must be an int >= 0; got {num_layers!r}")
    if not 0 <= magnitude <= policies.MAX_LEVEL:
        raise ValueError(f"magnitude must be in [0, {policies.MAX_LEVEL:g}] (tf-models scale); got {magnitude!r}")


@_register_batched
def randaugment(image, seed, image_size=None, num_layers=2, magnitude=10, crop_area_range=(0.08, 1.0),
                aspect_ratio_range=(3 / 4, 4 / 3), flip=True, cutout_const=40, translate_const=100,
                antialias=False):
    """Crop and flip, then tf-models RandAugment (N ops, magnitude M on the 0-10 scale).

    Args:
      image, seed, image_size, crop_area_range, aspect_ratio_range, flip, antialias: see `crop_flip`; a batch
        [N, H, W, C] with keys [N] takes the batched path (batched_policies.randaugment).
      num_layers: N, operations applied in sequence (each one of 16 operations or identity).
      magnitude: M in [0, 10] (official `augmentation_magnitude` for RANDAUGMENT).
      cutout_const, translate_const: Cutout half-side and translation in pixels at level 10 (tf-models
        defaults, meant for 224-px images; scale them down for small images).

    Returns:
      [h, w, C] float32 in [0, 1].
    """
    _check_randaugment(num_layers, magnitude)
    if _is_batch(image):
        return batched_policies.randaugment(image, seed, image_size, num_layers, magnitude, crop_area_range,
                                            aspect_ratio_range, flip, cutout_const, translate_const, antialias)
    seeds = ops.split_seed(seed, 2)
    image = _crop_flip(image, seeds[0], image_size, crop_area_range, aspect_ratio_range, flip, antialias)
    return policies.rand_augment(image, seeds[1], num_layers, float(magnitude), cutout_const, translate_const)


@_register
def autoaugment(image, seed, image_size=None, crop_area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
                flip=True, cutout_const=100, translate_const=250, antialias=False):
    """Crop and flip, then tf-models AutoAugment with the ImageNet policy v0.

    Args:
      image, seed, image_size, crop_area_range, aspect_ratio_range, flip, antialias: see `crop_flip`.
      cutout_const, translate_const: pixel scales at level 10 (tf-models AutoAugment defaults).

    Returns:
      [h, w, C] float32 in [0, 1].
    """
    seeds = ops.split_seed(seed, 2)
    image = _crop_flip(image, seeds[0], image_size, crop_area_range, aspect_ratio_range, flip, antialias)
    return policies.auto_augment(image, seeds[1], policies.POLICY_V0, cutout_const, translate_const)


@_register
def stacked_randaugment(image, seed, image_size=None, crop_area_range=(0.08, 1.0),
                        aspect_ratio_range=(3 / 4, 4 / 3), flip=True, strength=1.0, color_jitter_probability=0.8,
                        torchvision_jitter=False, num_layers=2, magnitude=10, grayscale_probability=0.2,
                        blur_probability=0.5, cutout_const=40, translate_const=100, antialias=False):
    """Official STACKED_RANDAUGMENT: crop, flip, jitter (p 0.8), RandAugment(2, 10), grayscale (p 0.2), blur.

    The official code applies RandAugment after the colour jitter (the paper's text says before, seed.md
    §1.10 item 9); this follows the code. `strength` sets only the jitter strength; `antialias` as `crop_flip`.

    Returns:
      [h, w, C] float32 in [0, 1].
    """
    _check_randaugment(num_layers, magnitude)
    if strength < 0:
        raise ValueError(f"strength must be >= 0; got {strength!r}")
    p_jitter = ops.check_probability("color_jitter_probability", color_jitter_probability)
    p_gray = ops.check_probability("grayscale_probability", grayscale_probability)
    p_blur = ops.check_probability("blur_probability", blur_probability)
    seeds = ops.split_seed(seed, 6)
    image = _crop_flip(image, seeds[0], image_size, crop_area_range, aspect_ratio_range, flip, antialias)
    jitter = lambda x: ops.color_jitter(x, seeds[2], strength, torchvision_jitter)  # noqa: E731
    image = ops.random_apply(jitter, p_jitter, seeds[1], image)
    image = policies.rand_augment(image, seeds[3], num_layers, float(magnitude), cutout_const, translate_const)
    image = ops.random_apply(ops.grayscale, p_gray, seeds[4], image)
    return ops.gaussian_blur(image, seeds[5], p_blur)


@_register_batched
def identity_augment(image, seed, image_size=None, antialias=False):
    """No augmentation (official IDENTITY); only a bilinear resize (antialiased if `antialias`) when
    `image_size` differs.

    `image` may be [H, W, C] or a batch [N, H, W, C]; `seed` is unused."""
    if _is_batch(image):
        return batched.identity_augment(image, seed, image_size, antialias)
    del seed
    ops.channels(image)
    return ops.resize(image, ops.size_pair(image_size, image), antialias)


@_register
def eval_preprocess(image, method="identity", image_size=None, crop_padding=32, antialias=False):
    """Evaluation preprocessing (official `eval_crop_method`).

    Args:
      image: [H, W, C] float32 in [0, 1].
      method: 'identity' (resize only if `image_size` differs; CIFAR), 'resize_then_crop' (shorter side to
        S + crop_padding, then the central S; ImageNet 256 -> 224) or 'crop_then_resize' (the central square of
        side S / (S + crop_padding) min(H, W), then resize to S).
      image_size: output size S (int or (h, w)); None = the input's static size.
      crop_padding: pixels added to S before the centre crop (official 32; CIFAR 0).
      antialias: antialiased bilinear resizes (torchvision's Resize default; the official code's are not).

    Returns:
      [h, w, C] float32 in [0, 1].
    """
    if method not in EVAL_METHODS:
        raise ValueError(f"method must be one of {EVAL_METHODS}; got {method!r}")
    if crop_padding < 0:
        raise ValueError(f"crop_padding must be >= 0; got {crop_padding!r}")
    ops.channels(image)
    height, width = ops.size_pair(image_size, image)
    if method == "identity":
        return ops.resize(image, (height, width), antialias)
    side = min(height, width)
    if method == "resize_then_crop":
        resized = ops.resize_shorter_side(image, side + crop_padding, antialias)
        return ops.center_crop(resized, height, width)
    cropped = ops.padded_center_square(image, side, crop_padding)
    out = ops.bilinear(cropped, (height, width), antialias)
    return tf.ensure_shape(out, [height, width, image.shape[-1]])


@_register
def normalize(image, whitening_mean: Sequence[float] | None = None, whitening_std: Sequence[float] | None = None):
    """Official model-input scaling: [0, 1] -> [-1, 1] (x / 127.5 - 1 on uint8), then optional whitening.

    Args:
      image: [..., C] float32 in [0, 1].
      whitening_mean, whitening_std: per-channel mean and std in [-1, 1] space (both or neither), e.g.
        CIFAR10_MEAN / CIFAR10_STD (official `apply_whitening`).

    Returns:
      [..., C] float32.
    """
    image = tf.convert_to_tensor(image, tf.float32) * 2.0 - 1.0
    if whitening_mean is None and whitening_std is None:
        return image
    if whitening_mean is None or whitening_std is None:
        raise ValueError("whitening_mean and whitening_std must be given together")
    num = image.shape[-1]
    if len(whitening_mean) != num or len(whitening_std) != num or min(whitening_std) <= 0:
        raise ValueError(
            f"whitening_mean/whitening_std must have {num} entries (one per channel) and a positive std; "
            f"got {whitening_mean!r} / {whitening_std!r}"
        )
    return (image - tf.constant(whitening_mean, tf.float32)) / tf.constant(whitening_std, tf.float32)
