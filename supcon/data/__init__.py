"""Inputs: offline dataset sources (tfds, bundled digits, original MNIST / CIFAR files) and tf.data pipelines.

Public API:
  load_source(name, data_dir=None) -> Source        (sources.py: fails fast, never downloads)
  Source / TfdsSource / ArraySource                 (name, num_classes, image_shape, num_examples, split_dataset)
  train_dataset(source, *, global_batch_size, augmenter, normalize, ...)   (pipeline.py: multi-view, resumable)
  eval_dataset(source, *, batch_size, preprocess, normalize, ...)          (pipeline.py: whole split)
  default_data_dir()                                ($SUPCON_DATA_DIR or ~/.cache/supcon/datasets)
  prepared_builder(name, data_dir=None)             (a prepared tfds builder or None, e.g. 'cifar10_corrupted/fog_3')
  file_lock(directory, name)                        (an exclusive lock file: concurrent processes write a file once)
The tfds builders for the bundled and local-file datasets are in builders.py ('supcon_digits', 'supcon_mnist',
'supcon_fashion_mnist', 'supcon_cifar10', 'supcon_cifar100').
"""

from supcon.data.pipeline import eval_dataset, shard_size, train_dataset
from supcon.data.sources import (
    ArraySource,
    Source,
    TfdsSource,
    default_data_dir,
    file_lock,
    load_source,
    prepared_builder,
)

__all__ = [
    "ArraySource",
    "Source",
    "TfdsSource",
    "default_data_dir",
    "eval_dataset",
    "file_lock",
    "load_source",
    "prepared_builder",
    "shard_size",
    "train_dataset",
]
