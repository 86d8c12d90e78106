"""TFDS builders for data that needs no download: scikit-learn's digits, and original MNIST / CIFAR files.

* `SupconDigits` ('supcon_digits'): the 1,797 real 8x8 grey images of `sklearn.datasets.load_digits` (bundled
  with scikit-learn), pixel values 0..16 scaled to 0..255 (round(v * 255 / 16)), 10 classes. Fixed split:
  360 test images (20%), stratified: class c gets floor(360 n_c / 1797) test images plus one more for the
  classes with the largest remainders (ties to the lower class), picked by a per-class permutation from
  `numpy.random.RandomState(0)`; the other 1,437 are train. Prepared offline in about a second.
* `SupconMnist` / `SupconFashionMnist` ('supcon_mnist', 'supcon_fashion_mnist'): the original IDX files
  `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`
  (optionally `.gz`) from the manual dir; features as tfds `mnist` / `fashion_mnist`.
* `SupconCifar10` / `SupconCifar100` ('supcon_cifar10', 'supcon_cifar100'): the CIFAR "python version"
  (`cifar-10-python.tar.gz` / `cifar-100-python.tar.gz`, or their extracted `cifar-10-batches-py/` /
  `cifar-100-python/` folders) from the manual dir; features as tfds `cifar10` / `cifar100` (id, image, label,
  and coarse_label for CIFAR-100). The batches are pickles: read only files you trust.

The manual dir is passed as `tfds.download.DownloadConfig(manual_dir=...)` (see `supcon.data.sources`).
Like every tfds builder, the prepared examples are stored in a fixed, key-hashed order.
"""

from __future__ import annotations

import gzip
import os
import pickle
import tarfile

import numpy as np
import tensorflow_datasets as tfds

DIGITS_NUM_TEST = 360
DIGITS_SEED = 0
IDX_FILES = {"train": "train", "test": "t10k"}
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """sklearn digits as (images uint8 [1797, 8, 8, 1] in 0..255, labels int64 [1797])."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int64)


def digits_split(labels: np.ndarray, num_test: int = DIGITS_NUM_TEST, seed: int = DIGITS_SEED) -> dict:
    """The fixed stratified split: {'train': sorted indices, 'test': sorted indices} (see module doc)."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * num_test / len(labels)
    quota = np.floor(exact).astype(int)
    extra = np.argsort(-(exact - quota), kind="stable")[: num_test - quota.sum()]
    quota[extra] += 1
    rng = np.random.RandomState(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota, strict=True)])
    test = np.sort(test)
    train = np.setdiff1d(np.arange(len(labels)), test)
    return {"train": train, "test": test}


class SupconDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 digits (1,437 train / 360 test, stratified, fixed seed)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1)),
                "label": tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
            }),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # bundled with scikit-learn
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split):
        images, labels = digits_arrays()
        for index in digits_split(labels)[split]:
            yield int(index), {"image": images[index], "label": int(labels[index])}


# -------------------------------------------------------------------------------------------------------------
# IDX (MNIST family)


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) of unsigned bytes into an array of its declared shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {len(data) - offset} bytes")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def find_idx(directory: str, prefix: str, kind: str) -> str | None:
    """Path of `<prefix>-<kind>-idx?-ubyte[.gz]` (also `<prefix>-<kind>.idx?-ubyte`) in directory, or None."""
    ndim = 3 if kind == "images" else 1
    for stem in (f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"):
        for name in (stem, stem + ".gz"):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
    return None


def has_idx_files(directory: str) -> bool:
    """True when directory holds the four MNIST-family IDX files."""
    return all(find_idx(directory, p, k) for p in IDX_FILES.values() for k in ("images", "labels"))


class _IdxBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base for MNIST-family IDX builders; subclasses set LABEL_NAMES."""

    VERSION = tfds.core.Version("1.0.0")
    LABEL_NAMES: tuple = ()
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the four original IDX files (optionally .gz) in the manual dir."

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.name}: 28x28 grey images read from the original IDX files.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(28, 28, 1)),
                "label": tfds.features.ClassLabel(names=list(self.LABEL_NAMES)),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        directory = os.fspath(dl_manager.manual_dir)
        return {split: self._generate_examples(directory, prefix) for split, prefix in IDX_FILES.items()}

    def _generate_examples(self, directory, prefix):
        images = read_idx(find_idx(directory, prefix, "images"))
        labels = read_idx(find_idx(directory, prefix, "labels"))
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(f"{directory}: {prefix} images {images.shape} / labels {labels.shape} mismatch")
        for index in range(len(labels)):
            yield index, {"image": images[index][..., None], "label": int(labels[index])}


class SupconMnist(_IdxBuilder):
    """MNIST from its original IDX files."""

    LABEL_NAMES = tuple(str(d) for d in range(10))


class SupconFashionMnist(_IdxBuilder):
    """Fashion-MNIST from its original IDX files (e.g. the Debian package dataset-fashion-mnist)."""

    LABEL_NAMES = FASHION_NAMES


# -------------------------------------------------------------------------------------------------------------
# CIFAR python pickles

CIFAR_LAYOUT = {
    10: {"archive": "cifar-10-python.tar.gz", "folder": "cifar-10-batches-py",
         "train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    100: {"archive": "cifar-100-python.tar.gz", "folder": "cifar-100-python", "train": ["train"], "test": ["test"]},
}


def find_cifar(directory: str, num_classes: int) -> str | None:
    """The CIFAR archive or extracted folder in directory (or directory itself when it is the folder)."""
    layout = CIFAR_LAYOUT[num_classes]
    for path in (os.path.join(directory, layout["folder"]), directory):
        if os.path.isfile(os.path.join(path, layout["test"][0])):
            return path
    archive = os.path.join(directory, layout["archive"])
    return archive if os.path.isfile(archive) else None


def read_cifar(location: str, num_classes: int, split: str) -> dict:
    """CIFAR batches of a split as {'image': uint8 [N, 32, 32, 3], 'label': [N], 'coarse_label': [N]?}."""
    layout = CIFAR_LAYOUT[num_classes]
    batches = []
    if os.path.isdir(location):
        for name in layout[split]:
            with open(os.path.join(location, name), "rb") as f:
                batches.append(pickle.load(f, encoding="bytes"))
    else:
        with tarfile.open(location, "r:*") as tar:
            for name in layout[split]:
                member = tar.extractfile(f"{layout['folder']}/{name}")
                batches.append(pickle.load(member, encoding="bytes"))
    data = np.concatenate([b[b"data"] for b in batches])  # [N, 3072], channel-major rows
    out = {"image": data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)}
    if num_classes == 10:
        out["label"] = np.concatenate([b[b"labels"] for b in batches])
    else:
        out["label"] = np.concatenate([b[b"fine_labels"] for b in batches])
        out["coarse_label"] = np.concatenate([b[b"coarse_labels"] for b in batches])
    return out


class _CifarBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base for CIFAR builders; subclasses set NUM_CLASSES."""

    VERSION = tfds.core.Version("1.0.0")
    NUM_CLASSES = 10
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the CIFAR python tarball (or its extracted folder) in the manual dir."

    def _info(self):
        features = {
            "id": tfds.features.Text(),
            "image": tfds.features.Image(shape=(32, 32, 3)),
            "label": (tfds.features.ClassLabel(names=list(CIFAR10_NAMES)) if self.NUM_CLASSES == 10
                      else tfds.features.ClassLabel(num_classes=100)),
        }
        if self.NUM_CLASSES == 100:
            features["coarse_label"] = tfds.features.ClassLabel(num_classes=20)
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"CIFAR-{self.NUM_CLASSES} read from the original python batches.",
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "label"),
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        )

    def _split_generators(self, dl_manager):
        location = find_cifar(os.fspath(dl_manager.manual_dir), self.NUM_CLASSES)
        if location is None:
            raise FileNotFoundError(f"no CIFAR-{self.NUM_CLASSES} python files in {dl_manager.manual_dir}")
        return {split: self._generate_examples(location, split) for split in ("train", "test")}

    def _generate_examples(self, location, split):
        arrays = read_cifar(location, self.NUM_CLASSES, split)
        for index in range(len(arrays["label"])):
            example = {"id": f"{split}_{index:05d}", "image": arrays["image"][index],
                       "label": int(arrays["label"][index])}
            if "coarse_label" in arrays:
                example["coarse_label"] = int(arrays["coarse_label"][index])
            yield index, example


class SupconCifar10(_CifarBuilder):
    """CIFAR-10 from `cifar-10-python.tar.gz` or `cifar-10-batches-py/`."""

    NUM_CLASSES = 10


class SupconCifar100(_CifarBuilder):
    """CIFAR-100 from `cifar-100-python.tar.gz` or `cifar-100-python/`."""

    NUM_CLASSES = 100
