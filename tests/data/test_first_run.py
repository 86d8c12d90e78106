"""A run's numbers do not depend on whether its dataset was prepared in that run (issue 13, item 6).

Preparing a dataset used to draw from Python's global `random` (tfds names its temporary directory with
`random.choice`; importing scikit-learn for the digits imports rich, which calls `random.getrandbits`). Keras
draws the seeds of unseeded initializers from that same generator, so the run that prepared the digits started
from other initial weights than every later run with the same seed.
"""

import os
import random
import subprocess
import sys

import numpy as np
import pytest
from tiny_params import TINY, UNREAD

from supcon import data
from supcon import workdir as wd
from supcon.data import sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPARED = ("eval/loss", "eval/top1", "eval/top5", "knn/top1", "step", "train_examples")


def global_rng_state() -> int:
    """A hash of Python's and NumPy's global random states (a short assertion message when they differ)."""
    return hash((random.getstate(), np.random.get_state()[1].tobytes(), np.random.get_state()[2:]))


@pytest.mark.parametrize("seed", [0, 7])
def test_load_source_leaves_global_random_state_alone(tmp_path, monkeypatch, seed):
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "default"))
    for attempt in ("prepares", "reads the prepared files"):
        random.seed(seed)
        np.random.seed(seed)
        before = global_rng_state()
        data.load_source("digits", data_dir=str(tmp_path / "data"))
        assert global_rng_state() == before, f"load_source moved the global random state when it {attempt}"
    assert os.path.isdir(tmp_path / "data" / "supcon_digits")


def train_once(workdir, data_dir):
    """One `python -m supcon.main` run of the tiny digits recipe, its default data dir set to data_dir."""
    env = {**os.environ, "SUPCON_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2", sources.DATA_DIR_ENV: str(data_dir)}
    cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(workdir), "--gin_file", TINY]
    for param in UNREAD:
        cmd += ["--gin_param", param]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return *outcome(workdir), proc.stdout + proc.stderr


def outcome(workdir):
    """A finished run's result.json and its (step, loss) training lines."""
    losses = [(r["step"], r["loss"]) for r in wd.read_jsonl(os.path.join(workdir, wd.METRICS)) if r["kind"] == "train"]
    return wd.read_json(os.path.join(workdir, wd.RESULT)), losses


def test_the_run_that_prepares_the_dataset_equals_a_later_run(tiny_run, tiny_run_origin, tmp_path):
    """The session's tiny run (tests/conftest.py) is the first run on its fresh data dir: it prepared the digits
    there. A later run of the same recipe on that data dir reads them, and trains and evaluates the same."""
    data_dir, first_log = tiny_run_origin
    first, first_losses = outcome(tiny_run)
    later, later_losses, later_log = train_once(tmp_path / "later", data_dir)
    assert "supcon_digits downloaded and prepared" in first_log
    assert "downloaded and prepared" not in later_log
    assert [s for s, _ in first_losses] == [s for s, _ in later_losses] and first_losses
    for (step, a), (_, b) in zip(first_losses, later_losses, strict=True):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-7), f"train loss at step {step}"
    for key in COMPARED:
        assert first[key] == pytest.approx(later[key], rel=1e-6, abs=1e-7), key
