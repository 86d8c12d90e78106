"""Evaluation: the final classifier on the whole test split, its calibration (ECE), k-NN on encoder embeddings,
SavedModel export.

Predictions run under the training strategy (`strategy.run`) and are gathered from every replica with
`strategy.gather`, so the metrics cover every test example — the last partial batch included — on one
device, several GPUs or several workers alike. The metric arithmetic itself is numpy on the host.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import tensorflow as tf

from supcon.robust import metrics as robustness
from supcon.robust.metrics import ECE_BINS, softmax, topk_accuracy  # noqa: F401  (re-exported)

KNN_TEMPERATURE = 0.07  # similarity weighting of the k-NN vote: weight = exp(cosine / 0.07)


class Predictor:
    """Runs a model in inference mode over finite datasets of {'image', 'label'} batches, under its strategy.

    One traced step serves every dataset of the same batch shapes (the corrupted test sets reuse it).

    Args:
      strategy: the model's strategy.
      model: the `heads.ContrastiveModel`.
      outputs: which of 'embedding' [N, F] (L2-normalised encoder output), 'logits' [N, classes] and
        'label' [N] to return.
    """

    OUTPUTS = ("embedding", "logits", "label")

    def __init__(self, strategy: tf.distribute.Strategy, model: tf.keras.Model, outputs=OUTPUTS):
        if not outputs or set(outputs) - set(self.OUTPUTS):
            raise ValueError(f"outputs must be some of {self.OUTPUTS}; got {outputs!r}")
        self.strategy, self.outputs = strategy, tuple(outputs)

        @tf.function(reduce_retracing=True)
        def step(batch):
            out = model(batch["image"], training=False)
            found = {"embedding": out["normalized_embedding"], "logits": out["logits"], "label": batch["label"]}
            return tuple(found[k] for k in self.outputs)

        self._step = step

    def __call__(self, dataset: tf.data.Dataset) -> dict:
        """{output: numpy array over every example of `dataset`}."""
        options = tf.data.Options()
        # Workers split every batch (DATA); file sharding fails on single-file datasets and would skip examples.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        parts = {k: [] for k in self.outputs}
        for batch in self.strategy.experimental_distribute_dataset(dataset.with_options(options)):
            results = self.strategy.run(self._step, args=(batch,))
            for key, value in zip(parts, results, strict=True):
                parts[key].append(self.strategy.gather(value, axis=0).numpy())
        return {k: np.concatenate(v) if v else np.zeros([0]) for k, v in parts.items()}


def predict(strategy: tf.distribute.Strategy, model: tf.keras.Model, dataset: tf.data.Dataset) -> dict:
    """Runs the model in inference mode over a finite dataset of {'image', 'label'} batches.

    Returns:
      numpy arrays: 'embedding' [N, F] (L2-normalised encoder output), 'logits' [N, classes], 'label' [N].
    """
    return Predictor(strategy, model)(dataset)


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray) -> float:
    """ECE (ECE_BINS equal-width bins) of the softmax of `logits`; a fraction in [0, 1]."""
    return robustness.expected_calibration_error(softmax(logits), None, labels, num_bins=ECE_BINS)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy (nats) of integer labels."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def knn_accuracy(
    train_embeddings: np.ndarray,
    train_labels: np.ndarray,
    test_embeddings: np.ndarray,
    test_labels: np.ndarray,
    k: int = 200,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> float:
    """Top-1 of a cosine k-NN classifier with similarity-weighted votes (weight exp(cos / 0.07)).

    Embeddings are expected L2-normalised, so the dot product is the cosine similarity.
    """
    if k < 1:
        raise ValueError(f"knn_k must be >= 1; got {k}")
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max()) + 1)
    k = min(k, len(train_labels))
    correct = 0
    for start in range(0, len(test_labels), chunk):
        sims = test_embeddings[start : start + chunk] @ train_embeddings.T  # [c, N]
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # [c, k]
        weights = np.exp(np.take_along_axis(sims, nearest, axis=1) / KNN_TEMPERATURE)
        votes = np.zeros([len(nearest), num_classes])
        np.add.at(votes, (np.arange(len(nearest))[:, None], train_labels[nearest]), weights)
        correct += int(np.sum(votes.argmax(axis=1) == test_labels[start : start + chunk]))
    return correct / len(test_labels)


def classifier_metrics(pred: dict) -> dict:
    """top-1 / top-5 / loss / ECE of the classification head on gathered predictions."""
    return {
        "eval/top1": topk_accuracy(pred["logits"], pred["label"], 1),
        "eval/top5": topk_accuracy(pred["logits"], pred["label"], 5),
        "eval/loss": cross_entropy(pred["logits"], pred["label"]),
        "eval/ece": expected_calibration_error(pred["logits"], pred["label"]),
        "eval/examples": int(len(pred["label"])),
    }


class _Serving(tf.Module):
    """Serving wrapper: uint8 images [N, H, W, C] -> embeddings and logits."""

    def __init__(self, model, preprocess, normalize, image_shape):
        super().__init__(name="serving")
        self.model = model
        self._preprocess, self._normalize = preprocess, normalize
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec([None, *image_shape], tf.uint8, name="images")]
        )

    def _serve(self, images):
        def one(image):
            return self._normalize(self._preprocess(tf.cast(image, tf.float32) / 255.0))

        x = tf.map_fn(one, images, fn_output_signature=tf.float32)
        out = self.model(x, training=False)
        return {
            "embeddings": out["normalized_embedding"],
            "unnormalized_embeddings": out["embedding"],
            "logits": out["logits"],
        }


def export(model, preprocess, normalize, image_shape, path: str) -> None:
    """Saves a SavedModel whose default signature maps uint8 images to embeddings and logits.

    Written to a temporary folder and renamed, so `path` is either absent or complete.
    """
    tmp = f"{path}.tmp-{os.getpid()}-{int(time.time())}"
    module = _Serving(model, preprocess, normalize, tuple(image_shape))
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)
