"""What a grid point will run, described from the root's checked arguments: `runner.py --dry_run --show_config`.

`settings(config)` runs in the trainer process (TensorFlow and the gin registry loaded), in the point's method scope:
per stage the optimizer and its constants, base and peak learning rate (peak = base x global batch / 256),
schedule, warmup, epochs, weight decay (coefficient, how it is applied, the parts it covers and what it excludes),
augmenter and its options, views, loss weights, batch norm; and for the run: encoder, heads, loss options,
memory, warm start, data, evaluation preprocessing and topology. Configured callables (`@pretrain/lars`, `@resnet`)
are described by their signature defaults overridden by the gin bindings in the scope they are called in. The
runner's side, which prints them, is `supcon.experiment.show_config`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import gin
from gin import config

from supcon.model import optim
from supcon.train import config as run_config
from supcon.train import stages

SKIPPED_ARGS = ("name", "learning_rate", "image", "seed", "num_classes")  # per call, not settings
ROOT_KEYS = (
    "dataset", "train_split", "eval_split", "max_examples", "batch_size", "eval_batch_size", "topology",
    "num_devices", "tpu_name", "mixed_precision", "seed", "memory_size", "normalize_embedding",
    "stop_gradient_before_projection_head", "stop_gradient_before_classification_head", "label_noise",
    "init_checkpoint", "init_parts", "knn_k",
)  # fmt: skip


def _reference_scope(fn: Callable) -> list[str] | None:
    """The scope of a gin reference written with one (`@pretrain/lars` -> ['pretrain']), else None.

    gin 0.5 wraps a scoped reference in a function whose closure holds the scope components.
    """
    code = getattr(fn, "__code__", None)
    if code is not None and "scope_components" in code.co_freevars and fn.__closure__:
        return list(fn.__closure__[code.co_freevars.index("scope_components")].cell_contents)
    return None


def plain(value: Any) -> Any:
    """A JSON-ready copy of a setting: callables by name, tuples as lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if callable(value):
        return describe_callable(value)["name"]
    return repr(value)


def describe_callable(fn: Callable | None) -> dict | None:
    """{'name': '@scope/name', option: value, ...}: a configured callable with its effective options.

    The options are the function's signature defaults overridden by the gin bindings that apply where it is
    called: in the scope of its reference (`@pretrain/lars`), else in the current scope (the method's).
    """
    if fn is None:
        return None
    configurable = config._inverse_lookup(fn, allow_decorators=True)
    if configurable is None:
        return {"name": getattr(fn, "__name__", repr(fn))}
    scope = _reference_scope(fn)
    if scope is None:
        scope = config.current_scope()
    options = {
        k: p.default
        for k, p in inspect.signature(configurable.wrapped).parameters.items()
        if p.default is not inspect.Parameter.empty and k not in SKIPPED_ARGS
    }
    with gin.config_scope(list(scope)):
        bound = gin.get_bindings(configurable.selector)
    options.update({k: v for k, v in bound.items() if k not in SKIPPED_ARGS})
    name = "@" + "/".join([*scope, configurable.name]) if _reference_scope(fn) else "@" + configurable.name
    return {"name": name, **{k: plain(v) for k, v in options.items()}}


def _weight_decay(p, config: run_config.RunConfig, optimizer) -> dict:
    """Coefficient, where it is applied, the parts it covers and what it never covers (Run._parts_variables)."""
    s = p.stage
    # A part trains when a loss of this stage reaches it: the classifier through the cross-entropy, the projection
    # head through the contrastive loss, the encoder through either (the cross-entropy unless a stop-gradient).
    reaches_encoder = s.contrastive_weight > 0 or (
        s.cross_entropy_weight > 0 and not config.stop_gradient_before_classification_head)
    # (present, decayed: in the optimizer's variables and flagged, as Run._parts_variables, trained)
    parts = {
        "encoder": (True, s.train_encoder and s.decay_encoder, s.train_encoder and reaches_encoder),
        "projection_head": (bool(config.projection_head), s.train_encoder and s.decay_projection_head,
                            s.train_encoder and s.contrastive_weight > 0),
        "classification_head": (True, s.decay_classification_head, s.cross_entropy_weight > 0),
    }
    trained = [k for k, (present, _, trains) in parts.items() if present and trains]
    decayed = [k for k, (present, decay, _) in parts.items() if present and decay]
    return {
        "coefficient": s.weight_decay,
        "applied": "inside LARS (grad += wd * w)" if isinstance(optimizer, optim.LARS) else "explicit L2 term wd * sum(w^2)/2",
        "parts": decayed if s.weight_decay else [],
        "excluded": ["batch norm"] + ([] if s.decay_bias else ["biases"]),
        "trained": trained,
    }


def _schedule(p) -> dict:
    s = p.stage
    schedule = optim.learning_rate_schedule(
        s.base_learning_rate, p.batch_size, 1.0, s.epochs, s.warmup_epochs, s.decay, s.decay_rate,
        s.boundary_epochs, s.epochs_per_decay,
    )  # as Run._build_optimizers; steps_per_epoch does not change the peak
    found = {"decay": s.decay}
    if s.decay == "exponential":
        found.update(decay_rate=s.decay_rate, epochs_per_decay=s.epochs_per_decay)
    elif s.decay == "piecewise":
        found.update(decay_rate=s.decay_rate, boundary_epochs=list(s.boundary_epochs))
    return {"peak_learning_rate": schedule.peak_learning_rate, **found}


def stage_settings(p, config: run_config.RunConfig) -> dict:
    """One planned stage's effective settings."""
    s = p.stage
    optimizer = s.optimizer(learning_rate=0.1)  # as the trainer builds it (no variables until build)
    schedule = _schedule(p)
    return {
        "name": s.name,
        "epochs": s.epochs,
        "batch_size": p.batch_size,
        "warmup_epochs": s.warmup_epochs,
        "optimizer": describe_callable(s.optimizer),
        "optimizer_class": type(optimizer).__name__,
        "base_learning_rate": s.base_learning_rate,
        "peak_learning_rate": schedule.pop("peak_learning_rate"),
        "schedule": schedule,
        "weight_decay": _weight_decay(p, config, optimizer),
        "augmenter": describe_callable(s.augmenter) or {"name": "@identity_augment"},
        "num_views": s.num_views,
        "contrastive_weight": s.contrastive_weight,
        "cross_entropy_weight": s.cross_entropy_weight,
        "label_smoothing": s.label_smoothing,
        "train_encoder": s.train_encoder,
        "encoder_batch_norm": s.encoder_batch_norm,
    }


def settings(config: run_config.RunConfig) -> dict:
    """Everything a point will run with, from the root's checked arguments (call in the method scope)."""
    loss = config.contrastive_loss
    run = {k: plain(getattr(config, k)) for k in ROOT_KEYS}
    run.update(
        encoder=describe_callable(config.encoder),
        projection_head=describe_callable(config.projection_head),
        classification_head=describe_callable(run_config.configured(config.classification_head)),
        contrastive_loss=None if loss is None else plain(getattr(loss, "options", {"name": repr(loss)})),
        normalize=describe_callable(run_config.configured(config.normalize)),
        eval_preprocess=describe_callable(run_config.configured(config.eval_preprocess)),
    )
    planned = stages.plan(list(config.stages), 1, config.batch_size)
    return {"run": run, "stages": [stage_settings(p, config) for p in planned]}
