"""Sources: a dataset's splits as `{'image': uint8 [H, W, C], 'label': int64}` in a fixed order, found offline.

`load_source(name, data_dir)` never touches the network (with no internet `tfds.load` hangs ~205 s) and fails
within seconds, with a one-line message saying how to prepare the data, when nothing usable is found:
  * 'digits': the bundled scikit-learn digits (`SupconDigits`), prepared on first use (about a second);
  * 'mnist', 'fashion_mnist': tfds if prepared in data_dir, else the original IDX files;
  * 'cifar10', 'cifar100': tfds if prepared in data_dir, else the CIFAR python tarball or its folder;
  * any other tfds name (e.g. 'imagenet2012', 'cifar10_corrupted/brightness_5'): tfds, prepared only.
Original files are looked for in data_dir, data_dir/<name>, data_dir/<alias> and in system locations (the
Debian package dataset-fashion-mnist installs /usr/share/datasets/fashion-mnist). They are converted once, into
data_dir when writable, else into the default data dir: $SUPCON_DATA_DIR or ~/.cache/supcon/datasets.
Split names follow tfds, including slices such as 'train[:90%]' for a held-out validation split.

Loading leaves Python's and NumPy's global random states as it found them, so that a seeded run computes the
same numbers whether or not its dataset was just prepared: preparing draws from Python's `random` (tfds names
its temporary directory with `random.choice`; the digits import scikit-learn, which imports rich, which calls
`random.getrandbits`), and Keras seeds unseeded initializers from that same generator.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from supcon.data import builders

DATA_DIR_ENV = "SUPCON_DATA_DIR"
# name -> (builder class, folder names tried under each search root, system folders, what to put where)
LOCAL = {
    "digits": (builders.SupconDigits, (), (), "nothing: it is bundled with scikit-learn"),
    "mnist": (builders.SupconMnist, ("mnist", "MNIST", "MNIST/raw"), ("/usr/share/datasets/mnist",),
              "the four IDX files (train-images-idx3-ubyte.gz, ...)"),
    "fashion_mnist": (builders.SupconFashionMnist, ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"),
                      ("/usr/share/datasets/fashion-mnist",),
                      "the four IDX files (`apt-get install dataset-fashion-mnist` puts them in "
                      "/usr/share/datasets/fashion-mnist)"),
    "cifar10": (builders.SupconCifar10, ("cifar10", "cifar-10"), (), "cifar-10-python.tar.gz (or its folder)"),
    "cifar100": (builders.SupconCifar100, ("cifar100", "cifar-100"), (),
                 "cifar-100-python.tar.gz (or its folder)"),
}


def default_data_dir() -> str:
    """$SUPCON_DATA_DIR, else ~/.cache/supcon/datasets."""
    return os.environ.get(DATA_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "supcon", "datasets")


class Source:
    """A dataset with named splits. Subclasses implement `num_examples` and `split_dataset`.

    Attributes:
      name: dataset name.
      num_classes: number of labels.
      image_shape: (H, W, C); H and W are None for datasets of varying image size.
    """

    def __init__(self, name: str, num_classes: int, image_shape: tuple):
        self.name, self.num_classes, self.image_shape = name, int(num_classes), tuple(image_shape)

    def num_examples(self, split: str) -> int:
        raise NotImplementedError

    def split_dataset(self, split: str) -> tf.data.Dataset:
        """A finite dataset of {'image': uint8 [H, W, C], 'label': int64 []} in a fixed order."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, num_classes={self.num_classes}, image_shape={self.image_shape})"


class TfdsSource(Source):
    """A prepared tfds builder (read with shuffle_files=False, so the order is fixed)."""

    def __init__(self, builder: tfds.core.DatasetBuilder, name: str | None = None):
        image_key, label_key = builder.info.supervised_keys or ("image", "label")
        features = builder.info.features
        super().__init__(name or builder.name, features[label_key].num_classes, features[image_key].shape)
        self.builder, self._keys = builder, (image_key, label_key)

    def num_examples(self, split: str) -> int:
        return int(self.builder.info.splits[split].num_examples)

    def split_dataset(self, split: str) -> tf.data.Dataset:
        image_key, label_key = self._keys
        ds = self.builder.as_dataset(split=split, shuffle_files=False)
        return ds.map(lambda ex: {"image": ex[image_key], "label": tf.cast(ex[label_key], tf.int64)})


class ArraySource(Source):
    """In-memory arrays: splits maps a split name to (images uint8 [N, H, W, C], labels int [N])."""

    def __init__(self, name: str, splits: Mapping[str, tuple], num_classes: int):
        shapes = {np.asarray(images).shape[1:] for images, _ in splits.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3:
            raise ValueError(f"splits: images must all be [N, H, W, C] of one shape; got shapes {shapes}")
        for split, (images, labels) in splits.items():
            if np.asarray(images).dtype != np.uint8 or len(images) != len(labels):
                raise ValueError(f"splits[{split!r}]: need uint8 images and one label per image")
        super().__init__(name, num_classes, next(iter(shapes)))
        self._splits = {k: (np.asarray(x), np.asarray(y, np.int64)) for k, (x, y) in splits.items()}

    def _get(self, split):
        if split not in self._splits:
            raise ValueError(f"split must be one of {sorted(self._splits)}; got {split!r}")
        return self._splits[split]

    def num_examples(self, split: str) -> int:
        return len(self._get(split)[1])

    def split_dataset(self, split: str) -> tf.data.Dataset:
        images, labels = self._get(split)
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})


def _writable(directory: str) -> bool:
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


@contextlib.contextmanager
def file_lock(directory: str, name: str):
    """An exclusive file lock (`directory/.name.lock`), so that concurrent processes prepare a file once."""
    with open(os.path.join(directory, f".{name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prepared_tfds(name: str, data_dirs) -> tfds.core.DatasetBuilder | None:
    """The first tfds builder of `name` already prepared in one of data_dirs (None = tfds's default)."""
    for data_dir in data_dirs:
        builder = tfds.builder(name, data_dir=data_dir)
        if builder.is_prepared():
            return builder
    return None


def prepared_builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder | None:
    """The tfds builder `name` (e.g. 'cifar10_corrupted/fog_3') when it is prepared in data_dir (None: tfds's
    default dir or the default data dir, as `load_source` looks), else None; never downloads."""
    with _global_random_state_kept():
        try:
            return _prepared_tfds(name, [data_dir] if data_dir else [None, default_data_dir()])
        except tfds.core.registered.DatasetNotFoundError:
            return None


def _prepare(builder_cls, write_dir: str, manual_dir: str | None) -> tfds.core.DatasetBuilder:
    """Prepares a local builder into write_dir (under a lock) unless it already is; returns it."""
    builder = builder_cls(data_dir=write_dir)
    if builder.is_prepared():
        return builder
    with file_lock(write_dir, builder.name):
        builder = builder_cls(data_dir=write_dir)
        if not builder.is_prepared():
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder_cls(data_dir=write_dir)


def _search_dirs(name: str, data_dir: str | None) -> list[str]:
    _, folders, system, _ = LOCAL[name]
    roots = [d for d in (data_dir, default_data_dir()) if d]
    dirs = []
    for root in roots:
        dirs += [root] + [os.path.join(root, f) for f in folders] + [os.path.join(root, "downloads", "manual")]
    return dirs + list(system)


def _originals(name: str, data_dir: str | None) -> tuple[str | None, list[str]]:
    """(directory holding the original files or None, the directories searched)."""
    dirs = _search_dirs(name, data_dir)
    found = {
        "mnist": builders.has_idx_files, "fashion_mnist": builders.has_idx_files,
        "cifar10": lambda d: builders.find_cifar(d, 10) is not None,
        "cifar100": lambda d: builders.find_cifar(d, 100) is not None,
    }[name]
    for directory in dirs:
        if os.path.isdir(directory) and found(directory):
            return directory, dirs
    return None, dirs


def _write_dir(data_dir: str | None) -> str:
    """Where to convert original files: data_dir when writable, else the default data dir."""
    if data_dir and _writable(data_dir):
        return data_dir
    os.makedirs(default_data_dir(), exist_ok=True)
    return default_data_dir()


def _load_local(name: str, data_dir: str | None) -> Source:
    builder_cls = LOCAL[name][0]
    if name == "digits":
        return TfdsSource(_prepare(builder_cls, _write_dir(data_dir), None), name)
    roots = [data_dir] if data_dir else [None, default_data_dir()]
    converted = [d for d in (data_dir, default_data_dir()) if d and os.path.isdir(d)]
    builder = _prepared_tfds(name, roots) or _prepared_tfds(builder_cls.name, converted)
    if builder is not None:
        return TfdsSource(builder, name)
    originals, searched = _originals(name, data_dir)
    if originals is None:
        raise FileNotFoundError(
            f"dataset {name!r} is not available offline (data_dir={data_dir!r}): no prepared tfds '{name}' and "
            f"no original files in {', '.join(searched)}; put {LOCAL[name][3]} in data_dir, or run "
            f"`tfds build {name} --data_dir=DATA_DIR` on a machine with internet and pass data_dir=DATA_DIR"
        )
    return TfdsSource(_prepare(builder_cls, _write_dir(data_dir), originals), name)


@contextlib.contextmanager
def _global_random_state_kept():
    """Restores Python's and NumPy's global random states on exit (see the module docstring for why)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def load_source(name: str, data_dir: str | None = None) -> Source:
    """Finds a dataset offline and returns its `Source`; raises within seconds when it is unavailable.

    Args:
      name: 'digits', 'mnist', 'fashion_mnist', 'cifar10', 'cifar100' or any tfds dataset name (with optional
        config / version, e.g. 'imagenet2012:5.1.0').
      data_dir: where prepared tfds datasets and original files are looked for (None: tfds's default dir and
        the default data dir, see `default_data_dir`).

    Returns:
      A `Source`. Python's and NumPy's global random states are as they were before the call, whether or not
      the dataset was prepared in it.

    Raises:
      ValueError: `name` is not a known dataset.
      FileNotFoundError: the dataset is neither prepared nor available from original files.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a dataset name such as 'digits' or 'cifar10'; got {name!r}")
    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
    with _global_random_state_kept():
        return _load(name, data_dir)


def _load(name: str, data_dir: str | None) -> Source:
    if name in LOCAL:
        return _load_local(name, data_dir)
    _, _, version = name.partition(":")
    if version and not re.fullmatch(r"[0-9.*]+", version):
        raise ValueError(f"community datasets ({name!r}) need the network: use a tfds name prepared in data_dir")
    try:
        builder = _prepared_tfds(name, [data_dir] if data_dir else [None, default_data_dir()])
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(
            f"unknown dataset {name!r}: use one of {sorted(LOCAL)} or a tfds dataset name ({error.__class__.__name__})"
        ) from None
    if builder is None:
        raise FileNotFoundError(
            f"tfds dataset {name!r} is not prepared in data_dir={data_dir!r} (and is never downloaded here): run "
            f"`tfds build {name} --data_dir=DATA_DIR` (manual datasets such as imagenet2012 need their files in "
            f"DATA_DIR/downloads/manual) and pass data_dir=DATA_DIR"
        )
    return TfdsSource(builder, name)
