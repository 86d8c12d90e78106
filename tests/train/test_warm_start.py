"""Warm start (`supcon.train.warm_start`): a head-only run on the encoder of another run, end to end on the digits.

A tiny SupCon run is the source; a head-only run (protocols/head_only.gin, as the official head-only script)
restores its encoder and trains only the classifier. Each run is a `python -m supcon.main` subprocess.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from supcon import workdir as wd
from supcon.train import warm_start

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tests", "fixtures", "train", "digits_tiny.gin")
HEAD = os.path.join(ROOT, "tests", "fixtures", "train", "digits_head_only.gin")
ENV = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
CLASSIFIER = "classification_head"


def run_main(workdir, gin_file, *params, timeout=600):
    cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(workdir), "--gin_file", gin_file]
    for p in params:
        cmd += ["--gin_param", p]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def head_only(workdir, source, *params):
    return run_main(workdir, HEAD, f"INIT_CHECKPOINT = '{source}'", *params)


def model_values(workdir) -> dict:
    """{checkpoint key: value} of the model variables in a run's latest checkpoint."""
    import tensorflow as tf

    path = tf.train.latest_checkpoint(os.path.join(workdir, wd.CKPT_DIR))
    reader = tf.train.load_checkpoint(path)
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("model/")]
    return {k: reader.get_tensor(k) for k in keys}


@pytest.fixture(scope="session")
def source(tiny_run):
    """A finished tiny SupCon run (pretrain + linear), the encoder's source: the session's (tests/conftest.py)."""
    return tiny_run


@pytest.fixture(scope="module")
def warm(source, tmp_path_factory):
    """A finished head-only run warm-started from `source`, uninterrupted."""
    workdir = tmp_path_factory.mktemp("warm") / "head"
    proc = head_only(workdir, source)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warm start: " in proc.stdout and "of encoder from" in proc.stdout, proc.stdout[-2000:]
    return workdir


def test_the_encoder_is_the_sources_and_only_the_head_trains(source, warm):
    theirs, ours = model_values(source), model_values(warm)
    encoder = [k for k in ours if CLASSIFIER not in k]
    classifier = [k for k in ours if CLASSIFIER in k]
    assert encoder and classifier and not [k for k in ours if "projection" in k]
    assert len(encoder) > 20  # kernels, batch-norm scales, offsets and moving statistics
    for key in encoder:  # frozen in inference mode: not one value moved, moving statistics included
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    for key in classifier:  # trained from a fresh classifier, not the source's
        assert not np.array_equal(ours[key], theirs[key]), key
    assert np.abs(ours[[k for k in classifier if k.split("/")[1].endswith("kernel")][0]]).sum() > 0
    result = wd.read_json(os.path.join(warm, wd.RESULT))
    assert result["step"] == 16 and 0.0 <= result["eval/top1"] <= 1.0  # 2 epochs of 256 at batch 32
    records = [r for r in wd.read_jsonl(os.path.join(warm, wd.METRICS)) if r["kind"] == "train"]
    assert {r["stage"] for r in records} == {"linear"} and "contrastive" not in records[0]


@pytest.mark.slow  # a warm-started run killed and resumed: a third trainer process (kill -9 and resume is proven by test_train)
def test_a_warm_started_run_resumes_from_its_own_checkpoint(source, warm, tmp_path):
    workdir = tmp_path / "resumed"
    failed = head_only(workdir, source, "train_and_evaluate.inject_nan_at_step = 6")
    assert failed.returncode == 1 and "warm start" in failed.stdout
    assert os.path.exists(workdir / wd.CKPT_DIR / "ckpt-4.index")
    again = head_only(workdir, source)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "warm start" not in again.stdout  # its own checkpoint, not the source's
    steps = [r["step"] for r in wd.read_jsonl(os.path.join(workdir, wd.METRICS)) if r["kind"] == "train"]
    assert steps == [4, 8, 12, 16], steps  # continued from step 4, never restarted from the source's weights
    resumed, uninterrupted = model_values(workdir), model_values(warm)
    assert set(resumed) == set(uninterrupted)
    for key, value in uninterrupted.items():
        np.testing.assert_allclose(resumed[key], value, rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.slow  # two more trainer processes for error messages
def test_a_missing_or_mismatched_source_is_one_line(source, tmp_path):
    missing = head_only(tmp_path / "a", tmp_path / "nowhere")
    reason = wd.read_json(os.path.join(tmp_path / "a", wd.STATUS))["reason"]
    assert missing.returncode == 1 and "\n" not in reason
    assert reason.startswith("FileNotFoundError: train_and_evaluate.init_checkpoint") and "does not exist" in reason
    wider = head_only(tmp_path / "b", source, "WIDTH = 0.25")
    reason = wd.read_json(os.path.join(tmp_path / "b", wd.STATUS))["reason"]
    assert wider.returncode == 1 and "\n" not in reason
    assert reason.startswith("ValueError: train_and_evaluate.init_checkpoint") and "has shape" in reason, reason


def test_resolve_finds_the_latest_checkpoint_of_a_run(source, tmp_path):
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(source, wd.CKPT_DIR))
    assert latest.endswith("ckpt-32")
    for name in (source, source / wd.CKPT_DIR, source.parent, latest):  # run dir, ckpt dir, runs folder, path
        assert warm_start.resolve(str(name)) == latest
    (tmp_path / "two" / "x" / wd.CKPT_DIR).mkdir(parents=True)
    (tmp_path / "two" / "y" / wd.CKPT_DIR).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="2 run directories"):
        warm_start.resolve(str(tmp_path / "two"))


def test_settings_are_checked_before_anything_runs():
    warm_start.check(None, ("encoder",))
    warm_start.check("runs/x", ("encoder", "projection_head"))
    for value, parts, message in (
        ("", ("encoder",), "init_checkpoint must be None or"),
        ("runs/x", (), "non-empty tuple"),
        ("runs/x", ("encoder", "head"), "non-empty tuple"),
        ("runs/x", ("encoder", "encoder"), "twice"),
    ):
        with pytest.raises(ValueError, match=message):
            warm_start.check(value, parts)
    with pytest.raises(ValueError, match="has none"):
        warm_start.check("runs/x", ("projection_head",), has_projection_head=False)


def test_checkpoint_keys_escape_like_tensorflow():
    from tensorflow.python.trackable import trackable_utils

    path = "encoder/stage_1.block_0/conv/kernel"
    assert warm_start.checkpoint_key(path) == (
        f"model/{trackable_utils.escape_local_name(path)}/.ATTRIBUTES/VARIABLE_VALUE"
    )
