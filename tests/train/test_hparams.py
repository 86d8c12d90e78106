"""supcon.train.hparams: each run is one session of TensorBoard's HParams dashboard, read back from its events.

The summaries are read back three ways: as raw events (`tf.compat.v1.train.summary_iterator`: the plugin data of
the session start and the final scalars), through TensorBoard's own hparams backend over a folder of runs (what the
dashboard of `tensorboard --logdir runs/<recipe>` shows: the union of the points' hyperparameters and exactly the
final metrics), and after a tiny run of `python -m supcon.main` in a run dir the runner prepared (point.json).
"""

import glob
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, get_experiment, list_session_groups, metadata
from tensorboard.plugins.hparams import backend_context as hparams_backend
from tiny_params import TINY, UNREAD

from supcon import workdir as wd
from supcon.train import hparams, stages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_events(directory) -> tuple[list, dict]:
    """(the session starts [SessionStartInfo], {tag: [(step, value)]} of the scalars) in a folder's event files."""
    starts, scalars = [], {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                if plugin.plugin_name == metadata.PLUGIN_NAME and value.tag == metadata.SESSION_START_INFO_TAG:
                    starts.append(metadata.parse_session_start_info_plugin_data(plugin.content))
                elif value.HasField("tensor"):
                    scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return starts, scalars


def plain(start) -> dict:
    """A SessionStartInfo's hyperparameters as Python values."""
    out = {}
    for name, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        out[name] = {"number_value": value.number_value, "string_value": value.string_value,
                     "bool_value": value.bool_value}[kind]
    return out


def test_grid_values_become_what_tensorboard_takes():
    assert hparams.hparam_value(0.1) == 0.1 and hparams.hparam_value(3) == 3
    assert hparams.hparam_value(True) is True and hparams.hparam_value("@supcon") == "@supcon"
    assert hparams.hparam_value(None) == "None"
    assert hparams.hparam_value([0.5, 1.0]) == "[0.5, 1.0]"  # a tuple in gin, a list in point.json
    assert hparams.hparam_value({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'


def test_a_session_reads_back_with_its_values_and_final_metrics(tmp_path):
    values = {"METHOD": "supcon", "TEMPERATURE": 0.1, "SEED": 2, "AUGMENT": True, "dataset": "digits"}
    hparams.write_start(str(tmp_path), values, trial_id="0badc0de", start_time=1000.0)
    metrics = {"eval/top1": 0.75, "eval/top5": 0.95, "eval/loss": 0.6, "eval/ece": 0.05, "eval/examples": 360,
               "knn/top1": 0.7, "step": 120}
    assert hparams.write_final(str(tmp_path), metrics, 120) == ["eval/top1", "eval/top5", "eval/loss", "eval/ece",
                                                                 "knn/top1"]
    starts, scalars = read_events(str(tmp_path))
    assert len(starts) == 1
    assert starts[0].group_name == "0badc0de" and starts[0].start_time_secs == 1000.0
    assert plain(starts[0]) == values
    assert set(scalars) == {"eval/top1", "eval/top5", "eval/loss", "eval/ece", "knn/top1"}  # not eval/examples
    for tag, found in scalars.items():
        assert found == [(120, pytest.approx(metrics[tag], rel=1e-6))], tag


def test_the_point_values_come_from_point_json(tmp_path):
    assert hparams.point_values(str(tmp_path)) == ({}, None)  # started by hand: no point.json
    wd.write_json_atomic(str(tmp_path / wd.POINT), {"id": "21e0d2bf", "values": {"METHOD": "supcon", "SEED": 0,
                                                                                 "CROP_AREA": [0.5, 1.0]}})
    assert hparams.point_values(str(tmp_path)) == (
        {"METHOD": "supcon", "SEED": 0, "CROP_AREA": "[0.5, 1.0]"}, "21e0d2bf")
    (tmp_path / wd.POINT).write_text("{truncated")
    assert hparams.point_values(str(tmp_path)) == ({}, None)


def _stage(name, epochs, lr, train_encoder, weight_decay=0.0):
    return stages.stage(name=name, epochs=epochs, optimizer=object, base_learning_rate=lr,
                        train_encoder=train_encoder, weight_decay=weight_decay,
                        contrastive_weight=float(train_encoder), cross_entropy_weight=float(not train_encoder))


def test_the_main_settings_of_a_run():
    """A stand-in Run: SupCon (temperature 0.1) then a linear stage with its own batch."""
    loss = types.SimpleNamespace(options={"name": "@contrastive", "temperature": 0.1, "use_labels": True})
    pretrain, linear = _stage("pretrain", 3, 0.5, True, 1e-4), _stage("linear", 1, 10.0, False)
    run = types.SimpleNamespace(
        config=types.SimpleNamespace(dataset="digits", seed=4, batch_size=32, contrastive_loss=loss),
        train_examples=256, encoder=types.SimpleNamespace(depth=18, width_multiplier=0.125),
        plan=[stages.PlannedStage(pretrain, 0, 32, 8.0, 0, 24), stages.PlannedStage(linear, 1, 64, 4.0, 24, 28)],
    )
    assert hparams.settings(run) == {
        "dataset": "digits", "train_examples": 256, "seed": 4, "batch_size": 32, "encoder_depth": 18,
        "encoder_width": 0.125, "temperature": 0.1,
        "pretrain/epochs": 3.0, "pretrain/learning_rate": 0.5, "pretrain/batch_size": 32, "pretrain/weight_decay": 1e-4,
        "linear/epochs": 1.0, "linear/learning_rate": 10.0, "linear/batch_size": 64, "linear/weight_decay": 0.0,
    }
    run.config.contrastive_loss = None  # cross-entropy: no temperature
    assert "temperature" not in hparams.settings(run)


def dashboard(logdir):
    """What the HParams dashboard gets from TensorBoard's backend: (the experiment, the session groups by name)."""
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    tb = base_plugin.TBContext(logdir=logdir, multiplexer=mux,
                               data_provider=data_provider.MultiplexerDataProvider(mux, logdir))
    backend, request = hparams_backend.Context(tb), context.RequestContext()
    experiment = get_experiment.Handler(request, backend, "", api_pb2.GetExperimentRequest()).run()
    query = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=[
        api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_RUNNING, api_pb2.STATUS_FAILURE])
    for info in experiment.hparam_infos:
        query.col_params.add(hparam=info.name)
    for info in experiment.metric_infos:
        query.col_params.add(metric=info.name)
    groups = list_session_groups.Handler(request, backend, "", query).run().session_groups
    return experiment, {g.name: g for g in groups}


def test_the_dashboard_shows_every_point_of_a_grid_and_only_the_final_metrics(tmp_path):
    """Points that bind different macros and train different stages (as fmnist_table2's); one still running."""
    points = {
        "supcon": ({"METHOD": "supcon", "SEED": 0, "pretrain/epochs": 3.0, "linear/epochs": 1.0}, 0.8),
        "simclr": ({"METHOD": "simclr", "SEED": 0, "LINEAR_LR": 1.0, "pretrain/epochs": 3.0}, 0.7),
        "ce": ({"METHOD": "cross_entropy", "SEED": 1, "train/epochs": 4.0}, None),  # running
    }
    for slug, (values, top1) in points.items():
        run_dir = str(tmp_path / slug)
        hparams.write_start(hparams.session_dir(run_dir), values, trial_id=slug)
        writer = tf.summary.create_file_writer(os.path.join(run_dir, wd.TB_DIR))  # the Logger's scalars
        with writer.as_default(step=10):
            tf.summary.scalar("train/loss", 1.5)
            tf.summary.scalar("eval/top1", top1 or 0.1)
        writer.close()
        if top1 is not None:
            hparams.write_final(hparams.session_dir(run_dir), {"eval/top1": top1, "eval/top5": 0.99}, 10)
    experiment, groups = dashboard(str(tmp_path))
    infos = {h.name: h for h in experiment.hparam_infos}
    assert set(infos) == {"METHOD", "SEED", "LINEAR_LR", "pretrain/epochs", "linear/epochs", "train/epochs"}
    assert infos["METHOD"].type == api_pb2.DATA_TYPE_STRING and infos["METHOD"].differs
    assert {v.string_value for v in infos["METHOD"].domain_discrete.values} == {"supcon", "simclr", "cross_entropy"}
    assert infos["SEED"].type == api_pb2.DATA_TYPE_FLOAT64 and infos["SEED"].domain_interval.max_value == 1
    assert [m.name.tag for m in experiment.metric_infos] == ["eval/top1", "eval/top5"]  # not train/loss
    assert set(groups) == {"supcon", "simclr", "ce"}  # the running point is listed
    assert groups["simclr"].hparams["LINEAR_LR"].number_value == 1.0
    assert {m.name.tag: m.value for m in groups["supcon"].metric_values} == {
        "eval/top1": pytest.approx(0.8), "eval/top5": pytest.approx(0.99)}
    assert list(groups["ce"].metric_values) == []
    assert [s.name for s in groups["supcon"].sessions] == [f"supcon/{wd.HPARAMS_DIR}"]


@pytest.mark.slow  # a trainer process; the sessions are read back above from files written in-process
def test_a_run_writes_its_session_at_the_start_and_its_final_metrics_at_the_end(tmp_path):
    """A tiny run in a run dir whose point.json the runner wrote: its grid values, its settings, its result."""
    workdir = tmp_path / "temperature-0.2"
    workdir.mkdir()
    wd.write_json_atomic(str(workdir / wd.POINT), {"id": "feedface", "values": {"TEMPERATURE": 0.2, "SEED": 0}})
    cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(workdir), "--gin_file", TINY]
    for param in ("TEMPERATURE = 0.2", "PRETRAIN_EPOCHS = 1", "LINEAR_EPOCHS = 1", "train_and_evaluate.knn_k = 0",
                  *UNREAD):
        cmd += ["--gin_param", param]
    env = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = wd.read_json(str(workdir / wd.RESULT))
    starts, scalars = read_events(str(workdir / wd.HPARAMS_DIR))
    assert len(starts) == 1 and starts[0].group_name == "feedface"
    first = next(r for r in wd.read_jsonl(str(workdir / wd.METRICS)) if r["kind"] == "train")
    assert starts[0].start_time_secs < first["time"]  # written before training: a running point is listed
    found = plain(starts[0])
    assert (found["TEMPERATURE"], found["SEED"]) == (0.2, 0)  # the grid values
    assert found["temperature"] == pytest.approx(0.2)  # the loss the run built
    assert (found["dataset"], found["train_examples"], found["batch_size"]) == ("digits", 256, 32)
    assert (found["pretrain/epochs"], found["linear/epochs"], found["encoder_width"]) == (1.0, 1.0, 0.125)
    assert (found["pretrain/learning_rate"], found["linear/learning_rate"]) == (0.5, 10.0)
    assert set(scalars) == {"eval/top1", "eval/top5", "eval/loss", "eval/ece"}  # knn off: no knn/top1
    for tag, values in scalars.items():
        assert values == [(result["step"], pytest.approx(result[tag], rel=1e-6))], tag
    assert np.isfinite(result["eval/ece"])
