"""Scores a trained predictor on corrupted test sets: top-1 and ECE per corruption and severity, their means, and
the reliability diagrams of calibration.json.

The sets are synthetic (`supcon.robust.corrupt`, cached as uint8 files) or the published tfds ones; the trainer
passes its predictor and the settings in (`Request`), so nothing here knows the training. Details:
docs/robustness.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from supcon import data, workdir
from supcon.robust import corrupt as corruptions
from supcon.robust import metrics as robustness
from supcon.robust import spec as corruption_spec

AUTOTUNE = tf.data.AUTOTUNE
CORRUPTION_SEED = 2019  # the base of every per-example corruption seed (ImageNet-C, ICLR 2019): fixed data
SEED_SCHEME = 1  # bump when example_seed changes: it is part of the cache key
CLEAN_BUDGET_BYTES = 1 << 30  # the clean preprocessed split stays in memory (float32) up to this size
CACHE_FOLDER = "corrupted"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CODE_FILES = ("corrupt.py", "ops.py", "tables.py")
# tfds builders of the published corrupted sets, and their config names where they differ from ours.
TFDS_BUILDERS = {"cifar10": "cifar10_corrupted", "imagenet2012": "imagenet2012_corrupted"}
TFDS_NAMES = {
    "cifar10": {"glass_blur": "frosted_glass_blur", "elastic_transform": "elastic"},
    "imagenet2012": {},
}


def example_seed(index, corruption_index, severity) -> tf.Tensor:
    """The [2] int64 stateless seed of example `index` under corruption `corruption_index` at `severity`."""
    seed = tf.constant([CORRUPTION_SEED, 0], tf.int64)
    for key in (corruption_index, severity, index):
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(key, tf.int64))
    return tf.cast(seed, tf.int64)


# ----------------------------------------------------------------------------------------------------------
# Where the sets come from


def _base_name(dataset: str) -> str:
    """'imagenet2012:5.1.0' -> 'imagenet2012'."""
    return dataset.split(":", 1)[0].split("/", 1)[0]


def tfds_config(dataset: str, name: str, severity: int) -> str:
    """The tfds name of a published corrupted set, e.g. ('cifar10', 'glass_blur', 2) ->
    'cifar10_corrupted/frosted_glass_blur_2'."""
    base = _base_name(dataset)
    if base not in TFDS_BUILDERS:
        raise ValueError(f"no published corrupted sets of {dataset!r} in tfds (only {', '.join(TFDS_BUILDERS)})")
    return f"{TFDS_BUILDERS[base]}/{TFDS_NAMES[base].get(name, name)}_{int(severity)}"


def resolve_source(source: str, dataset: str, names, severities, data_dir: str | None) -> str:
    """'synthetic' or 'tfds' for `train_and_evaluate.corruption_source` (see the module docstring).

    Raises:
      ValueError: 'tfds' for a dataset with no published corrupted sets.
      FileNotFoundError: 'tfds' and some requested set is not prepared in data_dir (one line).
    """
    corruption_spec.check_source(source)
    if source == "synthetic" or not names:
        return "synthetic"
    if _base_name(dataset) not in TFDS_BUILDERS:
        if source == "tfds":
            raise ValueError(
                f"train_and_evaluate.corruption_source = 'tfds' needs dataset cifar10 or imagenet2012 (tfds "
                f"{' / '.join(TFDS_BUILDERS.values())}); this run's dataset is {dataset!r}: use 'synthetic' or 'auto'"
            )
        return "synthetic"
    configs = [tfds_config(dataset, n, s) for n in names for s in severities]
    missing = [c for c in configs if data.prepared_builder(c, data_dir) is None]
    if not missing:
        return "tfds"
    if source == "auto":
        return "synthetic"
    raise FileNotFoundError(
        f"train_and_evaluate.corruption_source = 'tfds': {len(missing)} of the {len(configs)} requested sets are "
        f"not prepared in data_dir={data_dir!r}, e.g. {missing[0]} (never downloaded here): run `tfds build "
        f"{missing[0].split('/')[0]} --config {missing[0].split('/')[1]} --data_dir=DATA_DIR`, or use "
        "corruption_source = 'synthetic'"
    )


def tfds_images(dataset: str, name: str, severity: int, split: str, data_dir: str | None,
                limit: int | None, shape: tuple) -> tf.data.Dataset:
    """(float32 image [H, W, C] in [0, 1] at the model's size, int32 label) of a published corrupted set."""
    config = tfds_config(dataset, name, severity)
    builder = data.prepared_builder(config, data_dir)
    if builder is None:
        raise FileNotFoundError(f"tfds {config} is not prepared in data_dir={data_dir!r}")
    ds = builder.as_dataset(split=split, shuffle_files=False)
    if limit:
        ds = ds.take(limit)
    height, width, _ = shape

    def one(example):
        image = tf.image.convert_image_dtype(example["image"], tf.float32)
        if tuple(image.shape[:2]) != (height, width):
            image = tf.image.resize(image, (height, width), method="bilinear")
        return tf.ensure_shape(image, shape), tf.cast(example["label"], tf.int32)

    return ds.map(one, num_parallel_calls=AUTOTUNE, deterministic=True)


# ----------------------------------------------------------------------------------------------------------
# Synthetic sets


@dataclasses.dataclass
class CleanSet:
    """The eval split after eval_preprocess: what the synthetic corruptions start from."""

    images: np.ndarray | None  # float32 [N, H, W, C] in [0, 1], when it fits CLEAN_BUDGET_BYTES, else None
    labels: np.ndarray  # int32 [N]
    shape: tuple  # (H, W, C)
    digest: str  # sha256 of the images' float32 bytes (the cache key's data part)


def _clean_elements(source, split: str, preprocess: Callable, limit: int | None, shape: tuple):
    """(float32 image [H, W, C] after preprocess, int32 label) of the split's first `limit` examples, in order."""
    ds = source.split_dataset(split)
    if limit:
        ds = ds.take(limit)

    @tf.autograph.experimental.do_not_convert
    def one(example):
        image = preprocess(tf.image.convert_image_dtype(example["image"], tf.float32))
        return tf.ensure_shape(image, shape), tf.cast(example["label"], tf.int32)

    return ds.map(one, num_parallel_calls=AUTOTUNE, deterministic=True)


def clean_set(source, split: str, preprocess: Callable, limit: int | None, shape: tuple) -> CleanSet:
    """One pass over the preprocessed split: its labels, digest and (when small enough) its images."""
    count = source.num_examples(split)
    count = min(count, limit) if limit else count
    keep = count * int(np.prod(shape)) * 4 <= CLEAN_BUDGET_BYTES
    digest, images, labels = hashlib.sha256(), [], []
    for image, label in _clean_elements(source, split, preprocess, limit, shape).batch(256).prefetch(2):
        image = image.numpy().astype(np.float32)
        digest.update(image.tobytes())
        labels.append(label.numpy())
        if keep:
            images.append(image)
    labels = np.concatenate(labels).astype(np.int32)
    stacked = np.concatenate(images) if keep else None
    return CleanSet(stacked, labels, tuple(shape), digest.hexdigest())


def corrupted_elements(elements: tf.data.Dataset, name: str, severity: int) -> tf.data.Dataset:
    """(float32 image, label) elements -> (uint8 corrupted image, label), example i seeded by
    example_seed(i, the corruption's index, severity) whatever the batching downstream."""
    index = corruption_spec.NAMES.index(name)

    @tf.autograph.experimental.do_not_convert
    def one(i, pair):
        image, label = pair
        out = corruptions.corrupt(image, name, severity, example_seed(i, index, severity))
        return tf.cast(tf.round(out * 255.0), tf.uint8), label

    return elements.enumerate().map(one, num_parallel_calls=AUTOTUNE, deterministic=True)


def _code_digest() -> str:
    digest = hashlib.sha256(f"seed scheme {SEED_SCHEME} base {CORRUPTION_SEED}".encode())
    for name in _CODE_FILES:
        with open(os.path.join(_PACKAGE_DIR, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def cache_root(setting: str | None, data_dir: str | None) -> str | None:
    """The cache folder for `train_and_evaluate.corruption_cache_dir` ('auto', None or a path), or None when
    there is none or it cannot be written."""
    if setting is None:
        return None
    root = os.path.join(data_dir or data.default_data_dir(), CACHE_FOLDER) if setting == "auto" else setting
    root = os.path.expanduser(os.fspath(root))
    try:
        os.makedirs(root, exist_ok=True)
    except OSError:
        return None
    return root if os.access(root, os.W_OK) else None


def _write_npy_atomic(path: str, batches: Iterator[np.ndarray], shape: tuple) -> None:
    """Writes uint8 [N, ...] batches into `path` as one .npy file, via a temporary file and os.replace."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path), suffix=".tmp")
    os.close(fd)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        position = 0
        for batch in batches:
            array[position : position + len(batch)] = batch
            position += len(batch)
        if position != shape[0]:
            raise RuntimeError(f"{path}: {position} images written, expected {shape[0]}")
        array.flush()
        del array
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_npy(path: str, shape: tuple) -> np.ndarray | None:
    """The cached uint8 set (memory-mapped) when it is whole and of `shape`, else None."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    return array if array.dtype == np.uint8 and array.shape == shape else None


class SyntheticSets:
    """The synthetic corrupted sets of one eval split: `images(name, severity)` yields uint8 batches.

    Args:
      source, split, preprocess, limit: the eval split as the run evaluates it (eval_max_examples = limit).
      shape: (H, W, C) after preprocess (the model input's size).
      dataset: the dataset's name (for the cache folder's name).
      cache: the cache folder (`cache_root`) or None.
    """

    def __init__(self, source, split, preprocess, limit, shape, dataset: str, cache: str | None):
        self.source, self.split, self.preprocess, self.limit = source, split, preprocess, limit
        self.clean = clean_set(source, split, preprocess, limit, shape)
        self.shape = (len(self.clean.labels), *self.clean.shape)
        self.directory = None
        if cache:
            key = hashlib.sha256((self.clean.digest + _code_digest()).encode()).hexdigest()[:16]
            height, width, channels = self.clean.shape
            safe_split = re.sub(r"[^A-Za-z0-9.+-]+", "_", split).strip("_")
            name = f"{_base_name(dataset)}-{safe_split}-{height}x{width}x{channels}-n{self.shape[0]}-{key}"
            self.directory = os.path.join(cache, name)
            os.makedirs(self.directory, exist_ok=True)
            info = {"dataset": dataset, "split": split, "examples": self.shape[0], "image_shape": list(self.clean.shape),
                    "clean_sha256": self.clean.digest, "code_sha256": _code_digest(), "seed": CORRUPTION_SEED}
            info_path = os.path.join(self.directory, "key.json")
            if not os.path.exists(info_path):
                workdir.write_json_atomic(info_path, info)
        self.hits = self.written = 0

    def _elements(self):
        if self.clean.images is not None:
            return tf.data.Dataset.from_tensor_slices((self.clean.images, self.clean.labels))
        return _clean_elements(self.source, self.split, self.preprocess, self.limit, self.clean.shape)

    def _fresh(self, name: str, severity: int, batch_size: int) -> Iterator[np.ndarray]:
        ds = corrupted_elements(self._elements(), name, severity).map(lambda image, label: image)
        for batch in ds.batch(batch_size).prefetch(2):
            yield batch.numpy()

    def images(self, name: str, severity: int, batch_size: int = 256) -> Iterator[np.ndarray]:
        """uint8 [b, H, W, C] batches of the corrupted set, in the split's order (cached when there is a cache)."""
        if self.directory is None:
            yield from self._fresh(name, severity, batch_size)
            return
        path = os.path.join(self.directory, f"{name}_{severity}.npy")
        array = _read_npy(path, self.shape)
        if array is None:
            with data.file_lock(self.directory, os.path.basename(path)):
                array = _read_npy(path, self.shape)  # another process may have written it meanwhile
                if array is None:
                    _write_npy_atomic(path, self._fresh(name, severity, 256), self.shape)
                    array = _read_npy(path, self.shape)
                    self.written += 1
                else:
                    self.hits += 1
        else:
            self.hits += 1
        for start in range(0, self.shape[0], batch_size):
            yield np.asarray(array[start : start + batch_size])

    def dataset(self, name: str, severity: int, batch_size: int, normalize: Callable) -> tf.data.Dataset:
        """Model-input batches {'image': normalize(uint8 / 255), 'label': int32} of the corrupted set."""
        labels = self.clean.labels

        def batches():
            start = 0
            for images in self.images(name, severity, batch_size):
                yield images, labels[start : start + len(images)]
                start += len(images)

        signature = (tf.TensorSpec([None, *self.clean.shape], tf.uint8), tf.TensorSpec([None], tf.int32))
        ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
        return ds.map(lambda images, labels: {"image": normalize(tf.cast(images, tf.float32) / 255.0),
                                              "label": labels}).prefetch(2)


# ----------------------------------------------------------------------------------------------------------
# Scoring


def diagram_json(probabilities_or_confidences, predictions, labels) -> dict:
    """A reliability diagram (robustness.ECE_BINS bins) as calibration.json stores it; NaN (empty bins) stays NaN
    here and is written as null."""
    diagram = robustness.reliability_diagram(probabilities_or_confidences, predictions, labels,
                                             num_bins=robustness.ECE_BINS)
    return {
        "bin_edges": [float(e) for e in diagram.bin_edges],
        "counts": [int(c) for c in diagram.counts],
        "accuracy": [float(a) for a in diagram.accuracy],
        "confidence": [float(c) for c in diagram.confidence],
    }


def clean_calibration(logits: np.ndarray, labels: np.ndarray) -> dict:
    """calibration.json's 'clean' entry from the clean test logits."""
    return diagram_json(robustness.softmax(logits), None, labels)


@dataclasses.dataclass(frozen=True)
class Request:
    """The corruption settings a run asks for: the root's arguments of the same names, and the data they apply to."""

    corruptions: str | Sequence[str] | None  # None, 'all' or corruption names (supcon.robust.spec)
    corruption_severities: Sequence[int]  # of 1..5
    corruption_source: str  # 'synthetic', 'tfds' or 'auto'
    corruption_cache_dir: str | None  # 'auto', None (no cache) or a folder
    dataset: str  # the run's dataset (after a fallback dataset was chosen)
    data_dir: str | None


@dataclasses.dataclass
class Settings:
    """What to score and where the sets come from (a `Request`, checked and resolved)."""

    names: tuple
    severities: tuple
    source: str  # 'synthetic' or 'tfds' (resolved)
    cache: str | None  # the synthetic sets' cache folder


def check_settings(request: Request) -> None:
    """Checks the root's corruption arguments without data (the runner validates every point this way, and a run
    checks them before it trains): one-line ValueErrors naming the binding."""
    names, _ = corruption_spec.selection(request.corruptions, request.corruption_severities)
    corruption_spec.check_source(request.corruption_source)
    if names and request.corruption_source == "tfds" and _base_name(request.dataset) not in TFDS_BUILDERS:
        resolve_source("tfds", request.dataset, names, (1,), request.data_dir)  # raises its one-line error
    cache = request.corruption_cache_dir
    if cache is not None and (not isinstance(cache, str) or not cache):
        raise ValueError(f"train_and_evaluate.corruption_cache_dir must be 'auto', None or a folder; got {cache!r}")


def settings(request: Request) -> Settings | None:
    """The run's corruption settings (None when it scores none); resolves 'auto' source and cache."""
    names, severities = corruption_spec.selection(request.corruptions, request.corruption_severities)
    if not names:
        return None
    source = resolve_source(request.corruption_source, request.dataset, names, severities, request.data_dir)
    cache = cache_root(request.corruption_cache_dir, request.data_dir) if source == "synthetic" else None
    return Settings(names, severities, source, cache)


def _score(predictor: Callable, dataset: tf.data.Dataset):
    """(top-1, ECE, (confidence [N], prediction [N], label [N])) of the classifier on one set."""
    out = predictor(dataset)
    probabilities = robustness.softmax(out["logits"])
    labels = out["label"]
    top1 = robustness.topk_accuracy(out["logits"], labels, 1)
    ece = robustness.expected_calibration_error(probabilities, None, labels, num_bins=robustness.ECE_BINS)
    return top1, ece, (probabilities.max(axis=1), probabilities.argmax(axis=1), labels)


def evaluate_corruptions(predictor: Callable, source, request: Request, split: str, limit: int | None,
                         batch_size: int, preprocess: Callable, normalize: Callable, shape: tuple,
                         log: Callable = print) -> tuple[dict, dict]:
    """Scores every requested corruption x severity; returns (result.json metrics, calibration.json entries).

    Args:
      predictor: a callable dataset -> {'logits', 'label'} arrays (`supcon.train.evaluate.Predictor` with outputs ('logits', 'label').
      source: the run's data source (`supcon.data.Source`).
      request: the corruptions asked for, and the run's dataset and data_dir.
      split, limit, batch_size: the eval split, its first `limit` examples (None: all) and the global eval batch.
      preprocess: the run's eval_preprocess (the synthetic sets corrupt its output).
      normalize: the run's model-input normalization.
      shape: (H, W, C) of the model input.
      log: where progress lines go.
    """
    chosen = settings(request)
    if chosen is None:
        return {}, {}
    start = time.time()
    synthetic = None
    if chosen.source == "synthetic":
        synthetic = SyntheticSets(source, split, preprocess, limit, tuple(shape), request.dataset, chosen.cache)
    cells, pooled = {}, {s: [] for s in chosen.severities}
    for name in chosen.names:
        for severity in chosen.severities:
            tic = time.time()
            if synthetic is not None:
                ds = synthetic.dataset(name, severity, batch_size, normalize)
            else:
                ds = tfds_images(request.dataset, name, severity, split, request.data_dir, limit, tuple(shape))
                ds = ds.map(lambda image, label: {"image": normalize(image), "label": label},
                            num_parallel_calls=AUTOTUNE, deterministic=True).batch(batch_size).prefetch(2)
            top1, ece, parts = _score(predictor, ds)
            cells[(name, severity)] = {"top1": top1, "ece": ece}
            pooled[severity].append(parts)
            log(f"corruption {name} {severity}: top1 {top1:.4f} ece {ece:.4f} ({time.time() - tic:.1f} s)")
    metrics = corruption_spec.summarize(cells)
    calibration = {
        f"severity_{s}": diagram_json(*(np.concatenate([p[i] for p in parts]) for i in range(3)))
        for s, parts in pooled.items()
    }
    where = chosen.source
    if synthetic is not None and synthetic.directory:
        where += f", cache {synthetic.directory} ({synthetic.hits} read, {synthetic.written} written)"
    elif synthetic is not None:
        where += ", no cache"
    log(f"corruptions: {len(cells)} sets in {time.time() - start:.1f} s ({where}); "
        f"{corruption_spec.MEAN_TOP1} {metrics[corruption_spec.MEAN_TOP1]:.4f}")
    return metrics, calibration
