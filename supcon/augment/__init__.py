"""Augmenters as pure, seeded TensorFlow functions (SimCLR, RandAugment, AutoAugment, stacked, crop/flip).

Public API (registered with gin under these names): simclr_augment, randaugment, autoaugment,
stacked_randaugment, crop_flip, identity_augment, eval_preprocess, normalize; supports_batches and example_keys
for the batched forms. What comes from Keras and what is written here, and why: docs/training.md.
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
