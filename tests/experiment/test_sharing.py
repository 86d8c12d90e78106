"""`grid.share_pretraining`: points that differ only in their final stage start it from one pretraining.

What the pretraining settings are (read from the gin texts, no TensorFlow), how a source is found and a run dir
seeded (nothing half-copied), that a run seeded from the session's tiny run's stage checkpoint trains its final
stage only and ends exactly where the uninterrupted run ends, and (slow) the runner end to end on the digits.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
from tiny_params import TINY, UNREAD

from supcon import workdir as wd
from supcon.experiment import grid, sharing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}

# A SupCon point's training settings as point.json records them (trimmed).
SETTINGS = {
    "IMAGE_SIZE": "14",
    "LINEAR_EPOCHS": "20",
    "LINEAR_LR": "10.0",
    "LR_ALIAS": "%LINEAR_LR",
    "PRETRAIN_EPOCHS": "50",
    "SEED": "0",
    "METHOD": "'supcon'",
    "linear/identity_augment.image_size": "%IMAGE_SIZE",
    "linear/stage.augmenter": "@linear/identity_augment",
    "linear/stage.base_learning_rate": "%LR_ALIAS",
    "linear/stage.epochs": "%LINEAR_EPOCHS",
    "linear/stage.optimizer": "@linear/sgd",
    "linear/sgd.momentum": "0.9",
    "pretrain/stage.epochs": "%PRETRAIN_EPOCHS",
    "pretrain/stage.optimizer": "@pretrain/lars",
    "simclr_augment.image_size": "%IMAGE_SIZE",
    "supcon/train_and_evaluate.stages": "[@pretrain/stage(), @linear/stage()]",
    "train_and_evaluate.seed": "%SEED",
}


def test_pretraining_settings_leave_out_the_final_stage_and_the_macros_only_it_reads():
    assert sharing.final_stage_scope(SETTINGS) == "linear"
    kept = sharing.pretraining_settings(SETTINGS)
    assert sorted(kept) == [
        "IMAGE_SIZE", "METHOD", "PRETRAIN_EPOCHS", "SEED", "pretrain/stage.epochs", "pretrain/stage.optimizer",
        "simclr_augment.image_size", "supcon/train_and_evaluate.stages", "train_and_evaluate.seed",
    ]  # LINEAR_LR goes with LR_ALIAS, the only one reading it; IMAGE_SIZE stays, pretraining reads it too


@pytest.mark.parametrize("key, value, shared", [
    ("LINEAR_EPOCHS", "10", True),
    ("LINEAR_LR", "1.0", True),
    ("linear/sgd.momentum", "0.0", True),
    ("linear/stage.augmenter", "@linear/randaugment", True),
    ("PRETRAIN_EPOCHS", "100", False),
    ("SEED", "1", False),
    ("IMAGE_SIZE", "28", False),  # read by both stages
    ("pretrain/stage.optimizer", "@pretrain/sgd", False),
])
def test_two_points_share_exactly_when_they_differ_in_the_final_stage_alone(key, value, shared):
    other = {**SETTINGS, key: value}
    assert (sharing.pretraining_hash(other) == sharing.pretraining_hash(SETTINGS)) is shared


@pytest.mark.parametrize("change", [
    {"supcon/train_and_evaluate.stages": "[@ce/stage()]"},  # one stage: nothing to share
    {"supcon/train_and_evaluate.stages": "[@pretrain/stage(), @stage()]"},  # an unscoped final stage
    {"pretrain/stage.augmenter": "@linear/identity_augment"},  # pretraining reads the final stage's scope
])
def test_a_point_that_cannot_be_split_at_its_final_stage_shares_nothing(change):
    assert sharing.pretraining_hash({**SETTINGS, **change}) is None
    no_stages = {k: v for k, v in SETTINGS.items() if not k.endswith("train_and_evaluate.stages")}
    assert sharing.pretraining_hash(no_stages) is None


def test_the_most_specific_stages_binding_decides():
    settings = {**SETTINGS, "train_and_evaluate.stages": "[@ce/stage()]"}
    assert sharing.final_stage_scope(settings) == "linear"


def make_source(folder, key="abcd1234", params=(), step=24, complete=True):
    """A run dir that looks like a finished shareable point: point.json, a stage checkpoint, metrics.jsonl."""
    folder.mkdir(parents=True)
    wd.write_json_atomic(folder / wd.POINT, {sharing.SHARED_HASH: key, "gin_params": list(params)})
    stage = folder / wd.STAGE_CKPT_DIR
    stage.mkdir()
    (stage / f"pretrain-{step}.index").write_bytes(b"index")
    if complete:
        (stage / f"pretrain-{step}.data-00000-of-00001").write_bytes(b"data")
        wd.write_json_atomic(stage / f"pretrain-{step}.json", {"stage": "pretrain", "step": step, "train_seconds": 12.5})
    with open(folder / wd.METRICS, "w") as f:
        for s in (8, 16, 24, 28, 32):
            f.write(json.dumps({"kind": "train", "stage": "pretrain" if s <= 24 else "linear", "step": s}) + "\n")
        f.write("{not json\n")
    return folder


def test_a_source_needs_the_same_hash_the_same_params_and_a_complete_stage_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    make_source(runs / "a-incomplete", complete=False)
    make_source(runs / "b-other-params", params=["X = 1"])
    make_source(runs / "c-other-hash", key="ffff0000")
    assert sharing.find_source(str(runs), "abcd1234", [], str(runs / "me")) is None
    good = make_source(runs / "d-good")
    found = sharing.find_source(str(runs), "abcd1234", [], str(runs / "me"))
    assert found == (str(good), str(good / wd.STAGE_CKPT_DIR / "pretrain-24"), 24)
    assert sharing.find_source(str(runs), "abcd1234", [], str(good)) is None  # never itself


def test_a_source_that_trained_its_pretraining_wins_over_a_copy_of_it_at_the_same_step(tmp_path):
    """A point that copied the pretraining (first by name here) is not named as the source while the run that
    trained it is there: point.json names where a pretraining was trained, not a copy of a copy."""
    runs = tmp_path / "runs"
    copy = make_source(runs / "a-copy")
    point = wd.read_json(str(copy / wd.POINT))
    wd.write_json_atomic(copy / wd.POINT, {**point, sharing.SHARED_FROM: "runs/x/b-trained"})
    trained = make_source(runs / "b-trained")
    found = sharing.find_source(str(runs), "abcd1234", [], str(runs / "me"))
    assert found is not None and found[0] == str(trained)
    later = make_source(runs / "c-later-copy", step=30)  # a later stage checkpoint still comes first
    wd.write_json_atomic(later / wd.POINT, {**point, sharing.SHARED_FROM: "runs/x/b-trained"})
    assert sharing.find_source(str(runs), "abcd1234", [], str(runs / "me"))[0] == str(later)
    assert sharing.find_source(str(runs), "abcd1234", [], str(trained))[0] == str(later)


def test_seeding_copies_the_checkpoint_as_the_latest_and_the_metrics_up_to_it(tmp_path):
    source = make_source(tmp_path / "runs" / "a")
    run_dir = tmp_path / "runs" / "b"
    run_dir.mkdir()
    (run_dir / wd.CKPT_DIR).mkdir()  # empty: nothing of its own
    assert sharing.can_seed(str(run_dir))
    seconds = sharing.seed_run_dir(str(source), str(source / wd.STAGE_CKPT_DIR / "pretrain-24"), 24, str(run_dir))
    ckpt = sorted(os.listdir(run_dir / wd.CKPT_DIR))
    assert ckpt == ["checkpoint", "ckpt-24.data-00000-of-00001", "ckpt-24.index"]
    assert (run_dir / wd.CKPT_DIR / "ckpt-24.index").read_bytes() == b"index"
    assert 'model_checkpoint_path: "ckpt-24"' in (run_dir / wd.CKPT_DIR / "checkpoint").read_text()
    assert sorted(os.listdir(run_dir / wd.STAGE_CKPT_DIR)) == [
        "pretrain-24.data-00000-of-00001", "pretrain-24.index", "pretrain-24.json"]
    assert seconds == 12.5
    assert [r["step"] for r in wd.read_jsonl(str(run_dir / wd.METRICS))] == [8, 16, 24]
    assert not [n for n in os.listdir(run_dir) if n.startswith(".")]  # no temporary folder left
    assert wd.point_status(str(run_dir)) == "partial" and not sharing.can_seed(str(run_dir))


def test_a_failed_seeding_leaves_the_run_dir_as_it_was(tmp_path, monkeypatch):
    source = make_source(tmp_path / "runs" / "a")
    run_dir = tmp_path / "runs" / "b"
    run_dir.mkdir()
    calls = []

    def failing_copy(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        shutil.copyfile(src, dst)

    monkeypatch.setattr(sharing.shutil, "copy2", failing_copy)
    with pytest.raises(OSError, match="No space left"):
        sharing.seed_run_dir(str(source), str(source / wd.STAGE_CKPT_DIR / "pretrain-24"), 24, str(run_dir))
    assert os.listdir(run_dir) == [] and wd.point_status(str(run_dir)) == "new"


@pytest.mark.parametrize("status", [wd.STATUS, wd.METRICS, wd.RESULT])
def test_a_run_dir_with_anything_of_its_own_is_not_seeded(tmp_path, status):
    (tmp_path / status).write_text("{}")
    assert not sharing.can_seed(str(tmp_path))


def test_share_pretraining_must_be_a_bool(tmp_path):
    recipe = tmp_path / "r.gin"
    recipe.write_text(f"# Reproduces: nothing.\ninclude '{TINY}'\ngrid.share_pretraining = 'yes'\n")
    with pytest.raises(grid.GridError, match=r"r.gin:3: grid.share_pretraining must be True or False; got 'yes'"):
        grid.load_recipe(str(recipe))


def test_a_run_seeded_from_a_stage_checkpoint_trains_the_final_stage_only_and_ends_as_the_whole_run(tiny_run, tmp_path):
    """The science of sharing: the seeded run restores the pretraining's state and its final stage trains exactly
    as the uninterrupted run's did (as a resume at the stage boundary would)."""
    found = sharing.stage_checkpoint(str(tiny_run))
    assert found is not None and found[1] == 24, os.listdir(tiny_run)  # 3 epochs of 8 steps, then the linear stage
    run_dir = tmp_path / "seeded"
    run_dir.mkdir()
    stage = wd.read_json(found[0] + ".json")
    assert stage["stage"] == "pretrain" and stage["step"] == 24
    assert 0 < stage["train_seconds"] < wd.read_json(str(tiny_run / wd.RESULT))["train_seconds"]
    seconds = sharing.seed_run_dir(str(tiny_run), found[0], found[1], str(run_dir))
    assert seconds == stage["train_seconds"]
    cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(run_dir), "--gin_file", TINY]
    for p in UNREAD:
        cmd += ["--gin_param", p]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "stage linear: steps 24..32 of 32" in proc.stdout and "stage pretrain" not in proc.stdout, proc.stdout[-2000:]
    a, b = wd.read_json(str(tiny_run / wd.RESULT)), wd.read_json(str(run_dir / wd.RESULT))
    for key in ("eval/top1", "eval/top5", "eval/loss", "knn/top1", "step"):
        assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), key
    pretrain = [r for r in wd.read_jsonl(str(run_dir / wd.METRICS)) if r.get("stage") == "pretrain"]
    assert pretrain == [r for r in wd.read_jsonl(str(tiny_run / wd.METRICS)) if r.get("stage") == "pretrain"]


RECIPE = """# Reproduces: nothing; a fixture for grid.share_pretraining.
# Run: python runner.py shared.gin
include '{tiny}'
grid.share_pretraining = True
grid.axes = {{'LINEAR_EPOCHS': [1, 2]}}
report.rows = ['LINEAR_EPOCHS']
report.metrics = ['eval/top1']
"""


@pytest.mark.slow  # two real trainings by the runner; the seeding itself is tested above against the tiny run
def test_the_runner_trains_the_second_point_from_the_first_ones_pretraining(tmp_path):
    (tmp_path / "shared.gin").write_text(RECIPE.format(tiny=TINY))
    cmd = [sys.executable, os.path.join(ROOT, "runner.py"), str(tmp_path / "shared.gin"), "--jobs", "1",
           "--runs_dir", str(tmp_path / "runs"), "--report_dir", str(tmp_path / "reports"), "--progress", "off"]
    dry = subprocess.run(cmd + ["--dry_run"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "linear_epochs-2  <- pretraining of linear_epochs-1 (once it has trained it)" in dry.stdout, dry.stdout
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first, second = (tmp_path / "runs" / "shared" / f"linear_epochs-{n}" for n in (1, 2))
    assert "(new; its pretraining from " in proc.stdout and "linear_epochs-1) -> " in proc.stdout, proc.stdout
    point = wd.read_json(str(second / wd.POINT))
    assert point[sharing.SHARED_FROM].endswith("linear_epochs-1")
    assert point[sharing.SHARED_SECONDS] == wd.read_json(str(first / wd.STAGE_CKPT_DIR / "pretrain-24.json"))["train_seconds"]
    assert point[sharing.SHARED_HASH] == wd.read_json(str(first / wd.POINT))[sharing.SHARED_HASH]
    log = (second / wd.LOG).read_text()
    assert "stage linear: steps 24..40 of 40" in log and "stage pretrain" not in log
    assert wd.read_json(str(second / wd.RESULT))["step"] == 40
    report = (tmp_path / "reports" / "shared" / "README.md").read_text()
    assert "**Shared pretraining** (`grid.share_pretraining`): 1 point trained only its final stage" in report
    assert "`linear_epochs-2` from `linear_epochs-1`" in report
    assert ", each shared pretraining counted once (" in report
    again = subprocess.run(cmd + ["--noreport"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "2 already done" in again.stdout, again.stdout[-2000:]


@pytest.mark.parametrize("keys, order", [
    (["a", "a", "b", "b"], [0, 2, 1, 3]),  # a table9-like grid: each seed's siblings side by side
    (["a", "b", "a", "b"], [0, 1, 2, 3]),  # already spread: the grid's order
    ([None, "a", "a", None, "a"], [0, 1, 3, 2, 4]),  # points that share nothing keep their place among the firsts
    ([None, None], [0, 1]),
    ([], []),
])
def test_several_jobs_start_each_pretraining_before_the_points_that_share_it(keys, order):
    assert sharing.first_of_each_pretraining(keys) == order


@pytest.mark.slow  # three real trainings by the runner with two jobs
def test_with_two_jobs_a_sibling_waits_for_the_pretraining_instead_of_training_it_again(tmp_path):
    """Two jobs start two points of one pretraining together: one trains it, the other waits for its stage
    checkpoint and trains its final stage only; the third finds it."""
    (tmp_path / "shared.gin").write_text(RECIPE.format(tiny=TINY).replace("[1, 2]", "[1, 2, 3]"))
    cmd = [sys.executable, os.path.join(ROOT, "runner.py"), str(tmp_path / "shared.gin"), "--jobs", "2",
           "--runs_dir", str(tmp_path / "runs"), "--noreport", "--progress", "off"]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "waiting for the pretraining of " in proc.stdout, proc.stdout
    runs = [tmp_path / "runs" / "shared" / f"linear_epochs-{n}" for n in (1, 2, 3)]
    sources = [wd.read_json(str(run / wd.POINT)).get(sharing.SHARED_FROM) for run in runs]
    trained = [run for run, source in zip(runs, sources, strict=True) if source is None]
    assert len(trained) == 1, sources  # one pretraining for the three points
    assert all(source.endswith(trained[0].name) for source in sources if source is not None), sources
    for run in runs:
        log = (run / wd.LOG).read_text()
        assert ("stage pretrain" in log) == (run == trained[0]), run.name
        assert wd.read_json(str(run / wd.RESULT))["step"] > 0
