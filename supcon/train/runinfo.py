"""env.json: the code version, packages, devices, strategy and the scale of a run."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata

import tensorflow as tf

from supcon import workdir as wd

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "tensorflow-datasets", "gin-config", "numpy")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git_state(root: str = REPO_ROOT) -> tuple[str, bool]:
    """(commit SHA or 'unknown', dirty flag) of the checkout holding this package."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
        return sha, bool(dirty)
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def versions() -> dict:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _encoder_description(run) -> str:
    """E.g. 'ResNet-18 x0.125, CIFAR stem (0.18 M params), input 28x28x1'."""
    enc = run.encoder
    params = sum(int(np_prod(v.shape)) for v in enc.trainable_weights)
    name = type(enc).__name__
    if hasattr(enc, "depth"):
        kind = "ResNeXt" if getattr(enc, "architecture", "") == "resnext" else "ResNet"
        stem = "CIFAR stem" if getattr(enc, "cifar_stem", False) else "ImageNet stem"
        name = f"{kind}-{enc.depth} x{enc.width_multiplier:g}, {stem}"
    text = f"{name} ({params / 1e6:.2f} M params), input {'x'.join(map(str, run.input_shape))}"
    return text + (", mixed bfloat16" if run.mixed_precision else "")


def np_prod(shape) -> int:
    total = 1
    for d in shape:
        total *= int(d)
    return total


def write_env(run, name: str = wd.ENV) -> None:
    """Writes env.json (or `name`, e.g. eval_env.json for mode 'eval') for a `supcon.train.run.Run`."""
    sha, dirty = git_state()
    gpus = tf.config.list_physical_devices("GPU")
    scale = {
        "dataset": run.config.dataset,
        "train_examples": run.train_examples,
        "image_shape": list(run.source.image_shape),
        "encoder": _encoder_description(run),
        "stages": {p.stage.name: {"epochs": p.stage.epochs, "steps": p.end - p.start,
                                  "batch_size": p.batch_size} for p in run.plan},
        "pretrain_epochs": sum(p.stage.epochs for p in run.plan if p.stage.train_encoder),
        "linear_epochs": sum(p.stage.epochs for p in run.plan if not p.stage.train_encoder),
        "global_batch_size": run.config.batch_size,
        "hardware": f"{len(gpus)} GPU(s)" if gpus else f"{os.cpu_count()} CPU cores",
    }
    wd.write_json_atomic(
        os.path.join(run.dir, name),
        {
            "git_sha": sha, "git_dirty": dirty, "versions": versions(),
            "platform": platform.platform(terse=True),
            "devices": [d.name for d in tf.config.list_logical_devices()],
            "strategy": type(run.strategy).__name__, "replicas": run.replicas, "scale": scale,
            "mixed_precision": bool(run.mixed_precision),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TF default"),
        },
    )
