"""Stage configuration: what one stage of a run trains, with which loss weights, optimizer and schedule.

A run is a list of stages executed in order in one job (the official launcher's stage 1 / stage 2, in TF2):
  * SupCon / SimCLR protocol: `pretrain` (contrastive weight 1) then `linear` (cross-entropy weight 1,
    encoder frozen, its own optimizer, schedule, epochs and augmentation);
  * the official joint form: one stage with both weights, the classifier behind a stop-gradient;
  * the cross-entropy baseline: one stage with cross-entropy weight 1 and no projection head.

Recipes write `train_and_evaluate.stages = [@pretrain/stage(), @linear/stage()]` and bind each scope.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import gin

BATCH_NORM_MODES = ("update", "batch_stats", "frozen")
DECAYS = ("cosine", "exponential", "piecewise", "constant")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage; see `stage()` for the meaning of each field."""

    name: str
    epochs: float
    optimizer: Callable
    base_learning_rate: float
    warmup_epochs: float
    decay: str
    decay_rate: float
    boundary_epochs: tuple
    epochs_per_decay: float
    contrastive_weight: float
    cross_entropy_weight: float
    label_smoothing: float
    augmenter: Callable | None
    num_views: int
    batch_size: int | None
    train_encoder: bool
    encoder_batch_norm: str
    weight_decay: float
    decay_encoder: bool
    decay_projection_head: bool
    decay_classification_head: bool
    decay_bias: bool


@gin.configurable
def stage(
    name: str | None = None,
    epochs: float = gin.REQUIRED,
    optimizer: Callable = gin.REQUIRED,
    base_learning_rate: float = gin.REQUIRED,
    warmup_epochs: float = 0.0,
    decay: str = "cosine",
    decay_rate: float = 0.1,
    boundary_epochs: tuple = (),
    epochs_per_decay: float = 2.4,
    contrastive_weight: float = 0.0,
    cross_entropy_weight: float = 0.0,
    label_smoothing: float = 0.0,
    augmenter: Callable | None = None,
    num_views: int = 2,
    batch_size: int | None = None,
    train_encoder: bool = True,
    encoder_batch_norm: str = "update",
    weight_decay: float = 0.0,
    decay_encoder: bool = True,
    decay_projection_head: bool = True,
    decay_classification_head: bool = False,
    decay_bias: bool = True,
) -> Stage:
    """Declares one training stage (gin: `pretrain/stage.epochs = 100`).

    Args:
      name: defaults to the gin scope (`pretrain`, `linear`, ...).
      epochs: stage length in epochs of the training split (may be fractional).
      optimizer: an optimizer factory called as `optimizer(learning_rate=schedule)`, e.g. `@sgd`, `@lars`.
      base_learning_rate: LR per 256 examples; the peak LR is base * global_batch / 256.
      warmup_epochs, decay, decay_rate, boundary_epochs, epochs_per_decay: the schedule (supcon.model.optim).
      contrastive_weight, cross_entropy_weight: loss weights of this stage.
      label_smoothing: for the cross-entropy term.
      augmenter: `augmenter(image01, seed) -> image01` for this stage's training views.
      num_views: views per example (2 for contrastive stages, 1 suffices for cross-entropy only).
      batch_size: this stage's global batch; None uses `train_and_evaluate.batch_size`.
      train_encoder: False trains the classification head only (linear evaluation on a frozen encoder).
      encoder_batch_norm: 'update' (batch statistics, moving averages updated), 'batch_stats' (batch
        statistics, moving averages kept: the official stage 2) or 'frozen' (moving averages, inference mode).
      weight_decay: explicit L2 coefficient (coeff * sum ||w||^2 / 2); LARS applies it internally instead.
      decay_encoder, decay_projection_head, decay_classification_head: which parts are decayed.
      decay_bias: decay biases too (batch-norm variables are never decayed).
    """
    name = name or gin.current_scope_str() or "stage"
    if not epochs or epochs < 0 or not math.isfinite(epochs):
        raise ValueError(f"{name}/stage.epochs must be a positive number; got {epochs!r}")
    if decay not in DECAYS:
        raise ValueError(f"{name}/stage.decay must be one of {', '.join(DECAYS)}; got {decay!r}")
    if encoder_batch_norm not in BATCH_NORM_MODES:
        raise ValueError(
            f"{name}/stage.encoder_batch_norm must be one of {', '.join(BATCH_NORM_MODES)}; "
            f"got {encoder_batch_norm!r}"
        )
    if contrastive_weight < 0 or cross_entropy_weight < 0 or not (contrastive_weight or cross_entropy_weight):
        raise ValueError(
            f"{name}/stage needs contrastive_weight or cross_entropy_weight > 0 (and neither negative)"
        )
    if num_views < 1:
        raise ValueError(f"{name}/stage.num_views must be >= 1; got {num_views}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"{name}/stage.batch_size must be >= 1; got {batch_size}")
    return Stage(
        name=name, epochs=float(epochs), optimizer=optimizer,
        base_learning_rate=float(base_learning_rate), warmup_epochs=float(warmup_epochs), decay=decay,
        decay_rate=float(decay_rate), boundary_epochs=tuple(boundary_epochs),
        epochs_per_decay=float(epochs_per_decay), contrastive_weight=float(contrastive_weight),
        cross_entropy_weight=float(cross_entropy_weight), label_smoothing=float(label_smoothing),
        augmenter=augmenter, num_views=int(num_views), batch_size=batch_size,
        train_encoder=bool(train_encoder), encoder_batch_norm=encoder_batch_norm,
        weight_decay=float(weight_decay), decay_encoder=bool(decay_encoder),
        decay_projection_head=bool(decay_projection_head),
        decay_classification_head=bool(decay_classification_head), decay_bias=bool(decay_bias),
    )


@dataclasses.dataclass(frozen=True)
class PlannedStage:
    """A stage placed on the global step axis: steps [start, end)."""

    stage: Stage
    index: int
    batch_size: int
    steps_per_epoch: float
    start: int
    end: int


def plan(stages: list[Stage], train_examples: int, default_batch_size: int) -> list[PlannedStage]:
    """Places the stages one after the other; each lasts max(1, round(epochs * examples / batch)) steps."""
    if not stages:
        raise ValueError("train_and_evaluate.stages must name at least one stage")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique; got {names}")
    placed, start = [], 0
    for index, s in enumerate(stages):
        batch = s.batch_size or default_batch_size
        if batch < 1:  # a stage's own batch_size is checked by stage()
            raise ValueError(f"train_and_evaluate.batch_size must be >= 1; got {default_batch_size}")
        steps_per_epoch = train_examples / batch
        steps = max(1, round(s.epochs * steps_per_epoch))
        placed.append(PlannedStage(s, index, batch, steps_per_epoch, start, start + steps))
        start += steps
    return placed
