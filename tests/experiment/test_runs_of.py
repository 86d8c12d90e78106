"""`grid.runs_of = 'other'`: a recipe that reads (and scores) another recipe's runs instead of training its own.

Recipes a.gin (3 methods x 2 seeds) and b.gin (a's SupCon and cross-entropy points) are written in a temporary
folder; the runner runs with the fake trainer (tests/fixtures/runner/fake_main.py, plus an eval mode here), as a
user would, and the reporter reads the run directories it leaves. No TensorFlow.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from supcon import workdir
from supcon.experiment import grid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "runner")
RUNNER = os.path.join(ROOT, "runner.py")

HEADER = "# Reproduces: nothing; a fixture for grid.runs_of ({}).\n# Run: python runner.py {}.gin\n"
A = HEADER.format("the other recipe", "a") + f"""include '{os.path.join(FIXTURES, "base.gin")}'
grid.points = [{{'METHOD': 'supcon', 'LOSS': '@supcon'}}, {{'METHOD': 'ce', 'LOSS': @ce}},
               {{'METHOD': 'simclr', 'LOSS': '@simclr'}}]
grid.axes = {{'SEED': [0, 1]}}
report.rows = ['METHOD']
report.metrics = ['eval/top1']
report.title = 'Recipe A'
"""
# b.gin includes a.gin, keeps two of its methods and has its own header and report.
B = HEADER.format("reads a's runs", "b") + """include 'a.gin'
grid.runs_of = 'a'
grid.points = [{'METHOD': 'supcon', 'LOSS': '@supcon'}, {'METHOD': 'ce', 'LOSS': @ce}]
report.title = 'Recipe B'
"""


@pytest.fixture
def recipes(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "a.gin").write_text(A)
    (folder / "b.gin").write_text(B)
    return folder


def run(tmp_path, recipe, *args, report=False):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), FIXTURES]),
               FAKE_TRAIN_LOG=str(tmp_path / "train.log"), FAKE_CALLS_LOG=str(tmp_path / "calls.log"))
    cmd = [sys.executable, RUNNER, f"recipes/{recipe}.gin", *args, "--runs_dir", "runs",
           "--main_module", "fake_eval_main", *([] if report else ["--noreport"])]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def lines(path):
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def trained(tmp_path):
    """(METHOD, SEED) of every training run of the fake trainer."""
    return [(r["macros"]["METHOD"], r["macros"]["SEED"]) for r in lines(tmp_path / "train.log")]


def tree(path):
    return sorted(os.path.relpath(os.path.join(d, n), path) for d, ds, fs in os.walk(path) for n in ds + fs)


def ids_of(path):
    """{(METHOD, SEED): point id} of a recipe's grid."""
    points = grid.expand(grid.load_recipe(str(path)))
    return {(p.values["METHOD"], p.values["SEED"]): p.id for p in points}


def results_rows(readme):
    """The METHOD cells of the report's results table."""
    table = readme.split("## Results")[1].split("\n\n")[1]
    return [line.split("|")[1].strip() for line in table.splitlines()[2:]]


def test_points_take_the_other_recipes_ids_and_run_dirs(recipes):
    b = grid.load_recipe(str(recipes / "b.gin"))
    assert b.stem == "b" and b.runs_stem == "a" and b.runs_of_path == str(recipes / "a.gin")
    other = grid.load_runs_of(b)
    points = grid.runs_of_points(b, other)
    a_points = {p.id: p for p in grid.expand(other)}
    assert len(points) == 4 and all(p.recipe_stem == "a" and p.id in a_points for p in points)
    assert [p.slug for p in points] == [a_points[p.id].slug for p in points]
    assert grid.load_runs_of(grid.load_recipe(str(recipes / "a.gin"))) is None


def test_reads_the_other_runs_trains_nothing_and_reports_only_its_points(tmp_path, recipes):
    first = run(tmp_path, "a", report=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(trained(tmp_path)) == 6

    dry = run(tmp_path, "b", "--dry_run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == "recipes/b.gin: 4 points (points 2 x SEED 2); runs of recipes/a.gin in runs/a"
    listed = re.findall(r"^  done     ([0-9a-f]{8})  runs/a/(\S+)$", dry.stdout, re.M)
    a_ids = ids_of(recipes / "a.gin")
    assert sorted(pid for pid, _ in listed) == sorted(a_ids[(m, s)] for m in ("supcon", "ce") for s in (0, 1))

    proc = run(tmp_path, "b", report=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(trained(tmp_path)) == 6  # nothing trained again
    assert "summary: 4 points in runs/a (runs of recipes/a.gin): 0 trained, 4 already done" in proc.stdout
    assert "report: reports/b/README.md" in proc.stdout
    assert not (tmp_path / "runs" / "b").exists() and not (tmp_path / "reports" / "a" / "b").exists()
    ours = (tmp_path / "reports" / "b" / "README.md").read_text()
    assert ours.startswith("# Recipe B\n") and "- **Reproduces:** nothing; a fixture for grid.runs_of (reads a's" in ours
    assert sorted(results_rows(ours)) == ["ce", "supcon"]
    assert "4 planned: 4 done, 0 failed, 0 missing" in ours
    assert "**Runs of `a`** (`grid.runs_of`)" in ours and "the 2 other run directories there are its other" in ours
    assert "simclr" not in ours

    theirs = (tmp_path / "reports" / "a" / "README.md").read_text()  # a's report, by a's runner
    assert theirs.startswith("# Recipe A\n") and sorted(results_rows(theirs)) == ["ce", "simclr", "supcon"]
    again = run(tmp_path, "a", report=True)  # and again after b's report: still every point of a
    assert again.returncode == 0 and "0 trained, 6 already done" in again.stdout
    assert (tmp_path / "reports" / "a" / "README.md").read_text() == theirs


def test_trains_a_missing_point_into_the_other_folder_with_its_id(tmp_path, recipes):
    assert run(tmp_path, "a", "--only", "METHOD=supcon").returncode == 0
    proc = run(tmp_path, "b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 trained, 2 already done" in proc.stdout
    assert sorted(trained(tmp_path)[2:]) == [("ce", "0"), ("ce", "1")]
    a_ids = ids_of(recipes / "a.gin")
    run_dir = tmp_path / "runs" / "a" / "method-ce_loss-ce_seed-1"
    point = json.loads((run_dir / workdir.POINT).read_text())
    assert point["id"] == a_ids[("ce", 1)] and point["recipe_stem"] == "a"
    assert point["recipe"] == str(recipes / "a.gin") and point["runs_of_by"] == str(recipes / "b.gin")
    assert point["report"]["title"] == "Recipe A" and "the other recipe" in point["header"][0]
    call = [c for c in lines(tmp_path / "calls.log") if c["workdir"] == str(run_dir)][0]
    assert call["gin_files"][0] == str(recipes / "a.gin") and call["gin_params"] == []  # a's file trains it

    rest = run(tmp_path, "a")  # a's runner finds them done: only simclr trains
    assert rest.returncode == 0 and "2 trained, 4 already done" in rest.stdout, rest.stdout
    assert sorted(trained(tmp_path)[4:]) == [("simclr", "0"), ("simclr", "1")]


def test_an_evaluation_only_binding_scores_the_other_runs_without_training(tmp_path, recipes):
    (recipes / "b.gin").write_text(B + "train_and_evaluate.corruptions = ['fog']\n"
                                   "train_and_evaluate.corruption_severities = [2]\n")
    assert run(tmp_path, "a").returncode == 0
    dry = run(tmp_path, "b", "--dry_run")
    assert dry.returncode == 0, dry.stderr
    assert len(re.findall(r"^  needs eval [0-9a-f]{8}  runs/a/", dry.stdout, re.M)) == 4, dry.stdout
    proc = run(tmp_path, "b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 trained, 0 already done, 0 failed, 4 evaluated" in proc.stdout and len(trained(tmp_path)) == 6
    scored = [c for c in lines(tmp_path / "calls.log") if "train_and_evaluate.mode = 'eval'" in c["gin_params"]]
    assert len(scored) == 4 and all(c["gin_files"][0] == str(recipes / "a.gin") for c in scored)
    assert scored[0]["gin_params"][:2] == ["train_and_evaluate.corruptions = ['fog']",
                                           "train_and_evaluate.corruption_severities = [2]"]
    result = workdir.read_json(str(tmp_path / "runs" / "a" / "method-ce_loss-ce_seed-0" / workdir.RESULT))
    assert result["corruption/fog/2/top1"] == 0.25 and result["eval/top1"] == 0.5
    simclr = workdir.read_json(str(tmp_path / "runs" / "a" / "method-simclr_loss-simclr_seed-0" / workdir.RESULT))
    assert not any(k.startswith("corruption/") for k in simclr)
    assert "0 trained, 6 already done" in run(tmp_path, "a").stdout  # a's runner: nothing to do


ERRORS = [
    # (b.gin's text, the message)
    (B.replace("grid.points = [", "grid.axes = {'SEED': [0, 2]}\ngrid.points = ["),
     "recipes/b.gin:4: grid.runs_of = 'a': point {METHOD: 'supcon', LOSS: @supcon, SEED: 2} is not in a.gin's grid"),
    (B + "TEMPERATURE = 0.2\n",
     "recipes/b.gin:4: grid.runs_of = 'a': this recipe trains differently from a.gin: TEMPERATURE = 0.2 (this "
     "recipe, recipes/b.gin:7) vs 0.1 (a.gin, "),
    (B + "train.extra = 1\n",
     "this recipe trains differently from a.gin: train.extra = 1 (this recipe, recipes/b.gin:7) vs not bound (a.gin)"),
    (B.replace("'a'", "'nowhere'"), "recipes/b.gin:4: grid.runs_of = 'nowhere': no recipe nowhere.gin in recipes or "),
    (B.replace("'a'", "'a.gin'"), "recipes/b.gin:4: grid.runs_of must be the stem of another recipe"),
    (B.replace("grid.runs_of", "grid.run_of"),
     "recipes/b.gin:4: unknown binding grid.run_of (allowed: grid.axes, grid.points, grid.runs_of, grid.reuse_from, grid.share_pretraining)"),
]


@pytest.mark.parametrize("text, message", ERRORS)
def test_errors_are_one_line_and_write_nothing(tmp_path, recipes, text, message):
    assert run(tmp_path, "a", "--only", "SEED=0").returncode == 0
    (recipes / "b.gin").write_text(text)
    before = tree(tmp_path / "runs")
    for args in ((), ("--dry_run",)):
        proc = run(tmp_path, "b", *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("runner.py: error: ") and message in proc.stderr, proc.stderr
    assert tree(tmp_path / "runs") == before and not (tmp_path / "reports").exists()


def test_a_chain_of_runs_of_is_an_error(tmp_path, recipes):
    (recipes / "c.gin").write_text(B.replace("reads a's runs", "c").replace("include 'a.gin'\ngrid.runs_of = 'a'",
                                                                             "include 'a.gin'\ngrid.runs_of = 'b'"))
    proc = run(tmp_path, "c", "--dry_run")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "grid.runs_of = 'b': b.gin itself reads the runs of 'a' (grid.runs_of); name that recipe here" in proc.stderr


def test_header_report_grid_and_evaluation_settings_may_differ(tmp_path, recipes):
    """A standalone b.gin (no include): its own comments, report settings, grid order, corruption settings and
    defaults of macros that every point binds from the grid."""
    (recipes / "b.gin").write_text(f"""# Reproduces: a standalone reader of a's runs.
include '{os.path.join(FIXTURES, "base.gin")}'
grid.runs_of = 'a'
grid.points = [{{'METHOD': 'ce', 'LOSS': @ce}}, {{'METHOD': 'supcon', 'LOSS': '@supcon'}}]
grid.axes = {{'SEED': [1, 0]}}
SEED = 7
report.metrics = ['eval/top1', 'corruption/mean/top1']
report.title = 'Standalone'
train_and_evaluate.corruptions = 'all'
""")
    proc = run(tmp_path, "b", "--dry_run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("recipes/b.gin: 4 points (points 2 x SEED 2); runs of recipes/a.gin in runs/a")


def test_a_plain_report_leaves_out_run_dirs_of_points_no_longer_in_its_grid(tmp_path, recipes):
    assert run(tmp_path, "a").returncode == 0
    (recipes / "a.gin").write_text(A.replace(",\n               {'METHOD': 'simclr', 'LOSS': '@simclr'}", ""))
    proc = run(tmp_path, "a", report=True)
    assert proc.returncode == 0 and "0 trained, 4 already done" in proc.stdout, proc.stdout + proc.stderr
    text = (tmp_path / "reports" / "a" / "README.md").read_text()
    assert sorted(results_rows(text)) == ["ce", "supcon"] and "4 planned: 4 done" in text
    assert ("Not shown: 2 other run directories of `a` whose points are not in the recipe's grid (an earlier "
            "grid's?): `method-simclr_loss-simclr_seed-0`, `method-simclr_loss-simclr_seed-1`.") in text
    by_hand = subprocess.run([sys.executable, "-m", "supcon.report", "runs/a", "--out", "all"], cwd=tmp_path,
                             env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)
    assert by_hand.returncode == 0, by_hand.stderr  # without --recipe: every run dir of the folder, as before
    assert sorted(results_rows((tmp_path / "all" / "README.md").read_text())) == ["ce", "simclr", "supcon"]


def test_the_reporter_by_hand_with_the_recipe_lists_absent_points(tmp_path, recipes):
    assert run(tmp_path, "a", "--only", "SEED=0", "--only", "METHOD=supcon").returncode == 0
    cmd = [sys.executable, "-m", "supcon.report", "runs/a", "--recipe", "recipes/b.gin", "--no_plots"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "reports" / "b" / "README.md").read_text()
    assert "Generated by `python -m supcon.report runs/a --no_plots --recipe recipes/b.gin` from" in text
    assert "4 planned: 1 done, 0 failed, 3 missing or unfinished" in text
    assert text.count("| absent | 0 | no run directory |") == 3
    bad = subprocess.run(cmd[:4] + ["--gin_param", "X = 1"], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr == "error: --overlay and --gin_param go with --recipe\n"
