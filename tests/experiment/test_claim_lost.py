"""A runner that loses its claim on a point while the point trains (supcon/experiment/claim.py, the Launcher's
heartbeat): another runner took the claim over, or claim.json vanished.

The heartbeat refreshes claim.json every claim_timeout / 4 seconds (at least 0.2 s). A refresh succeeds only while
claim.json holds this runner's token; when it fails the runner marks the point lost, terminates its trainer
process, reports the point as busy ("taken over by another runner"), and leaves claim.json as it found it (another
runner's claim stays; a vanished one is not written back).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from supcon import workdir
from supcon.experiment.claim import Claim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "runner")
RUNNER = os.path.join(ROOT, "runner.py")
THEIRS = {"host": "elsewhere", "pid": 1, "child_pid": None, "token": "the-other-runner"}


def write_claim(path, claim):
    tmp = f"{path}.test-tmp"
    with open(tmp, "w") as f:
        json.dump(claim, f)
    os.replace(tmp, path)


def read_claim(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------------------------------------------
# Claim itself


def test_refresh_fails_and_release_keeps_the_claim_once_another_runner_holds_it(tmp_path):
    ours = Claim(str(tmp_path), 30)
    assert ours.acquire() and ours.refresh()
    write_claim(ours.path, {**THEIRS, "time": time.time()})
    assert ours.refresh() is False
    assert read_claim(ours.path)["token"] == THEIRS["token"]  # the failed refresh wrote nothing
    ours.release()
    assert read_claim(ours.path)["token"] == THEIRS["token"]  # nor did the release remove theirs


def test_refresh_fails_and_writes_nothing_once_the_claim_file_is_gone(tmp_path):
    ours = Claim(str(tmp_path), 30)
    assert ours.acquire()
    os.remove(ours.path)
    assert ours.refresh() is False
    assert not os.path.exists(ours.path)
    ours.release()
    assert not os.path.exists(ours.path)
    assert Claim(str(tmp_path), 30).acquire()  # the point is free for the next runner


# ---------------------------------------------------------------------------------------------------------
# The runner, with the fake trainer of tests/fixtures/runner


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait(condition, what, proc=None, seconds=120):
    """Polls `condition` while `proc` (if any) runs; `seconds` is a hang guard, not a speed check."""
    deadline = time.monotonic() + seconds
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the runner exited ({proc.returncode}) before {what}:\n{proc.communicate()[0]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} in {seconds} s")
        time.sleep(0.1)


@pytest.mark.parametrize("reuse", ["--reuse_process", "--noreuse_process"])
@pytest.mark.parametrize("loss", ["taken_over", "vanished"])
def test_runner_that_loses_its_claim_stops_its_trainer(tmp_path, loss, reuse):
    cmd = [sys.executable, RUNNER, os.path.join(FIXTURES, "single.gin"), "--runs_dir", str(tmp_path / "runs"),
           "--main_module", "fake_main", "--noreport", "--claim_timeout", "2", reuse,
           "--gin_param", "FAKE_SLEEP = 600", "--gin_param", "FAKE_STEPS = 600"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=FIXTURES, FAKE_TRAIN_LOG=str(tmp_path / "train.log"))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = tmp_path / "runs" / "single" / "default"
    path, log = str(run_dir / workdir.CLAIM), run_dir / workdir.LOG
    trainer = None
    try:
        _wait(lambda: log.exists() and "step 1/600" in log.read_text(), "training step", proc)
        _wait(lambda: (read_claim(path) or {}).get("child_pid"), "trainer pid in claim.json", proc)
        ours = read_claim(path)
        trainer = ours["child_pid"]
        assert ours["pid"] == proc.pid and _alive(trainer)

        deadline = time.monotonic() + 120  # a hang guard: the trainer alone would run 600 s
        while proc.poll() is None:
            # Again if a refresh that had read the claim just before wrote it back after us.
            if loss == "taken_over" and (read_claim(path) or {}).get("token") != THEIRS["token"]:
                write_claim(path, {**THEIRS, "time": time.time()})
            if loss == "vanished" and (read_claim(path) or {}).get("token") == ours["token"]:
                os.remove(path)
            assert time.monotonic() < deadline, "the runner kept training a point whose claim it lost"
            time.sleep(0.1)
        out = proc.communicate()[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if trainer and _alive(trainer):
            os.kill(trainer, signal.SIGKILL)

    assert proc.returncode == 0, out  # a busy point is not a failure
    assert "stopped default (another runner took over its stale claim)" in " ".join(out.split()), out
    assert "1 busy" in out and "busy default: taken over by another runner" in " ".join(out.split()), out
    _wait(lambda: not _alive(trainer), "end of the trainer process", seconds=30)
    assert not (run_dir / workdir.RESULT).exists()
    assert not (tmp_path / "train.log").exists()  # the fake trainer logs a run only once it finishes
    if loss == "taken_over":
        assert read_claim(path)["token"] == THEIRS["token"]  # the other runner's claim is left alone
    else:
        assert not os.path.exists(path)  # not written back

