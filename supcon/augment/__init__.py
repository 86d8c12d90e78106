"""Augmenters as pure, seeded TensorFlow functions (SimCLR, RandAugment, AutoAugment, stacked, crop/flip).

Public API (all registered with gin under these names):
  simclr_augment, randaugment, autoaugment, stacked_randaugment, crop_flip, identity_augment
    `(image01 [H, W, C] float32 in [0, 1], seed [2] int, image_size=None, ...) -> image01 [h, w, C]`;
  eval_preprocess(image, method='identity', image_size=None, crop_padding=32);
  normalize(image, whitening_mean=None, whitening_std=None);
  supports_batches(augmenter), example_keys(seed, *indices): crop_flip, simclr_augment and identity_augment
    also take a batch `(images01 [N, H, W, C], keys [N] uint64) -> [N, h, w, C]` (per-example keys from
    example_keys), computed in a few ops per batch instead of ~30 per image.

Modules: `ops` (crop, flip, colour jitter, grayscale, blur), `policies` (RandAugment / AutoAugment operations
with the tf-models semantics), `augmenters` (the public functions above), `batched` and `batched_color` (the
batched crop/flip/resize and colour/grayscale/blur), `keys` (splitmix64 per-example keys and uniforms).

What comes from Keras 3 and what is written here (and why):
  * Keras, where it implements the operation faithfully and without hidden random state:
    `keras.ops.image.affine_transform` (the projective transform behind rotate / shear / translate, nearest
    neighbour with grey fill, as tf-models) and `keras.layers.AutoContrast` (per-channel min/max stretch, as
    tf-models and PIL; checked against PIL in the tests).
  * tf.image core ops for the crop (`stateless_sample_distorted_bounding_box`), flip, resize, grayscale,
    brightness, contrast, saturation and hue: the very ops the official code calls, in their stateless form.
  * Written here, with reasons:
    - the Gaussian blur: `keras.ops.image.gaussian_blur` computes the official kernel (zero 'SAME' padding)
      but as a dense 2-D depthwise convolution, ~266 ms per 224-px image on this CPU; the same sums as two
      banded matmuls take ~4 ms (equality is tested);
    - the random Keras layers (RandomFlip, RandomCrop, RandomColorJitter, RandomGrayscale,
      RandomGaussianBlur, RandAugment, ...) draw from a stateful SeedGenerator and sample differently from the
      official code: RandomColorJitter has a fixed order and other factor scales, RandomGaussianBlur draws a
      sigma per axis and a random probability, keras RandAugment has another operation set and magnitude
      scale, Equalization uses a different lookup table from PIL's. So the colour-jitter order and both
      styles, the RandAugment / AutoAugment policies and the equalize / posterize / solarize / colour /
      contrast / brightness / sharpness / cutout operations are small stateless functions here (the pixel
      operations are checked against PIL's ImageOps / ImageEnhance in the tests).
"""

from supcon.augment.augmenters import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    EVAL_METHODS,
    autoaugment,
    crop_flip,
    eval_preprocess,
    identity_augment,
    normalize,
    randaugment,
    simclr_augment,
    stacked_randaugment,
    supports_batches,
)
from supcon.augment.keys import example_keys

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "EVAL_METHODS",
    "autoaugment",
    "crop_flip",
    "eval_preprocess",
    "example_keys",
    "identity_augment",
    "normalize",
    "randaugment",
    "simclr_augment",
    "stacked_randaugment",
    "supports_batches",
]
