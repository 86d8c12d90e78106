"""The blockwise contrastive loss equals the direct path (values and gradients), and is chosen automatically."""

import numpy as np
import pytest
import tensorflow as tf

from supcon.model import losses, losses_blockwise
from supcon.model.losses import contrastive_loss
from supcon.model.losses_blockwise import block_rows, blockwise_contrastive_loss
from supcon.train import distribute

RTOL = 1e-5  # the bar: same values and gradients to 1e-5 relative


def unit_features(rng, batch, views, dim=5):
    z = rng.normal(size=(batch, views, dim))
    return (z / np.linalg.norm(z, axis=-1, keepdims=True)).astype(np.float32)


def labels_of(rng, kind, batch, classes=3):
    ids = rng.permutation(np.arange(batch) % classes)  # every class present
    return {"none": None, "int": ids, "onehot": np.eye(classes, dtype=np.float32)[ids]}[kind]


def loss_and_grad(fn, z, weights, **kwargs):
    """Per-sample loss and the gradient of a weighted sum of it (weights exercise every row's upstream)."""
    z = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        per_sample = fn(z, **kwargs)
        total = tf.reduce_sum(per_sample * weights)
    return per_sample.numpy(), tape.gradient(total, z).numpy()


def assert_same(direct, blockwise, context=""):
    (value_a, grad_a), (value_b, grad_b) = direct, blockwise
    # Relative to the size of the batch's values: a loss near 0 is a difference of log-sum-exps of size
    # ~log(M) + 1/tau, so float32 rounding (either path's) is absolute at that scale, not at the result's.
    scale = np.max(np.abs(value_a))
    np.testing.assert_allclose(value_b, value_a, rtol=RTOL, atol=RTOL * scale, err_msg=f"loss {context}")
    scale = np.max(np.abs(grad_a))
    np.testing.assert_allclose(grad_b, grad_a, rtol=RTOL, atol=RTOL * scale, err_msg=f"grad {context}")


CONTRAST_MODES, SUMMATIONS, DENOMINATORS = ("all_views", "one_view"), ("outside", "inside"), ("all", "one_positive", "only_negatives")


@pytest.mark.parametrize("contrast_mode", CONTRAST_MODES)
@pytest.mark.parametrize("summation", SUMMATIONS)
@pytest.mark.parametrize("denominator", DENOMINATORS)
def test_every_option_matches_direct_path(contrast_mode, summation, denominator):
    # A fixed seed per combination (100 + its position, 100..111), the same in every process, so a failure replays.
    seed = 100 + (CONTRAST_MODES.index(contrast_mode) * 2 + SUMMATIONS.index(summation)) * 3 + DENOMINATORS.index(denominator)
    rng = np.random.default_rng(seed)
    # Every cap, scale and label kind, with 2 and 3 views (caps are multiples of the views).
    options = [(2, -1, True, "int"), (2, 0, False, "none"), (2, 2, True, "onehot"), (2, 4, False, "int"),
               (3, -1, False, "onehot"), (3, 3, True, "int"), (3, 0, True, "none")]
    for views, cap, scale, kind in options:
        z, labels = unit_features(rng, 6, views), labels_of(rng, kind, 6)
        weights = tf.constant(rng.uniform(0.5, 1.5, size=6).astype(np.float32))
        kwargs = dict(
            labels=labels, temperature=float(rng.choice([0.07, 0.5])), contrast_mode=contrast_mode,
            summation_location=summation, denominator_mode=denominator, positives_cap=cap,
            scale_by_temperature=scale,
        )
        direct = loss_and_grad(contrastive_loss, z, weights, **kwargs)
        blockwise = loss_and_grad(
            blockwise_contrastive_loss, z, weights, block_size=5, jit_compile=False, **kwargs
        )  # 5 rows: blocks straddle views and the last one is padded
        assert_same(direct, blockwise, f"views={views} cap={cap} scale={scale} labels={kind}")


@pytest.mark.parametrize(
    "summation,denominator,cap,kind",
    [("outside", "all", -1, "int"), ("inside", "one_positive", 2, "onehot"), ("outside", "only_negatives", -1, "none")],
)
def test_xla_compiled_blocks_match_direct_path(summation, denominator, cap, kind):
    rng = np.random.default_rng(1)
    z, labels = unit_features(rng, 8, 2), labels_of(rng, kind, 8)
    weights = tf.ones([8])
    kwargs = dict(labels=labels, temperature=0.1, summation_location=summation, denominator_mode=denominator,
                  positives_cap=cap)
    direct = loss_and_grad(contrastive_loss, z, weights, **kwargs)
    compiled = loss_and_grad(blockwise_contrastive_loss, z, weights, block_size=3, jit_compile=True, **kwargs)
    assert_same(direct, compiled)


@pytest.mark.parametrize("kind", ["none", "int", "onehot"])
def test_queue_contrast_matches_direct_path(kind):
    rng = np.random.default_rng(2)
    z, labels = unit_features(rng, 5, 2), labels_of(rng, kind, 5)
    queue = unit_features(rng, 7, 1)[:, 0]
    queue_labels = None if kind == "none" else labels_of(rng, kind, 7)
    weights = tf.constant(rng.uniform(0.5, 1.5, size=5).astype(np.float32))
    for summation, denominator, cap in [("outside", "all", -1), ("inside", "one_positive", -1), ("outside", "all", 2)]:
        kwargs = dict(labels=labels, temperature=0.2, summation_location=summation, denominator_mode=denominator,
                      positives_cap=cap, contrast_features=queue, contrast_labels=queue_labels)
        direct = loss_and_grad(contrastive_loss, z, weights, **kwargs)
        blockwise = loss_and_grad(
            blockwise_contrastive_loss, z, weights, block_size=4, jit_compile=False, **kwargs
        )
        assert_same(direct, blockwise, f"{summation} {denominator} cap={cap}")


def test_queue_of_varying_size_inside_tf_function():
    rng = np.random.default_rng(3)
    z, labels = unit_features(rng, 4, 2), labels_of(rng, "int", 4)
    queue, queue_labels = unit_features(rng, 6, 1)[:, 0], labels_of(rng, "int", 6)
    signature = [tf.TensorSpec([None, 5]), tf.TensorSpec([None], tf.int64)]

    def build(fn):
        return tf.function(lambda q, ql: fn(z, labels, positives_cap=2, contrast_features=q, contrast_labels=ql),
                           input_signature=signature)

    direct, blockwise = build(contrastive_loss), build(lambda *a, **k: blockwise_contrastive_loss(*a, block_size=3, **k))
    for k in (0, 3, 6):
        np.testing.assert_allclose(
            blockwise(queue[:k], queue_labels[:k]).numpy(), direct(queue[:k], queue_labels[:k]).numpy(), rtol=RTOL
        )


def _replicated(strategy, loss_fn, x, labels, kernel):
    """Global-batch mean loss and kernel gradient of a tiny linear projection under `strategy`."""
    with strategy.scope():
        w = tf.Variable(kernel)
    global_batch = x.shape[0]

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            z = tf.math.l2_normalize(tf.einsum("bvi,io->bvo", xb, w), axis=-1)
            loss = tf.reduce_sum(loss_fn(z, yb)) / global_batch
        return loss, tape.gradient(loss, w)

    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(global_batch)
    xb, yb = next(iter(strategy.experimental_distribute_dataset(dataset)))
    loss, grad = strategy.run(step, args=(xb, yb))
    reduce = lambda t: strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None).numpy()  # noqa: E731
    return reduce(loss), reduce(grad)


@pytest.mark.parametrize("jit_compile", [False, None])
def test_two_replicas_equal_one_device_direct_path(tf_two_cpus, jit_compile):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 2, 6)).astype(np.float32)
    labels = rng.integers(0, 3, size=8)
    kernel = rng.normal(size=(6, 4)).astype(np.float32)

    def blockwise(z, y):
        return blockwise_contrastive_loss(z, y, temperature=0.1, positives_cap=2, block_size=3, jit_compile=jit_compile)

    one_loss, one_grad = _replicated(
        distribute.make_strategy("one_device"), lambda z, y: contrastive_loss(z, y, temperature=0.1, positives_cap=2),
        x, labels, kernel,
    )
    two = distribute.make_strategy("mirrored", num_devices=2)
    assert two.num_replicas_in_sync == 2
    two_loss, two_grad = _replicated(two, blockwise, x, labels, kernel)
    np.testing.assert_allclose(two_loss, one_loss, rtol=RTOL)
    np.testing.assert_allclose(two_grad, one_grad, rtol=RTOL, atol=RTOL * np.max(np.abs(one_grad)))


def _largest_static_tensor(graph, seen=None) -> int:
    """Entries of the largest statically shaped tensor in `graph` and the functions it calls (loop bodies)."""
    seen = set() if seen is None else seen
    largest = 0
    for op in graph.get_operations():
        for t in op.outputs:
            if t.shape.rank and t.shape.is_fully_defined():
                largest = max(largest, t.shape.num_elements())
    for name, function in graph._functions.items():
        if name not in seen and getattr(function, "graph", None) is not None:
            seen.add(name)
            largest = max(largest, _largest_static_tensor(function.graph, seen))
    return largest


def test_no_tensor_of_full_anchor_by_contrast_size():
    """The traced forward and backward graphs (loop bodies included) hold one [rows, M] block at most."""
    rng = np.random.default_rng(5)
    z = tf.constant(unit_features(rng, 32, 2, dim=8))  # A = M = 64
    labels = tf.constant(labels_of(rng, "int", 32))

    def largest(loss_fn):
        @tf.function
        def loss_and_grad_fn(z):
            with tf.GradientTape() as tape:
                tape.watch(z)
                loss = tf.reduce_mean(loss_fn(z, labels))
            return loss, tape.gradient(loss, z)

        return _largest_static_tensor(loss_and_grad_fn.get_concrete_function(z).graph)

    assert largest(lambda z, y: blockwise_contrastive_loss(z, y, block_size=8, jit_compile=False)) == 8 * 64
    assert largest(contrastive_loss) == 64 * 64  # the check does see the direct path's [A, M] matrices


def test_automatic_dispatch_above_threshold(monkeypatch):
    rng = np.random.default_rng(6)
    z, labels = unit_features(rng, 6, 2), labels_of(rng, "int", 6)
    calls = []
    original = losses_blockwise.loss_from_inputs
    monkeypatch.setattr(losses_blockwise, "loss_from_inputs", lambda *a, **k: calls.append(1) or original(*a, **k))
    small = contrastive_loss(z, labels, temperature=0.1).numpy()
    assert not calls  # 12 x 12 entries: far below the threshold
    monkeypatch.setattr(losses, "BLOCKWISE_MIN_ENTRIES", 100)
    large = contrastive_loss(z, labels, temperature=0.1).numpy()
    assert calls == [1]
    np.testing.assert_allclose(large, small, rtol=RTOL)


def test_bfloat16_features_give_float32_loss():
    z = tf.cast(unit_features(np.random.default_rng(7), 4, 2), tf.bfloat16)
    loss = blockwise_contrastive_loss(z, np.array([0, 1, 0, 1]), temperature=0.07, block_size=3)
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), contrastive_loss(z, np.array([0, 1, 0, 1]), temperature=0.07).numpy(), rtol=RTOL)


def test_block_rows_and_bad_block_size():
    assert block_rows(16384, 16384, 1 << 21) == 128
    assert block_rows(9, 1, 4) == 3  # at most 4 rows: 3 blocks of 3, not 4 + 4 + 1
    assert block_rows(5, 1000, 1 << 21) == 5
    with pytest.raises(ValueError, match="block_size"):
        blockwise_contrastive_loss(np.zeros([2, 2, 3], np.float32), block_size=0)
    with pytest.raises(ValueError, match="num_anchors"):
        block_rows(0, 4)
    with pytest.raises(ValueError, match="denominator_mode"):
        blockwise_contrastive_loss(np.zeros([2, 2, 3], np.float32), denominator_mode="some")


def test_no_import_cycle_between_the_two_paths():
    """losses imports losses_blockwise; both take their input checks from loss_inputs, and the blockwise path
    never imports losses (a cycle would make the import order matter)."""
    import subprocess
    import sys

    code = (
        "import sys, supcon.model.losses_blockwise; assert 'supcon.model.losses' not in sys.modules, 'losses imported'; "
        "import supcon.model.losses as l, supcon.model.loss_inputs as i; assert l.prepare_inputs is i.prepare_inputs"
    )
    root = __file__.rsplit("/tests/", 1)[0]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True)
