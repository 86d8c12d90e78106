"""supcon.train.runinfo: what env.json records of a run (code version, packages, devices, scale), without training.

The git state is read from a temporary repository; the run is a stand-in with the attributes `write_env` reads
(`supcon.train.run.Run`'s), so every expected value below is written out by hand.
"""

import hashlib
import json
import platform
import subprocess
import types
from importlib import metadata

import numpy as np
import pytest
import tensorflow as tf

from supcon import workdir as wd
from supcon.train import config, runinfo, stages


def _git(root, *args) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "supcon").mkdir()
    (root / "supcon" / "a.py").write_text("x = 1\n")
    _git(root, "add", "supcon/a.py")
    _git(root, "commit", "-q", "-m", "first")
    return root


def test_git_state_is_the_head_commit_and_whether_the_code_changed(repo):
    head = _git(repo, "rev-parse", "HEAD")
    assert len(head) == 40
    assert runinfo.git_state(str(repo)) == (head, False)
    (repo / "notes.txt").write_text("untracked\n")
    assert runinfo.git_state(str(repo)) == (head, False)  # outside supcon/, runner.py and recipes/: clean
    (repo / "supcon" / "a.py").write_text("x = 2\n")
    assert runinfo.git_state(str(repo)) == (head, True)
    _git(repo, "commit", "-q", "-am", "second")
    second = _git(repo, "rev-parse", "HEAD")
    assert second != head and runinfo.git_state(str(repo)) == (second, False)


def test_git_state_outside_a_repository_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git does not look above tmp_path
    assert runinfo.git_state(str(tmp_path)) == ("unknown", False)
    assert runinfo.git_state(str(tmp_path / "missing")) == ("unknown", False)  # cwd does not exist: OSError


def test_versions_are_python_and_the_installed_packages(monkeypatch):
    installed = {"tensorflow": "2.21.0", "keras": "3.9.0", "numpy": "2.1.0"}

    def version(name):
        if name not in installed:
            raise metadata.PackageNotFoundError(name)
        return installed[name]

    monkeypatch.setattr(runinfo.metadata, "version", version)
    assert runinfo.versions() == {"python": platform.python_version(), **installed}  # absent ones left out


def test_versions_of_this_environment():
    found = runinfo.versions()
    assert found["python"] == platform.python_version()
    assert found["numpy"] == np.__version__


class OneDeviceStrategy:  # write_env records the strategy's class name
    pass


def _run(tmp_path, mixed_precision=False):
    """A stand-in for a Run: ResNet-18 x0.25 on 8x8x1 digits, 1,000 examples, pretrain 15 + linear 5 epochs."""
    encoder = types.SimpleNamespace(
        depth=18, width_multiplier=0.25, cifar_stem=True, architecture="resnet_v1",
        trainable_weights=[types.SimpleNamespace(shape=(1000, 500)), types.SimpleNamespace(shape=(500,))],
    )  # 500,000 + 500 parameters
    pretrain = types.SimpleNamespace(name="pretrain", epochs=15.0, train_encoder=True)
    linear = types.SimpleNamespace(name="linear", epochs=5.0, train_encoder=False)
    plan = [stages.PlannedStage(pretrain, 0, 128, 1000 / 128, 0, 117),
            stages.PlannedStage(linear, 1, 64, 1000 / 64, 117, 195)]
    return types.SimpleNamespace(
        dir=str(tmp_path), config=types.SimpleNamespace(dataset="digits", batch_size=128, mixed_precision="auto"),
        mixed_precision=mixed_precision, encoder=encoder, input_shape=(8, 8, 1), train_examples=1000,
        source=types.SimpleNamespace(image_shape=(8, 8, 1)), plan=plan, strategy=OneDeviceStrategy(), replicas=1,
    )


def test_env_json_records_the_code_the_packages_and_the_scale(tmp_path, monkeypatch):
    monkeypatch.setattr(runinfo, "code_state", lambda: runinfo.CodeState("0123abc", ("supcon/a.py",), b"a patch\n"))
    monkeypatch.setattr(runinfo.os, "cpu_count", lambda: 6)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    monkeypatch.setattr(runinfo.config, "read_cpu_flags", lambda: {"fpu", "avx512_bf16", "avx2", "sse4_2"})
    runinfo.write_env(_run(tmp_path))
    env = json.loads((tmp_path / wd.ENV).read_text())
    assert env["cpu_flags"] == ["avx2", "avx512_bf16"]  # the speed-relevant ones, in SPEED_FLAGS' order
    assert env["threads"] == {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                              "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    assert (env["git_sha"], env["git_dirty"], env["git_dirty_paths"]) == ("0123abc", True, ["supcon/a.py"])
    assert (tmp_path / wd.PATCH).read_bytes() == b"a patch\n" and env["git_patch"] == wd.PATCH
    assert env["git_patch_sha256"] == hashlib.sha256(b"a patch\n").hexdigest()
    assert env["versions"]["python"] == platform.python_version() and env["versions"]["numpy"] == np.__version__
    assert env["strategy"] == "OneDeviceStrategy" and env["replicas"] == 1
    assert env["mixed_precision"] is False and env["onednn"] == "0"
    assert env["precision_by"] == "hardware"  # 'auto', no --auto_precision
    assert "/device:CPU:0" in env["devices"]
    assert env["scale"] == {
        "dataset": "digits",
        "train_examples": 1000,
        "image_shape": [8, 8, 1],
        "encoder": "ResNet-18 x0.25, CIFAR stem (0.50 M params), input 8x8x1",
        "stages": {"pretrain": {"epochs": 15.0, "steps": 117, "batch_size": 128},
                   "linear": {"epochs": 5.0, "steps": 78, "batch_size": 64}},
        "pretrain_epochs": 15.0,
        "linear_epochs": 5.0,
        "global_batch_size": 128,
        "hardware": "6 CPU cores",  # no GPU in the test session
    }


def test_env_json_of_a_mixed_precision_evaluation(tmp_path, monkeypatch):
    monkeypatch.setattr(runinfo, "code_state", lambda: runinfo.CodeState("0123abc"))
    (tmp_path / wd.PATCH).write_bytes(b"the training's patch\n")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    run = _run(tmp_path, mixed_precision=True)
    run.encoder.architecture, run.encoder.cifar_stem = "resnext", False
    runinfo.write_env(run, wd.EVAL_ENV)
    assert not (tmp_path / wd.ENV).exists() and not (tmp_path / wd.EVAL_PATCH).exists()
    assert (tmp_path / wd.PATCH).read_bytes() == b"the training's patch\n"  # the training's records stay
    env = json.loads((tmp_path / wd.EVAL_ENV).read_text())
    assert env["mixed_precision"] is True and env["onednn"] == "TF default" and env["git_dirty"] is False
    assert env["scale"]["encoder"] == "ResNeXt-18 x0.25, ImageNet stem (0.50 M params), input 8x8x1, mixed bfloat16"


def test_cpu_flags_are_read_from_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert config.read_cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512f"}
    assert config.read_cpu_flags(str(tmp_path / "missing")) == set()
    cpuinfo.write_text("processor\t: 0\n")
    assert config.read_cpu_flags(str(cpuinfo)) == set()


@pytest.mark.parametrize("bound, auto, by", [
    (True, "float32", "binding"),  # a True / False binding wins over --auto_precision
    ("auto", "float32", "--auto_precision"),
    ("auto", "", "hardware"),
    ("auto", "hardware", "hardware"),
])
def test_env_json_says_what_decided_the_precision(tmp_path, monkeypatch, bound, auto, by):
    monkeypatch.setattr(runinfo, "code_state", lambda: runinfo.CodeState("0123abc"))
    monkeypatch.setenv(wd.AUTO_PRECISION_ENV, auto)
    run = _run(tmp_path)
    run.config.mixed_precision = bound
    runinfo.write_env(run)
    assert json.loads((tmp_path / wd.ENV).read_text())["precision_by"] == by
