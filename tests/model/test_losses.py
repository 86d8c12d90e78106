"""The contrastive loss: official golden values, an independent reference, gradients, distribution."""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from supcon.model.losses import contrastive, contrastive_loss, cross_entropy_loss
from supcon.train import distribute

LOG3 = math.log(3.0)

MODE_FEATURES = np.array(
    [
        [[0.01, 0.02, 0.14], [0.38, 0.61, 0.50]],
        [[0.86, 0.97, 0.33], [0.26, 0.68, 0.45]],
        [[0.32, 0.64, 0.28], [0.45, 0.74, 0.73]],
    ],
    np.float32,
)

# (summation, denominator, cap, labels, expected) from the official losses_test.py (seed.md §1.4.5).
GOLDEN_MODES = [
    ("outside", "all", -1, (0, 0, 1), [1.6755852, 1.7973773, 1.58471]),
    ("outside", "one_positive", -1, (0, 0, 1), [1.1782627, 1.3435497, 1.58471]),
    ("outside", "only_negatives", -1, (0, 0, 1), [0.79652834, 1.0154991, 1.3529458]),
    ("outside", "all", 4, (0, 0, 1), [1.6755852, 1.7973773, 1.58471]),
    ("outside", "all", 2, (0, 0, 0), [1.1385298, 1.1824025, 1.1557417]),
    ("outside", "all", 0, (0, 0, 1), [1.3769293, 1.0785717, 1.58471]),
    ("inside", "all", -1, (0, 0, 1), [1.6356678, 1.7135872, 1.58471]),
    ("inside", "one_positive", -1, (0, 0, 1), [1.1571673, 1.2941568, 1.58471]),
    ("inside", "only_negatives", -1, (0, 0, 1), [0.756611, 0.93170905, 1.3529458]),
    ("inside", "all", 2, (0, 0, 0), [1.0986123] * 3),
    ("inside", "all", 0, (0, 0, 1), [1.3769293, 1.0785717, 1.58471]),
]


def tetrahedron():
    """Two samples x two views of unit vectors whose pairwise dot products are all -1/3."""
    s2, s6 = math.sqrt(2.0), math.sqrt(6.0)
    return np.array(
        [[[0, 0, 1], [0, 2 * s2 / 3, -1 / 3]], [[s6 / 3, -s2 / 3, -1 / 3], [-s6 / 3, -s2 / 3, -1 / 3]]],
        np.float32,
    )


@pytest.mark.parametrize("summation,denominator,cap,labels,expected", GOLDEN_MODES)
def test_official_mode_table(summation, denominator, cap, labels, expected):
    loss = contrastive_loss(
        MODE_FEATURES,
        labels=np.array(labels),
        temperature=1.0,
        summation_location=summation,
        denominator_mode=denominator,
        positives_cap=cap,
    )
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_one_hot_labels_match_int_labels():
    ids = np.array([0, 0, 1])
    one_hot = np.eye(2, dtype=np.float32)[ids]
    a = contrastive_loss(MODE_FEATURES, labels=ids, denominator_mode="one_positive")
    b = contrastive_loss(MODE_FEATURES, labels=one_hot, denominator_mode="one_positive")
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


@pytest.mark.parametrize(
    "temperature,scale,expected", [(1.0, True, LOG3), (0.1, True, 0.1 * LOG3), (0.1, False, LOG3)]
)
def test_tetrahedron_golden(temperature, scale, expected):
    loss = contrastive_loss(tetrahedron(), temperature=temperature, scale_by_temperature=scale)
    np.testing.assert_allclose(loss.numpy(), [expected, expected], rtol=1e-5)


def test_one_view_golden():
    features = np.array([[[0, 0, 1], [0, 1, 0]], [[1, 0, 0], [0, -1, 0]]], np.float32)
    one = contrastive_loss(features, contrast_mode="one_view")
    np.testing.assert_allclose(one.numpy(), [LOG3, LOG3], rtol=1e-5)
    every = contrastive_loss(features, contrast_mode="all_views")
    assert not np.allclose(every.numpy(), one.numpy())


def test_identical_views_golden():
    e1, e2, e3 = np.eye(3, dtype=np.float32)
    features = np.stack([np.stack([e, e]) for e in (e3, e2, e1)])  # [3, 2, 3]
    loss = contrastive_loss(features, labels=np.array([0, 0, 1]))
    high, low = (3 * math.log(math.e + 4) - 1) / 3, math.log(math.e + 4) - 1
    np.testing.assert_allclose(loss.numpy(), [high, high, low], rtol=1e-6)


def test_single_view_rows_without_positives_give_zero():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 1, 4)).astype(np.float32)
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    loss = contrastive_loss(z, labels=np.array([1, 1, 2])).numpy()
    p01, n02 = math.exp(z[0, 0] @ z[1, 0]), math.exp(z[0, 0] @ z[2, 0])
    p10, n12 = math.exp(z[1, 0] @ z[0, 0]), math.exp(z[1, 0] @ z[2, 0])
    expected = [-math.log(p01 / (p01 + n02)), -math.log(p10 / (p10 + n12)), 0.0]
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    inside = contrastive_loss(z, labels=np.array([1, 1, 2]), summation_location="inside").numpy()
    assert np.all(np.isfinite(inside)) and inside[2] == 0.0


# ---------------------------------------------------------------------------------------------------------
# An independent reference: one anchor and one contrast entry at a time, straight from the definitions.


def reference_loss(z, labels, tau, mode, summation, denominator, cap, scale, extra=None, extra_labels=None):
    """Loop implementation of the official semantics (seed.md §1.4) in float64."""
    z = np.asarray(z, np.float64)
    batch, views, _ = z.shape
    entries = [(b, v, z[b, v]) for v in range(views) for b in range(batch)]
    if extra is not None:
        entries += [(batch + k, 0, np.asarray(e, np.float64)) for k, e in enumerate(extra)]

    def label(s):
        if labels is None:
            return ("own", s) if s < batch else ("queue", s)
        return labels[s] if s < batch else extra_labels[s - batch]

    out = np.zeros(batch)
    anchor_views = 1 if mode == "one_view" else views
    for b in range(batch):
        per_view = []
        for v in range(anchor_views):
            same = [s for s in range(batch + (0 if extra is None else len(extra))) if label(s) == label(b)]
            others = [s for s in same if s != b]
            kept = set(others if cap < 0 else others[: cap // views]) | {b}
            pos, neg = [], []
            for s, w, vec in entries:
                if (s, w) == (b, v):
                    continue
                e = math.exp(z[b, v] @ vec / tau)
                if label(s) != label(b):
                    neg.append(e)
                elif s in kept:
                    pos.append(e)
            if not pos:
                per_view.append(0.0)
                continue
            sn, sp = sum(neg), sum(pos)
            den = {"all": [sn + sp] * len(pos), "one_positive": [p + sn for p in pos], "only_negatives": [sn] * len(pos)}[denominator]
            ratios = [p / d for p, d in zip(pos, den, strict=True)]
            if summation == "outside":
                val = -np.mean(np.log(ratios))
            else:
                val = -math.log(np.mean(ratios))
            per_view.append(val * (tau if scale else 1.0))
        out[b] = np.mean(per_view)
    return out


def random_case(rng, batch, views, dim=5, classes=3):
    z = rng.normal(size=(batch, views, dim))
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    return z.astype(np.float32), rng.permutation(np.arange(batch) % classes)  # every class present


@pytest.mark.parametrize("views", [2, 3, 4])
def test_matches_independent_reference_for_every_option(views):
    rng = np.random.default_rng(views)
    options = itertools.product(
        ["all_views", "one_view"], ["outside", "inside"], ["all", "one_positive", "only_negatives"],
        [-1, 0, views, 2 * views], [True, False], [True, False],
    )
    for mode, summation, denominator, cap, scale, use_labels in options:
        z, labels = random_case(rng, batch=6, views=views)
        tau = float(rng.choice([0.07, 0.1, 0.5, 1.0]))
        got = contrastive_loss(
            z, labels=labels if use_labels else None, temperature=tau, contrast_mode=mode,
            summation_location=summation, denominator_mode=denominator, positives_cap=cap,
            scale_by_temperature=scale,
        ).numpy()
        want = reference_loss(z, labels if use_labels else None, tau, mode, summation, denominator, cap, scale)
        np.testing.assert_allclose(got, want, rtol=2e-4, err_msg=f"{mode} {summation} {denominator} cap={cap}")


@pytest.mark.parametrize("use_labels", [True, False])
def test_extra_contrast_matches_reference(use_labels):
    rng = np.random.default_rng(7)
    z, labels = random_case(rng, batch=5, views=2)
    queue, queue_labels = random_case(rng, batch=7, views=1)
    queue = queue[:, 0]
    for summation, denominator, cap in [("outside", "all", -1), ("inside", "one_positive", -1), ("outside", "all", 2)]:
        got = contrastive_loss(
            z, labels=labels if use_labels else None, temperature=0.2, summation_location=summation,
            denominator_mode=denominator, positives_cap=cap, contrast_features=queue,
            contrast_labels=queue_labels if use_labels else None,
        ).numpy()
        want = reference_loss(
            z, labels if use_labels else None, 0.2, "all_views", summation, denominator, cap, True,
            extra=queue, extra_labels=queue_labels,
        )
        np.testing.assert_allclose(got, want, rtol=2e-4)


def test_extra_contrast_gets_no_gradient_and_changes_loss():
    rng = np.random.default_rng(3)
    z, labels = random_case(rng, batch=4, views=2)
    queue = tf.Variable(random_case(rng, batch=6, views=1)[0][:, 0])
    with tf.GradientTape(persistent=True) as tape:
        feats = tf.Variable(z)
        loss = tf.reduce_mean(contrastive_loss(feats, labels, contrast_features=queue, contrast_labels=labels[[0, 1, 2, 3, 0, 1]]))
    assert tape.gradient(loss, queue) is None
    assert tape.gradient(loss, feats) is not None
    without = tf.reduce_mean(contrastive_loss(z, labels))
    assert abs(float(loss) - float(without)) > 1e-4


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(11)
    z, labels = random_case(rng, batch=4, views=2, dim=3)
    z64 = tf.Variable(z.astype(np.float64))

    def f(x):
        return tf.reduce_mean(contrastive_loss(x, labels, temperature=0.5))

    with tf.GradientTape() as tape:
        value = f(z64)
    grad = tape.gradient(value, z64).numpy()
    eps, numeric = 1e-3, np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        bump = np.zeros_like(z)
        bump[idx] = eps
        numeric[idx] = (float(f(z + bump)) - float(f(z - bump))) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=2e-2, atol=2e-3)


# bfloat16 keeps 8 significant bits (7 stored + the implicit one): rounding a feature changes it by at most
# u = 2^-8 of itself. For unit rows x, y the dot product then moves by at most sum |x_i y_i| (2u + u^2) <= ~2u
# (Cauchy-Schwarz). The tau-scaled loss of an anchor, tau * (-s_p / tau + logsumexp(s / tau)), moves by at most
# |ds_p| + max |ds| (log-sum-exp is 1-Lipschitz in the max norm): 4u = 2^-6 in all, whatever tau.
BFLOAT16_INPUT_BOUND = 4 * 2.0**-8
# Once rounded, the features are exact float32 numbers: a float32 computation matches the float64 reference on
# them to float32 rounding of logits of size <= 1 / tau (~14 * 2^-24 per operation, scaled back by tau), far
# below 2e-5; a bfloat16 computation would round the logits themselves (~2^-8 * 14 * tau ~ 4e-3).
FLOAT32_COMPUTE_ATOL = 2e-5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bfloat16_features_are_computed_in_float32(seed):
    z, labels = random_case(np.random.default_rng(seed), batch=4, views=2)
    rounded = tf.cast(z, tf.bfloat16)
    loss = contrastive_loss(rounded, labels, temperature=0.07)
    assert loss.dtype == tf.float32
    args = (labels, 0.07, "all_views", "outside", "all", -1, True)
    exact = reference_loss(z, *args)  # float64 on the float32 features
    np.testing.assert_allclose(loss.numpy(), exact, rtol=0, atol=BFLOAT16_INPUT_BOUND)
    on_rounded = reference_loss(tf.cast(rounded, tf.float64).numpy(), *args)  # float64 on the bf16 values
    np.testing.assert_allclose(loss.numpy(), on_rounded, rtol=0, atol=FLOAT32_COMPUTE_ATOL)


def test_low_temperature_unnormalised_features_stay_finite():
    z = np.random.default_rng(2).normal(size=(8, 2, 16)).astype(np.float32) * 100.0
    loss = contrastive_loss(z, np.arange(8) % 3, temperature=0.01)
    assert np.all(np.isfinite(loss.numpy()))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"contrast_mode": "every"}, "contrast_mode"),
        ({"summation_location": "middle"}, "summation_location"),
        ({"denominator_mode": "some"}, "denominator_mode"),
        ({"positives_cap": 3}, "positives_cap"),
        ({"labels": np.zeros([2, 2, 2])}, "labels"),
    ],
)
def test_bad_options_raise_value_error_naming_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        contrastive_loss(MODE_FEATURES, **kwargs)


def test_bad_features_rank_raises():
    with pytest.raises(ValueError, match="features"):
        contrastive_loss(np.zeros([4, 3], np.float32))


def test_options_accept_upper_case_and_enum_like_members():
    class Member:
        name = "ONE_VIEW"

    a = contrastive_loss(MODE_FEATURES, contrast_mode=Member())
    b = contrastive_loss(MODE_FEATURES, contrast_mode="one_view")
    np.testing.assert_allclose(a.numpy(), b.numpy())


def test_gin_factory_simclr_ignores_labels():
    fn = contrastive(temperature=0.5, use_labels=False)
    z, labels = random_case(np.random.default_rng(5), batch=4, views=2)
    np.testing.assert_allclose(fn(z, labels).numpy(), contrastive_loss(z, None, temperature=0.5).numpy())
    with pytest.raises(ValueError, match="denominator_mode"):
        contrastive(denominator_mode="bad")


def test_cross_entropy_with_label_smoothing():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]], np.float32)
    labels = np.array([0, 2])
    eps = 0.1
    target = np.eye(3)[labels] * (1 - eps) + eps / 3
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(
        cross_entropy_loss(logits, labels, eps).numpy(), -(target * logp).sum(1), rtol=1e-6
    )
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy_loss(logits, labels, 1.0)


# ---------------------------------------------------------------------------------------------------------
# Distribution: two replicas on two logical CPUs equal one device on the concatenated batch.


def _replicated_loss_and_grads(strategy, x, labels, kernel):
    with strategy.scope():
        w = tf.Variable(kernel)
    global_batch = x.shape[0]

    def step(xb, yb):
        with tf.GradientTape() as tape:
            z = tf.math.l2_normalize(tf.einsum("bvi,io->bvo", xb, w), axis=-1)
            per_sample = contrastive_loss(z, yb, temperature=0.1)
            loss = tf.reduce_sum(per_sample) / global_batch
        return loss, tape.gradient(loss, w), per_sample

    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(global_batch)
    xb, yb = next(iter(strategy.experimental_distribute_dataset(dataset)))
    loss, grad, per_sample = strategy.run(tf.function(step), args=(xb, yb))
    loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
    grad = strategy.reduce(tf.distribute.ReduceOp.SUM, grad, axis=None)
    return loss.numpy(), grad.numpy(), strategy.experimental_local_results(per_sample)


def test_two_replicas_equal_one_device(tf_two_cpus):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 6)).astype(np.float32)
    labels = rng.integers(0, 3, size=8)
    kernel = rng.normal(size=(6, 4)).astype(np.float32)
    one_loss, one_grad, _ = _replicated_loss_and_grads(distribute.make_strategy("one_device"), x, labels, kernel)
    two = distribute.make_strategy("mirrored", num_devices=2)
    assert two.num_replicas_in_sync == 2
    two_loss, two_grad, per_replica = _replicated_loss_and_grads(two, x, labels, kernel)
    np.testing.assert_allclose(two_loss, one_loss, rtol=1e-5)
    np.testing.assert_allclose(two_grad, one_grad, rtol=1e-5, atol=1e-7)
    # Each replica's loss uses the global batch as contrast: it differs from the loss of its half alone.
    z = tf.math.l2_normalize(tf.einsum("bvi,io->bvo", x, kernel), axis=-1)
    half_alone = contrastive_loss(z[:4], labels[:4], temperature=0.1).numpy()
    assert not np.allclose(per_replica[0].numpy(), half_alone, rtol=1e-3)
    np.testing.assert_allclose(
        np.concatenate([r.numpy() for r in per_replica]),
        contrastive_loss(z, labels, temperature=0.1).numpy(),
        rtol=1e-5,
    )


def test_global_batch_check():
    assert distribute.check_global_batch(8, 2) == 4
    with pytest.raises(ValueError, match="batch_size=7 is not divisible by the 2 replicas"):
        distribute.check_global_batch(7, 2)
    with pytest.raises(ValueError, match="topology"):
        distribute.make_strategy("cluster")


def test_extra_contrast_of_varying_size_inside_tf_function():
    rng = np.random.default_rng(9)
    z, labels = random_case(rng, batch=4, views=2)
    queue, queue_labels = random_case(rng, batch=6, views=1)

    @tf.function(input_signature=[tf.TensorSpec([None, 5]), tf.TensorSpec([None], tf.int64)])
    def loss(extra, extra_labels):
        return contrastive_loss(z, labels, positives_cap=2, contrast_features=extra, contrast_labels=extra_labels)

    for k in (0, 3, 6):
        want = reference_loss(z, labels, 1.0, "all_views", "outside", "all", 2, True, queue[:k, 0], queue_labels[:k])
        np.testing.assert_allclose(loss(queue[:k, 0], queue_labels[:k]).numpy(), want, rtol=2e-4)
