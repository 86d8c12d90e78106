"""supcon.train.stages: each input check of `stage()` and `plan()`, and how epochs become steps.

The rule (plan's docstring): each stage lasts max(1, round(epochs * examples / batch)) steps, its batch being its own
batch_size or the root's; the stages follow one another on the global step axis. The expected step counts below are
worked out by hand from that rule.
"""

import math
import re

import gin
import pytest

from supcon.train import stages


def _optimizer(learning_rate):
    return None


def _stage(name="pretrain", **options):
    options = {"epochs": 1, "optimizer": _optimizer, "base_learning_rate": 0.1, "cross_entropy_weight": 1.0,
               **options}
    return stages.stage(name=name, **options)


# --------------------------------------------------------------------------------------------------------
# stage(): one line per bad argument, named <scope>/stage.<arg>


@pytest.mark.parametrize(("options", "message"), [
    ({"epochs": 0}, "pretrain/stage.epochs must be a positive number; got 0"),
    ({"epochs": -2}, "pretrain/stage.epochs must be a positive number; got -2"),
    ({"epochs": math.inf}, "pretrain/stage.epochs must be a positive number; got inf"),
    ({"epochs": math.nan}, "pretrain/stage.epochs must be a positive number; got nan"),
    ({"decay": "linear"},
     "pretrain/stage.decay must be one of cosine, exponential, piecewise, constant; got 'linear'"),
    ({"encoder_batch_norm": "sync"},
     "pretrain/stage.encoder_batch_norm must be one of update, batch_stats, frozen; got 'sync'"),
    ({"cross_entropy_weight": 0.0},
     "pretrain/stage needs contrastive_weight or cross_entropy_weight > 0 (and neither negative)"),
    ({"contrastive_weight": -1.0},
     "pretrain/stage needs contrastive_weight or cross_entropy_weight > 0 (and neither negative)"),
    ({"num_views": 0}, "pretrain/stage.num_views must be >= 1; got 0"),
    ({"batch_size": 0}, "pretrain/stage.batch_size must be >= 1; got 0"),
])  # fmt: skip
def test_stage_rejects_each_bad_argument(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _stage(**options)


def test_a_stage_is_named_after_its_gin_scope():
    with gin.config_scope("linear"):
        assert stages.stage(epochs=1, optimizer=_optimizer, base_learning_rate=0.1, cross_entropy_weight=1.0).name \
            == "linear"
        with pytest.raises(ValueError, match=re.escape("linear/stage.num_views must be >= 1; got 0")):
            stages.stage(epochs=1, optimizer=_optimizer, base_learning_rate=0.1, cross_entropy_weight=1.0,
                         num_views=0)
    assert stages.stage(epochs=1, optimizer=_optimizer, base_learning_rate=0.1, cross_entropy_weight=1.0).name \
        == "stage"  # outside any scope


def test_stage_keeps_the_values_as_floats_and_tuples():
    s = _stage(epochs=3, base_learning_rate=1, boundary_epochs=[1, 2], warmup_epochs=0)
    assert (s.epochs, s.base_learning_rate, s.warmup_epochs) == (3.0, 1.0, 0.0)
    assert all(isinstance(v, float) for v in (s.epochs, s.base_learning_rate, s.warmup_epochs))
    assert s.boundary_epochs == (1, 2)


# --------------------------------------------------------------------------------------------------------
# plan()


def test_plan_rejects_no_stage_duplicate_names_and_a_bad_root_batch():
    with pytest.raises(ValueError, match=re.escape("train_and_evaluate.stages must name at least one stage")):
        stages.plan([], 1000, 128)
    with pytest.raises(ValueError, match=re.escape("stage names must be unique; got ['a', 'b', 'a']")):
        stages.plan([_stage("a"), _stage("b"), _stage("a")], 1000, 128)
    with pytest.raises(ValueError, match=re.escape("train_and_evaluate.batch_size must be >= 1; got 0")):
        stages.plan([_stage("a")], 1000, 0)
    assert stages.plan([_stage("a", batch_size=64)], 1000, 0)[0].batch_size == 64  # the root's is not used


def test_plan_turns_epochs_into_steps():
    """1,000 examples; pretrain 15 epochs at the root's batch 128, linear 5 epochs at its own batch 64."""
    pretrain, linear = stages.plan([_stage("pretrain", epochs=15), _stage("linear", epochs=5, batch_size=64)],
                                   1000, 128)
    # 15 * 1000 / 128 = 117.1875 -> 117 steps; 5 * 1000 / 64 = 78.125 -> 78 steps, after the first stage.
    assert (pretrain.batch_size, pretrain.steps_per_epoch, pretrain.start, pretrain.end) == (128, 7.8125, 0, 117)
    assert (linear.batch_size, linear.steps_per_epoch, linear.start, linear.end) == (64, 15.625, 117, 195)
    assert (pretrain.index, linear.index) == (0, 1) and pretrain.stage.name == "pretrain"


@pytest.mark.parametrize(("epochs", "examples", "batch", "steps"), [
    (1, 1797, 128, 14),  # 14.04 -> 14: the digits training set, one epoch
    (2.5, 1000, 256, 10),  # 9.765625 -> 10: to the nearest step, here up
    (0.01, 1000, 128, 1),  # 0.078 -> 0, but a stage lasts at least one step
    (0.5, 10, 2, 2),  # 2.5 exactly -> 2: Python's round, half to even
    (1.5, 10, 2, 8),  # 7.5 exactly -> 8: half to even
    (10, 50000, 1024, 488),  # 488.28 -> 488: CIFAR-10's training set
])  # fmt: skip
def test_stage_steps_are_rounded_epochs_times_steps_per_epoch(epochs, examples, batch, steps):
    (planned,) = stages.plan([_stage(epochs=epochs)], examples, batch)
    assert (planned.start, planned.end) == (0, steps)
