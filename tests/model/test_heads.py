"""Tests for supcon.model.heads: projection/classification heads and ContrastiveModel outputs and gradients."""

import numpy as np
import pytest

from supcon.model.heads import ContrastiveModel, classification_head, projection_head


def _encoder(features=16):
    """A tiny encoder `[B, 4, 4, 2] -> [B, features]` (fast, with a bias so embeddings are not unit norm)."""
    import keras

    return keras.Sequential(
        [keras.layers.Flatten(), keras.layers.Dense(features, bias_initializer="ones")],
        name="encoder",
    )


def _dense_layers(head):
    import keras

    return [lay for lay in head.layers if isinstance(lay, keras.layers.Dense)]


def test_projection_head_shapes_bias_and_unit_norm(tf_two_cpus):
    tf = tf_two_cpus
    head = projection_head((32, 24, 8))
    out = head(tf.random.normal([5, 16]), training=True)
    assert tuple(out.shape) == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(out.numpy(), axis=1), 1.0, rtol=1e-5)
    dense = _dense_layers(head)
    assert [d.units for d in dense] == [32, 24, 8]
    assert [d.use_bias for d in dense] == [True, True, False]  # the last layer has no bias
    assert dense[-1].bias is None


def test_projection_head_with_batch_norm(tf_two_cpus):
    import keras

    tf = tf_two_cpus
    head = projection_head(
        (32, 32, 8), use_batch_norm=True, use_batch_norm_beta=False, sync_batch_norm=True
    )
    head(tf.random.normal([4, 16]), training=True)
    assert [d.use_bias for d in _dense_layers(head)] == [
        False,
        False,
        False,
    ]  # BN replaces hidden biases
    bns = [lay for lay in head.layers if isinstance(lay, keras.layers.BatchNormalization)]
    assert len(bns) == 2 and all(not bn.center and bn.synchronized for bn in bns)
    assert all("batch_norm" in bn.name for bn in bns)


def test_projection_head_linear_and_unnormalized(tf_two_cpus):
    tf = tf_two_cpus
    head = projection_head(
        128, normalize_output=False
    )  # official SupCon ImageNet: a single linear layer
    x = tf.random.normal([3, 64])
    out = head(x).numpy()
    kernel = _dense_layers(head)[0].kernel.numpy()
    np.testing.assert_allclose(out, x.numpy() @ kernel, rtol=1e-4, atol=1e-6)
    assert not np.allclose(np.linalg.norm(out, axis=1), 1.0)
    assert 0.008 < kernel.std() < 0.012  # N(0, 0.01²) initialiser


@pytest.mark.parametrize("sizes", [(), (0, 4), (3.5,), "128"])
def test_projection_head_rejects_bad_sizes(sizes):
    with pytest.raises(ValueError, match="layer_sizes"):
        projection_head(sizes)


def test_classification_head_init(tf_two_cpus):
    tf = tf_two_cpus
    x = tf.random.normal([4, 16])
    zero = classification_head(10, zero_init=True)
    assert np.all(zero(x).numpy() == 0.0)
    default = classification_head(10)
    logits = default(x).numpy()
    assert logits.shape == (4, 10) and np.abs(logits).sum() > 0
    limit = np.sqrt(6.0 / (16 + 10))  # glorot-uniform bound
    assert np.abs(default.kernel.numpy()).max() <= limit
    with pytest.raises(ValueError, match="num_classes"):
        classification_head(0)


def _model(**kwargs):
    return ContrastiveModel(_encoder(), projection_head((32, 8)), classification_head(3), **kwargs)


def test_contrastive_model_outputs(tf_two_cpus):
    tf = tf_two_cpus
    model = _model()
    images = tf.random.normal([6, 4, 4, 2])
    out = model(images, training=True)
    assert set(out) == {"embedding", "normalized_embedding", "projection", "logits"}
    assert tuple(out["embedding"].shape) == (6, 16) and tuple(out["logits"].shape) == (6, 3)
    assert tuple(out["projection"].shape) == (6, 8)
    np.testing.assert_allclose(
        np.linalg.norm(out["normalized_embedding"].numpy(), axis=1), 1.0, rtol=1e-5
    )
    np.testing.assert_allclose(np.linalg.norm(out["projection"].numpy(), axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(np.linalg.norm(out["embedding"].numpy(), axis=1), 1.0)
    # both heads read the normalised embedding
    np.testing.assert_allclose(
        out["logits"].numpy(),
        model.classification_head(out["normalized_embedding"]).numpy(),
        rtol=1e-5,
    )
    assert model.encoder is not None and model.projection_head is not None


def test_unnormalized_embedding_feeds_heads(tf_two_cpus):
    tf = tf_two_cpus
    model = _model(normalize_embedding=False)
    out = model(tf.random.normal([2, 4, 4, 2]))
    np.testing.assert_allclose(
        out["projection"].numpy(),
        model.projection_head(out["embedding"]).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def _encoder_gradients(tf, model, output):
    images = tf.random.normal([4, 4, 4, 2])
    model(images)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(images, training=True)[output]))
    return tape.gradient(loss, model.encoder.trainable_variables)


def test_stop_gradient_before_classifier_by_default(tf_two_cpus):
    tf = tf_two_cpus
    assert all(g is None for g in _encoder_gradients(tf, _model(), "logits"))
    grads = _encoder_gradients(tf, _model(stop_gradient_before_classification_head=False), "logits")
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_stop_gradient_before_projection_head(tf_two_cpus):
    tf = tf_two_cpus
    grads = _encoder_gradients(tf, _model(normalize_embedding=False), "projection")
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    stopped = _model(stop_gradient_before_projection_head=True)
    assert all(g is None for g in _encoder_gradients(tf, stopped, "projection"))


def test_cross_entropy_model_without_projection_head(tf_two_cpus):
    tf = tf_two_cpus
    model = ContrastiveModel(
        _encoder(), None, classification_head(3), stop_gradient_before_classification_head=False
    )
    out = model(tf.random.normal([2, 4, 4, 2]))
    assert "projection" not in out and tuple(out["logits"].shape) == (2, 3)
    assert model.projection_head is None


def test_build_from_shape_with_resnet_in_tf_function(tf_two_cpus):
    from supcon.model.resnet import resnet

    tf = tf_two_cpus
    model = ContrastiveModel(
        resnet(18, 0.0625, 3, 1, False), projection_head((16, 8)), classification_head(5)
    )
    model.build((None, None, None, 1))
    assert len(model.trainable_variables) > 0

    @tf.function
    def forward(images):
        return model(images, training=True)

    out = forward(tf.random.normal([2, 8, 8, 1]))
    assert tuple(out["projection"].shape) == (2, 8) and tuple(out["logits"].shape) == (2, 5)


def test_float32_unit_norm_outputs_under_mixed_precision(tf_two_cpus):
    import keras

    tf = tf_two_cpus
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _model()
        out = model(tf.random.normal([3, 4, 4, 2]), training=True)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert all(v.dtype == tf.float32 for v in out.values())
    np.testing.assert_allclose(np.linalg.norm(out["projection"].numpy(), axis=1), 1.0, rtol=1e-5)
