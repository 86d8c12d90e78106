"""`runner.py --dry_run --show_config` (supcon.experiment.show_config): every official script's recipe runs the script's
operative settings (shared/reference/seed.md §1.9), read from what the trainer would actually receive.

OFFICIAL below is the seed's table written out, one entry per script: peak LR = base x batch / 256; MOMENTUM is
our `sgd` (heavy-ball 0.9), NESTEROV `nesterov`, RMSPROP `rmsprop` (decay 0.9, momentum 0.9, epsilon 1.0 in stage
1 and 0.001 in stage 2), LARS `lars` (momentum 0.9, eta 0.001, decay applied inside). Where we depart from a
script the entry says why (the linear stage's one view: the official stage 2 feeds only view 1's logits to the
cross-entropy).
"""

import json
import os
import subprocess
import sys

import pytest

from supcon.experiment import grid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}

CONTRASTIVE_S1 = ["encoder", "projection_head"]  # CONTRASTIVE_FLAGS: stage-1 decay
CLASSIFIER = ["classification_head"]  # CONTRASTIVE_FLAGS: stage-2 decay
XENT = ["encoder", "classification_head"]  # XENT_FLAGS: stage-1 decay
OPTIMIZERS = {
    "lars": {"momentum": 0.9, "eta": 0.001},
    "sgd": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9},
    "rmsprop_s1": {"epsilon": 1.0, "decay": 0.9, "momentum": 0.9},
    "rmsprop_s2": {"epsilon": 0.001, "decay": 0.9, "momentum": 0.9},
}
IMAGENET = {  # IMAGENET_FLAGS + TPU_FLAGS
    "run.dataset": "imagenet2012", "run.topology": "tpu", "run.mixed_precision": True,
    "run.encoder.first_conv_kernel_size": 7, "run.encoder.first_conv_stride": 2,
    "run.encoder.use_initial_max_pool": True, "run.encoder.sync_batch_norm": True,
    "run.eval_preprocess.method": "resize_then_crop", "run.eval_preprocess.image_size": 224,
    "run.eval_preprocess.crop_padding": 32, "run.normalize.whitening_mean": None,
}  # fmt: skip
CIFAR10 = {  # CIFAR10_FLAGS (one device here; the official use_global_batch_norm=False on TPU is local BN too)
    "run.dataset": "cifar10", "run.encoder.first_conv_kernel_size": 3, "run.encoder.first_conv_stride": 1,
    "run.encoder.use_initial_max_pool": False, "run.encoder.sync_batch_norm": False,
    "run.eval_preprocess.method": "identity", "run.normalize.whitening_mean": [-0.0172, -0.0356, -0.107],
    "run.normalize.whitening_std": [0.4046, 0.3988, 0.402],
}  # fmt: skip
SIMCLR_CIFAR_AUG = {"image_size": 32, "crop_area_range": [0.2, 1.0], "torchvision_jitter": True, "blur_probability": 0.0}
SIMCLR_IMAGENET_AUG = {"image_size": 224, "crop_area_range": [0.08, 1.0], "torchvision_jitter": False,
                       "blur_probability": 0.5}  # fmt: skip


def stage(i, scope, optimizer, base, peak, epochs, warmup, decay, wd, decayed, augmenter, views, contrastive,
          cross_entropy, train_encoder, batch_norm, smoothing, aug_options=None, schedule=None, rmsprop=""):  # fmt: skip
    """The expected settings of stage i as {dotted path: value}."""
    p = f"stages.{i}."
    found = {
        p + "name": scope, p + "optimizer.name": f"@{scope}/{optimizer}", p + "base_learning_rate": base,
        p + "peak_learning_rate": peak, p + "epochs": epochs, p + "warmup_epochs": warmup,
        p + "schedule.decay": decay, p + "weight_decay.coefficient": wd, p + "weight_decay.parts": decayed,
        p + "weight_decay.excluded": ["batch norm"], p + "augmenter.name": f"@{scope}/{augmenter}",
        p + "num_views": views, p + "contrastive_weight": contrastive, p + "cross_entropy_weight": cross_entropy,
        p + "train_encoder": train_encoder, p + "encoder_batch_norm": batch_norm, p + "label_smoothing": smoothing,
    }  # fmt: skip
    for key, value in OPTIMIZERS[optimizer + rmsprop].items():
        found[p + "optimizer." + key] = value
    for key, value in (aug_options or {}).items():
        found[p + "augmenter." + key] = value
    for key, value in (schedule or {}).items():
        found[p + "schedule." + key] = value
    if optimizer == "lars":
        found[p + "weight_decay.applied"] = "inside LARS (grad += wd * w)"
    return found


EXPONENTIAL = {"decay_rate": 0.97, "epochs_per_decay": 0.5}
PIECEWISE = {"decay_rate": 0.2, "boundary_epochs": [60, 75, 90]}


def supcon_imagenet(depth, batch, augmenter, wd1, epochs1, base1, peak1, peak2, strength=None):
    aug = {"strength": strength} if strength else None
    return {
        **IMAGENET, "run.batch_size": batch, "run.encoder.depth": depth, "run.projection_head.layer_sizes": [128],
        "run.projection_head.use_batch_norm": False, "run.normalize_embedding": True,
        "run.stop_gradient_before_classification_head": True, "run.classification_head.zero_init": False,
        "run.contrastive_loss.temperature": 0.1, "run.contrastive_loss.use_labels": True,
        "run.contrastive_loss.scale_by_temperature": True, "run.contrastive_loss.summation_location": "outside",
        "run.contrastive_loss.denominator_mode": "all", "run.contrastive_loss.contrast_mode": "all_views",
        "run.contrastive_loss.positives_cap": -1, "run.memory_size": 0,
        **stage(0, "pretrain", "lars", base1, peak1, epochs1, 12.0, "cosine", wd1, CONTRASTIVE_S1, augmenter, 2,
                1.0, 0.0, True, "update", 0.05, aug),
        **stage(1, "linear", "rmsprop", 0.05, peak2, 90.0, 12.0, "exponential", 1e-6, CLASSIFIER, augmenter, 1,
                0.0, 1.0, False, "batch_stats", 0.05, aug, EXPONENTIAL, rmsprop="_s2"),
    }  # fmt: skip


def cross_entropy(dataset, depth, batch, augmenter, wd, epochs, peak, smoothing, aug_options=None):
    return {
        **(IMAGENET if dataset == "imagenet" else CIFAR10), "run.batch_size": batch, "run.encoder.depth": depth,
        "run.projection_head": None, "run.contrastive_loss": None, "run.normalize_embedding": False,
        "run.stop_gradient_before_classification_head": False, "stages.1.name": None,
        **stage(0, "supervised", "nesterov", 0.1, peak, epochs, 12.0, "cosine", wd, XENT, augmenter, 1, 0.0, 1.0,
                True, "update", smoothing, aug_options),
    }  # fmt: skip


OFFICIAL = {
    "supcon_imagenet_resnet50": supcon_imagenet(50, 6144, "autoaugment", 1e-3, 350.0, 0.4, 9.6, 1.2),
    "supcon_imagenet_resnet101": supcon_imagenet(101, 4096, "autoaugment", 1e-4, 350.0, 0.4, 6.4, 0.8),
    "supcon_imagenet_resnet200": supcon_imagenet(200, 4096, "stacked_randaugment", 1e-4, 700.0, 0.2, 3.2, 0.8,
                                                 strength=1.0),
    "supcon_cifar10_resnet50": {
        **CIFAR10, "run.batch_size": 4096, "run.encoder.depth": 50, "run.projection_head.layer_sizes": [2048, 128],
        "run.projection_head.use_batch_norm": False, "run.normalize_embedding": False,
        "run.contrastive_loss.temperature": 0.1, "run.contrastive_loss.use_labels": True,
        "run.contrastive_loss.scale_by_temperature": True, "run.classification_head.zero_init": False,
        **stage(0, "pretrain", "sgd", 0.5, 8.0, 1000.0, 10.0, "cosine", 1e-4, CONTRASTIVE_S1, "simclr_augment", 2,
                1.0, 0.0, True, "update", 0.0, {"strength": 0.5, **SIMCLR_CIFAR_AUG}),
        **stage(1, "linear", "sgd", 2.5, 40.0, 100.0, 0.0, "piecewise", 0.0, [], "simclr_augment", 1, 0.0, 1.0,
                False, "batch_stats", 0.0, {"strength": 0.5, **SIMCLR_CIFAR_AUG}, PIECEWISE),
    },  # fmt: skip
    "simclr_imagenet_resnet50": {
        **IMAGENET, "run.batch_size": 6144, "run.encoder.depth": 50,
        "run.projection_head.layer_sizes": [2048, 2048, 128], "run.projection_head.use_batch_norm": True,
        "run.normalize_embedding": False, "run.classification_head.zero_init": True,
        "run.contrastive_loss.temperature": 0.1, "run.contrastive_loss.use_labels": False,
        "run.contrastive_loss.scale_by_temperature": False,
        **stage(0, "pretrain", "lars", 0.3, 7.2, 100.0, 12.0, "cosine", 1e-4, CONTRASTIVE_S1, "simclr_augment", 2,
                1.0, 0.0, True, "update", 0.05, {"strength": 1.0, **SIMCLR_IMAGENET_AUG}),
        **stage(1, "linear", "nesterov", 0.1, 2.4, 90.0, 12.0, "cosine", 1e-6, CLASSIFIER, "simclr_augment", 1,
                0.0, 1.0, False, "batch_stats", 0.05, {"strength": 1.0, **SIMCLR_IMAGENET_AUG}),
    },  # fmt: skip
    "simclr_cifar10_resnet50": {
        **CIFAR10, "run.batch_size": 1024, "run.encoder.depth": 50,
        "run.projection_head.layer_sizes": [2048, 2048, 128], "run.projection_head.use_batch_norm": True,
        "run.normalize_embedding": False, "run.classification_head.zero_init": True,
        "run.contrastive_loss.temperature": 0.5, "run.contrastive_loss.use_labels": False,
        "run.contrastive_loss.scale_by_temperature": False,
        **stage(0, "pretrain", "sgd", 0.5, 2.0, 400.0, 10.0, "cosine", 1e-4, CONTRASTIVE_S1, "simclr_augment", 2,
                1.0, 0.0, True, "update", 0.0, {"strength": 0.5, **SIMCLR_CIFAR_AUG}),
        **stage(1, "linear", "sgd", 0.25, 1.0, 90.0, 0.0, "cosine", 0.0, [], "simclr_augment", 1, 0.0, 1.0, False,
                "batch_stats", 0.0, {"strength": 0.5, **SIMCLR_CIFAR_AUG}),
    },  # fmt: skip
    "cross_entropy_imagenet_resnet50": cross_entropy("imagenet", 50, 6144, "autoaugment", 1e-4, 200.0, 2.4, 0.05),
    "cross_entropy_imagenet_resnet200": cross_entropy("imagenet", 200, 4096, "stacked_randaugment", 1e-4, 700.0,
                                                      1.6, 0.05, {"strength": 1.0}),
    "cross_entropy_cifar10_resnet50": cross_entropy("cifar10", 50, 1024, "simclr_augment", 5e-4, 1000.0, 0.4, 0.0,
                                                    {"strength": 0.5, **SIMCLR_CIFAR_AUG}),
    # The stored script restores nothing (ONLY_CLASSIFIER_FLAGS undefined, seed.md §1.10): here the encoder is
    # restored and frozen in inference mode (a warm start without batch_norm_in_train_mode), the classifier decayed.
    "train_classification_head_from_pretrained_encoder": {
        **IMAGENET, "run.batch_size": 6144, "run.encoder.depth": 50, "run.projection_head": None,
        "run.normalize_embedding": False, "run.classification_head.zero_init": True,
        "run.init_checkpoint": "runs/simclr_imagenet_resnet50", "run.init_parts": ["encoder"], "stages.1.name": None,
        **stage(0, "linear", "nesterov", 0.1, 2.4, 90.0, 12.0, "cosine", 1e-6, CLASSIFIER, "simclr_augment", 1,
                0.0, 1.0, False, "frozen", 0.05, {"strength": 1.0, **SIMCLR_IMAGENET_AUG}),
    },  # fmt: skip
}
# The CIFAR-10 script on CIFAR-100 (no official CIFAR-100 input): the same settings but the data.
OFFICIAL["supcon_cifar100_resnet50"] = {
    **{k: v for k, v in OFFICIAL["supcon_cifar10_resnet50"].items() if not k.startswith(("run.dataset", "run.normalize."))},
    "run.dataset": "cifar100", "run.normalize.whitening_mean": [0.0142, -0.0266, -0.1184],
}  # fmt: skip
# The paper-vs-script choices documented in the recipes' headers: the other reading, by a --gin_param or a point.
VARIANTS = {
    "r101_2020_lr": ("supcon_imagenet_resnet101", ["PRETRAIN_LR = 0.3"], {"stages.0.peak_learning_rate": 4.8}),
    "r101_paper_augmentation": (
        "supcon_imagenet_resnet101",
        ["pretrain/stage.augmenter = @pretrain/stacked_randaugment", "linear/stage.augmenter = @linear/stacked_randaugment"],
        {"stages.0.augmenter.name": "@pretrain/stacked_randaugment", "stages.1.augmenter.name": "@linear/stacked_randaugment"},
    ),
}


def get(settings, path):
    """settings['a']['b'][0]... for 'a.b.0'; None when a step is missing or None."""
    value = settings
    for part in path.split("."):
        if value is None:
            return None
        if isinstance(value, list):
            value = value[int(part)] if int(part) < len(value) else None
        else:
            value = value.get(part)
    return value


def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) <= 1e-9 * max(1.0, abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def describe(tmp_path, entries):
    """Runs `python -m supcon.main --describe` (as the runner does) on [(name, recipe, gin_params)]."""
    spec = []
    for name, stem, params in entries:
        recipe = os.path.join(ROOT, "recipes", f"{stem}.gin")
        (point,) = grid.expand(grid.load_recipe(recipe))
        bindings = tmp_path / f"{name}.gin"
        bindings.write_text(point.gin_text())
        spec.append({"name": name, "gin_files": [recipe, str(bindings)], "gin_params": params})
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-m", "supcon.main", "--describe", str(tmp_path / "spec.json")],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    results = {r["name"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert len(results) == len(spec), proc.stderr[-3000:]
    return results


@pytest.fixture(scope="module")
def described(built_once):
    """What `--describe` says of every official script's recipe and variant: one trainer process per session."""
    entries = [(stem, stem, []) for stem in OFFICIAL]
    entries += [(name, stem, params) for name, (stem, params, _) in VARIANTS.items()]

    def build(folder):
        (folder / "described.json").write_text(json.dumps(describe(folder, entries)))

    return json.loads((built_once("show_config", build) / "described.json").read_text())


@pytest.mark.parametrize("stem", sorted(OFFICIAL))
def test_script_recipe_runs_the_official_settings(described, stem):
    result = described[stem]
    assert result["error"] is None, result["error"]
    wrong = {
        path: (get(result["settings"], path), expected)
        for path, expected in OFFICIAL[stem].items()
        if not same(get(result["settings"], path), expected)
    }
    assert not wrong, wrong  # {setting: (ours, official)}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_the_other_reading_is_one_gin_param_away(described, name):
    result = described[name]
    assert result["error"] is None, result["error"]
    for path, expected in VARIANTS[name][2].items():
        assert same(get(result["settings"], path), expected), (path, get(result["settings"], path))


def test_runner_prints_what_each_point_runs(tmp_path):
    cmd = [sys.executable, "runner.py", "recipes/paper_table2.gin", "--dry_run", "--show_config",
           "--only", "DATASET=cifar10", "--runs_dir", str(tmp_path / "runs")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert out.count("stage pretrain:") == 2 and out.count("stage supervised:") == 1, out
    # SupCon: the official CIFAR script's linear stage (piecewise x0.2 at 60/75/90), peak = 2.5 x 4096 / 256
    assert "base 2.5 -> peak 40 (x4096/256); decay piecewise, decay_rate 0.2, boundary_epochs (60, 75, 90)" in out
    assert "base 0.25 -> peak 1 (x1024/256); decay cosine" in out  # SimCLR's linear stage
    assert "optimizer @pretrain/sgd(momentum=0.9) [Momentum]" in out
    assert not os.path.exists(tmp_path / "runs")  # a dry run writes nothing


def test_show_config_needs_dry_run(tmp_path):
    cmd = [sys.executable, "runner.py", "recipes/quickstart.gin", "--show_config", "--runs_dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--show_config" in proc.stderr and not os.listdir(tmp_path)
