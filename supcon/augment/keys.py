"""Counter-based random numbers for batched augmentation: per-example uint64 keys and uniforms from them.

A batch of views needs a few random numbers per example, and they must not depend on which batch an example
lands in (determinism and exact resume). So every number is a pure function of integers, computed for the whole
batch in a handful of vectorised ops: the splitmix64 generator (Steele, Lea & Flood 2014) in TF uint64
arithmetic, which wraps modulo 2^64.

  key    = fold(... fold(mix(seed), index_1) ..., index_k)        e.g. (seed, stream, pipeline, position, view)
  fold(k, i) = mix(k + (i + 1) * GAMMA)                           (the i-th splitmix64 output after state k)
  draw d for purpose p = fold(fold(key, p), d)  ->  uniform in [0, 1) from its top 24 (float32) or 53 (float64) bits

Different purposes (crop, flip, jitter order, ...) use different purpose indices, so their draws are
independent; a view's draws are a function of its key only.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Purposes: one independent block of draws per random decision of a view.
CROP_ASPECT, CROP_INTEGERS, FLIP, JITTER, JITTER_ORDER, JITTER_FACTORS, GRAYSCALE, BLUR, BLUR_SIGMA = range(9)
# RandAugment (batched_policies.py): appended, so the purposes above keep their indices and their draws.
RANDAUGMENT_OP, RANDAUGMENT_SIGN, RANDAUGMENT_CUTOUT = range(9, 12)

GAMMA = 0x9E3779B97F4A7C15  # splitmix64 increment (2^64 / golden ratio, odd)
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # splitmix64 finaliser multipliers
_MASK = (1 << 64) - 1


def _u64(value) -> tf.Tensor:
    """An integer (Python, NumPy or tensor; negative Python ints wrap modulo 2^64) as a uint64 tensor."""
    if isinstance(value, (int, np.integer)):
        return tf.constant(int(value) & _MASK, tf.uint64)
    value = tf.convert_to_tensor(value)
    if value.dtype == tf.uint64:
        return value
    if value.dtype in (tf.int32, tf.uint32, tf.int16, tf.uint16, tf.int8, tf.uint8):
        value = tf.cast(value, tf.int64)
    if value.dtype != tf.int64:
        raise ValueError(f"keys and indices must be integers; got dtype {value.dtype.name}")
    return tf.bitcast(value, tf.uint64)  # two's complement: -1 -> 2^64 - 1


def mix(x) -> tf.Tensor:
    """The splitmix64 finaliser: a bijection of uint64 with full avalanche."""
    x = _u64(x)
    x = _xor_shift(x, 30) * tf.constant(_MIX1, tf.uint64)
    x = _xor_shift(x, 27) * tf.constant(_MIX2, tf.uint64)
    return _xor_shift(x, 31)


def _xor_shift(x: tf.Tensor, bits: int) -> tf.Tensor:
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(bits, tf.uint64)))


def fold(keys, index) -> tf.Tensor:
    """mix(keys + (index + 1) * GAMMA), broadcasting keys against index (uint64)."""
    return mix(_u64(keys) + (_u64(index) + tf.constant(1, tf.uint64)) * tf.constant(GAMMA, tf.uint64))


def example_keys(seed: int, *indices) -> tf.Tensor:
    """The key of (seed, index_1, ..., index_k): uint64, broadcast over the indices' shapes.

    Args:
      seed: the user seed (any Python int).
      *indices: integers or int tensors, e.g. a stream id, a pipeline id, positions [N] and a view index.
    """
    keys = mix(seed)
    for index in indices:
        keys = fold(keys, index)
    return keys


def uniform(keys, purpose: int, shape=(), dtype=tf.float32, offset: int = 0) -> tf.Tensor:
    """Uniforms in [0, 1) for one purpose: [*keys.shape, *shape], draws offset, offset + 1, ... in row-major
    order (so a slice of a larger block can be drawn on its own).

    float32 uses the top 24 bits (every value exactly representable), float64 the top 53.
    """
    keys = fold(keys, purpose)
    count = int(np.prod(shape, dtype=np.int64))
    bits = fold(keys[..., None], tf.range(offset, offset + count, dtype=tf.int64))  # [..., count]
    if dtype not in (tf.float32, tf.float64):
        raise ValueError(f"dtype must be tf.float32 or tf.float64; got {dtype!r}")
    mantissa = 24 if dtype == tf.float32 else 53
    out = tf.cast(tf.bitwise.right_shift(bits, tf.constant(64 - mantissa, tf.uint64)), dtype) * 2.0**-mantissa
    if keys.shape.is_fully_defined():
        return tf.reshape(out, keys.shape.as_list() + list(shape))
    return tf.reshape(out, tf.concat([tf.shape(keys), tf.constant(list(shape), tf.int32)], 0))


def check_keys(keys, num: int | None) -> tf.Tensor:
    """Validates per-example keys: a [N] integer tensor (uint64 or int64), N = num when known."""
    keys = _u64(keys)
    if keys.shape.rank != 1:
        raise ValueError(f"keys must be [N] (one per example); got shape {keys.shape}")
    if num is not None and keys.shape[0] is not None and keys.shape[0] != num:
        raise ValueError(f"keys must have one entry per image ({num}); got shape {keys.shape}")
    return keys
