"""Warm start: a run starts from another run's weights (its encoder, optionally its heads).

`train_and_evaluate.init_checkpoint` names where the weights come from, any of:
  * a run directory (its latest checkpoint in `ckpt/`);
  * a recipe's runs folder that holds exactly one run directory (e.g. `runs/simclr_imagenet_resnet50`);
  * a folder of checkpoints (its latest one), or a checkpoint path (`<run>/ckpt/ckpt-32`).
`train_and_evaluate.init_parts` names the parts restored: 'encoder', 'projection_head', 'classification_head'.

A run's checkpoint holds the model's variables keyed by variable path (`model/<path>`, see `supcon.train.run.Run`), so
a part restores into any model whose part has the same variable paths and shapes (the same encoder, whatever the
heads). The batch-norm statistics of a part come with it. The warm start is applied only when the run has no
checkpoint of its own: a resumed run continues from its own checkpoint. A missing checkpoint or a variable that
is missing or has another shape is a one-line error naming the first offending variable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from supcon import workdir as wd

PARTS = ("encoder", "projection_head", "classification_head")
_ROOT = "model"  # the run checkpoint's entry holding the model's variables (supcon.train.run.Run.checkpoint)


def check(init_checkpoint, init_parts, has_projection_head: bool = True) -> None:
    """Checks the two settings without touching the file system (the runner validates every point this way).

    Raises:
      ValueError: naming the setting and the allowed values.
    """
    if init_checkpoint is not None and (not isinstance(init_checkpoint, str) or not init_checkpoint.strip()):
        raise ValueError(
            "train_and_evaluate.init_checkpoint must be None or a run directory / checkpoint path; "
            f"got {init_checkpoint!r}"
        )
    parts = (init_parts,) if isinstance(init_parts, str) else init_parts
    if not isinstance(parts, Sequence) or not parts or any(p not in PARTS for p in parts):
        raise ValueError(f"train_and_evaluate.init_parts must be a non-empty tuple of {PARTS}; got {init_parts!r}")
    if len(set(parts)) != len(parts):
        raise ValueError(f"train_and_evaluate.init_parts names a part twice: {init_parts!r}")
    if init_checkpoint and "projection_head" in parts and not has_projection_head:
        raise ValueError(
            "train_and_evaluate.init_parts names projection_head, but this run has none "
            "(train_and_evaluate.projection_head is None)"
        )


def _latest(folder: str) -> str | None:
    import tensorflow as tf

    return tf.train.latest_checkpoint(folder) if os.path.isdir(folder) else None


def resolve(init_checkpoint: str) -> str:
    """The checkpoint path (prefix) that `init_checkpoint` names (see the module docstring).

    Raises:
      FileNotFoundError: one line saying what was looked for.
    """
    path = os.path.expanduser(init_checkpoint)
    if os.path.isdir(path):
        for folder in (os.path.join(path, wd.CKPT_DIR), path):
            found = _latest(folder)
            if found:
                return found
        runs = sorted(
            name for name in os.listdir(path) if os.path.isdir(os.path.join(path, name, wd.CKPT_DIR))
        )
        if len(runs) == 1:
            found = _latest(os.path.join(path, runs[0], wd.CKPT_DIR))
            if found:
                return found
        what = f"{len(runs)} run directories ({', '.join(runs[:3])}{', ...' if len(runs) > 3 else ''}): name one" \
            if len(runs) > 1 else "no checkpoint in it or in its ckpt/"
        raise FileNotFoundError(
            f"train_and_evaluate.init_checkpoint {init_checkpoint!r}: {what} (expected a run directory, a recipe's "
            "runs folder with one run, a checkpoint folder or a checkpoint path)"
        )
    if os.path.isfile(path + ".index"):
        return path
    raise FileNotFoundError(
        f"train_and_evaluate.init_checkpoint {init_checkpoint!r} does not exist (train the source run first, or "
        "name a run directory or checkpoint path)"
    )


def checkpoint_key(path: str) -> str:
    """The key of a model variable in a run checkpoint: tf.train.Checkpoint's for `model={path: variable}`
    (a local name escapes '.' as '..' and '/' as '.S', as TensorFlow's trackable_utils.escape_local_name)."""
    escaped = path.replace(".", "..").replace("/", ".S")
    return f"{_ROOT}/{escaped}/.ATTRIBUTES/VARIABLE_VALUE"


def part_variables(model, parts: Sequence[str]) -> dict:
    """{variable path: variable} of the named parts of a `heads.ContrastiveModel`."""
    found = {}
    for part in parts:
        layer = getattr(model, part, None)
        if layer is None:
            raise ValueError(f"train_and_evaluate.init_parts names {part}, which this run's model does not have")
        found.update({v.path: v for v in layer.variables})
    return found


def _check_match(variables: dict, shapes: dict, source: str) -> None:
    """Raises a one-line ValueError for the first variable the checkpoint lacks or holds with another shape."""
    missing = [p for p in variables if checkpoint_key(p) not in shapes]
    if missing:
        have = sorted(k.split("/")[1].replace(".S", "/").replace("..", ".") for k in shapes if k.startswith(_ROOT + "/"))
        raise ValueError(
            f"train_and_evaluate.init_checkpoint {source}: no variable {missing[0]} ({len(missing)} of "
            f"{len(variables)} missing; it holds {len(have)} model variables, e.g. {', '.join(have[:2]) or 'none'}): "
            "is it another architecture or a run without this part?"
        )
    for path, variable in variables.items():
        theirs = list(shapes[checkpoint_key(path)])
        if theirs != list(variable.shape):
            raise ValueError(
                f"train_and_evaluate.init_checkpoint {source}: variable {path} has shape {theirs} there and "
                f"{list(variable.shape)} here (another width, depth or number of classes?)"
            )


def restore(model, checkpoint: str, parts: Sequence[str]) -> int:
    """Restores the named parts of `model` from a run checkpoint; returns the number of variables restored.

    Raises:
      ValueError: a part the model lacks, or a variable the checkpoint lacks or holds with another shape.
    """
    import tensorflow as tf

    variables = part_variables(model, parts)
    shapes = tf.train.load_checkpoint(checkpoint).get_variable_to_shape_map()
    _check_match(variables, shapes, checkpoint)
    status = tf.train.Checkpoint(**{_ROOT: variables}).restore(checkpoint)
    status.expect_partial()  # the checkpoint's other variables (optimizers, step, other parts) stay unread
    status.assert_existing_objects_matched()
    return len(variables)
