"""tf.data pipelines: infinite multi-view training batches with deterministic resume, and full eval passes.

Training stream of one input pipeline (one per worker under `distribute_datasets_from_function`):
  split -> take(max_examples) -> label noise (fixed per example index) -> shard(pipelines, id)
  -> element n of the stream: example P_e(n mod N) of epoch e = n // N, where P_e is a permutation seeded by
     (seed, pipeline, e) -> V views, view v augmented with a stateless seed from (seed, pipeline, n, v)
  -> normalize -> batch(b, drop_remainder).
With `batched_augmentation` (the default) and an augmenter that takes batches (`augment.supports_batches`:
crop_flip, simclr_augment, randaugment, identity_augment), the examples are batched first (the in-memory permutation
picks b at a time) and all views of the batch are augmented in one call, example n's view v from the key (seed,
pipeline, n, v) of `augment.example_keys`: a few ops per batch instead of ~30 per view. Views then still depend on
(seed, pipeline, n, v) only, not on the batch an example lands in, but they are other draws than the per-element
path's (another random generator).
N is the shard size. When the decoded shard fits in memory (~1 GiB), it is loaded into one tensor per feature
and P_e is `tf.random.experimental.index_shuffle`: an exact permutation with random access. Otherwise P_e is
a seeded shuffle buffer over the (cached) shard. Either way the stream is a function of (seed, position) only,
so `start_step=k` yields exactly the batches an uninterrupted run would have drawn from step k on (position
k * E, with E = examples per step per pipeline): random access, or epoch (k E) // N and a skip of (k E) % N
undecoded elements.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
from absl import logging

from supcon import augment
from supcon.data.sources import Source

AUTOTUNE = tf.data.AUTOTUNE
# Keys that separate the random streams derived from one user seed.
_AUGMENT_STREAM, _SHUFFLE_STREAM, _NOISE_STREAM = 1, 2, 3
SHUFFLE_BUDGET_BYTES = 1 << 30  # exact permutations of shards up to ~1 GiB decoded, else a 1024 buffer
CACHE_BUDGET_BYTES = 4 << 30  # in-memory cache of decoded images only below this
_FOREVER = 2**62
_INDEX_SHUFFLE_PAD = 498247692  # tf.random.experimental.index_shuffle's first seed word (a [2] seed -> [3])


def _topology(input_context, global_batch_size: int) -> tuple[int, int, int, int]:
    """(pipelines, pipeline id, per-replica batch, replicas fed by this pipeline)."""
    if not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ValueError(f"global_batch_size must be a positive int; got {global_batch_size!r}")
    if input_context is None:
        return 1, 0, global_batch_size, 1
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    pipelines = input_context.num_input_pipelines
    replicas = max(1, input_context.num_replicas_in_sync // pipelines)
    return pipelines, input_context.input_pipeline_id, per_replica, replicas


def _seed(seed: int, *keys) -> tf.Tensor:
    """A [2] stateless seed derived from `seed` and integer (possibly traced) keys."""
    out = tf.constant([seed, 0], tf.int64)
    for key in keys:
        out = tf.random.experimental.stateless_fold_in(out, tf.cast(key, tf.int64))
    return tf.cast(out, tf.int64)


def shard_size(num_examples: int, pipelines: int, pipeline_id: int) -> int:
    """Examples in `Dataset.shard(pipelines, pipeline_id)` of num_examples elements."""
    return len(range(pipeline_id, num_examples, pipelines))


def _bytes_per_example(source: Source) -> int | None:
    height, width, channels = source.image_shape
    return None if height is None or width is None else int(height * width * channels)


def _examples(source, split, max_examples, label_noise, seed, pipelines, pipeline_id) -> tf.data.Dataset:
    """The pipeline's shard of (possibly truncated, label-noised) examples, in the split's fixed order."""
    ds = source.split_dataset(split)
    if max_examples is not None:
        ds = ds.take(max_examples)
    if label_noise > 0:
        num_classes = source.num_classes

        def noisy(index, example):
            draws = tf.random.stateless_uniform([2], seed=_seed(seed, _NOISE_STREAM, index))
            random_label = tf.minimum(tf.cast(draws[1] * num_classes, tf.int64), num_classes - 1)
            label = tf.where(draws[0] < label_noise, random_label, example["label"])
            return {"image": example["image"], "label": label}

        ds = ds.enumerate().map(noisy, num_parallel_calls=AUTOTUNE)
    return ds.shard(pipelines, pipeline_id) if pipelines > 1 else ds


def _check_train_args(num_views, label_noise, max_examples, start_step, shuffle_buffer):
    if not isinstance(num_views, int) or num_views < 1:
        raise ValueError(f"num_views must be a positive int; got {num_views!r}")
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1]; got {label_noise!r}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples must be None or >= 1; got {max_examples!r}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0; got {start_step!r}")
    if shuffle_buffer is not None and shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be None or >= 1; got {shuffle_buffer!r}")


def _in_memory_stream(examples, size, start, seed, pipeline_id):
    """(position, example) from `start` on; epoch e is the permutation index_shuffle(seed, pipeline, e) of the
    shard, loaded once into one tensor per feature (random access, so a resume skips nothing)."""

    def from_arrays(arrays):
        def pick(position):
            epoch_seed = _seed(seed, _SHUFFLE_STREAM, pipeline_id, position // size)
            index = tf.random.experimental.index_shuffle(position % size, epoch_seed, size - 1)
            return position, {key: tf.gather(value, index) for key, value in arrays.items()}

        return tf.data.Dataset.range(start, _FOREVER).map(pick)

    return examples.batch(size).take(1).flat_map(from_arrays)


def _in_memory_batches(examples, size, start, seed, pipeline_id, batch):
    """`_in_memory_stream` batched: (positions [b], examples [b, ...]) from `start` on, the same elements in the
    same order, picked b at a time. The epoch seeds _seed(seed, shuffle, pipeline, e) are [c, e] with c from
    (seed, shuffle, pipeline) alone (stateless_fold_in), so one index_shuffle call permutes a whole batch."""
    first = _seed(seed, _SHUFFLE_STREAM, pipeline_id, 0)[0]  # c, the same for every epoch

    def from_arrays(arrays):
        def pick(positions):  # [b] int64
            epoch_seeds = tf.stack([tf.fill(tf.shape(positions), first), positions // size], axis=1)  # [b, 2]
            # index_shuffle pads a [2] seed to [_INDEX_SHUFFLE_PAD, s0, s1]; for [b, 2] seeds it pads the wrong
            # axis (TF 2.21), so the raw op gets the [b, 3] seeds it would build per element.
            padded = tf.pad(epoch_seeds, [[0, 0], [1, 0]], constant_values=_INDEX_SHUFFLE_PAD)
            index = tf.raw_ops.RandomIndexShuffle(index=positions % size, seed=padded,
                                                  max_index=tf.constant(size - 1, tf.int64), rounds=4)
            return positions, {key: tf.gather(value, index) for key, value in arrays.items()}

        return tf.data.Dataset.range(start, _FOREVER).batch(batch, drop_remainder=True).map(pick)

    return examples.batch(size).take(1).flat_map(from_arrays)


def _buffered_stream(examples, size, start, seed, pipeline_id, shuffle_buffer):
    """(position, example) from `start` on; epoch e is examples.shuffle(buffer) with a seed from (seed, e).

    The resume starts at epoch start // size and skips start % size undecoded elements."""

    def epoch(index):
        # Clear this function graph's seed: shuffle then depends on its own seed only (not on
        # tf.random.set_seed), and a traced seed does not trip the global-seed-0 check in get_seed.
        tf.compat.v1.get_default_graph().seed = None
        shuffle_seed = tf.random.stateless_uniform(
            [], seed=_seed(seed, _SHUFFLE_STREAM, pipeline_id, index), minval=None, maxval=None, dtype=tf.int64)
        return examples.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False)

    stream = tf.data.Dataset.range(start // size, _FOREVER).flat_map(epoch).skip(start % size)
    return tf.data.Dataset.zip(tf.data.Dataset.range(start, _FOREVER), stream)


def train_dataset(source: Source, *, split: str = "train", global_batch_size: int, num_views: int = 2,
                  augmenter: Callable, normalize: Callable, seed: int = 0, start_step: int = 0,
                  input_context: tf.distribute.InputContext | None = None, label_noise: float = 0.0,
                  max_examples: int | None = None, shuffle_buffer: int | None = None,
                  cache: bool = True, batched_augmentation: bool = True) -> tf.data.Dataset:
    """Infinite per-replica training batches {'image': float32 [b, V, h, w, C], 'label': int32 [b]}.

    Args:
      source: the dataset.
      split: tfds split name (slices allowed).
      global_batch_size: examples per step over all replicas; b = the per-replica share.
      num_views: V, independently augmented views per example.
      augmenter: `augmenter(image01 [H, W, C] float32 in [0, 1], seed [2] int64) -> [h, w, C]` (static size);
        if it also takes batches (`augment.supports_batches`), see `batched_augmentation`.
      normalize: `normalize(image01) -> model input`, e.g. `supcon.augment.normalize` (on [b, h, w, C] batches
        in the batched path).
      seed: seeds the epoch permutations, the augmentations and the label noise.
      start_step: first step to produce (resume); steps count global batches.
      input_context: from `distribute_datasets_from_function`; shards by input pipeline.
      label_noise: probability of replacing a label by a uniform random one (fixed per example).
      max_examples: keep only the first N examples of the split.
      shuffle_buffer: None: an exact permutation per epoch when the decoded shard fits in ~1 GiB, else a
        1024-example shuffle buffer; an int: a shuffle buffer of that size (the official code: 50,000 CIFAR,
        1,024 ImageNet).
      cache: keep the decoded shard in memory (in one tensor, or a tf.data cache for a shuffle buffer; skipped
        with a log line for shards above ~4 GiB or of unknown image size).
      batched_augmentation: augment a whole batch per call (per-example keys from (seed, pipeline, position,
        view)) when the augmenter takes batches and the images have a static size; else, or when False, one
        call per view with a [2] seed from (seed, pipeline, position) split into V.

    Returns:
      An infinite `tf.data.Dataset` of per-replica batches.
    """
    _check_train_args(num_views, label_noise, max_examples, start_step, shuffle_buffer)
    pipelines, pipeline_id, batch, replicas = _topology(input_context, global_batch_size)
    total = source.num_examples(split)
    total = min(total, max_examples) if max_examples else total
    size = shard_size(total, pipelines, pipeline_id)
    if size < 1:
        raise ValueError(f"input pipeline {pipeline_id} of {pipelines} gets no example of {source.name}/{split}")
    examples = _examples(source, split, max_examples, label_noise, seed, pipelines, pipeline_id)
    start = start_step * batch * replicas  # elements of this pipeline consumed before start_step
    batched = batched_augmentation and augment.supports_batches(augmenter) and _bytes_per_example(source) is not None
    stream = _stream(source, split, examples, size, start, seed, pipeline_id, shuffle_buffer, cache,
                     batch if batched else None)
    if batched:
        return _augment_batches(stream, source, seed, pipeline_id, num_views, augmenter, normalize)
    return _augment_elements(stream, batch, seed, pipeline_id, num_views, augmenter, normalize)


def _stream(source, split, examples, size, start, seed, pipeline_id, shuffle_buffer, cache, batch):
    """(position, example) pairs from `start` on, or (positions [b], examples [b, ...]) when `batch` is set."""
    shard_bytes = None if _bytes_per_example(source) is None else _bytes_per_example(source) * size
    if cache and shuffle_buffer is None and shard_bytes is not None and shard_bytes <= SHUFFLE_BUDGET_BYTES:
        if batch:
            return _in_memory_batches(examples, size, start, seed, pipeline_id, batch)
        return _in_memory_stream(examples, size, start, seed, pipeline_id)
    if cache and shard_bytes is not None and shard_bytes <= CACHE_BUDGET_BYTES:
        examples = examples.cache()
    elif cache:
        logging.info("train_dataset: not caching %s/%s (too large or of unknown size)", source.name, split)
    buffer = min(size, shuffle_buffer or 1024)
    stream = _buffered_stream(examples, size, start, seed, pipeline_id, buffer)
    return stream.batch(batch, drop_remainder=True) if batch else stream


def _augment_elements(stream, batch, seed, pipeline_id, num_views, augmenter, normalize) -> tf.data.Dataset:
    """Per-element views: view v of element n from stateless_split(seed (seed, pipeline, n), V)[v], then batches."""

    @tf.autograph.experimental.do_not_convert
    def views(position, example):
        image01 = tf.image.convert_image_dtype(example["image"], tf.float32)  # uint8 -> [0, 1]
        seeds = tf.random.experimental.stateless_split(_seed(seed, _AUGMENT_STREAM, pipeline_id, position),
                                                        num=num_views)  # [V, 2]
        stacked = tf.stack([normalize(augmenter(image01, seeds[v])) for v in range(num_views)])  # [V, h, w, C]
        return {"image": stacked, "label": tf.cast(example["label"], tf.int32)}

    stream = stream.map(views, num_parallel_calls=AUTOTUNE, deterministic=True)
    return stream.batch(batch, drop_remainder=True).prefetch(AUTOTUNE)


def _augment_batches(batches, source, seed, pipeline_id, num_views, augmenter, normalize) -> tf.data.Dataset:
    """(positions [b], {'image': uint8 [b, H, W, C], 'label'}) -> {'image': [b, V, h, w, C], 'label': int32 [b]}:
    all V views of the batch in one call of the batch-taking `augmenter` on [V b, H, W, C] (a view depends on
    its key only, so stacking the views changes nothing but the op count)."""

    @tf.autograph.experimental.do_not_convert
    def views(positions, examples):
        images = tf.ensure_shape(examples["image"], [None, *source.image_shape])
        images01 = tf.image.convert_image_dtype(images, tf.float32)  # uint8 -> [0, 1], [b, H, W, C]
        view_keys = augment.example_keys(seed, _AUGMENT_STREAM, pipeline_id, positions[None, :],
                                         tf.range(num_views, dtype=tf.int64)[:, None])  # [V, b]
        out = augmenter(tf.concat([images01] * num_views, 0), tf.reshape(view_keys, [-1]))  # [V b, h, w, C]
        out = tf.reshape(normalize(out), [num_views, -1, *out.shape[1:]])  # [V, b, h, w, C]
        return {"image": tf.transpose(out, [1, 0, 2, 3, 4]), "label": tf.cast(examples["label"], tf.int32)}

    return batches.map(views, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)


def eval_dataset(source: Source, *, split: str = "test", batch_size: int, preprocess: Callable,
                 normalize: Callable, input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """One pass over a split, single view, {'image': float32 [b, h, w, C], 'label': int32 [b]}.

    Every example is seen once: the last, partial batch is kept (the official code drops it, seed.md §1.8).

    Args:
      source: the dataset.
      split: tfds split name (slices allowed).
      batch_size: global batch size; b = the per-replica share under `input_context`.
      preprocess: `preprocess(image01 [H, W, C]) -> [h, w, C]`, e.g. `supcon.augment.eval_preprocess`.
      normalize: `normalize(image01) -> model input`.
      input_context: from `distribute_datasets_from_function`; shards by input pipeline.

    Returns:
      A finite `tf.data.Dataset`.
    """
    pipelines, pipeline_id, batch, _ = _topology(input_context, batch_size)
    ds = source.split_dataset(split)
    if pipelines > 1:
        ds = ds.shard(pipelines, pipeline_id)

    @tf.autograph.experimental.do_not_convert
    def single(example):
        image01 = tf.image.convert_image_dtype(example["image"], tf.float32)
        return {"image": normalize(preprocess(image01)), "label": tf.cast(example["label"], tf.int32)}

    ds = ds.map(single, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch, drop_remainder=False).prefetch(AUTOTUNE)
