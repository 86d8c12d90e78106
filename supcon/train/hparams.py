"""TensorBoard's HParams summaries of a run, so `tensorboard --logdir runs/<recipe>` shows the grid as a table.

Each run is one HParams session in its own folder of the run dir (`supcon.workdir.HPARAMS_DIR`, beside `tb/`):
at the start, its hyperparameters (`session_start_info`): the point's grid values as point.json records them
(`values`: MACRO -> value; none for a run started by hand) and its main settings (`settings`); at the end, its final
metrics (`FINAL_METRICS`) as scalars at the final step. The dashboard lists a point as soon as it starts.

No experiment summary (`hp.hparams_config`) is written: TensorBoard takes the one of an arbitrary run when several
runs have one (plugins/hparams/backend_context.py, `_find_experiment_tag`), while the points of a grid may bind
different macros (`grid.points`) and train different stages. Without it, TensorBoard builds the table from the
sessions themselves: the union of their hyperparameters, each with its type and the domain of the values seen,
and as metrics the scalar tags of the session folders, which hold only the final metrics.
"""

from __future__ import annotations

import json
import os
import time

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from supcon import workdir as wd
from supcon.robust import spec as corruption_spec

# The final metrics the dashboard shows, when the run has them (knn/top1 needs knn_k > 0; the corruption mean
# needs train_and_evaluate.corruptions).
FINAL_METRICS = ("eval/top1", "eval/top5", "eval/loss", "eval/ece", "knn/top1", corruption_spec.MEAN_TOP1)

HParamValue = bool | int | float | str


def hparam_value(value) -> HParamValue:
    """A grid value as TensorBoard takes it: a bool, number or string as it is; None as 'None' (gin's spelling);
    a list or dict as its JSON text."""
    if isinstance(value, bool | int | float | str):
        return value
    if value is None:
        return "None"
    return json.dumps(value, sort_keys=True)


def point_values(run_dir: str) -> tuple[dict[str, HParamValue], str | None]:
    """The grid values of the point the runner wrote into `run_dir` (point.json `values`) and its id; ({}, None)
    for a run without a readable point.json (started by hand)."""
    point = wd.read_json(os.path.join(run_dir, wd.POINT))
    if not isinstance(point, dict) or not isinstance(point.get("values"), dict):
        return {}, None
    trial = point.get("id")
    return {str(k): hparam_value(v) for k, v in point["values"].items()}, str(trial) if trial else None


def settings(run) -> dict[str, HParamValue]:
    """The main settings of a `supcon.train.run.Run`: dataset, examples, seed, encoder depth and width, global
    batch, temperature (with a contrastive loss), and each stage's epochs, base learning rate, batch and weight
    decay (`<stage>/epochs`, ...)."""
    config = run.config
    found: dict[str, HParamValue] = {
        "dataset": config.dataset, "train_examples": int(run.train_examples), "seed": int(config.seed),
        "batch_size": int(config.batch_size),
    }
    if hasattr(run.encoder, "depth"):
        found["encoder_depth"] = int(run.encoder.depth)
        found["encoder_width"] = float(run.encoder.width_multiplier)
    options = getattr(config.contrastive_loss, "options", None) or {}
    if "temperature" in options:
        found["temperature"] = float(options["temperature"])
    for p in run.plan:
        name = p.stage.name
        found[f"{name}/epochs"] = float(p.stage.epochs)
        found[f"{name}/learning_rate"] = float(p.stage.base_learning_rate)
        found[f"{name}/batch_size"] = int(p.batch_size)
        found[f"{name}/weight_decay"] = float(p.stage.weight_decay)
    return found


def session_dir(run_dir: str) -> str:
    return os.path.join(run_dir, wd.HPARAMS_DIR)


def write_start(directory: str, values: dict[str, HParamValue], trial_id: str | None = None,
                start_time: float | None = None) -> None:
    """Writes the session's hyperparameters into `directory` (a session folder): `trial_id` names the session
    group (default: a hash of the values)."""
    writer = tf.summary.create_file_writer(directory)
    try:
        with writer.as_default(step=0):
            hp.hparams(values, trial_id=trial_id, start_time_secs=start_time or time.time())
    finally:
        writer.close()


def write_final(directory: str, metrics: dict, step: int) -> list[str]:
    """Writes the FINAL_METRICS among `metrics` as scalars at `step` into `directory`; returns their tags."""
    written = [k for k in FINAL_METRICS if isinstance(metrics.get(k), int | float)]
    writer = tf.summary.create_file_writer(directory)
    try:
        with writer.as_default(step=int(step)):
            for key in written:
                tf.summary.scalar(key, float(metrics[key]))
    finally:
        writer.close()
    return written


def start(run) -> None:
    """The run's session: its point's grid values and its main settings, named by the point's id."""
    values, trial = point_values(run.dir)
    write_start(session_dir(run.dir), {**settings(run), **values}, trial)


def finish(run, metrics: dict) -> None:
    """The run's final metrics, at its final step."""
    write_final(session_dir(run.dir), metrics, metrics["step"])
