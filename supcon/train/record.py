"""The run directory's records of a `Run` (layout: `supcon.workdir`).

At the start, `write_start` writes env.json (`supcon.train.runinfo`) and the operative gin config; while training,
`Logger` appends a metrics.jsonl record, TensorBoard scalars and a progress line per logging interval (and per
evaluation); at the end, `finish` writes the embeddings, the SavedModel export, calibration.json and the status,
the final metrics of its HParams session (`supcon.train.hparams`), then result.json last: its presence means the
run is done.
"""

from __future__ import annotations

import math
import os
import time

import gin
import numpy as np
import tensorflow as tf

from supcon import workdir as wd
from supcon.robust import spec as corruption_spec
from supcon.train import evaluate, hparams, runinfo, stages
from supcon.train.run import Run


def write_start(run: Run, mode: str) -> None:
    """env.json (and the patch of uncommitted code) and operative_config.gin; mode 'eval' (e.g. scoring a finished
    run on corrupted sets) writes its own eval_ copies and keeps the training's records."""
    runinfo.write_env(run, wd.EVAL_ENV if mode == "eval" else wd.ENV)  # with its patch when the code is dirty
    operative = wd.EVAL_OPERATIVE_CONFIG if mode == "eval" else wd.OPERATIVE_CONFIG
    wd.write_text_atomic(os.path.join(run.dir, operative), gin.operative_config_str())


class Logger:
    """Per-interval progress: a log line, a metrics.jsonl record and TensorBoard scalars."""

    def __init__(self, run: Run):
        self.run = run
        self.writer = tf.summary.create_file_writer(os.path.join(run.dir, wd.TB_DIR))
        self.started = self.first_step = None  # set at the first window: after a resume has restored the step

    def __call__(self, p: stages.PlannedStage, step: int, window: dict):
        seconds = max(time.time() - window["time"], 1e-9)
        images = window["steps"] * p.batch_size
        means = {k: float(np.mean([w[k] for w in window["loss"]])) for k in window["loss"][0]}
        lr = float(self.run.optimizers[p.index].learning_rate.numpy())
        record = {
            "kind": "train", "stage": p.stage.name, "step": step, "learning_rate": lr,
            "images_per_second": images / seconds, "time": time.time(), **means,
        }
        wd.append_jsonl(os.path.join(self.run.dir, wd.METRICS), record)
        with self.writer.as_default(step=step):
            for key, value in record.items():
                if isinstance(value, float) and key != "time":
                    tf.summary.scalar(f"train/{key}", value)
        if self.first_step is None:
            self.first_step, self.started = step - window["steps"], window["time"]
        done = step - self.first_step
        rate = done / max(time.time() - self.started, 1e-9)
        eta = (self.run.total_steps - step) / rate if rate > 0 else float("inf")
        print(
            f"step {step}/{self.run.total_steps} [{p.stage.name}] loss {means['loss']:.4f} "
            f"lr {lr:.4g} {record['images_per_second']:.0f} img/s ETA {_duration(eta)}",
            flush=True,
        )

    def close(self):
        """Flushes and closes the TensorBoard writer (a served process does not exit after the point)."""
        self.writer.close()

    def eval(self, metrics: dict):
        wd.append_jsonl(os.path.join(self.run.dir, wd.METRICS), {"kind": "eval", **metrics})
        with self.writer.as_default(step=metrics["step"]):
            for key, value in metrics.items():
                if "/" in key:
                    tf.summary.scalar(key, value)
        shown = ", ".join(
            f"{k} {v:.4f}" for k, v in metrics.items()
            if "/" in k and isinstance(v, float) and k.count("/") == 1 or k == corruption_spec.MEAN_TOP1
        )  # fmt: skip
        print(f"eval at step {metrics['step']}: {shown}", flush=True)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def finish(run: Run, metrics: dict, test: dict, logger: Logger, previous: dict | None = None):
    """Writes embeddings, the export, calibration.json, the HParams session's final metrics and status, then
    result.json last (its presence means done).

    `previous`: the result.json of a finished run scored again (mode 'eval'); its fields are kept (the training's
    totals among them) and the new metrics added or updated; an existing export is kept.
    """
    config = run.config
    logger.eval(metrics)
    if config.save_embeddings:
        n = min(len(test["label"]), config.save_embeddings)
        tmp = os.path.join(run.dir, f".{wd.EMBEDDINGS}.tmp.npz")
        np.savez_compressed(tmp, embeddings=test["embedding"][:n].astype(np.float32), labels=test["label"][:n])
        os.replace(tmp, os.path.join(run.dir, wd.EMBEDDINGS))
    if config.export_model and not (previous is not None and os.path.isdir(os.path.join(run.dir, wd.EXPORT_DIR))):
        evaluate.export(
            run.model, config.eval_preprocess, run.normalize, run.source.image_shape,
            os.path.join(run.dir, wd.EXPORT_DIR),
        )
    seconds = float(run.train_seconds.numpy())
    images = sum((p.end - p.start) * p.batch_size for p in run.plan)
    result = {
        **{k: v for k, v in metrics.items() if k != "step"},
        "step": metrics["step"], "train_seconds": seconds,
        "images_per_second": images / seconds if seconds else 0.0,
        "train_examples": run.train_examples, "replicas": run.replicas,
    }
    if previous is not None:
        result = {**previous, **metrics}
    wd.write_json_atomic(os.path.join(run.dir, wd.CALIBRATION), run.calibration)
    if os.path.isdir(hparams.session_dir(run.dir)):  # the session `hparams.start` opened: the chief's
        hparams.finish(run, metrics)
    logger.close()  # TensorBoard's events are on disk before result.json says the run is done
    wd.write_status(run.dir, wd.DONE, metrics["step"])
    wd.write_json_atomic(os.path.join(run.dir, wd.RESULT), result)
    return result
