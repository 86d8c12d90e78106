"""The joint protocol (protocols/joint.gin): one stage trains the SupCon loss and, behind a stop-gradient, the
classifier. A recipe that uses it alone binds only the joint stage (no pretrain/ or linear/ stage, no unused
optimizer) and trains; recipes/ablation_joint.gin runs it beside the two-stage protocol."""

import json
import os
import subprocess
import sys

import pytest

from supcon import workdir as wd
from supcon.experiment import grid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOINT = os.path.join(ROOT, "tests", "fixtures", "train", "digits_joint.gin")
PROTOCOL = os.path.join(ROOT, "recipes", "protocols", "joint.gin")
ENV = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_the_joint_protocol_binds_only_what_it_uses():
    recipe = grid.load_recipe(JOINT)  # the unused-binding checks (supcon.experiment.bindings) pass
    scopes = {b.scope for b in recipe.bindings if b.scope}
    assert scopes == {"supcon", "supcon_joint", "joint"}, scopes
    assert not [f for f in recipe.files if "two_stage" in f or f.endswith("protocols/supcon.gin")], recipe.files
    assert recipe.macros["METHOD"] == "supcon_joint"


def _train(workdir, *params):
    cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(workdir), "--gin_file", JOINT]
    for p in params:
        cmd += ["--gin_param", p]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [r for r in wd.read_jsonl(os.path.join(workdir, wd.METRICS)) if r["kind"] == "train"]


@pytest.mark.slow  # two trainer processes for the joint ablation's protocol; its bindings are checked above
def test_a_joint_run_trains_both_losses_in_one_stage_behind_a_stop_gradient(tmp_path):
    joint = _train(tmp_path / "joint")
    assert {r["stage"] for r in joint} == {"joint"} and joint[-1]["step"] == 24  # 3 epochs of 256 at batch 32
    for term in ("contrastive", "cross_entropy"):
        assert joint[-1][term] < joint[0][term], (term, joint)
    assert (tmp_path / "joint" / wd.RESULT).is_file()
    # The same run without the classifier's loss: the encoder, the projection head and hence the contrastive
    # loss follow the same path step for step, since the cross-entropy never reaches the encoder.
    alone = _train(tmp_path / "alone", "joint/stage.cross_entropy_weight = 0.0")
    assert "cross_entropy" not in alone[0]
    assert [r["step"] for r in alone] == [r["step"] for r in joint]
    for a, b in zip(joint, alone, strict=True):
        assert abs(a["contrastive"] - b["contrastive"]) <= 1e-5 * abs(b["contrastive"]), (a, b)


@pytest.mark.slow  # the joint stage itself is tested above, in one trainer process
def test_the_joint_recipe_runs_under_the_runner(tmp_path):
    """recipes/ablation_joint.gin's joint point, end to end with the smoke overlay (ImageNet -> digits)."""
    cmd = [
        sys.executable, "runner.py", "recipes/ablation_joint.gin", "--smoke", "--only", "METHOD=supcon_joint",
        "--runs_dir", str(tmp_path / "runs"), "--noreport",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = tmp_path / "runs" / "smoke" / "ablation_joint"
    (run_dir,) = [runs / d for d in os.listdir(runs)]
    point = json.loads((run_dir / wd.POINT).read_text())
    assert point["values"] == {"METHOD": "supcon_joint"}
    records = [r for r in wd.read_jsonl(os.path.join(run_dir, wd.METRICS)) if r["kind"] == "train"]
    assert {r["stage"] for r in records} == {"joint"} and "cross_entropy" in records[-1]
    assert (run_dir / wd.RESULT).is_file()
