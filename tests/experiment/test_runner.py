"""Tests for runner.py, with a fake trainer (tests/fixtures/runner/fake_main.py) instead of supcon.main.

Every test runs `python runner.py` in a subprocess, in a temporary directory, as a user would.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from supcon import workdir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "runner")
RUNNER = os.path.join(ROOT, "runner.py")
CORES = len(os.sched_getaffinity(0))


def fixture(name):
    return os.path.join(FIXTURES, name)


def env_for(tmp_path):
    return dict(
        os.environ,
        PYTHONPATH=FIXTURES,
        FAKE_TRAIN_LOG=str(tmp_path / "train.log"),
        FAKE_VALIDATE_LOG=str(tmp_path / "validate.log"),
    )


def runner_cmd(tmp_path, *args):
    """The runner with the fake trainer; --noreport unless the args say --report."""
    report = [] if "--report" in args else ["--noreport"]
    return [sys.executable, RUNNER, *args, "--runs_dir", str(tmp_path / "runs"),
            "--main_module", "fake_main", *report]  # fmt: skip


def run(tmp_path, *args):
    return subprocess.run(
        runner_cmd(tmp_path, *args), cwd=tmp_path, env=env_for(tmp_path),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def read_lines(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def trained(tmp_path):
    """Workdirs the fake trainer trained, one entry per training run."""
    return [os.path.basename(r["workdir"]) for r in read_lines(tmp_path / "train.log")]


def tree(path):
    return sorted(
        os.path.relpath(os.path.join(d, n), path) for d, ds, fs in os.walk(path) for n in ds + fs
    )


def test_runner_imports_no_tensorflow():
    code = "import sys, runner; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_help_does_not_import_tensorflow():
    """`runner.py --help` answers without importing TensorFlow (whose import alone takes seconds)."""
    code = (
        "import runpy, sys\n"
        "sys.argv = [sys.argv[1], '--help']\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), f'exit code {e.code}'\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, RUNNER], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "python runner.py RECIPE.gin" in proc.stdout and "--shard" in proc.stdout


BAD_FLAGS = [
    (["{grid}", "--shard", "3/2"], "--shard 3/2"),
    (["{grid}", "--shard", "abc"], "--shard 'abc'"),
    (["{grid}", "--jobs", "0"], "--jobs must be"),
    (["{grid}", "--jobs", "two"], "--jobs=two"),
    (["{grid}", "--only", "TEMPERATURE=0.1"], "no axis TEMPERATURE"),
    (["{grid}", "--only", "SEED=9"], "matches no point"),
    (["{grid}", "--gin_param", "train.x = = 1"], "--gin_param 'train.x = = 1'"),
    (["{grid}", "--gin_param", "SEED = 3"], "rebinds the grid axis SEED"),
    (["missing.gin"], "does not exist"),
    (["folder"], "is a folder"),
    (["notes.txt"], "is not a gin file"),
    (["{grid}", "--runs_dir", "afile"], "--runs_dir afile is a file"),
    (["{grid}", "--runs_dir", "afile/sub"], "is a file, not a directory"),
    (["{grid}", "--report", "--report_dir", "afile"], "--report_dir afile is a file"),
    (["{grid}", "--claim_timeout", "-1"], "--claim_timeout"),
    (["{grid}", "--no_such_flag"], "no_such_flag"),
    (["{grid}", "--auto_precision", "bfloat16"], "flag --auto_precision=bfloat16: value should be one of"),
    ([], "expected one recipe"),
    (["{bad_grid}"], "bad.gin:2: grid.axes key 'seed'"),
    # recipe files: encoding, empty, include cycle, missing include
    (["latin1.gin"], "latin1.gin:2: not UTF-8 text (byte 0xe9 at offset 17); save it as UTF-8"),
    (["empty.gin"], "empty.gin: the recipe is empty (no include and no binding): an unsaved or truncated"),
    (["cycle.gin"], "cycle.gin:1: include 'cycle.gin' closes an include cycle: cycle.gin -> cycle.gin"),
    (["noinclude.gin"], "noinclude.gin:1: include 'base/nowhere.gin' not found"),
    # bindings and overrides nothing reads, with the nearest name
    (["{grid}", "--gin_param", "TEMPERATUR=0.2"],
     "--gin_param 'TEMPERATUR=0.2': nothing reads the macro TEMPERATUR (no binding refers to %TEMPERATUR); "
     "did you mean TEMPERATURE?"),
    (["{grid}", "--gin_param", "train.seed = %SEDE"], "train.seed refers to %SEDE, which nothing binds"),
    (["{grid}", "--gin_param", "supcn/train.seed = 1"], "nothing enters the scope supcn/"),
    # grid and report settings
    (["{grid}", "--gin_param", "report.rows = ['METHD']"], "report.rows names METHD, which no grid point sets"),
    (["{grid}", "--gin_param", "report.metrics = ['top1']"], "report.metrics names top1, which no run writes"),
    (["{grid}", "--gin_param", "grid.axes = {{'SEED': []}}"], "grid.axes['SEED'] must be a non-empty list"),
    (["{grid}", "--gin_param", "grid.axes = {{'SEED': [0, 0]}}"], "duplicate grid point"),
]


@pytest.mark.parametrize("args, message", BAD_FLAGS)
def test_bad_flags_give_one_line_and_write_nothing(tmp_path, args, message):
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("not gin\n")
    (tmp_path / "afile").write_text("")
    (tmp_path / "bad.gin").write_text("# bad\ngrid.axes = {'seed': [0]}\n")
    (tmp_path / "latin1.gin").write_bytes(b"# recipe\nX = 'caf\xe9'\n")
    (tmp_path / "empty.gin").write_bytes(b"")
    (tmp_path / "cycle.gin").write_text("include 'cycle.gin'\n")
    (tmp_path / "noinclude.gin").write_text("include 'base/nowhere.gin'\n")
    names = {"grid": fixture("grid.gin"), "bad_grid": str(tmp_path / "bad.gin")}
    args = [a.format(**names) for a in args]
    before = tree(tmp_path)
    cmd = [sys.executable, RUNNER, *args, "--main_module", "fake_main"]
    if "--runs_dir" not in args:
        cmd += ["--runs_dir", "runs"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env_for(tmp_path), capture_output=True, text=True)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("runner.py: error:") and message in lines[0], lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "tf_config, message",
    [
        ("{'cluster': 1}", "TF_CONFIG is not JSON (Expecting property name enclosed in double quotes at column 2)"),
        ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG needs a 'cluster' dict"),
        ('{"cluster": {"worker": ["host0"]}, "task": {"type": "worker", "index": 0}}',
         "TF_CONFIG cluster.worker must be a non-empty list of 'host:port'; got ['host0']"),
        ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
         "TF_CONFIG task.type must be one of the cluster's worker; got 'chief'"),
        ('{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}',
         "TF_CONFIG task.index must be an integer from 0 to 1 (cluster.worker has 2); got 2"),
    ],
)
def test_malformed_tf_config_is_one_line_and_writes_nothing(tmp_path, tf_config, message):
    proc = subprocess.run(
        runner_cmd(tmp_path, fixture("single.gin")), cwd=tmp_path, capture_output=True, text=True,
        env=dict(env_for(tmp_path), TF_CONFIG=tf_config),
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runner.py: error: TF_CONFIG") and message in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_invalid_point_stops_everything_before_writing(tmp_path):
    proc = run(tmp_path, fixture("invalid.gin"))
    assert proc.returncode == 2
    assert "invalid point name-bad_fake_invalid-unknown-binding-train.temprature" in proc.stderr
    assert (
        "<bindings of name-bad" in proc.stderr and "unknown binding train.temprature" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists() and not trained(tmp_path)
    [call] = read_lines(tmp_path / "validate.log")  # one validation process for all points
    assert len(call["names"]) == 2


def test_validator_crash_is_one_line(tmp_path):
    cmd = runner_cmd(tmp_path, fixture("single.gin")) + ["--main_module", "no_such_module"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env_for(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "validation failed" in proc.stderr
    assert "No module named no_such_module" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_run_writes_run_dirs_and_rerun_skips_done_points(tmp_path):
    proc = run(tmp_path, fixture("grid.gin"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    slugs = sorted(trained(tmp_path))
    assert len(slugs) == 4 and len(set(slugs)) == 4
    run_dir = tmp_path / "runs" / "grid" / "method-ce_loss-ce_seed-1"
    assert workdir.point_status(str(run_dir)) == "done"
    point = json.load(open(run_dir / workdir.POINT))
    assert point["recipe"] == "tests/fixtures/runner/grid.gin" and point["recipe_stem"] == "grid"
    assert point["slug"] == "method-ce_loss-ce_seed-1" and len(point["id"]) == 8
    assert point["bindings"] == {"METHOD": "'ce'", "LOSS": "@ce", "SEED": "1"}
    assert point["values"] == {"METHOD": "ce", "LOSS": "@ce", "SEED": 1}
    assert point["gin_files"] == [fixture("grid.gin"), str(run_dir / "point.gin")]
    assert point["gin_params"] == [] and point["smoke"] is False
    assert point["report"]["rows"] == ["METHOD"] and point["header"][0].startswith("Reproduces:")
    assert (run_dir / "point.gin").read_text().endswith("METHOD = 'ce'\nLOSS = @ce\nSEED = 1\n")
    assert "fake training" in (run_dir / workdir.LOG).read_text()
    assert not (run_dir / workdir.CLAIM).exists()  # released
    record = read_lines(tmp_path / "train.log")[0]
    assert record["threads"] == str(CORES) and record["macros"]["SEED"] in ("0", "1")
    assert "[4/4] done" in proc.stdout and "4 trained, 0 already done, 0 failed" in proc.stdout

    again = run(tmp_path, fixture("grid.gin"))
    assert again.returncode == 0
    assert again.stdout.count("(done)") == 4 and "0 trained, 4 already done" in again.stdout
    assert len(trained(tmp_path)) == 4  # nothing retrained
    assert len(read_lines(tmp_path / "validate.log")) == 1  # nothing left to validate


def test_failed_points_are_reported_and_partial_points_resume(tmp_path):
    proc = run(tmp_path, fixture("cases.gin"))
    assert proc.returncode == 1
    assert "1 trained, 0 already done, 2 failed" in proc.stdout
    assert (
        "failed case-fail_fake_fail-true_fake_crash_once-false: fake failure: loss is NaN at step 3"
        in proc.stdout
    )
    assert "fake crash: killed at step 5 (exit code 3)" in proc.stdout  # last log line + exit code
    assert sorted(trained(tmp_path)) == sorted(
        ["case-ok_fake_fail-false_fake_crash_once-false", "case-fail_fake_fail-true_fake_crash_once-false",
         "case-crash_fake_fail-false_fake_crash_once-true"]
    )  # fmt: skip

    dry = run(tmp_path, fixture("cases.gin"), "--dry_run")
    assert dry.returncode == 0
    status = {
        line.split()[-1].split("/")[-1]: line.split()[0]
        for line in dry.stdout.splitlines()
        if "runs/" in line and "fake failure" not in line
    }
    assert status["case-ok_fake_fail-false_fake_crash_once-false"] == "done"
    assert status["case-crash_fake_fail-false_fake_crash_once-true"] == "partial"
    assert "failed   " in dry.stdout and "fake failure: loss is NaN" in dry.stdout

    again = run(tmp_path, fixture("cases.gin"), "--only", "CASE=crash", "--only", "CASE=ok")
    assert again.returncode == 0, again.stdout
    assert "(resuming)" in again.stdout and "0 failed" in again.stdout
    records = read_lines(tmp_path / "train.log")
    assert [r["resumed"] for r in records if "crash_once-true" in r["workdir"]] == [False, True]
    assert len(records) == 4  # the done point was skipped, the failed one not selected


def test_jobs_run_points_at_once_and_divide_threads(tmp_path):
    proc = run(tmp_path, fixture("axes.gin"), "--jobs", "2", "--gin_param", "FAKE_SLEEP = 0.4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = read_lines(tmp_path / "train.log")
    assert len(records) == 6
    assert {r["threads"] for r in records} == {str(max(1, CORES // 2))}
    assert len({r["pid"] for r in records}) == 2  # one trainer process per job
    spans = sorted((r["start"], r["end"]) for r in records)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))  # some overlap


def test_points_share_one_trainer_process_unless_told_not_to(tmp_path):
    proc = run(tmp_path, fixture("axes.gin"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = read_lines(tmp_path / "train.log")
    (validator,) = [r["pid"] for r in read_lines(tmp_path / "validate.log")]
    assert len(records) == 6 and {r["pid"] for r in records} == {validator}  # the validator trained all six
    logs = [open(os.path.join(r["workdir"], workdir.LOG)).read() for r in records]
    assert [f"--serve), its point {k}" in log for k, log in enumerate(logs, 1)] == [True] * 6
    assert all(log.count("fake training") == 1 for log in logs)  # each point's output in its own log

    other = tmp_path / "noreuse"
    other.mkdir()
    proc = run(other, fixture("axes.gin"), "--noreuse_process")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pids = [r["pid"] for r in read_lines(other / "train.log")]
    assert len(pids) == len(set(pids)) == 6  # a process per point
    assert read_lines(other / "validate.log")[0]["pid"] not in pids


def test_a_dying_trainer_process_fails_its_point_and_is_replaced(tmp_path):
    proc = run(tmp_path, fixture("die.gin"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 trained, 0 already done, 1 failed" in proc.stdout
    assert "failed case-dies_fake_die-true: fake death: the trainer process kills itself (killed by signal 9)" in (
        proc.stdout)
    pids = {os.path.basename(r["workdir"]).split("_")[0]: r["pid"] for r in read_lines(tmp_path / "train.log")}
    assert pids["case-first"] == pids["case-dies"] != pids["case-after"]  # a fresh process after the death
    run_dir = tmp_path / "runs" / "die" / "case-after_fake_die-false"
    assert workdir.point_status(str(run_dir)) == "done"


def test_a_point_that_needs_a_fresh_process_gets_one(tmp_path):
    proc = run(tmp_path, fixture("fresh.gin"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pids = {os.path.basename(r["workdir"]).split("_")[0]: r["pid"] for r in read_lines(tmp_path / "train.log")}
    assert len(pids) == 3  # each point trained once: the refused request trained nothing
    (validator,) = [r["pid"] for r in read_lines(tmp_path / "validate.log")]
    assert pids["case-first"] == validator
    assert len({pids["case-first"], pids["case-own"], pids["case-after"]}) == 3  # its own, which then exits
    own_log = (tmp_path / "runs" / "fresh" / "case-own_fake_fresh-true" / workdir.LOG).read_text()
    assert own_log.count("=== runner.py") == 2 and own_log.count("fake training") == 1  # refused, then run


def test_two_runners_at_once_train_each_point_once(tmp_path):
    args = (fixture("axes.gin"), "--jobs", "2", "--gin_param", "FAKE_SLEEP = 0.3")
    procs = [
        subprocess.Popen(runner_cmd(tmp_path, *args), cwd=tmp_path, env=env_for(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    slugs = trained(tmp_path)
    assert sorted(slugs) == sorted(set(slugs)) and len(slugs) == 6
    for slug in slugs:
        assert workdir.point_status(str(tmp_path / "runs" / "axes" / slug)) == "done"


def write_claim(run_dir, **claim):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, workdir.CLAIM), "w") as f:
        json.dump(claim, f)


def test_live_claim_is_respected_and_stale_claim_taken_over(tmp_path):
    run_dir = tmp_path / "runs" / "single" / "default"
    write_claim(run_dir, host="elsewhere", pid=1, time=time.time(), token="x")
    proc = run(tmp_path, fixture("single.gin"), "--claim_timeout", "30")
    assert proc.returncode == 0 and "busy" in proc.stdout and "elsewhere:1" in proc.stdout
    assert not trained(tmp_path) and (run_dir / workdir.CLAIM).exists()
    dry = run(tmp_path, fixture("single.gin"), "--dry_run", "--claim_timeout", "30")
    assert "[claimed by elsewhere:1" in dry.stdout

    write_claim(run_dir, host="elsewhere", pid=1, time=time.time() - 60, token="x")
    proc = run(tmp_path, fixture("single.gin"), "--claim_timeout", "30")
    assert proc.returncode == 0 and "1 trained" in proc.stdout
    assert trained(tmp_path) == ["default"] and not (run_dir / workdir.CLAIM).exists()


def test_claim_of_a_dead_process_on_this_host_is_taken_over_at_once(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "runs" / "single" / "default"
    write_claim(
        run_dir,
        host=socket.gethostname(),
        pid=dead.pid,
        child_pid=None,
        time=time.time(),
        token="x",
    )
    proc = run(tmp_path, fixture("single.gin"))  # default --claim_timeout: 600 s
    assert proc.returncode == 0 and "1 trained" in proc.stdout
    assert trained(tmp_path) == ["default"]


def test_auto_precision_reaches_the_trainers_and_is_not_a_setting(tmp_path):
    """--auto_precision is handed to every trainer process (SUPCON_AUTO_PRECISION) and changes no point: a rerun
    without it finds the same run dirs done, and their point.json has no trace of it."""
    proc = run(tmp_path, fixture("grid.gin"), "--auto_precision", "float32")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = read_lines(tmp_path / "train.log")
    assert len(records) == 4 and {r["auto_precision"] for r in records} == {"float32"}
    point = json.load(open(tmp_path / "runs" / "grid" / "method-ce_loss-ce_seed-1" / workdir.POINT))
    assert point["gin_params"] == [] and "precision" not in json.dumps(point["training_settings"])
    again = run(tmp_path, fixture("grid.gin"))  # the default, 'hardware'
    assert again.returncode == 0 and "0 trained, 4 already done" in again.stdout, again.stdout + again.stderr


def test_dry_run_shows_status_and_writes_nothing(tmp_path):
    root = tmp_path / "runs" / "axes"
    workdir.write_json_atomic(
        str(root / "temperature-0.05_seed-0" / workdir.RESULT), {"eval/top1": 0.5}
    )
    workdir.write_status(str(root / "temperature-0.05_seed-1"), workdir.FAILED, 3, "loss is NaN")
    os.makedirs(root / "temperature-0.1_seed-0" / workdir.CKPT_DIR / "ckpt-1")
    before = tree(tmp_path)
    proc = run(tmp_path, fixture("axes.gin"), "--dry_run")
    assert proc.returncode == 0
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert [r[0] for r in rows] == ["done", "failed", "partial", "new", "new", "new"]
    assert rows[1][-3:] == ["loss", "is", "NaN"]
    assert "status: 1 done, 1 failed, 3 new, 1 partial" in proc.stdout
    assert tree(tmp_path) == before and not trained(tmp_path)


def test_shards_from_the_command_line_are_disjoint_and_cover(tmp_path):
    def ids(*args):
        out = run(tmp_path, fixture("axes.gin"), "--dry_run", *args).stdout
        return [line.split()[1] for line in out.splitlines() if line.startswith("  ")]

    everything = ids()
    slices = [ids("--shard", f"{i}/4") for i in range(4)]
    assert sorted(sum(slices, [])) == sorted(everything) and len(everything) == 6
    assert ids("--only", "SEED=1") == [everything[i] for i in (1, 3, 5)]


def test_shard_runs_only_its_slice(tmp_path):
    proc = run(tmp_path, fixture("axes.gin"), "--shard", "1/3")
    assert proc.returncode == 0 and "2 selected" in proc.stdout
    assert len(trained(tmp_path)) == 2


def test_rerun_with_other_gin_params_is_refused(tmp_path):
    assert run(tmp_path, fixture("single.gin"), "--gin_param", "FAKE_TOP1 = 0.9").returncode == 0
    result = json.load(open(tmp_path / "runs" / "single" / "default" / workdir.RESULT))
    assert result["eval/top1"] == 0.9
    proc = run(tmp_path, fixture("single.gin"))
    assert proc.returncode == 2 and "was run with --gin_param ['FAKE_TOP1 = 0.9']" in proc.stderr
    assert len(trained(tmp_path)) == 1


def test_smoke_appends_the_overlay_in_its_own_runs_dir(tmp_path):
    proc = run(tmp_path, fixture("single.gin"), "--smoke")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    point = json.load(open(tmp_path / "runs" / "smoke" / "single" / "default" / workdir.POINT))
    assert point["smoke"] is True
    assert point["gin_files"][-1] == os.path.join(ROOT, "recipes", "smoke.gin")


def run_python(code, *args):
    """Runs `code` in a fresh interpreter (runner defines absl flags; keep them out of this process)."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_claim_is_exclusive_and_only_its_owner_refreshes_or_releases(tmp_path):
    code = """
import json, sys, time
from supcon.experiment.claim import Claim
d = sys.argv[1]
a, b = Claim(d, 30), Claim(d, 30)
out = [a.acquire(), b.acquire(), bool(b.holder())]
b.release()                       # not b's claim: no effect
out += [a.refresh(), bool(b.holder())]
a.release()
out += [b.acquire(), a.refresh()]
claim = json.load(open(d + '/claim.json'))
claim['time'] = time.time() - 100  # b went silent
json.dump(claim, open(d + '/claim.json', 'w'))
c = Claim(d, 30)
out += [c.acquire(), b.refresh(), c.refresh()]
print(json.dumps(out))
"""
    out = json.loads(run_python(code, str(tmp_path)))
    assert out == [True, False, True, True, True, True, False, True, False, True]


def test_only_one_of_many_runners_takes_over_a_stale_claim(tmp_path):
    write_claim(str(tmp_path), host="elsewhere", pid=1, time=time.time() - 100, token="old")
    code = "import sys, time; from supcon.experiment.claim import Claim; time.sleep(max(0, float(sys.argv[2]) - time.time())); print(Claim(sys.argv[1], 10).acquire())"
    start = str(time.time() + 2)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), start],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(results) == ["False"] * 5 + ["True"]
    assert json.load(open(tmp_path / workdir.CLAIM))["token"] != "old"


def test_report_waits_for_the_other_shards(tmp_path):
    proc = run(tmp_path, fixture("axes.gin"), "--shard", "0/2", "--report")
    assert proc.returncode == 0
    assert "report: skipped, 3 points of other shards are not done" in proc.stdout
    assert not (tmp_path / "reports").exists()


def test_report_is_written_after_the_grid(tmp_path):
    proc = run(tmp_path, fixture("grid.gin"), "--report")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "report: reports/grid/README.md" in proc.stdout
    assert (tmp_path / "reports" / "grid" / "README.md").exists()


def test_unusable_run_dirs_are_skipped_with_their_reason_and_never_overwritten(tmp_path):
    """A truncated result.json, a point.json that is not JSON, another point's run dir: the runner trains the
    other points, lists these with their reason, exits 1 and leaves their files as they were."""
    root = tmp_path / "runs" / "axes"
    truncated = root / "temperature-0.05_seed-0"
    truncated.mkdir(parents=True)
    (truncated / workdir.RESULT).write_text('{"eval/top1": 0.5, "st')
    garbled = root / "temperature-0.05_seed-1"
    garbled.mkdir()
    (garbled / workdir.POINT).write_text("not json\n")
    other = root / "temperature-0.1_seed-0"
    workdir.write_json_atomic(str(other / workdir.POINT), {
        "id": "0badc0de", "recipe": "recipes/other.gin", "recipe_stem": "axes", "values": {"X": 1},
        "bindings": {"X": "1"},
    })  # fmt: skip
    old_version = root / "temperature-0.1_seed-1"
    workdir.write_json_atomic(str(old_version / workdir.POINT), {"recipe": "axes", "bindings": {}})
    status_only = root / "temperature-0.5_seed-0"
    status_only.mkdir()
    (status_only / workdir.STATUS).write_text('{"state": "runn')
    before = {p: (p / f).read_bytes() for p in (truncated, garbled, other, old_version) for f in os.listdir(p)}

    dry = run(tmp_path, fixture("axes.gin"), "--dry_run")
    assert dry.returncode == 0 and "status: 1 new, 1 partial, 4 unusable" in dry.stdout, dry.stdout
    assert "result.json is not JSON (truncated?)" in dry.stdout
    assert "(status.json is not JSON (truncated?)" in dry.stdout and "training rewrites it)" in dry.stdout

    proc = run(tmp_path, fixture("axes.gin"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 trained, 0 already done, 0 failed, 4 unusable" in proc.stdout
    assert sorted(trained(tmp_path)) == ["temperature-0.5_seed-0", "temperature-0.5_seed-1"]
    lines = {line.split()[1].rstrip(":"): line for line in proc.stdout.splitlines() if line.startswith("  unusable")}
    assert "result.json is not JSON (truncated?): Unterminated string starting at (line 1 column 20)" in lines["temperature-0.05_seed-0"]
    assert "point.json is not JSON (truncated?)" in lines["temperature-0.05_seed-1"]
    assert "holds point 0badc0de of recipe recipes/other.gin {'X': '1'}, not this one" in (
        lines["temperature-0.1_seed-0"])
    assert "point.json is from an older version of the runner (no recipe_stem, values, id)" in (
        lines["temperature-0.1_seed-1"])
    assert all("move runs/axes/temperature-" in line and "away to run this point" in line for line in lines.values())
    after = {p: (p / f).read_bytes() for p in (truncated, garbled, other, old_version) for f in os.listdir(p)}
    assert after == before  # nothing written into them, no claim left behind
    assert workdir.point_status(str(status_only)) == "done"  # a truncated status.json is not a result


# ---------------------------------------------------------------------------------------------------------
# Console progress (supcon/experiment/progress.py), "Generated by" and run dirs found by point id


STEPS = ("--gin_param", "FAKE_STEPS = 5", "--gin_param", "FAKE_SLEEP = 2.5")
PROGRESS_LINE = r"\[\d/\d\] \S+  pretrain [1-5]/5 loss \d\.\d{4} (ETA 0m0\ds|evaluating)"


@pytest.mark.slow  # waits for periodic progress lines of real trainings
def test_progress_in_a_log_is_plain_periodic_lines_per_point(tmp_path):
    proc = run(tmp_path, fixture("axes.gin"), "--only", "SEED=0", "--jobs", "2", *STEPS, "--progress_every", "0.4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validating 3 points" in proc.stdout and "\r" not in proc.stdout and "\x1b" not in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if re.fullmatch(PROGRESS_LINE, line)]
    shown = {line.split()[1] for line in lines}
    assert shown == {"temperature-0.05_seed-0", "temperature-0.1_seed-0", "temperature-0.5_seed-0"}, proc.stdout
    quiet = run(tmp_path, fixture("axes.gin"), "--only", "SEED=1", "--only", "TEMPERATURE=0.1", *STEPS,
                "--progress", "off")
    assert quiet.returncode == 0 and not re.search(r"pretrain \d/5", quiet.stdout), quiet.stdout


def test_progress_bar_redraws_one_line_and_messages_print_above_it(tmp_path):
    proc = subprocess.run(runner_cmd(tmp_path, fixture("single.gin"), *STEPS, "--progress", "bar"), cwd=tmp_path,
                          env=env_for(tmp_path), capture_output=True, timeout=120)  # bytes: "\r" stays "\r"
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert "validating 1 point with" in out  # not "1 points"
    assert re.search(r"\[1/1\] default  pretrain \[=+>? *\] [1-5]/5 loss \d\.\d{4} (ETA 0m0\ds|evaluating)\r\x1b\[K", out)
    printed = out.replace("\r\x1b[K", "\n").splitlines()  # what the terminal shows, line by line
    assert any(line.startswith("[1/1] done    default in ") for line in printed), printed
    assert out.split("summary:")[0].endswith(("\n", "\r\x1b[K"))  # no status line before the summary


def test_progress_is_a_bar_on_a_terminal(tmp_path):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(runner_cmd(tmp_path, fixture("single.gin"), *STEPS), cwd=tmp_path,
                            env=dict(env_for(tmp_path), TERM="xterm"), stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every writer of the terminal is gone
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    text = out.decode()
    assert "\r\x1b[K" in text and re.search(r"default  pretrain \[=+>? *\] [1-5]/5", text), text


def test_progress_parses_the_trainers_lines_and_fits_the_terminal(tmp_path):
    from supcon.experiment import progress

    state = progress.State()
    assert state.text() == "starting"
    assert state.update("stage pretrain: steps 0..3906 of 5468") and state.text() == "pretrain 0/5468"
    assert not state.update("W1201 22:21:31 file_utils.py:394] Variant folder has no dataset_info.json")
    line = "step 340/5468 [pretrain] loss 0.5328 lr 0.9851 1619 img/s ETA 13m28s"
    assert state.update(line) and state.text() == "pretrain 340/5468 loss 0.5328 ETA 13m28s"
    assert state.text(bar=True) == "pretrain [=>                  ] 340/5468 loss 0.5328 ETA 13m28s"
    state.update("stage linear: steps 3906..5468 of 5468")
    assert state.text() == "linear 3906/5468"  # not the pretraining loss and ETA
    state.update("step 5468/5468 [linear] loss 0.1000 lr 0 900 img/s ETA 0m00s")
    assert state.text() == "linear 5468/5468 loss 0.1000 evaluating"

    log = tmp_path / "log.txt"
    log.write_text("an earlier attempt\n")
    follower = progress.LogFollower(str(log))
    with open(log, "a") as f:
        f.write("first\nsecond, half")
    assert follower.lines() == ["first"]
    with open(log, "a") as f:
        f.write(" done\n")
    assert follower.lines() == ["second, half done"] and follower.lines() == []

    display = progress.Display("lines", stream=open(os.devnull, "w"))
    display.add("0", "[1/3]", "method-supcon_temperature-0.0_seed-0", str(log))
    display.points["0"].state.update(line)
    assert display.status_line(200) == (
        "[1/3] method-supcon_temperature-0.0_seed-0  pretrain [=>                  ] 340/5468 loss 0.5328 ETA 13m28s")
    narrow_one = display.status_line(60)  # the slug is cut first, then the rest
    assert len(narrow_one) == 59 and narrow_one.startswith("[1/3] met...  pretrain [=>") and narrow_one.endswith("...")
    for i in (1, 2):  # --jobs 3: one segment per point, shorter as the terminal narrows
        display.add(str(i), f"[{i + 1}/3]", f"method-supcon_temperature-0.{i}_seed-{i}", str(log))
        display.points[str(i)].state.update(line)
    wide, middle, narrow, tiny = (display.status_line(w) for w in (300, 160, 100, 70))
    assert wide.startswith("[1/3] method-supcon_temperature-0.0_seed-0: pretrain 340/5468 loss 0.5328 ETA 13m28s | ")
    assert middle.startswith("[1/3] pretrain 340/5468 loss 0.5328 ETA 13m28s | [2/3] pretrain")
    assert narrow == " | ".join(f"[{i}/3] pretrain 6% ETA 13m28s" for i in (1, 2, 3))
    assert tiny == " | ".join(f"[{i}/3] 6% ETA 13m28s" for i in (1, 2, 3))
    assert progress.resolve_mode("auto", open(os.devnull, "w")) == "lines"


def test_report_names_the_command_that_wrote_it(tmp_path):
    proc = run(tmp_path, fixture("single.gin"), "--smoke", "--report", "--report_dir", "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (tmp_path / "out" / "smoke" / "single" / "README.md").read_text()
    command = "python runner.py tests/fixtures/runner/single.gin --smoke --runs_dir runs --report_dir out"
    assert f"Generated by `{command}` from the run directories alone" in text, text[:400]
    by_hand = subprocess.run([sys.executable, "-m", "supcon.report", "runs/smoke/single", "--out", "again"],
                             cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)
    assert by_hand.returncode == 0, by_hand.stderr
    again = (tmp_path / "again" / "README.md").read_text()
    assert "Generated by `python -m supcon.report runs/smoke/single --out again` from" in again


def test_run_dirs_are_found_by_point_id_whatever_their_name(tmp_path):
    """Run dirs named by an earlier version's slugs keep their names: the runner finds a point's dir by the id
    in its point.json, skips it when done and resumes it in place; a slug that names another point's dir of
    this grid gets the id appended."""
    assert run(tmp_path, fixture("grid.gin"), "--only", "SEED=0").returncode == 0
    root = tmp_path / "runs" / "grid"
    os.rename(root / "method-supcon_loss-supcon_seed-0", root / "old-slug-of-supcon")
    os.rename(root / "method-ce_loss-ce_seed-0", root / "method-supcon_loss-supcon_seed-1")  # another's slug
    proc = run(tmp_path, fixture("grid.gin"))
    assert proc.returncode == 0 and "2 trained, 2 already done" in proc.stdout, proc.stdout
    ids = {}  # 'supcon0' -> (run dir name, point id)
    for name in os.listdir(root):
        record = json.load(open(root / name / workdir.POINT))
        ids[f"{record['values']['METHOD']}{record['values']['SEED']}"] = (name, record["id"])
    assert ids["supcon0"][0] == "old-slug-of-supcon" and ids["ce0"][0] == "method-supcon_loss-supcon_seed-1"
    assert ids["supcon1"][0] == f"method-supcon_loss-supcon_seed-1-{ids['supcon1'][1]}"
    assert ids["ce1"][0] == "method-ce_loss-ce_seed-1"
    assert len(trained(tmp_path)) == 4  # the two done points were not retrained
    dry = run(tmp_path, fixture("grid.gin"), "--dry_run").stdout
    assert f"done     {ids['supcon0'][1]}  runs/grid/old-slug-of-supcon" in dry

    crashed = run(tmp_path, fixture("cases.gin"), "--only", "CASE=crash")
    assert crashed.returncode == 1 and "fake crash" in crashed.stdout
    cases = tmp_path / "runs" / "cases"
    os.rename(cases / "case-crash_fake_fail-false_fake_crash_once-true", cases / "old-crash")
    resumed = run(tmp_path, fixture("cases.gin"), "--only", "CASE=crash")
    assert resumed.returncode == 0 and "(resuming) -> runs/cases/old-crash" in resumed.stdout, resumed.stdout
    last = read_lines(tmp_path / "train.log")[-1]
    assert os.path.basename(last["workdir"]) == "old-crash" and last["resumed"] is True
    assert os.listdir(cases) == ["old-crash"]


def _children(pid):
    """The pids of the live processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def test_sigterm_stops_the_trainers_and_the_point_resumes(tmp_path):
    """A runner stopped by SIGTERM (a scheduler, `kill`, `timeout`) stops its trainer processes as Ctrl-C does,
    exits 130, and leaves the point unfinished for the next run."""
    cmd = runner_cmd(tmp_path, fixture("single.gin"), "--gin_param", "FAKE_SLEEP = 60", "--gin_param",
                     "FAKE_STEPS = 60")  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env_for(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    run_dir = tmp_path / "runs" / "single" / "default"
    deadline = time.time() + 60
    while not (run_dir / workdir.LOG).exists() or "step 1/60" not in (run_dir / workdir.LOG).read_text():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0] if proc.poll() else "timeout"
        time.sleep(0.1)
    trainers = _children(proc.pid)
    assert trainers, "no trainer process under the runner"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "1 interrupted" in out
    deadline = time.time() + 10
    while any(_alive(p) for p in trainers):
        assert time.time() < deadline, f"trainer processes {trainers} outlived the runner"
        time.sleep(0.1)
    assert workdir.point_status(str(run_dir)) == "partial"
    assert not (run_dir / workdir.RESULT).exists()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
