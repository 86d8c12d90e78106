"""Raw-pixel baselines: logistic regression and k-NN on the pixels a run's classifier saw (no TensorFlow).

For the runs of a report, the reporter asks what a linear model and a nearest-neighbour vote reach on raw pixels
with the same data: the same training examples (the first N of the train split in the trainer's order, N =
env.json's train_examples), the same image size (the run's evaluation preprocessing, read from its config.gin:
`eval_preprocess.method / image_size / crop_padding`) and the whole test split. A method that does not beat
these has learned nothing beyond pixels.

The files are read with numpy, never through tfds: the MNIST-family IDX files (found where the trainer looks:
data_dir, the default data dir and /usr/share/datasets/<name>) and scikit-learn's digits with the trainer's
split. The trainer reads a prepared tfds dataset, stored in the order of md5(split name + example key); the same
order is rebuilt here (`tfds_order`). The resize is TensorFlow's bilinear resize with half-pixel centres
(`tf.image.resize(method='bilinear')`), rebuilt in numpy (`resize_bilinear`); tests check both against TF.

Features are the preprocessed pixels in [0, 1], flattened. Logistic regression: scikit-learn's L2 multinomial
(C = 1, lbfgs, up to 1,000 iterations). k-NN: Euclidean, k = 5 with uniform votes (scikit-learn's default k, and
the classic raw-pixel baseline; the trainer's own k-NN probe is a cosine vote on embeddings, a different thing).
Results are cached in `baselines.json` beside the run directories, keyed by every setting that changes them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import time
from typing import Any

import numpy as np

from supcon import workdir

VERSION = 1  # bump when the computation changes: cached results of other versions are recomputed
KNN_K = 5
LOGREG_C = 1.0
LOGREG_MAX_ITER = 1000
CACHE = "baselines.json"
DATA_DIR_ENV = "SUPCON_DATA_DIR"
# Where the trainer looks for the original IDX files (supcon.data.sources): folders under each root, then
# system folders.
IDX_FOLDERS = {
    "mnist": (("mnist", "MNIST", "MNIST/raw"), ("/usr/share/datasets/mnist",)),
    "fashion_mnist": (
        ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw"),
        ("/usr/share/datasets/fashion-mnist",),
    ),
}
IDX_PREFIX = {"train": "train", "test": "t10k"}
DIGITS_NUM_TEST = 360
DIGITS_SEED = 0
EVAL_METHODS = ("identity", "resize_then_crop", "crop_then_resize")


class NotComputed(Exception):
    """The baseline cannot be computed here; the message says why (shown in the report)."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a baseline depends on, read from one run directory."""

    dataset: str
    train_split: str
    eval_split: str
    train_examples: int
    method: str
    image_size: tuple[int, int] | None
    crop_padding: int
    data_dir: str | None = None

    def key(self) -> str:
        """The cache key: every field that changes the numbers (not where the files were found)."""
        fields = dataclasses.asdict(self)
        fields.pop("data_dir")
        fields["image_size"] = list(self.image_size) if self.image_size else None
        return json.dumps({**fields, "version": VERSION, "k": KNN_K, "C": LOGREG_C}, sort_keys=True)


# -------------------------------------------------------------------------------------------------------------
# The run's settings, from env.json and config.gin


def _lookup(bindings: dict, name: str, scopes: list[str], default: Any) -> Any:
    """A binding as gin would apply it in the first matching scope, else unscoped, else `default`."""
    for scope in scopes + [""]:
        if (scope, name) in bindings:
            return bindings[(scope, name)]
    return default


def run_setting(run_dir: str, env: dict) -> Setting:
    """The baseline setting of one run directory.

    Raises:
      NotComputed: no env.json scale or no config.gin, or a setting the baseline does not reproduce.
    """
    scale = (env or {}).get("scale") or {}
    if not scale.get("dataset") or not scale.get("train_examples"):
        raise NotComputed("no env.json with the dataset and the training examples")
    config = os.path.join(run_dir, workdir.CONFIG)
    if not os.path.isfile(config) and os.path.isfile(os.path.join(run_dir, workdir.CONFIG_GZ)):
        config = os.path.join(run_dir, workdir.CONFIG_GZ)  # a run record's
    if not os.path.isfile(config):
        raise NotComputed(
            f"no {workdir.CONFIG} in the run directory (the evaluation image size is unknown)"
        )
    try:
        gin = workdir.read_gin_bindings(config)
    except (OSError, ValueError) as e:  # not UTF-8, truncated, or another version's syntax
        raise NotComputed(f"{workdir.CONFIG} is unreadable ({' '.join(str(e).split())[:200]})") from None
    method = gin.get(("", "METHOD"))
    scopes = [method] if isinstance(method, str) else []
    get = lambda name, default: _lookup(gin, name, scopes, default)  # noqa: E731
    dataset = str(scale["dataset"])
    fallback = str(get("train_and_evaluate.dataset", dataset)) != dataset  # the trainer fell back
    preprocess = get("train_and_evaluate.eval_preprocess", "@eval_preprocess")
    if isinstance(preprocess, str) and preprocess.startswith("@") and "/" in preprocess:
        scopes = [preprocess[1:].split("/")[0]] + scopes
    elif preprocess not in ("@eval_preprocess", "@eval_preprocess()"):
        raise NotComputed(
            f"train_and_evaluate.eval_preprocess = {preprocess}: not the standard one"
        )
    size = get("eval_preprocess.image_size", None)
    size = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
    return Setting(
        dataset=dataset,
        train_split="train" if fallback else str(get("train_and_evaluate.train_split", "train")),
        eval_split="test" if fallback else str(get("train_and_evaluate.eval_split", "test")),
        train_examples=int(scale["train_examples"]),
        method=str(get("eval_preprocess.method", "identity")),
        image_size=size,
        crop_padding=int(get("eval_preprocess.crop_padding", 32)),
        data_dir=None if fallback else get("train_and_evaluate.data_dir", None),
    )


# -------------------------------------------------------------------------------------------------------------
# Data, in the trainer's order


def tfds_order(keys: np.ndarray, split: str) -> np.ndarray:
    """Positions of `keys` in the order tfds stores them: by md5(split name + str(key)), as 128-bit ints."""
    salt = hashlib.md5(split.encode())

    def hashed(key) -> int:
        md5 = salt.copy()
        md5.update(str(int(key)).encode())
        return int(md5.hexdigest(), 16)

    return np.array(sorted(range(len(keys)), key=lambda i: hashed(keys[i])), dtype=np.int64)


def digits_split(
    labels: np.ndarray, num_test: int = DIGITS_NUM_TEST, seed: int = DIGITS_SEED
) -> dict:
    """The trainer's fixed, stratified digits split (supcon.data.builders.digits_split): sorted indices."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * num_test / len(labels)
    quota = np.floor(exact).astype(int)
    quota[np.argsort(-(exact - quota), kind="stable")[: num_test - quota.sum()]] += 1
    rng = np.random.RandomState(seed)
    picks = [
        rng.permutation(np.flatnonzero(labels == c))[:q]
        for c, q in zip(classes, quota, strict=True)
    ]
    test = np.sort(np.concatenate(picks))
    return {"train": np.setdiff1d(np.arange(len(labels)), test), "test": test}


def load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits of a split in the trainer's order: uint8 [N, 8, 8, 1] in 0..255, int64 labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    keys = digits_split(labels)[split]
    keys = keys[tfds_order(keys, split)]
    return images[keys], labels[keys]


def read_idx(path: str) -> np.ndarray:
    """An IDX file of unsigned bytes (optionally gzipped) as an array of its declared shape."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise NotComputed(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_path(directory: str, prefix: str, kind: str) -> str | None:
    ndim = 3 if kind == "images" else 1
    for stem in (f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"):
        for name in (stem, stem + ".gz"):
            if os.path.isfile(os.path.join(directory, name)):
                return os.path.join(directory, name)
    return None


def idx_dirs(dataset: str, data_dir: str | None) -> list[str]:
    """The folders searched for a dataset's IDX files, in the trainer's order."""
    folders, system = IDX_FOLDERS[dataset]
    default = os.environ.get(DATA_DIR_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "supcon", "datasets"
    )
    dirs = []
    for root in (r for r in (data_dir, default) if r):
        root = os.path.expanduser(str(root))
        dirs += (
            [root]
            + [os.path.join(root, f) for f in folders]
            + [os.path.join(root, "downloads", "manual")]
        )
    return dirs + list(system)


def load_idx(dataset: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """An MNIST-family split in the trainer's order: uint8 [N, 28, 28, 1] and int64 labels."""
    for directory in idx_dirs(dataset, data_dir):
        paths = [_idx_path(directory, IDX_PREFIX[split], k) for k in ("images", "labels")]
        if all(paths):
            images, labels = read_idx(paths[0]), read_idx(paths[1]).astype(np.int64)
            order = tfds_order(np.arange(len(labels)), split)
            return images[order][..., None], labels[order]
    raise NotComputed(
        f"the original {dataset} IDX files are not here (looked in data_dir, the default data dir and "
        f"{IDX_FOLDERS[dataset][1][0]})"
    )


def load_split(setting: Setting, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, H, W, C] and labels of a split, in the trainer's order."""
    if split not in ("train", "test"):
        raise NotComputed(
            f"split {split!r}: the baseline reads only the whole 'train' and 'test' splits"
        )
    if setting.dataset == "digits":
        return load_digits(split)
    if setting.dataset in IDX_FOLDERS:
        return load_idx(setting.dataset, split, setting.data_dir)
    raise NotComputed(
        f"dataset {setting.dataset!r}: the baseline reads only the bundled digits and MNIST-family IDX files"
    )


# -------------------------------------------------------------------------------------------------------------
# TensorFlow's evaluation preprocessing, in numpy


def _resize_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF's half-pixel bilinear sampling: lower and upper source indices and the weight of the upper one."""
    scale = np.float32(in_size) / np.float32(out_size)
    x = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(x)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(x), in_size - 1).astype(np.int64)
    return lower, upper, (x - floor).astype(np.float32)


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`tf.image.resize(images, size, 'bilinear')` (half-pixel centres, no antialias) of float32 [N, H, W, C]."""
    y0, y1, wy = _resize_weights(images.shape[1], size[0])
    x0, x1, wx = _resize_weights(images.shape[2], size[1])
    wx = wx[None, None, :, None]
    rows0, rows1 = images[:, y0], images[:, y1]  # [N, h, W, C]
    top = rows0[:, :, x0] + (rows0[:, :, x1] - rows0[:, :, x0]) * wx  # [N, h, w, C]
    bottom = rows1[:, :, x0] + (rows1[:, :, x1] - rows1[:, :, x0]) * wx
    return (top + (bottom - top) * wy[None, :, None, None]).astype(np.float32)


def _center_crop(images: np.ndarray, height: int, width: int) -> np.ndarray:
    top, left = (images.shape[1] - height + 1) // 2, (images.shape[2] - width + 1) // 2
    return images[:, top : top + height, left : left + width]


def eval_preprocess(images: np.ndarray, method: str, image_size, crop_padding: int) -> np.ndarray:
    """supcon.augment.eval_preprocess on uint8 [N, H, W, C]: float32 [N, h, w, C] in [0, 1]."""
    if method not in EVAL_METHODS:
        raise NotComputed(f"eval_preprocess.method {method!r} is not one of {EVAL_METHODS}")
    x = images.astype(np.float32) * np.float32(1 / 255)  # tf.image.convert_image_dtype
    height, width = image_size or images.shape[1:3]
    if method == "identity":
        return x if x.shape[1:3] == (height, width) else resize_bilinear(x, (height, width))
    side = min(height, width)
    if method == "resize_then_crop":
        shape = np.array(x.shape[1:3], np.float32)
        scale = np.float32(side + crop_padding) / shape.min()
        new = np.maximum(np.round(shape * scale).astype(np.int64), side + crop_padding)
        return _center_crop(resize_bilinear(x, (int(new[0]), int(new[1]))), height, width)
    crop = int(np.float32(side / (side + crop_padding)) * np.float32(min(x.shape[1:3])))
    return resize_bilinear(_center_crop(x, crop, crop), (height, width))


# -------------------------------------------------------------------------------------------------------------
# The baselines


@dataclasses.dataclass(frozen=True)
class Baseline:
    """Raw-pixel top-1 accuracies (fractions) for one setting, or why they were not computed."""

    setting: Setting
    logreg_top1: float | None = None
    knn_top1: float | None = None
    image_shape: tuple[int, ...] = ()
    test_examples: int = 0
    seconds: float = 0.0
    reason: str = ""


def pixel_features(
    setting: Setting, split: str, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed pixels [N, h, w, C] in [0, 1] and labels of the first `limit` examples of a split."""
    images, labels = load_split(setting, split)
    images, labels = images[:limit], labels[:limit]
    return eval_preprocess(images, setting.method, setting.image_size, setting.crop_padding), labels


def fit_and_score(x_train, y_train, x_test, y_test) -> tuple[float, float]:
    """(logistic regression top-1, k-NN top-1) on the test set, both fitted on the training pixels."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits

    # One BLAS thread: the result does not depend on the thread count (lbfgs took 75 iterations with two
    # OpenBLAS threads and 81 with one on the digits), and on busy cores it is ~100x faster (measured).
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", ConvergenceWarning
        )  # the iteration cap is part of the method
        logreg = LogisticRegression(C=LOGREG_C, max_iter=LOGREG_MAX_ITER).fit(x_train, y_train)
        knn = KNeighborsClassifier(n_neighbors=KNN_K, algorithm="brute").fit(x_train, y_train)
        return float(logreg.score(x_test, y_test)), float(knn.score(x_test, y_test))


def compute(setting: Setting) -> Baseline:
    """Computes the baselines of one setting (seconds to a minute); never raises for unavailable data."""
    start = time.perf_counter()
    try:
        x_train, y_train = pixel_features(setting, setting.train_split, setting.train_examples)
        x_test, y_test = pixel_features(setting, setting.eval_split)
        if len(y_train) != setting.train_examples:
            raise NotComputed(
                f"the train split has {len(y_train)} examples, the run used {setting.train_examples}"
            )
    except NotComputed as why:
        return Baseline(setting, reason=str(why))
    flat = [x.reshape(len(x), -1) for x in (x_train, x_test)]
    logreg, knn = fit_and_score(flat[0], y_train, flat[1], y_test)
    shape = tuple(int(d) for d in x_test.shape[1:])
    return Baseline(setting, logreg, knn, shape, len(y_test), time.perf_counter() - start)


def _to_json(baseline: Baseline) -> dict:
    record = dataclasses.asdict(baseline)
    record.pop("setting")
    return record


def _from_json(setting: Setting, record: dict) -> Baseline:
    fields = {f.name for f in dataclasses.fields(Baseline)} - {"setting"}
    values = {k: v for k, v in record.items() if k in fields}
    values["image_shape"] = tuple(values.get("image_shape") or ())
    return Baseline(setting, **values)


def baselines_for_runs(runs, cache_dir: str | None) -> tuple[list[Baseline], list[str]]:
    """The baselines of every distinct setting among the runs, and the reasons some runs have none.

    Args:
      runs: `supcon.report.data.Run`s; those without a run directory are skipped.
      cache_dir: where `baselines.json` is read and written (None or unwritable: no cache). Unavailable data
        is not cached, so installing it later takes effect.
    """
    settings, reasons = {}, {}
    for run in runs:
        if not run.path or not run.env:
            continue
        try:
            setting = run_setting(run.path, run.env)
            settings.setdefault(setting.key(), setting)
        except NotComputed as why:
            reasons[str(why)] = None
    path = os.path.join(cache_dir, CACHE) if cache_dir else None
    cache = (workdir.read_json(path, {}) if path else {}) or {}
    out, changed = [], False
    for key, setting in sorted(settings.items()):
        if key in cache and isinstance(cache[key], dict):
            try:
                out.append(_from_json(setting, cache[key]))
                continue
            except (TypeError, ValueError):  # an entry of another version: computed again
                pass
        baseline = compute(setting)
        out.append(baseline)
        if not baseline.reason:
            cache[key], changed = _to_json(baseline), True
    if changed and path:
        try:
            workdir.write_json_atomic(path, cache)
        except OSError:
            pass  # a read-only runs folder: recomputed next time
    return out, list(reasons)
