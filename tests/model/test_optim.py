"""Tests for supcon.model.optim: schedules, TF1-semantics optimizers, LARS (also under MirroredStrategy), weight decay."""

import math

import numpy as np
import pytest

from supcon.model import optim


def _lr(schedule, step):
    return float(schedule(step))


# ---------------------------------------------------------------- schedules


def test_peak_scales_with_global_batch():
    schedule = optim.learning_rate_schedule(
        0.1, 1024, steps_per_epoch=10, epochs=5, decay="constant"
    )
    assert _lr(schedule, 0) == pytest.approx(0.4)  # 0.1 x 1024 / 256
    assert _lr(schedule, 49) == pytest.approx(0.4)
    assert _lr(schedule, 51) == 0.0  # after the stage
    half = optim.learning_rate_schedule(0.1, 512, 10, 5, decay="constant", base_batch_size=128)
    assert _lr(half, 3) == pytest.approx(0.4)


def test_linear_warmup_then_cosine():
    # peak 1.0; 2 warmup epochs = 20 steps; cosine over the remaining 80 steps
    schedule = optim.learning_rate_schedule(
        1.0, 256, steps_per_epoch=10, epochs=10, warmup_epochs=2
    )
    assert _lr(schedule, 0) == 0.0
    assert _lr(schedule, 5) == pytest.approx(0.25)
    assert _lr(schedule, 10) == pytest.approx(0.5)
    assert _lr(schedule, 20) == pytest.approx(1.0)
    assert _lr(schedule, 60) == pytest.approx(0.5)  # cosine midpoint
    assert _lr(schedule, 40) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)), rel=1e-6)
    assert _lr(schedule, 100) == pytest.approx(0.0, abs=1e-7)
    assert _lr(schedule, 101) == 0.0 and _lr(schedule, 10_000) == 0.0


def test_exponential_staircase():
    # decay every 2.4 epochs = 24 steps, counted from the end of a 1-epoch warmup
    schedule = optim.learning_rate_schedule(
        0.256,
        256,
        10,
        20,
        warmup_epochs=1,
        decay="exponential",
        decay_rate=0.5,
        epochs_per_decay=2.4,
    )
    assert _lr(schedule, 10) == pytest.approx(0.256)
    assert _lr(schedule, 10 + 23) == pytest.approx(0.256)
    assert _lr(schedule, 10 + 24) == pytest.approx(0.128)
    assert _lr(schedule, 10 + 48) == pytest.approx(0.064)
    assert _lr(schedule, 200) == pytest.approx(
        0.256 * 0.5**7
    )  # 190 // 24 = 7, still inside the stage
    assert _lr(schedule, 201) == 0.0


def test_piecewise_constant_boundaries_from_warmup_end():
    schedule = optim.learning_rate_schedule(
        1.0, 256, 10, 10, warmup_epochs=1, decay="piecewise", decay_rate=0.1, boundary_epochs=(3, 6)
    )
    assert _lr(schedule, 10 + 30) == pytest.approx(
        1.0
    )  # a boundary step still uses the previous value
    assert _lr(schedule, 10 + 31) == pytest.approx(0.1)
    assert _lr(schedule, 10 + 61) == pytest.approx(0.01)
    assert _lr(schedule, 100) == pytest.approx(0.01)
    assert _lr(schedule, 101) == 0.0


def test_fractional_steps_per_epoch_truncates_like_official():
    # 2.5 steps/epoch: warmup int(2.5) = 2 steps; decay int(3 x 2.5) = 7 steps
    schedule = optim.learning_rate_schedule(1.0, 256, 2.5, 4, warmup_epochs=1)
    assert _lr(schedule, 1) == pytest.approx(0.5)
    assert _lr(schedule, 2) == pytest.approx(1.0)
    assert _lr(schedule, 2 + 7) == pytest.approx(0.0, abs=1e-7)
    assert _lr(schedule, 10) == 0.0


def test_schedule_in_tf_function_with_int64_step(tf_two_cpus):
    tf = tf_two_cpus
    schedule = optim.learning_rate_schedule(1.0, 256, 10, 10, warmup_epochs=2)
    lr = tf.function(schedule)(tf.constant(10, tf.int64))
    assert lr.dtype == tf.float32 and float(lr) == pytest.approx(0.5)
    assert schedule.get_config()["warmup_steps"] == 20


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"decay": "linear"}, "decay"),
        ({"warmup_epochs": 20}, "warmup_epochs"),
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"decay": "exponential", "decay_rate": 0.0}, "decay_rate"),
        ({"boundary_epochs": (5, 2)}, "boundary_epochs"),
    ],
)
def test_schedule_validation(kwargs, word):
    args = {
        "base_learning_rate": 0.1,
        "global_batch_size": 256,
        "steps_per_epoch": 10,
        "epochs": 10,
        **kwargs,
    }
    with pytest.raises(ValueError, match=word) as info:
        optim.learning_rate_schedule(**args)
    if word == "decay":
        assert all(name in str(info.value) for name in optim.DECAY_TYPES)


# ---------------------------------------------------------------- optimizers

W0 = np.array([1.0, -2.0, 3.0], np.float32)
G1 = np.array([0.1, -0.2, 0.3], np.float32)
G2 = np.array([-0.4, 0.5, 0.6], np.float32)


def _two_steps(tf, optimizer, grads=(G1, G2), w0=W0):
    var = tf.Variable(w0)
    optimizer.build([var])
    values = []
    for g in grads:
        optimizer.apply_gradients([(tf.constant(g), var)])
        values.append(var.numpy().copy())
    return values


def _step_lr():
    """LR 0.1 at step 0 and 0.05 at step 1 (distinguishes TF1 momentum from Keras' SGD)."""
    return optim.learning_rate_schedule(
        0.1, 256, 1, 3, decay="piecewise", decay_rate=0.5, boundary_epochs=(0,)
    )


def test_sgd_is_tf1_momentum(tf_two_cpus):
    w1, w2 = _two_steps(tf_two_cpus, optim.sgd(learning_rate=_step_lr()))
    accum = G1
    np.testing.assert_allclose(w1, W0 - 0.1 * accum, rtol=1e-6)
    accum = 0.9 * accum + G2
    np.testing.assert_allclose(w2, w1 - 0.05 * accum, rtol=1e-6)


def test_nesterov_is_tf1_nesterov(tf_two_cpus):
    w1, w2 = _two_steps(tf_two_cpus, optim.nesterov(learning_rate=0.1))
    accum = G1
    np.testing.assert_allclose(w1, W0 - 0.1 * (G1 + 0.9 * accum), rtol=1e-6)
    accum = 0.9 * accum + G2
    np.testing.assert_allclose(w2, w1 - 0.1 * (G2 + 0.9 * accum), rtol=1e-6)


def test_rmsprop_is_tf1_rmsprop(tf_two_cpus):
    w1, w2 = _two_steps(tf_two_cpus, optim.rmsprop(learning_rate=0.1, epsilon=1.0))
    ms, mom = np.ones(3), np.zeros(3)  # TF1 starts the mean square at 1
    ms = 0.9 * ms + 0.1 * G1**2
    mom = 0.9 * mom + 0.1 * G1 / np.sqrt(ms + 1.0)
    np.testing.assert_allclose(w1, W0 - mom, rtol=1e-6)
    ms = 0.9 * ms + 0.1 * G2**2
    mom = 0.9 * mom + 0.1 * G2 / np.sqrt(ms + 1.0)
    np.testing.assert_allclose(w2, w1 - mom, rtol=1e-6)


def test_adam_first_step(tf_two_cpus):
    (w1,) = _two_steps(tf_two_cpus, optim.adam(learning_rate=0.01), grads=(G1,))
    m, v = 0.1 * G1, 0.001 * G1**2
    alpha = 0.01 * np.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_allclose(w1, W0 - alpha * m / (np.sqrt(v) + 1e-8), rtol=1e-5)


def _lars_reference(w, g, v, lr, wd, eta=0.001, momentum=0.9, excluded=False):
    if not excluded:
        g = g + wd * w
        w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
        lr = lr * (eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0)
    v = momentum * v + lr * g
    return w - v, v


def test_lars_trust_ratio_and_weight_decay(tf_two_cpus):
    opt = optim.lars(learning_rate=2.0)
    opt.weight_decay = 0.1  # set after construction, as the trainer does
    w1, w2 = _two_steps(tf_two_cpus, opt)
    ref1, v = _lars_reference(W0, G1, 0.0, 2.0, 0.1)
    np.testing.assert_allclose(w1, ref1, rtol=1e-5)
    ref2, _ = _lars_reference(ref1, G2, v, 2.0, 0.1)
    np.testing.assert_allclose(w2, ref2, rtol=1e-5)


def test_lars_exclusion_and_zero_norm(tf_two_cpus):
    tf = tf_two_cpus
    opt = optim.LARS(0.5, weight_decay=0.1)
    kept, excluded, zero = tf.Variable(W0), tf.Variable(W0), tf.Variable(np.zeros(3, np.float32))
    opt.exclude_from_weight_decay = lambda var: var is excluded
    opt.build([kept, excluded, zero])
    opt.apply_gradients(
        [(tf.constant(G1), kept), (tf.constant(G1), excluded), (tf.constant(G1), zero)]
    )
    np.testing.assert_allclose(kept.numpy(), _lars_reference(W0, G1, 0.0, 0.5, 0.1)[0], rtol=1e-5)
    np.testing.assert_allclose(excluded.numpy(), W0 - 0.5 * G1, rtol=1e-6)  # plain momentum step
    np.testing.assert_allclose(zero.numpy(), -0.5 * G1, rtol=1e-6)  # ||w|| = 0 -> trust ratio 1


def _lars_on_toy_model(tf, model):
    """LARS with weight decay and the official exclusions (BN variables) on a built model."""
    opt = optim.lars(learning_rate=1.0)
    opt.weight_decay = 1e-2
    opt.exclude_from_weight_decay = optim.weight_decay_exclusion(optim.batch_norm_variables(model))
    opt.build(model.trainable_variables)
    return opt


def test_lars_under_mirrored_strategy_matches_one_device(tf_two_cpus):
    tf = tf_two_cpus
    strategy = tf.distribute.MirroredStrategy(
        ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    with strategy.scope():
        model = _model_with_bn(tf)
        opt = _lars_on_toy_model(tf, model)
    single_model = _model_with_bn(tf)
    single_model.set_weights(model.get_weights())
    single = _lars_on_toy_model(tf, single_model)
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    rng = np.random.default_rng(0)
    steps = [
        [[rng.normal(size=s).astype(np.float32) for s in shapes] for _ in range(2)]
        for _ in range(2)
    ]

    @tf.function
    def step(grads):
        strategy.run(
            lambda g: opt.apply_gradients(zip(g, model.trainable_variables, strict=True)),
            args=(grads,),
        )

    for replica_grads in steps:  # [replica][variable]
        step(
            strategy.experimental_distribute_values_from_function(
                lambda ctx, rg=replica_grads: [
                    tf.constant(g) for g in rg[ctx.replica_id_in_sync_group]
                ]
            )
        )
        global_grads = [tf.constant(a + b) for a, b in zip(*replica_grads, strict=True)]
        single.apply_gradients(zip(global_grads, single_model.trainable_variables, strict=True))
    for var, ref in zip(model.trainable_variables, single_model.trainable_variables, strict=True):
        for replica_value in strategy.experimental_local_results(var.value):
            np.testing.assert_allclose(replica_value.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(model.layers[0].kernel.numpy(), 1.0)
    # BN gamma (variable 2) is excluded: plain momentum on the global gradient, no decay, no trust ratio
    g1, g2 = (rg[0][2] + rg[1][2] for rg in steps)
    np.testing.assert_allclose(model.layers[1].gamma.numpy(), 1.0 - g1 - (0.9 * g1 + g2), rtol=1e-5)


# ---------------------------------------------------------------- weight decay


def _model_with_bn(tf):
    import keras

    model = keras.Sequential(
        [
            keras.layers.Dense(4, kernel_initializer="ones", bias_initializer="ones", name="dense"),
            keras.layers.BatchNormalization(name="batch_normalization"),
            keras.layers.Dense(2, name="head"),
        ],
        name="toy",
    )
    model(tf.zeros([1, 3]))
    return model


def test_weight_decay_loss_value_and_exclusions(tf_two_cpus):
    tf = tf_two_cpus
    model = _model_with_bn(tf)
    dense, head = model.layers[0], model.layers[2]
    head_sq = float(np.sum(head.kernel.numpy() ** 2))
    # dense kernel 3x4 ones + bias 4 ones -> 16; BN gamma (ones) never counts
    loss = optim.weight_decay_loss(model.trainable_variables, 1e-2)
    assert float(loss) == pytest.approx(1e-2 * (16 + head_sq) / 2, rel=1e-5)
    no_bias = optim.weight_decay_loss(model.trainable_variables, 1e-2, include_bias=False)
    assert float(no_bias) == pytest.approx(1e-2 * (12 + head_sq) / 2, rel=1e-5)
    only_dense = optim.weight_decay_loss(model.trainable_variables, 1.0, excluded=head.weights)
    assert float(only_dense) == pytest.approx(8.0)
    assert float(optim.weight_decay_loss(model.trainable_variables, 0.0)) == 0.0
    assert dense.kernel in optim.decayed_variables(model.trainable_variables)


def test_batch_norm_variables_match_name_rule(tf_two_cpus):
    from supcon.model.heads import ContrastiveModel, classification_head, projection_head
    from supcon.model.resnet import resnet

    model = ContrastiveModel(
        resnet(18, 0.0625, 3, 1, False),
        projection_head((8, 4), use_batch_norm=True),
        classification_head(3),
    )
    model.build((None, 8, 8, 3))
    by_type = {id(v) for v in optim.batch_norm_variables(model)}
    by_name = {id(v) for v in model.variables if optim.is_batch_norm_variable(v)}
    assert by_type == by_name
    assert len(by_type) == 4 * (
        1 + 16 + 3 + 1
    )  # gamma, beta, mean, variance per BN (encoder + head)
    decayed = optim.decayed_variables(model.trainable_variables)
    assert decayed and all(id(v) not in by_type for v in decayed)
    exclude = optim.weight_decay_exclusion(include_bias=False)
    assert exclude(model.classification_head.bias) and not exclude(model.classification_head.kernel)


def test_keras_default_batch_norm_names_recognised(tf_two_cpus):
    tf = tf_two_cpus
    model = _model_with_bn(tf)
    flags = [optim.is_batch_norm_variable(v) for v in model.variables]
    assert flags == [False, False, True, True, True, True, False, False]


def test_lars_excludes_batch_norm_by_default(tf_two_cpus):
    tf = tf_two_cpus
    model = _model_with_bn(tf)
    opt = optim.lars(learning_rate=1.0)
    opt.weight_decay = 0.5
    opt.build(model.trainable_variables)
    grads = [tf.ones_like(v) for v in model.trainable_variables]
    opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    np.testing.assert_allclose(
        model.layers[1].gamma.numpy(), 0.0, atol=1e-6
    )  # 1 - 1.0 x 1: no decay/trust
    assert np.all(model.layers[0].kernel.numpy() > 0.99)  # decayed + trust-ratio step is tiny


def test_gin_names_resolve(tf_two_cpus):
    """Each `@name` of a recipe resolves to gin's configurable wrapper of the intended module function."""
    import gin

    from supcon.model import heads, optim, resnet

    @gin.configurable("optim_test_holder")
    def holder(factories=gin.REQUIRED):
        return factories

    intended = {  # written out by hand: the recipes' names and the functions they must call
        "resnet": resnet.resnet,
        "projection_head": heads.projection_head,
        "classification_head": heads.classification_head,
        "learning_rate_schedule": optim.learning_rate_schedule,
        "sgd": optim.sgd,
        "nesterov": optim.nesterov,
        "rmsprop": optim.rmsprop,
        "adam": optim.adam,
        "lars": optim.lars,
    }
    gin.clear_config()
    try:
        references = ", ".join(f"@{name}" for name in intended)
        gin.parse_config([f"optim_test_holder.factories = [{references}]", "sgd.momentum = 0.5"])
        factories = dict(zip(intended, holder(), strict=True))
        for name, function in intended.items():
            assert factories[name].__wrapped__ is function, name  # gin's wrapper of exactly this function
        sgd = factories["sgd"](learning_rate=0.1)
        assert isinstance(sgd, optim.Momentum) and not sgd.nesterov and sgd.momentum == 0.5  # the binding applies
        assert optim.sgd(learning_rate=0.1).momentum == 0.9  # the plain function keeps its default
        assert isinstance(factories["lars"](learning_rate=0.1), optim.LARS)
    finally:
        gin.clear_config()
