"""Inputs: offline sources (digits, IDX, CIFAR files, fail-fast), multi-view batches, resume, sharding, eval."""

import gzip
import io
import os
import pickle
import socket
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from supcon import augment, data
from supcon.data import builders, sources


@pytest.fixture(autouse=True)
def isolated_default_dir(tmp_path, monkeypatch):
    """Keeps the default data dir (prepared datasets, searched originals) inside the test's tmp dir."""
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "default"))


def all_examples(source, split):
    return [(ex["image"].numpy(), int(ex["label"])) for ex in source.split_dataset(split)]


def as_set(examples):
    return sorted((label, image.tobytes()) for image, label in examples)


def toy_source(num=20, size=4):
    """Image i has pixel (0, 0) = i and label i % 5: examples can be told apart after augmentation-free runs."""
    images = np.zeros((num, size, size, 1), np.uint8)
    images[:, 0, 0, 0] = np.arange(num)
    return data.ArraySource("toy", {"train": (images, np.arange(num) % 5), "test": (images, np.arange(num) % 5)}, 5)


def ids(batch):
    return np.rint(batch["image"].numpy()[:, 0, 0, 0, 0] * 255).astype(int)  # [b] (view 0, identity)


def raw(x):
    return x


# ---------------------------------------------------------------------------------------------------------
# Sources


def refuse_network(monkeypatch) -> list:
    """Refuses (OSError) and records every name look-up and connection; returns the record."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network use in a data test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


def test_digits_builder_offline(tmp_path, monkeypatch):
    network = refuse_network(monkeypatch)
    source = data.load_source("digits", data_dir=str(tmp_path))
    assert not network, f"preparing digits tried the network: {network}"
    assert (source.num_classes, source.image_shape) == (10, (8, 8, 1))
    assert (source.num_examples("train"), source.num_examples("test")) == (1437, 360)
    train, test = all_examples(source, "train"), all_examples(source, "test")
    assert len(train) == 1437 and len(test) == 360 and train[0][0].dtype == np.uint8
    images, labels = builders.digits_arrays()
    assert as_set(train + test) == as_set(list(zip(images, labels, strict=True)))  # the whole set, each image once
    assert np.bincount([label for _, label in test]).tolist() == [36, 37, 35, 37, 36, 36, 36, 36, 35, 36]
    assert max(int(image.max()) for image, _ in train) == 255
    again = data.load_source("digits", data_dir=str(tmp_path))  # already prepared: same fixed order
    assert [label for _, label in all_examples(again, "test")] == [label for _, label in test]
    by_tfds_name = data.load_source("supcon_digits", data_dir=str(tmp_path))  # the generic prepared-tfds path
    assert by_tfds_name.num_examples("train") == 1437


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_idx_dir(directory, gz, rng):
    os.makedirs(directory, exist_ok=True)
    arrays = {}
    for prefix, num in (("train", 12), ("t10k", 5)):
        images = rng.integers(0, 256, size=(num, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=num)
        suffix = ".gz" if gz else ""
        write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{suffix}"), images)
        write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{suffix}"), labels)
        arrays[prefix] = list(zip(images[..., None], labels, strict=True))
    return arrays


@pytest.mark.parametrize("name, gz", [("mnist", True), ("fashion_mnist", False)])
def test_idx_builder_reads_original_files(tmp_path, name, gz):
    expected = make_idx_dir(str(tmp_path / "files"), gz, np.random.default_rng(1))
    source = data.load_source(name, data_dir=str(tmp_path / "files"))
    assert (source.num_classes, source.image_shape) == (10, (28, 28, 1))
    assert source.num_examples("train") == 12 and source.num_examples("test") == 5
    assert as_set(all_examples(source, "train")) == as_set(expected["train"])
    assert as_set(all_examples(source, "test")) == as_set(expected["t10k"])
    assert os.path.isdir(tmp_path / "files" / f"supcon_{name}")  # prepared next to the files (writable)


def test_read_idx_rejects_other_files(tmp_path):
    path = str(tmp_path / "bad")
    with open(path, "wb") as f:
        f.write(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ValueError, match="IDX"):
        builders.read_idx(path)


def cifar_batch(rng, num, fine):
    images = rng.integers(0, 256, size=(num, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 100 if fine else 10, size=num).tolist()
    batch = {b"data": images.transpose(0, 3, 1, 2).reshape(num, 3072), b"filenames": [b"x.png"] * num}
    if fine:
        batch[b"fine_labels"], batch[b"coarse_labels"] = labels, [label // 5 for label in labels]
    else:
        batch[b"labels"] = labels
    return batch, list(zip(images, labels, strict=True))


def test_cifar10_builder_reads_the_python_tarball(tmp_path):
    rng, expected, members = np.random.default_rng(2), {"train": [], "test": []}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch, examples = cifar_batch(rng, 3, fine=False)
        members[f"cifar-10-batches-py/{name}"] = pickle.dumps(batch)
        expected["test" if name == "test_batch" else "train"] += examples
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    source = data.load_source("cifar10", data_dir=str(tmp_path))
    assert (source.num_classes, source.image_shape) == (10, (32, 32, 3))
    assert as_set(all_examples(source, "train")) == as_set(expected["train"])  # channel order right
    assert as_set(all_examples(source, "test")) == as_set(expected["test"])


def test_cifar100_builder_reads_the_extracted_folder(tmp_path):
    folder, rng = tmp_path / "cifar-100-python", np.random.default_rng(3)
    folder.mkdir()
    expected = {}
    for split, num in (("train", 7), ("test", 4)):
        batch, expected[split] = cifar_batch(rng, num, fine=True)
        (folder / split).write_bytes(pickle.dumps(batch))
    source = data.load_source("cifar100", data_dir=str(tmp_path))
    assert source.num_classes == 100 and source.num_examples("train") == 7
    assert as_set(all_examples(source, "test")) == as_set(expected["test"])
    example = next(iter(source.builder.as_dataset(split="train")))
    assert int(example["coarse_label"]) == int(example["label"]) // 5


@pytest.mark.parametrize("name, error", [
    ("cifar10", FileNotFoundError), ("fashion_mnist", None), ("imagenet2012", FileNotFoundError),
    ("not_a_dataset_xyz", ValueError),
])
def test_unavailable_dataset_fails_fast(tmp_path, name, error, monkeypatch):
    if name == "fashion_mnist":  # hide the system copy so that nothing is found
        monkeypatch.setitem(sources.LOCAL, name, sources.LOCAL[name][:2] + ((),) + sources.LOCAL[name][3:])
        error = FileNotFoundError
    network = refuse_network(monkeypatch)  # fast means no download attempt
    with pytest.raises(error) as raised:
        data.load_source(name, data_dir=str(tmp_path / "empty"))
    assert not network, f"load_source({name!r}) tried the network: {network}"
    assert not (tmp_path / "empty").exists()  # a failed look-up leaves nothing behind
    message = str(raised.value)
    assert name in message and "\n" not in message
    if error is FileNotFoundError:
        assert str(tmp_path / "empty") in message and "tfds build" in message


def test_default_search_includes_the_debian_fashion_mnist():
    system = "/usr/share/datasets/fashion-mnist"
    if not os.path.isdir(system):
        pytest.skip("dataset-fashion-mnist is not installed")
    found, searched = sources._originals("fashion_mnist", None)
    assert found == system and system in searched


# ---------------------------------------------------------------------------------------------------------
# Training and evaluation pipelines


def take(dataset, num):
    return [batch for _, batch in zip(range(num), dataset, strict=False)]


def toy_train(start_step=0, augmenter=augment.identity_augment, **kwargs):
    kwargs.setdefault("global_batch_size", 6)
    return data.train_dataset(toy_source(), augmenter=augmenter, normalize=raw, seed=5, start_step=start_step,
                              **kwargs)


@pytest.mark.parametrize("shuffle_buffer", [None, 7])  # exact in-memory permutations; a shuffle buffer
def test_multi_view_batches_and_epochs_are_permutations(shuffle_buffer):
    batches = take(toy_train(num_views=3, shuffle_buffer=shuffle_buffer), 10)  # 60 elements = 3 epochs of 20
    assert batches[0]["image"].shape == (6, 3, 4, 4, 1) and batches[0]["image"].dtype == tf.float32
    assert batches[0]["label"].dtype == tf.int32
    order = np.concatenate([ids(b) for b in batches])
    for epoch in range(3):
        assert sorted(order[20 * epoch: 20 * epoch + 20]) == list(range(20))
    assert list(order[:20]) != list(order[20:40])  # a new permutation each epoch
    labels = np.concatenate([b["label"].numpy() for b in batches])
    np.testing.assert_array_equal(labels, order % 5)


@pytest.mark.parametrize("augmenter, shuffle_buffer", [
    (augment.identity_augment, None), (augment.identity_augment, 7), (augment.simclr_augment, None),
])
def test_resume_yields_the_same_batches(augmenter, shuffle_buffer):
    kwargs = {"augmenter": augmenter, "global_batch_size": 8, "shuffle_buffer": shuffle_buffer}
    full = take(toy_train(**kwargs), 9)  # crosses epoch boundaries
    for start in (3, 5) if augmenter is augment.identity_augment else (5,):
        resumed = take(toy_train(start_step=start, **kwargs), 9 - start)
        for a, b in zip(full[start:], resumed, strict=True):
            np.testing.assert_array_equal(a["label"].numpy(), b["label"].numpy())
            np.testing.assert_allclose(a["image"].numpy(), b["image"].numpy(), atol=1e-6)
    views = full[0]["image"].numpy()
    if augmenter is augment.simclr_augment:
        assert np.abs(views[:, 0] - views[:, 1]).max() > 1e-3  # views augmented independently
    other_seed = data.train_dataset(toy_source(), augmenter=augmenter, normalize=raw, seed=6,
                                    **{k: v for k, v in kwargs.items() if k != "augmenter"})
    assert not np.array_equal(ids(take(other_seed, 1)[0]), ids(full[0]))


@pytest.mark.parametrize("shuffle_buffer", [None, 7])
def test_stream_ignores_the_global_seed(shuffle_buffer):
    reference = ids(take(toy_train(shuffle_buffer=shuffle_buffer), 4)[3])
    try:
        for global_seed in (0, 123):  # the trainer may call tf.random.set_seed(0)
            tf.random.set_seed(global_seed)
            np.testing.assert_array_equal(ids(take(toy_train(shuffle_buffer=shuffle_buffer), 4)[3]), reference)
    finally:
        tf.random.set_seed(None)


def test_two_input_pipelines_get_disjoint_shards():
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        batches = take(toy_train(input_context=context, global_batch_size=4), 5)  # b = 2: one epoch of 10
        assert batches[0]["image"].shape[0] == 2
        seen.append(set(np.concatenate([ids(b) for b in batches]).tolist()))
    assert len(seen[0]) == len(seen[1]) == 10 and not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(20))


def test_mirrored_strategy_gets_per_replica_batches(tf_two_cpus):
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    source = toy_source()
    dataset = strategy.distribute_datasets_from_function(lambda ctx: data.train_dataset(
        source, global_batch_size=8, augmenter=augment.crop_flip, normalize=augment.normalize, input_context=ctx))
    batch = next(iter(dataset))
    shapes = [t.shape for t in strategy.experimental_local_results(batch["image"])]
    assert shapes == [(4, 2, 4, 4, 1)] * 2


def test_label_noise_is_fixed_per_example_and_max_examples_truncates():
    clean = np.arange(20) % 5
    noisy = take(toy_train(label_noise=1.0, global_batch_size=10), 6)  # three epochs
    per_epoch = []
    for epoch in range(3):
        pairs = sorted(zip(np.concatenate([ids(b) for b in noisy[2 * epoch: 2 * epoch + 2]]),
                           np.concatenate([b["label"].numpy() for b in noisy[2 * epoch: 2 * epoch + 2]]), strict=True))
        per_epoch.append([label for _, label in pairs])
    assert per_epoch[0] == per_epoch[1] == per_epoch[2]  # the same corrupted label every epoch
    assert np.mean(np.array(per_epoch[0]) != clean) > 0.5  # ~80% differ at p = 1 with 5 classes
    few = take(toy_train(max_examples=7, global_batch_size=7), 3)
    assert all(sorted(ids(b)) == list(range(7)) for b in few)


def test_eval_keeps_the_last_partial_batch():
    batches = list(data.eval_dataset(toy_source(num=23), batch_size=5, preprocess=augment.eval_preprocess,
                                     normalize=augment.normalize))
    assert [b["label"].shape[0] for b in batches] == [5, 5, 5, 5, 3]
    order = np.concatenate([np.rint((b["image"].numpy()[:, 0, 0, 0] + 1) * 127.5) for b in batches])
    np.testing.assert_array_equal(order, np.arange(23))  # every example once, in order
    assert batches[0]["image"].shape[1:] == (4, 4, 1) and batches[0]["label"].dtype == tf.int32


def test_train_dataset_on_a_tfds_source(tmp_path):
    source = data.load_source("digits", data_dir=str(tmp_path))
    batch = take(data.train_dataset(source, global_batch_size=16, augmenter=augment.simclr_augment,
                                    normalize=augment.normalize), 1)[0]
    assert batch["image"].shape == (16, 2, 8, 8, 1)
    assert -1.0 <= float(tf.reduce_min(batch["image"])) <= float(tf.reduce_max(batch["image"])) <= 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"num_views": 0}, "num_views"), ({"label_noise": 1.5}, "label_noise"), ({"start_step": -1}, "start_step"),
    ({"global_batch_size": 0}, "global_batch_size"), ({"max_examples": 0}, "max_examples"),
])
def test_train_dataset_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        toy_train(**kwargs)
