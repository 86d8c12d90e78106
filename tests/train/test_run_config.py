"""The trainer's own argument checks (supcon.train.config.build_config) and the RunConfig it builds, without training.

Every check raises a one-line ValueError naming the `train_and_evaluate.<argument>` (or the stage) at fault, both
when the builder is called directly and through the gin root in mode 'validate' (what the runner does for every
grid point). The expected messages are written out here, not taken from the code.
"""

import dataclasses
import inspect
import re

import gin
import pytest

from supcon import main as supcon_main
from supcon.robust import evaluation as robust_eval
from supcon.train import config as run_config
from supcon.train import root, stages


def _optimizer(learning_rate):
    return None  # never called: no check builds an optimizer


def _stage(name: str, **options) -> stages.Stage:
    return stages.stage(name=name, epochs=options.pop("epochs", 1), optimizer=_optimizer, base_learning_rate=0.1,
                        **options)


def _encoder():
    return None


def _projection_head():
    return None


def _loss(*args, **kwargs):
    return None


def _arguments(**overrides) -> dict:
    """A valid set of the root's arguments (its defaults, a SupCon two-stage run), with `overrides`."""
    found = {
        name: p.default for name, p in inspect.signature(root.train_and_evaluate).parameters.items()
        if name not in ("workdir", "mode")
    }
    found.update(
        stages=[_stage("pretrain", contrastive_weight=1.0),
                _stage("linear", cross_entropy_weight=1.0, train_encoder=False)],
        encoder=_encoder, projection_head=_projection_head, contrastive_loss=_loss, batch_size=128,
    )
    found.update(overrides)
    return found


def _validate(**arguments):
    return root.train_and_evaluate(workdir="", mode="validate", **arguments)


CALLERS = {"builder": lambda args: run_config.build_config(**args), "root": lambda args: _validate(**args)}

# (what is wrong, the arguments changed, the error's text)
BAD = [
    ("mixed_precision", {"mixed_precision": "yes"},
     "train_and_evaluate.mixed_precision must be True, False or 'auto'; got 'yes'"),
    ("no stage", {"stages": []}, "train_and_evaluate.stages must name at least one stage"),
    ("a stage reference not called", {"stages": [_stage]},
     "train_and_evaluate.stages must be a list of @<scope>/stage() references"),
    ("one stage, not a list", {"stages": _stage("pretrain", cross_entropy_weight=1.0)},
     "train_and_evaluate.stages must be a list of @<scope>/stage() references"),
    ("two stages of one name", {"stages": [_stage("a", cross_entropy_weight=1.0)] * 2},
     "stage names must be unique; got ['a', 'a']"),
    ("root batch_size", {"batch_size": 0}, "train_and_evaluate.batch_size must be >= 1; got 0"),
    ("no loss for a contrastive stage", {"contrastive_loss": None},
     "stage pretrain has contrastive_weight > 0 but train_and_evaluate.contrastive_loss is not bound "
     "(e.g. @contrastive())"),
    ("no projection head for a contrastive stage", {"projection_head": None},
     "stage pretrain is contrastive but train_and_evaluate.projection_head is None"),
    ("topology", {"topology": "gpu"},
     "train_and_evaluate.topology must be one of one_device, mirrored, multi_worker, tpu"),
    ("batch over replicas", {"topology": "mirrored", "num_devices": 3},
     "pretrain batch_size=128 is not divisible by the 3 replicas of the strategy; use a multiple of 3"),
    ("memory_size", {"memory_size": -1}, "train_and_evaluate.memory_size must be >= 0; got -1"),
    ("steps_per_execution 0", {"steps_per_execution": 0},
     "train_and_evaluate.steps_per_execution must be an int >= 1; got 0"),
    ("steps_per_execution float", {"steps_per_execution": 2.0},
     "train_and_evaluate.steps_per_execution must be an int >= 1; got 2.0"),
    ("steps_per_execution bool", {"steps_per_execution": True},
     "train_and_evaluate.steps_per_execution must be an int >= 1; got True"),
    ("jit_compile", {"jit_compile": 1}, "train_and_evaluate.jit_compile must be True or False; got 1"),
    ("batched_augmentation", {"batched_augmentation": "yes"},
     "train_and_evaluate.batched_augmentation must be True or False; got 'yes'"),
    ("init_checkpoint", {"init_checkpoint": " "},
     "train_and_evaluate.init_checkpoint must be None or a run directory / checkpoint path; got ' '"),
    ("init_parts", {"init_parts": ("decoder",)},
     "train_and_evaluate.init_parts must be a non-empty tuple of ('encoder', 'projection_head', "
     "'classification_head'); got ('decoder',)"),
    ("init_parts twice", {"init_parts": ("encoder", "encoder")},
     "train_and_evaluate.init_parts names a part twice: ('encoder', 'encoder')"),
    ("corruptions", {"corruptions": ["fog", "smoke"]}, "train_and_evaluate.corruptions: unknown corruption 'smoke'"),
    ("corruption_severities", {"corruptions": "all", "corruption_severities": (0, 1)},
     "train_and_evaluate.corruption_severities (the severities of train_and_evaluate.corruptions) must be a "
     "non-empty list of ints in 1..5; got (0, 1)"),
    ("corruption_source", {"corruption_source": "imagenet-c"},
     "train_and_evaluate.corruption_source (where train_and_evaluate.corruptions come from) must be one of "
     "'auto', 'synthetic', 'tfds'; got 'imagenet-c'"),
    ("tfds corruptions of a dataset without them", {"corruptions": "all", "corruption_source": "tfds"},
     "train_and_evaluate.corruption_source = 'tfds' needs dataset cifar10 or imagenet2012"),
    ("corruption_cache_dir", {"corruption_cache_dir": ""},
     "train_and_evaluate.corruption_cache_dir must be 'auto', None or a folder; got ''"),
]  # fmt: skip


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("changed", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_each_check_raises_its_one_line_error(caller, changed, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        CALLERS[caller](_arguments(**changed))
    assert "\n" not in str(raised.value).split("In call to configurable")[0].strip()  # one line (gin appends its call)


def test_the_valid_arguments_pass_every_check():
    for caller in CALLERS.values():
        assert isinstance(caller(_arguments()), run_config.RunConfig)


def test_the_config_fields_are_the_roots_arguments_but_workdir_and_mode():
    parameters = list(inspect.signature(root.train_and_evaluate).parameters)
    assert parameters[:2] == ["workdir", "mode"]
    assert [f.name for f in dataclasses.fields(run_config.RunConfig)] == parameters[2:]


def test_validate_returns_the_arguments_as_given_in_a_frozen_config():
    arguments = _arguments(seed=7, knn_k=3, corruptions=["fog"], corruption_severities=(2, 5))
    config = _validate(**arguments)
    for name in ("stages", "encoder", "projection_head", "contrastive_loss", "seed", "knn_k", "batch_size"):
        assert getattr(config, name) is arguments[name], name
    assert config.mixed_precision == "auto"  # as bound: describe shows it so; the run resolves it by the hardware
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]
    request = config.corruption_request()
    assert request == robust_eval.Request(corruptions=["fog"], corruption_severities=(2, 5),
                                          corruption_source="auto", corruption_cache_dir="auto",
                                          dataset="digits", data_dir=None)


def test_registered_defaults_become_their_gin_configured_versions():
    """classification_head, normalize and eval_preprocess left at their Python defaults follow the gin bindings."""
    config = _validate(**_arguments())
    defaults = inspect.signature(root.train_and_evaluate).parameters
    for name in run_config.CONFIGURED_DEFAULTS:
        assert getattr(config, name) is not defaults[name].default, name
        assert getattr(config, name) is gin.get_configurable(defaults[name].default), name


def test_bad_arguments_fail_before_the_run_directory_is_made(tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=re.escape("train_and_evaluate.memory_size must be >= 0; got -1")):
        root.train_and_evaluate(workdir=str(workdir), mode="train", **_arguments(memory_size=-1))
    with pytest.raises(ValueError, match=re.escape(
            "train_and_evaluate.mode must be one of train, eval, train_then_eval, continuous_eval; got 'fit'")):
        root.train_and_evaluate(workdir=str(workdir), mode="fit", **_arguments())
    assert not workdir.exists()


# --------------------------------------------------------------------------------------------------------
# Through gin, as the runner validates a point: supcon.main.parse, then the root in mode 'validate'


@pytest.fixture
def parsed():
    """Parses bindings with supcon.main.parse (strict, as a run does); clears gin afterwards."""
    supcon_main._register()

    def parse(gin_files, gin_params=()):
        supcon_main.parse([str(f) for f in gin_files], list(gin_params))

    yield parse
    gin.clear_config()


QUICKSTART = supcon_main.RECIPES_DIR + "/quickstart.gin"


def test_a_recipe_validates_to_its_bindings(parsed):
    parsed([QUICKSTART], ["METHOD = 'supcon'"])
    with gin.config_scope("supcon"):
        config = root.validate_config()
    # recipes/quickstart.gin: BATCH_SIZE = 128, knn_k = 20, log_every_steps = 25; base/digits.gin: 'digits'.
    assert (config.batch_size, config.knn_k, config.log_every_steps, config.dataset) == (128, 20, 25, "digits")
    assert [s.name for s in config.stages] == ["pretrain", "linear"]  # protocols/supcon.gin
    assert config.memory_size == 0 and config.mixed_precision == "auto"


def test_a_bad_binding_is_named_through_gin(parsed):
    parsed([QUICKSTART], ["METHOD = 'supcon'", "train_and_evaluate.steps_per_execution = 0"])
    with pytest.raises(ValueError, match=re.escape("train_and_evaluate.steps_per_execution must be an int >= 1; got 0")):
        supcon_main.call_root("", validate_only=True)


HOLES = (  # protocols/two_stage.gin's holes, all filled but LINEAR_LR and pretrain/stage.optimizer
    "include 'base/digits.gin'\ninclude 'base/resnet18_tiny.gin'\ninclude 'protocols/supcon.gin'\n"
    "BATCH_SIZE = 32\nTEMPERATURE = 0.1\nPRETRAIN_EPOCHS = 1\nPRETRAIN_LR = 1.0\nPRETRAIN_WEIGHT_DECAY = 0.0\n"
    "LINEAR_EPOCHS = 1\nlinear/stage.optimizer = @linear/sgd\n"
)


def test_an_unfilled_required_binding_fails_the_parse_naming_it(parsed, tmp_path):
    """gin's own finalize hook (gin-config 0.5) stops the parse at the first hole, naming its binding."""
    recipe = tmp_path / "holes.gin"
    recipe.write_text(HOLES + "LINEAR_LR = 1.0\n")
    with pytest.raises(ValueError, match=re.escape(
            "pretrain/stage.optimizer set to `%gin.REQUIRED` but not subsequently overridden.")):
        parsed([recipe])
    recipe.write_text(HOLES + "pretrain/stage.optimizer = @pretrain/sgd\n")  # a macro left a hole: named
    with pytest.raises(ValueError, match=re.escape("LINEAR_LR/macro.value set to `%gin.REQUIRED`")):
        parsed([recipe])


def test_unfilled_required_lists_every_binding_that_reads_a_hole():
    """supcon.main.parse's own check after gin's: every binding whose value is %gin.REQUIRED or a macro chain
    ending in it, scope/selector.name, sorted (not the macro's name)."""
    gin.clear_config()
    try:
        gin.parse_config("\n".join([  # no finalization: gin's hook does not run
            "LR = %gin.REQUIRED", "BASE = %LR", "EPOCHS = 3",
            "linear/stage.base_learning_rate = %BASE",  # a chain of two macros ending in the hole
            "pretrain/stage.optimizer = %gin.REQUIRED", "stage.epochs = %EPOCHS",  # the hole itself; filled
        ]))
        assert supcon_main.unfilled_required() == ["linear/stage.base_learning_rate", "pretrain/stage.optimizer"]
    finally:
        gin.clear_config()
