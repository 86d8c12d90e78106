"""`grid.reuse_from = ['other']`: a recipe copies the other recipe's finished runs of exactly its points' training.

Recipes a.gin (SupCon and cross-entropy x 2 seeds) and b.gin (SupCon and SimCLR x temperatures 0.1 and 0.5 x 2
seeds; its SupCon points at a's temperature, 0.1, train exactly as a's) are written in a temporary folder; the
runner runs with the fake trainer (tests/fixtures/runner/fake_eval_main.py), as a user would, and the reporter
reads the run directories it leaves. No TensorFlow.
"""

import json
import os
import re

import pytest
from test_runs_of import (  # the runner-subprocess helpers shared with grid.runs_of's tests
    lines,
    run,
    tree,
)

from supcon import workdir
from supcon.experiment import grid, reuse
from supcon.experiment.claim import Claim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "runner")

HEADER = "# Reproduces: nothing; a fixture for grid.reuse_from ({}).\n# Run: python runner.py {}.gin\n"
A = HEADER.format("the source", "a") + f"""include '{os.path.join(FIXTURES, "base.gin")}'
grid.points = [{{'METHOD': 'supcon', 'LOSS': '@supcon', 'FAKE_TOP1': 0.75}}, {{'METHOD': 'ce', 'LOSS': @ce}}]
grid.axes = {{'SEED': [0, 1]}}
report.rows = ['METHOD']
report.metrics = ['eval/top1']
"""
B = HEADER.format("copies a's runs", "b") + f"""include '{os.path.join(FIXTURES, "base.gin")}'
grid.reuse_from = ['a']
grid.points = [{{'METHOD': 'supcon', 'LOSS': '@supcon', 'FAKE_TOP1': 0.75}}, {{'METHOD': 'simclr', 'LOSS': '@simclr'}}]
grid.axes = {{'TEMPERATURE': [0.1, 0.5], 'SEED': [0, 1]}}
report.rows = ['METHOD', 'TEMPERATURE']
report.metrics = ['eval/top1']
report.title = 'Recipe B'
"""
SOURCE = "runs/a/method-supcon_loss-supcon_fake_top1-0.75_seed-{}"  # a's run dir of a SupCon seed
COPY = "runs/b/method-supcon_loss-supcon_fake_top1-0.75_temperature-0.1_seed-{}"  # b's point that copies it


@pytest.fixture
def recipes(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "a.gin").write_text(A)
    (folder / "b.gin").write_text(B)
    return folder


def trained(tmp_path):
    """(METHOD, TEMPERATURE, SEED) of every training run of the fake trainer."""
    return [(r["macros"]["METHOD"], r["macros"]["TEMPERATURE"], r["macros"]["SEED"])
            for r in lines(tmp_path / "train.log")]


def b_points(recipes):
    """{(METHOD, TEMPERATURE, SEED): Point} of b's grid."""
    points = grid.expand(grid.load_recipe(str(recipes / "b.gin")))
    return {(p.values["METHOD"], p.values["TEMPERATURE"], p.values["SEED"]): p for p in points}


def read(tmp_path, run_dir, name):
    return json.loads((tmp_path / run_dir / name).read_text())


def test_identical_points_are_copied_not_trained(tmp_path, recipes):
    first = run(tmp_path, "a")
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(trained(tmp_path)) == 4
    (tmp_path / COPY.format(1)).mkdir(parents=True)  # a run dir where nothing was trained is copied over too

    proc = run(tmp_path, "b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary: 8 points in runs/b: 6 trained, 2 copied from other recipes, 0 already done, 0 failed" in proc.stdout
    for seed in (0, 1):
        assert re.search(rf"^\[\d/8\] copied  {os.path.basename(COPY.format(seed))} <- {SOURCE.format(seed)}$",
                         proc.stdout, re.M), proc.stdout
    assert sorted(trained(tmp_path)[4:]) == sorted(
        [("supcon", "0.5", s) for s in "01"] + [("simclr", t, s) for t in ("0.1", "0.5") for s in "01"]
    )  # no SupCon point at 0.1: those were copied
    assert len(lines(tmp_path / "calls.log")) == 4 + 6  # and the trainer never saw them (not even to score them)
    assert not [d for d in os.listdir(tmp_path / "runs" / "b") if d.startswith(".")]  # no temporary copy left

    points = b_points(recipes)
    for seed in (0, 1):
        copy, source = COPY.format(seed), SOURCE.format(seed)
        assert read(tmp_path, copy, workdir.RESULT) == read(tmp_path, source, workdir.RESULT)
        assert read(tmp_path, copy, workdir.RESULT)["eval/top1"] == 0.75
        mine, theirs = read(tmp_path, copy, workdir.POINT), read(tmp_path, source, workdir.POINT)
        point = points[("supcon", 0.1, seed)]
        assert mine["recipe"] == str(recipes / "b.gin") and mine["recipe_stem"] == "b"
        assert mine["id"] == point.id and mine["slug"] == point.slug == os.path.basename(copy)
        assert mine["values"] == point.values and mine["report"]["title"] == "Recipe B"
        assert mine["copied_from"] == source and mine["gin_files"] == theirs["gin_files"]
        assert mine[workdir.TRAINING_SETTINGS] == theirs[workdir.TRAINING_SETTINGS]
        assert mine[workdir.TRAINING_SETTINGS_HASH] == theirs[workdir.TRAINING_SETTINGS_HASH]
        assert "copied from runs/a/" in (tmp_path / copy / workdir.LOG).read_text()
        assert not (tmp_path / copy / workdir.CLAIM).exists()

    again = run(tmp_path, "b")  # trains and copies nothing
    assert again.returncode == 0, again.stdout + again.stderr
    assert "summary: 8 points in runs/b: 0 trained, 8 already done, 0 failed" in again.stdout
    assert "copied " not in again.stdout and len(trained(tmp_path)) == 10


def test_dry_run_lists_the_copies_and_writes_nothing(tmp_path, recipes):
    assert run(tmp_path, "a").returncode == 0
    before = tree(tmp_path / "runs")
    proc = run(tmp_path, "b", "--dry_run")
    assert proc.returncode == 0, proc.stderr
    points = b_points(recipes)
    for seed in (0, 1):
        pid = points[("supcon", 0.1, seed)].id
        assert f"\n  copy     {pid}  {COPY.format(seed)}  <- {SOURCE.format(seed)}\n" in proc.stdout, proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "status: 2 copy, 6 new"
    assert tree(tmp_path / "runs") == before and not (tmp_path / "runs" / "b").exists()
    assert len(trained(tmp_path)) == 4


def _unfinish(run_dir, state):
    os.remove(os.path.join(run_dir, workdir.RESULT))
    workdir.write_status(run_dir, state, step=3, reason="fake failure" if state == workdir.FAILED else "")


def _rescoring(run_dir, state):  # a result.json, but status.json says it is running (scored again, say)
    workdir.write_status(run_dir, workdir.RUNNING, step=10)


def _unrecorded(run_dir, state):  # written before settings were recorded
    point = json.load(open(os.path.join(run_dir, workdir.POINT)))
    del point[workdir.TRAINING_SETTINGS], point[workdir.TRAINING_SETTINGS_HASH]
    workdir.write_json_atomic(os.path.join(run_dir, workdir.POINT), point)


def _other_settings(run_dir, state):  # recorded settings that are not b's (another temperature, say)
    point = json.load(open(os.path.join(run_dir, workdir.POINT)))
    point[workdir.TRAINING_SETTINGS]["TEMPERATURE"] = "0.2"
    workdir.write_json_atomic(os.path.join(run_dir, workdir.POINT), point)


@pytest.mark.parametrize("spoil, state", [
    (_unfinish, workdir.RUNNING), (_unfinish, workdir.FAILED), (_rescoring, None), (_unrecorded, None),
    (_other_settings, None),
])
def test_a_source_that_does_not_qualify_is_not_copied(tmp_path, recipes, spoil, state):
    assert run(tmp_path, "a").returncode == 0
    spoil(str(tmp_path / SOURCE.format(0)), state)
    dry = run(tmp_path, "b", "--dry_run")
    assert dry.returncode == 0 and dry.stdout.rstrip().splitlines()[-1] == "status: 1 copy, 7 new", dry.stdout
    proc = run(tmp_path, "b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "7 trained, 1 copied from other recipes" in proc.stdout
    assert ("supcon", "0.1", "0") in trained(tmp_path)[4:] and ("supcon", "0.1", "1") not in trained(tmp_path)[4:]
    assert "copied_from" not in read(tmp_path, COPY.format(0), workdir.POINT)


def test_a_run_trained_with_other_gin_params_is_not_copied(tmp_path, recipes):
    assert run(tmp_path, "a", "--gin_param", "FAKE_SLEEP = 0.0").returncode == 0
    proc = run(tmp_path, "b")
    assert proc.returncode == 0 and "8 trained, 0 already done" in proc.stdout, proc.stdout + proc.stderr


def test_a_copy_is_scored_for_the_metrics_the_recipe_asks_for(tmp_path, recipes):
    assert run(tmp_path, "a").returncode == 0
    (recipes / "b.gin").write_text(B + "train_and_evaluate.corruptions = ['fog']\n"
                                   "train_and_evaluate.corruption_severities = [2]\n")
    dry = run(tmp_path, "b", "--dry_run", "--only", "METHOD=supcon", "--only", "TEMPERATURE=0.1")
    assert dry.returncode == 0 and "(lacks 5 metrics: then scored in eval mode)" in dry.stdout, dry.stdout
    proc = run(tmp_path, "b", "--eval_only")  # copying trains nothing: --eval_only copies too
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 trained, 2 copied from other recipes, 0 already done, 0 failed, 2 evaluated" in proc.stdout
    assert len(trained(tmp_path)) == 4
    scored = [c["workdir"] for c in lines(tmp_path / "calls.log") if "train_and_evaluate.mode = 'eval'" in c["gin_params"]]
    assert sorted(scored) == [str(tmp_path / COPY.format(s)) for s in (0, 1)]
    copy, source = read(tmp_path, COPY.format(0), workdir.RESULT), read(tmp_path, SOURCE.format(0), workdir.RESULT)
    assert copy["corruption/fog/2/top1"] == 0.25 and copy["eval/top1"] == source["eval/top1"] == 0.75
    assert not any(k.startswith("corruption/") for k in source)  # the source is never touched


def test_smoke_copies_from_the_smoke_folder(tmp_path, recipes):
    assert run(tmp_path, "a", "--smoke").returncode == 0
    assert "8 trained" in run(tmp_path, "b").stdout  # not a --smoke run: nothing to copy
    proc = run(tmp_path, "b", "--smoke")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 trained, 2 copied from other recipes" in proc.stdout
    point = read(tmp_path, "runs/smoke/" + COPY.format(0)[5:], workdir.POINT)
    assert point["copied_from"] == "runs/smoke/" + SOURCE.format(0)[5:] and point["smoke"] is True


def test_the_report_shows_the_copies_as_this_recipes_runs(tmp_path, recipes):
    assert run(tmp_path, "a").returncode == 0
    for seed in (0, 1):  # a's results, told apart from anything b trains
        result = read(tmp_path, SOURCE.format(seed), workdir.RESULT)
        workdir.write_json_atomic(str(tmp_path / SOURCE.format(seed) / workdir.RESULT), {**result, "eval/top1": 0.9})
    proc = run(tmp_path, "b", report=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "report: reports/b/README.md" in proc.stdout
    text = (tmp_path / "reports" / "b" / "README.md").read_text()
    assert text.startswith("# Recipe B\n") and "8 planned: 8 done, 0 failed" in text
    table = text.split("## Results")[1].split("\n\n")[1]
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line for line in table.splitlines()[2:]}
    assert sorted(rows) == [("simclr", "0.1"), ("simclr", "0.5"), ("supcon", "0.1"), ("supcon", "0.5")], table
    assert rows[("supcon", "0.1")] == "| supcon | 0.1 | 90.00 ± 0.00 (2) |", table
    assert rows[("supcon", "0.5")] == "| supcon | 0.5 | 75.00 ± 0.00 (2) |", table
    assert "other settings" not in text and "Not shown" not in text


ERRORS = [
    # (b.gin's text, the message)
    (B.replace("['a']", "'a'"),
     "recipes/b.gin:4: grid.reuse_from must be a list of recipe stems, e.g. ['fmnist_table2'] (no folder, no .gin); "
     "got 'a'\n"),
    (B.replace("['a']", "['a.gin']"),
     "recipes/b.gin:4: grid.reuse_from must be a list of recipe stems, e.g. ['fmnist_table2'] (no folder, no .gin); "
     "got ['a.gin']\n"),
    (B.replace("['a']", "['nowhere']"),
     f"recipes/b.gin:4: grid.reuse_from = ['nowhere']: no recipe nowhere.gin in recipes or {ROOT}/recipes\n"),
    (B.replace("['a']", "['a', 'b']"),
     "recipes/b.gin:4: grid.reuse_from = ['a', 'b'] names this recipe; name the other recipes whose finished runs it "
     "may copy\n"),
    (B.replace("['a']", "['a', 'a']"), "recipes/b.gin:4: grid.reuse_from = ['a', 'a'] names 'a' twice\n"),
    (B + "grid.runs_of = 'a'\n",
     "recipes/b.gin:4: grid.reuse_from goes without grid.runs_of: this recipe reads the runs of 'a' and trains none "
     "of its own (bind grid.reuse_from in a.gin)\n"),
    (B.replace("['a']", "['c']"),
     "recipes/b.gin:4: grid.reuse_from = ['c']: c.gin reads the runs of 'a' (grid.runs_of) and has none of its own; "
     "name that recipe here\n"),
]


@pytest.mark.parametrize("text, message", ERRORS)
def test_errors_are_one_line_and_write_nothing(tmp_path, recipes, text, message):
    assert run(tmp_path, "a", "--only", "SEED=0").returncode == 0
    (recipes / "c.gin").write_text(A.replace("# Run:", "grid.runs_of = 'a'\n# Run:", 1))
    (recipes / "b.gin").write_text(text)
    before = tree(tmp_path / "runs")
    for args in ((), ("--dry_run",)):
        proc = run(tmp_path, "b", *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr == "runner.py: error: " + message and proc.stdout == ""
    assert tree(tmp_path / "runs") == before and not (tmp_path / "reports").exists()


def test_a_recipe_reading_runs_of_one_that_reuses_may_include_it(tmp_path, recipes):
    """c.gin reads b's runs and includes b.gin (with its grid.reuse_from): b's setting applies to b's folder."""
    assert run(tmp_path, "a").returncode == 0
    (recipes / "c.gin").write_text("# Reproduces: c.\ninclude 'b.gin'\ngrid.runs_of = 'b'\nreport.title = 'C'\n")
    proc = run(tmp_path, "c")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary: 8 points in runs/b (runs of recipes/b.gin): 6 trained, 2 copied from other recipes" in proc.stdout
    point = read(tmp_path, COPY.format(0), workdir.POINT)
    assert point["recipe_stem"] == "b" and point["runs_of_by"] == str(recipes / "c.gin")


def test_a_failed_copy_says_why_in_one_line_and_leaves_nothing(tmp_path, recipes):
    assert run(tmp_path, "a").returncode == 0
    os.mkfifo(tmp_path / SOURCE.format(0) / "pipe")  # shutil cannot copy a named pipe
    proc = run(tmp_path, "b")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "6 trained, 1 copied from other recipes, 0 already done, 1 failed" in proc.stdout
    failed = [line for line in proc.stdout.splitlines() if line.startswith("  failed ")]
    pipe = tmp_path / SOURCE.format(0) / "pipe"
    assert failed == [f"  failed {os.path.basename(COPY.format(0))}: copying {SOURCE.format(0)} failed: `{pipe}` is a "
                      "named pipe"]
    assert not (tmp_path / COPY.format(0)).exists() and (tmp_path / COPY.format(1) / workdir.RESULT).exists()
    assert not [d for d in os.listdir(tmp_path / "runs" / "b") if d.startswith(".")]


def _copy(source, target, claim_timeout=600.0):
    def record(theirs):
        return {**theirs, "id": "mine", "copied_from": "there"}

    return reuse.copy_run(str(source), str(target), record, lambda copy: "", claim_timeout)


def test_copy_run_never_replaces_a_run_another_runner_made(tmp_path, recipes):
    assert run(tmp_path, "a", "--only", "SEED=0", "--only", "METHOD=supcon").returncode == 0
    source, target = tmp_path / SOURCE.format(0), tmp_path / "runs" / "b" / "x"
    target.mkdir(parents=True)
    workdir.write_status(str(target), workdir.RUNNING)  # another runner trains it
    assert _copy(source, target) is False
    assert os.listdir(target) == [workdir.STATUS] and os.listdir(target.parent) == ["x"]

    os.remove(target / workdir.STATUS)  # untrained, but claimed by a live runner
    assert Claim(str(target), 600.0).acquire()
    assert _copy(source, target) is False and os.listdir(target) == [workdir.CLAIM]

    os.remove(target / workdir.CLAIM)  # untrained and free: replaced by the copy
    (target / workdir.POINT).write_text("{}")
    assert _copy(source, target) is True and os.listdir(target.parent) == ["x"]
    assert json.loads((target / workdir.POINT).read_text())["id"] == "mine"
    assert (target / workdir.RESULT).read_text() == (source / workdir.RESULT).read_text()

    with pytest.raises(reuse.CopyError, match=r"^the source no longer qualifies: gone \(changed meanwhile\?\)$"):
        reuse.copy_run(str(source), str(tmp_path / "runs" / "b" / "y"), dict, lambda copy: "gone", 600.0)
    assert os.listdir(target.parent) == ["x"]
