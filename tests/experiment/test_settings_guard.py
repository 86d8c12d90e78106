"""The settings a run was trained with: point.json records them, and a run dir trained with other settings than its
point's now is not used, by the runner (unusable, exit 1, never modified) or by the reporter (left out, one line).

Recipe g.gin (SupCon and cross-entropy x 2 seeds, per-method epochs in the methods' scopes) is written in a
temporary folder and run with the fake trainer (tests/fixtures/runner/fake_main.py), as a user would; then it is
edited. No TensorFlow.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from supcon import workdir
from supcon.experiment import bindings, grid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "runner")
RUNNER = os.path.join(ROOT, "runner.py")

G = f"""# Reproduces: nothing; a fixture for the settings guard.
# Run: python runner.py recipes/g.gin
include '{os.path.join(FIXTURES, "base.gin")}'
FAKE_CRASH_ONCE = False
train.crash_once = %FAKE_CRASH_ONCE
PRETRAIN_EPOCHS = 20
CE_EPOCHS = 10
supcon/train.epochs = %PRETRAIN_EPOCHS
ce/train.epochs = %CE_EPOCHS
train.max_examples = 5000
grid.points = [{{'METHOD': 'supcon', 'LOSS': '@supcon'}}, {{'METHOD': 'ce', 'LOSS': @ce}}]
grid.axes = {{'SEED': [0, 1]}}
report.rows = ['METHOD']
report.metrics = ['eval/top1']
report.title = 'Guard'
"""
SUPCON0, SUPCON1 = "method-supcon_loss-supcon_seed-0", "method-supcon_loss-supcon_seed-1"
CE0, CE1 = "method-ce_loss-ce_seed-0", "method-ce_loss-ce_seed-1"
# A recipe reading g's runs (grid.runs_of): its seed 0.
B = """# Reproduces: nothing; reads g's runs.
include 'g.gin'
grid.runs_of = 'g'
grid.axes = {'SEED': [0]}
"""


@pytest.fixture
def recipes(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "g.gin").write_text(G)
    (folder / "b.gin").write_text(B)
    return folder


def edit(recipes, *changes, name="g.gin"):
    """Applies (old, new) text replacements to a recipe; each old text must be there."""
    path = recipes / name
    text = path.read_text()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text)


def run(tmp_path, *args, recipe="g", runs_dir="runs", report=False):
    env = dict(os.environ, PYTHONPATH=FIXTURES, FAKE_TRAIN_LOG=str(tmp_path / "train.log"))
    cmd = [sys.executable, RUNNER, f"recipes/{recipe}.gin", *args, "--runs_dir", runs_dir,
           "--main_module", "fake_main", *([] if report else ["--noreport"])]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def trained(tmp_path):
    """(run dir name, resumed) of every training run of the fake trainer."""
    path = tmp_path / "train.log"
    records = [json.loads(line) for line in open(path)] if path.exists() else []
    return [(os.path.basename(r["workdir"]), r["resumed"]) for r in records]


def snapshot(path):
    """Every file under `path` with its bytes."""
    return {
        os.path.relpath(os.path.join(d, f), path): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(path) for f in files
    }  # fmt: skip


def point_json(tmp_path, slug, runs="runs/g"):
    return json.loads((tmp_path / runs / slug / workdir.POINT).read_text())


def dry_lines(stdout):
    """{run dir name: (status, the rest of its line)} of a --dry_run listing."""
    found = re.findall(r"^  (\S+(?: eval)?) +[0-9a-f]{8}  runs/\w+/(\S+)(.*)$", stdout, re.M)
    return {name: (status, rest.strip()) for status, name, rest in found}


def results_rows(readme):
    """The METHOD cells of the report's results table."""
    table = readme.split("## Results")[1].split("\n\n")[1]
    return [line.split("|")[1].strip() for line in table.splitlines()[2:]]


def guard_message(slug, differences):
    return (f"runs/g/{slug} was trained with other settings: {differences}; move it away to retrain, or pass "
            "another --runs_dir")


def test_point_json_records_the_settings_the_point_trains_with(tmp_path, recipes):
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    supcon, ce = point_json(tmp_path, SUPCON0), point_json(tmp_path, CE1)
    settings = supcon[workdir.TRAINING_SETTINGS]
    assert list(settings) == sorted(settings)
    assert {k: settings[k] for k in ("METHOD", "LOSS", "SEED", "PRETRAIN_EPOCHS", "supcon/train.epochs",
                                     "train.max_examples", "TEMPERATURE")} == {
        "METHOD": "'supcon'", "LOSS": "@supcon", "SEED": "0", "PRETRAIN_EPOCHS": "20",
        "supcon/train.epochs": "%PRETRAIN_EPOCHS", "train.max_examples": "5000", "TEMPERATURE": "0.1"}
    assert not any(k.startswith(("grid.", "report.", "ce/")) or k == "CE_EPOCHS" for k in settings)  # not read
    assert ce[workdir.TRAINING_SETTINGS]["CE_EPOCHS"] == "10" and "PRETRAIN_EPOCHS" not in ce[workdir.TRAINING_SETTINGS]
    assert ce[workdir.TRAINING_SETTINGS]["SEED"] == "1"  # the point's value, not the recipe's default
    assert supcon[workdir.TRAINING_SETTINGS_HASH] == bindings.settings_hash(settings)
    assert re.fullmatch(r"[0-9a-f]{8}", supcon[workdir.TRAINING_SETTINGS_HASH])
    points = {p.slug: p for p in grid.expand(grid.load_recipe(str(recipes / "g.gin")))}
    assert grid.point_settings(grid.load_recipe(str(recipes / "g.gin")), points[SUPCON0]) == settings


def test_smoke_overlay_bindings_are_part_of_the_settings(tmp_path, recipes):
    proc = run(tmp_path, "--smoke", "--only", "SEED=0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    smoke = point_json(tmp_path, SUPCON0, runs="runs/smoke/g")[workdir.TRAINING_SETTINGS]
    assert smoke["train_and_evaluate.max_examples"] == "64" and smoke["resnet.depth"] == "18"
    assert run(tmp_path, "--only", "SEED=0").returncode == 0
    assert "train_and_evaluate.max_examples" not in point_json(tmp_path, SUPCON0)[workdir.TRAINING_SETTINGS]


def test_an_edited_binding_makes_finished_runs_unusable_and_leaves_them_as_they_are(tmp_path, recipes):
    assert run(tmp_path).returncode == 0
    before = snapshot(tmp_path / "runs")
    edit(recipes, ("PRETRAIN_EPOCHS = 20", "PRETRAIN_EPOCHS = 50"),
         ("train.max_examples = 5000", "train.max_examples = 20000"))
    supcon = guard_message(SUPCON0, "PRETRAIN_EPOCHS = 20 (run) vs 50 (recipe now), train.max_examples = 5000 vs 20000")
    ce = guard_message(CE0, "train.max_examples = 5000 (run) vs 20000 (recipe now)")

    dry = run(tmp_path, "--dry_run")
    assert dry.returncode == 0, dry.stderr  # --dry_run lists unusable run dirs and exits 0, as for the others
    listed = dry_lines(dry.stdout)
    assert listed[SUPCON0] == ("unusable", supcon) and listed[CE0] == ("unusable", ce), dry.stdout
    assert "status: 4 unusable" in dry.stdout

    proc = run(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 trained, 0 already done, 0 failed, 4 unusable" in proc.stdout
    assert f"  unusable {SUPCON0}: {supcon}\n" in proc.stdout and f"  unusable {CE0}: {ce}\n" in proc.stdout
    scoring = run(tmp_path, "--eval_only")
    assert scoring.returncode == 1 and "4 unusable" in scoring.stdout, scoring.stdout

    assert len(trained(tmp_path)) == 4  # nothing trained again
    assert snapshot(tmp_path / "runs") == before  # not a byte written, no claim left behind

    other = run(tmp_path, runs_dir="runs2")  # another --runs_dir trains them with the settings now
    assert other.returncode == 0 and "4 trained" in other.stdout, other.stdout
    assert point_json(tmp_path, SUPCON0, runs="runs2/g")[workdir.TRAINING_SETTINGS]["PRETRAIN_EPOCHS"] == "50"


def test_an_edit_only_other_points_read_keeps_the_runs_that_do_not_read_it(tmp_path, recipes):
    assert run(tmp_path).returncode == 0
    edit(recipes, ("PRETRAIN_EPOCHS = 20", "PRETRAIN_EPOCHS = 50"))  # read in the supcon/ scope only
    proc = run(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 trained, 2 already done, 0 failed, 2 unusable" in proc.stdout
    assert f"  unusable {SUPCON1}: {guard_message(SUPCON1, 'PRETRAIN_EPOCHS = 20 (run) vs 50 (recipe now)')}" in (
        proc.stdout)
    assert f"skip    {CE0} (done)" in proc.stdout and f"skip    {CE1} (done)" in proc.stdout


def test_a_partial_run_with_other_settings_is_not_resumed(tmp_path, recipes):
    edit(recipes, ("FAKE_CRASH_ONCE = False", "FAKE_CRASH_ONCE = True"))
    first = run(tmp_path, "--only", "METHOD=supcon", "--only", "SEED=0")
    assert first.returncode == 1 and "fake crash" in first.stdout, first.stdout  # a checkpoint, no result
    run_dir = tmp_path / "runs" / "g" / SUPCON0
    assert workdir.point_status(str(run_dir)) == "partial"
    before = snapshot(run_dir)
    edit(recipes, ("PRETRAIN_EPOCHS = 20", "PRETRAIN_EPOCHS = 21"))

    dry = run(tmp_path, "--dry_run", "--only", "METHOD=supcon")
    assert dry_lines(dry.stdout)[SUPCON0] == ("unusable", guard_message(SUPCON0, "PRETRAIN_EPOCHS = 20 (run) vs 21 (recipe now)"))
    assert dry_lines(dry.stdout)[SUPCON1] == ("new", "")
    proc = run(tmp_path, "--only", "SEED=0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"  unusable {SUPCON0}: {guard_message(SUPCON0, 'PRETRAIN_EPOCHS = 20 (run) vs 21 (recipe now)')}" in (
        proc.stdout)
    assert trained(tmp_path) == [(SUPCON0, False), (CE0, False)]  # the partial run was not resumed
    assert snapshot(run_dir) == before

    edit(recipes, ("PRETRAIN_EPOCHS = 21", "PRETRAIN_EPOCHS = 20"))  # the settings it was trained with again
    again = run(tmp_path, "--only", "SEED=0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert trained(tmp_path)[2:] == [(SUPCON0, True), (CE0, True)]  # resumed from their checkpoints


def test_header_comment_report_grid_order_and_evaluation_only_edits_keep_the_runs(tmp_path, recipes):
    assert run(tmp_path).returncode == 0
    edit(recipes, ("# Reproduces: nothing;", "# Reproduces: still nothing;"),
         ("CE_EPOCHS = 10\n", "CE_EPOCHS = 10  # a comment\n# and a comment line\n"),
         ("report.title = 'Guard'", "report.title = 'Guard, renamed'\nreport.columns = []"),
         ("grid.axes = {'SEED': [0, 1]}", "grid.axes = {'SEED': [1, 0]}"))
    proc = run(tmp_path, "--gin_param", "report.title = 'Other'")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 trained, 4 already done" in proc.stdout and "unusable" not in proc.stdout

    edit(recipes, ("train.max_examples = 5000", "train.max_examples = 5000\ntrain_and_evaluate.corruptions = ['fog']\n"
                   "train_and_evaluate.corruption_severities = [2]"))
    dry = run(tmp_path, "--dry_run")
    assert dry.returncode == 0, dry.stderr
    assert {status for status, _ in dry_lines(dry.stdout).values()} == {"needs eval"}, dry.stdout  # scored, not unusable


def test_a_run_dir_without_recorded_settings_is_used_and_shown_as_such(tmp_path, recipes):
    """Run dirs written before settings were recorded: no way to tell, so they are used; --dry_run says so."""
    assert run(tmp_path, report=True).returncode == 0
    for slug in (SUPCON0, CE0):  # as an older runner wrote them
        path = tmp_path / "runs" / "g" / slug / workdir.POINT
        point = json.loads(path.read_text())
        del point[workdir.TRAINING_SETTINGS], point[workdir.TRAINING_SETTINGS_HASH]
        path.write_text(json.dumps(point))
    edit(recipes, ("PRETRAIN_EPOCHS = 20", "PRETRAIN_EPOCHS = 50"))

    dry = run(tmp_path, "--dry_run")
    listed = dry_lines(dry.stdout)
    assert listed[SUPCON0] == ("done", "(settings not recorded)") and listed[CE0] == ("done", "(settings not recorded)")
    assert listed[CE1] == ("done", "") and listed[SUPCON1][0] == "unusable", dry.stdout
    proc = run(tmp_path, report=True)
    assert proc.returncode == 1 and "0 trained, 3 already done, 0 failed, 1 unusable" in proc.stdout, proc.stdout
    text = (tmp_path / "reports" / "g" / "README.md").read_text()
    assert "4 planned: 3 done" in text and f"`{SUPCON1}` (PRETRAIN_EPOCHS = 20 (run) vs 50 (recipe now))" in text


def test_the_report_leaves_out_runs_trained_with_other_settings(tmp_path, recipes):
    assert run(tmp_path, report=True).returncode == 0
    edit(recipes, ("PRETRAIN_EPOCHS = 20", "PRETRAIN_EPOCHS = 50"))
    proc = run(tmp_path, report=True)
    assert proc.returncode == 1 and "report: reports/g/README.md" in proc.stdout, proc.stdout + proc.stderr
    text = (tmp_path / "reports" / "g" / "README.md").read_text()
    note = (f"Not shown: 2 run directories trained with other settings than the recipe's now: `{SUPCON0}`, "
            f"`{SUPCON1}` (PRETRAIN_EPOCHS = 20 (run) vs 50 (recipe now)); their points are listed as absent (move "
            "the run dirs away and run the recipe to retrain them).")
    assert note in text.splitlines(), text
    assert "| ce | 50.00 ± 0.00 (2) |\n| supcon | – (0/2) |" in text  # its seeds' numbers are not used
    assert "4 planned: 2 done, 0 failed, 2 missing or unfinished" in text
    assert text.count(f"| absent | 0 | its run dir {SUPCON0} was trained with other settings (not shown) |") == 1

    env = dict(os.environ, PYTHONPATH=ROOT)
    by_hand = subprocess.run([sys.executable, "-m", "supcon.report", "runs/g", "--recipe", "recipes/g.gin", "--out",
                              "by_hand", "--no_plots"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert by_hand.returncode == 0, by_hand.stderr
    assert note in (tmp_path / "by_hand" / "README.md").read_text()
    plain = subprocess.run([sys.executable, "-m", "supcon.report", "runs/g", "--out", "plain", "--no_plots"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr  # without the recipe there is nothing to compare with: every run
    assert sorted(results_rows((tmp_path / "plain" / "README.md").read_text())) == ["ce", "supcon"]


def test_a_recipe_reading_the_runs_of_an_edited_recipe_finds_them_unusable(tmp_path, recipes):
    assert run(tmp_path).returncode == 0
    assert run(tmp_path, "--dry_run", recipe="b").stdout.count("  done ") == 2
    edit(recipes, ("PRETRAIN_EPOCHS = 20", "PRETRAIN_EPOCHS = 50"))
    before = snapshot(tmp_path / "runs")
    dry = run(tmp_path, "--dry_run", recipe="b")
    assert dry.returncode == 0, dry.stderr
    assert dry_lines(dry.stdout)[SUPCON0] == ("unusable", guard_message(SUPCON0, "PRETRAIN_EPOCHS = 20 (run) vs 50 (recipe now)"))
    assert dry_lines(dry.stdout)[CE0] == ("done", "")
    proc = run(tmp_path, recipe="b")
    assert proc.returncode == 1 and "0 trained, 1 already done, 0 failed, 1 unusable" in proc.stdout, proc.stdout
    assert snapshot(tmp_path / "runs") == before and len(trained(tmp_path)) == 4


def test_differences_name_the_first_ones_and_count_the_rest():
    recorded = {"A": "1", "B": "'x'", "C": "(1,)", "D": "@f", "E": "2"}
    current = {"A": "1", "B": "'y'", "C": "[1]", "D": "@f", "F": "20.0", "E": "3"}
    assert bindings.run_settings_mismatch(recorded, recorded) == ""
    assert bindings.run_settings_mismatch(recorded, current) == (
        "B = 'x' (run) vs 'y' (recipe now), C = (1,) vs [1], F = not bound vs 20.0 and 1 more")
    assert bindings.settings_hash(dict(reversed(list(current.items())))) == bindings.settings_hash(current)


def test_moving_a_run_dir_away_retrains_its_point(tmp_path, recipes):
    assert run(tmp_path, "--only", "SEED=0").returncode == 0
    edit(recipes, ("train.max_examples = 5000", "train.max_examples = 6000"))
    shutil.move(tmp_path / "runs" / "g" / CE0, tmp_path / "old-ce0")
    proc = run(tmp_path, "--only", "SEED=0")
    assert proc.returncode == 1 and "1 trained, 0 already done, 0 failed, 1 unusable" in proc.stdout, proc.stdout
    assert point_json(tmp_path, CE0)[workdir.TRAINING_SETTINGS]["train.max_examples"] == "6000"
