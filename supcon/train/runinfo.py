"""env.json: the code version, packages, devices, strategy and the scale of a run; and the uncommitted code.

The code a run depends on is the package, the runner and the recipes (WATCHED). When they differ from the commit
(tracked changes, staged or not, and untracked files there; changes elsewhere, e.g. to reports/ or tests/, do not
count), the run is *dirty*: env.json lists the dirty paths and the sha256 of the patch, and the run dir keeps the
patch itself (`supcon.workdir.PATCH`): `git diff HEAD` of those paths plus every untracked file there as a new
file, so that `git apply` on the commit gives the code the run ran. Only git's read commands run (with
--no-optional-locks): the user's index is never touched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata

import tensorflow as tf

from supcon import workdir as wd
from supcon.train import config

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "tensorflow-datasets", "gin-config", "numpy")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WATCHED = ("supcon", "runner.py", "recipes")  # what a run's code is: its changes make a run dirty
_DIFF = ("--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames", "--src-prefix=a/",
         "--dst-prefix=b/")  # a patch `git apply` takes whatever the user's diff settings


@dataclasses.dataclass(frozen=True)
class CodeState:
    """The commit of the checkout and how its WATCHED paths differ from it."""

    sha: str  # the commit (HEAD), or 'unknown' outside a git checkout
    dirty_paths: tuple[str, ...] = ()  # changed, deleted or untracked paths under WATCHED, sorted
    patch: bytes = b""  # the patch from the commit to the WATCHED paths as they are; b'' when clean

    @property
    def dirty(self) -> bool:
        return bool(self.dirty_paths)

    @property
    def patch_sha256(self) -> str | None:
        return hashlib.sha256(self.patch).hexdigest() if self.dirty else None


def _git(root: str, *args: str, ok: tuple[int, ...] = (0,)) -> bytes:
    proc = subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, timeout=30)
    if proc.returncode not in ok:
        raise subprocess.CalledProcessError(proc.returncode, args, proc.stdout, proc.stderr)
    return proc.stdout


def _status_paths(output: bytes) -> list[str]:
    """The paths of `git status --porcelain=v1 -z` (both paths of a rename or copy)."""
    entries, paths = output.split(b"\0"), []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.append(os.fsdecode(entry[3:]))
        if entry[:1] in (b"R", b"C") and i < len(entries):  # the original path follows
            paths.append(os.fsdecode(entries[i]))
            i += 1
    return paths


def code_state(root: str | None = None) -> CodeState:
    """The commit of the checkout at `root` (default REPO_ROOT, the one holding this package) and its uncommitted
    changes under WATCHED, with their patch."""
    root = root or REPO_ROOT
    try:
        sha = _git(root, "rev-parse", "HEAD").decode().strip()
        status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *WATCHED)
        dirty = tuple(sorted(set(_status_paths(status))))
        if not dirty:
            return CodeState(sha)
        patch = _git(root, "diff", *_DIFF, "HEAD", "--", *WATCHED)
        untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *WATCHED)
        for path in sorted(p for p in untracked.split(b"\0") if p):
            # exit code 1: the files differ (always, against /dev/null)
            patch += _git(root, "diff", "--no-index", *_DIFF, "--", "/dev/null", os.fsdecode(path), ok=(0, 1))
        return CodeState(sha, dirty, patch)
    except (OSError, subprocess.SubprocessError):
        return CodeState("unknown")


def git_state(root: str | None = None) -> tuple[str, bool]:
    """(commit SHA or 'unknown', dirty flag) of the checkout holding this package; dirty: the package, the runner
    or the recipes differ from the commit (`code_state`)."""
    state = code_state(root)
    return state.sha, state.dirty


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


def write_patch(run_dir: str, state: CodeState, name: str = wd.PATCH) -> str | None:
    """Writes the patch of dirty code into the run dir as `name` and returns `name`; removes an earlier attempt's
    patch and returns None when the code is clean (the run dir's patch is always that of its env.json)."""
    path = os.path.join(run_dir, name)
    if state.dirty:
        wd.write_text_atomic(path, state.patch)
        return name
    if os.path.exists(path):
        os.remove(path)
    return None


def write_env(run, name: str = wd.ENV, patch: str | None = None) -> None:
    """Writes env.json (or `name`, e.g. eval_env.json for mode 'eval') for a `supcon.train.run.Run`, and the patch
    of uncommitted code as `patch` (`write_patch`; default uncommitted.patch, eval_uncommitted.patch beside
    eval_env.json) before it."""
    state = code_state()
    patch_name = write_patch(run.dir, state, patch or (wd.EVAL_PATCH if name == wd.EVAL_ENV else wd.PATCH))
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
            "git_sha": state.sha, "git_dirty": state.dirty, "git_dirty_paths": list(state.dirty_paths),
            "git_patch": patch_name, "git_patch_sha256": state.patch_sha256, "versions": versions(),
            "platform": platform.platform(terse=True),
            "devices": [d.name for d in tf.config.list_logical_devices()],
            "strategy": type(run.strategy).__name__, "replicas": run.replicas, "scale": scale,
            "mixed_precision": bool(run.mixed_precision),
            "precision_by": config.precision_by(run.config.mixed_precision),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TF default"),
            "cpu_flags": [f for f in config.SPEED_FLAGS if f in config.read_cpu_flags()],
            # The thread pools' sizes (0: TF's default, every core): they change the order of float reductions,
            # so the same point trained with another --jobs can differ in its last digits (and its top-1).
            "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                        "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        },
    )
