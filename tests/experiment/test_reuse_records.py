"""`grid.reuse_from` over committed run records: with no run dir to copy (the machine that trained them is gone), a
recipe copies another recipe's finished record of exactly a point's training into its own records.

The recipes a.gin and b.gin of test_reuse_from.py (b's SupCon points at temperature 0.1 train exactly as a's SupCon
points) are written in a temporary folder; a's runner trains its grid and writes its report and records, its run
dirs are then removed, and b's runner runs with the fake trainer, as a user would in a fresh clone. No TensorFlow.
"""

import json
import os
import shutil

import pytest
import record_damage
from test_reuse_from import A, B, b_points, trained
from test_runs_of import run, tree

from supcon import workdir

SUPCON_A = "method-supcon_loss-supcon_fake_top1-0.75_seed-{}"  # a's slug of a SupCon seed
SUPCON_B = "method-supcon_loss-supcon_fake_top1-0.75_temperature-0.1_seed-{}"  # b's point that copies it
SOURCE = "reports/a/runs/" + SUPCON_A  # a's committed record
COPY = "reports/b/runs/" + SUPCON_B  # b's copy of it


@pytest.fixture
def recipes(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "a.gin").write_text(A)
    (folder / "b.gin").write_text(B)
    return folder


@pytest.fixture
def committed(tmp_path, recipes):
    """a trained and reported (its records beside its report), then its run dirs gone with the machine. a's SupCon
    records say eval/top1 0.9, to tell them from anything b trains (0.75)."""
    proc = run(tmp_path, "a", report=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.rmtree(tmp_path / "runs")
    os.remove(tmp_path / "train.log")
    for seed in (0, 1):
        path = tmp_path / SOURCE.format(seed) / workdir.RESULT
        workdir.write_json_atomic(str(path), {**json.loads(path.read_text()), "eval/top1": 0.9})
    return tmp_path


def read(tmp_path, path, name):
    return json.loads((tmp_path / path / name).read_text())


def notes(proc):
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("grid.reuse_from: ")]


def no_traceback(proc):
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_a_committed_record_is_copied_and_the_point_recorded_not_trained(committed, recipes):
    tmp_path = committed
    proc = run(tmp_path, "b", report=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ("summary: 8 points in runs/b: 6 trained, 2 copied from other recipes (2 from their run records), 0 "
            "already done, 0 failed") in proc.stdout
    for seed in (0, 1):
        assert f" copied  {SUPCON_B.format(seed)} <- {SOURCE.format(seed)}\n" in proc.stdout, proc.stdout
    assert sorted(trained(tmp_path)) == sorted(
        [("supcon", "0.5", s) for s in "01"] + [("simclr", t, s) for t in ("0.1", "0.5") for s in "01"]
    )  # the SupCon points at 0.1 were neither trained nor validated: their records were copied
    assert not (tmp_path / "runs" / "b" / SUPCON_B.format(0)).exists()
    assert not [d for d in os.listdir(tmp_path / "reports" / "b" / "runs") if d.startswith(".")]

    points = b_points(recipes)
    for seed in (0, 1):
        copy, source = COPY.format(seed), SOURCE.format(seed)
        mine, theirs = read(tmp_path, copy, workdir.POINT), read(tmp_path, source, workdir.POINT)
        point = points[("supcon", 0.1, seed)]
        assert mine["recipe_stem"] == "b" and mine["recipe"] == "recipes/b.gin"  # no machine paths in a record
        assert mine[workdir.GIN_FILES] == theirs[workdir.GIN_FILES] and not os.path.isabs(mine[workdir.GIN_FILES][0])
        assert mine["id"] == point.id and mine["slug"] == point.slug == SUPCON_B.format(seed)
        assert mine["bindings"] == point.bindings and mine["values"] == point.values
        assert mine["copied_from"] == source and mine["report"]["title"] == "Recipe B"
        assert mine[workdir.TRAINING_SETTINGS] == theirs[workdir.TRAINING_SETTINGS]
        assert mine[workdir.TRAINING_SETTINGS_HASH] == theirs[workdir.TRAINING_SETTINGS_HASH]
        assert sorted(os.listdir(tmp_path / copy)) == sorted(os.listdir(tmp_path / source))
        for name in os.listdir(tmp_path / source):
            if name != workdir.POINT:
                assert (tmp_path / copy / name).read_bytes() == (tmp_path / source / name).read_bytes(), name

    readme = (tmp_path / "reports" / "b" / "README.md").read_text()
    assert "8 planned: 8 done, 0 failed" in readme
    assert ("- **Copied from other recipes** (`grid.reuse_from`), not trained for this recipe: 2 points, each a "
            "copy of another recipe's finished run with exactly its training settings:\n"
            f"  - from the run records in `reports/a/runs/`: `{SUPCON_B.format(0)}`, `{SUPCON_B.format(1)}`\n"
            ) in readme  # fmt: skip
    table = readme.split("## Results")[1].split("\n\n")[1]
    assert "| supcon | 0.1 | 90.00 ± 0.00 (2) |" in table, table  # a's numbers, from the copied records

    again = run(tmp_path, "b")  # the copies are recorded: nothing to train or copy
    assert again.returncode == 0, again.stdout + again.stderr
    assert "summary: 8 points in runs/b: 0 trained, 8 already done, 0 failed" in again.stdout
    assert f"skip    {SUPCON_B.format(0)} (recorded)" in again.stdout and len(trained(tmp_path)) == 6

    shutil.copytree(tmp_path / "reports" / "b", tmp_path / "built")
    shutil.rmtree(tmp_path / "runs")  # this machine goes too: the report rebuilds from the records alone
    rebuilt = run(tmp_path, "b", "--report_only")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (tmp_path / "reports" / "b" / "README.md").read_bytes() == (tmp_path / "built" / "README.md").read_bytes()


def test_dry_run_lists_the_record_copies_and_writes_nothing(committed, recipes):
    tmp_path = committed
    before = tree(tmp_path)
    proc = run(tmp_path, "b", "--dry_run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    points = b_points(recipes)
    for seed in (0, 1):
        pid = points[("supcon", 0.1, seed)].id
        assert f"\n  copy record {pid}  {COPY.format(seed)}  <- {SOURCE.format(seed)}\n" in proc.stdout, proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "status: 2 copy record, 6 new"
    assert tree(tmp_path) == before and not trained(tmp_path)


def test_a_run_dir_to_copy_is_preferred_to_a_record(tmp_path, recipes):
    assert run(tmp_path, "a", report=True).returncode == 0
    proc = run(tmp_path, "b", "--dry_run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "  <- runs/a/" in proc.stdout and "copy record" not in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "status: 2 copy, 6 new"


def _other_settings(record):
    point = json.loads((record / workdir.POINT).read_text())
    point[workdir.TRAINING_SETTINGS]["FAKE_TOP1"] = "0.7"
    (record / workdir.POINT).write_text(json.dumps(point))


def test_a_record_with_other_settings_is_not_copied(committed, recipes):
    tmp_path = committed
    _other_settings(tmp_path / SOURCE.format(0))
    proc = run(tmp_path, "b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "7 trained, 1 copied from other recipes (1 from their run records)" in proc.stdout
    assert ("supcon", "0.1", "0") in trained(tmp_path) and ("supcon", "0.1", "1") not in trained(tmp_path)
    assert not notes(proc)  # another point's record, not a damaged one: nothing to say
    assert not (tmp_path / COPY.format(0)).exists()  # --noreport: the trained point has no record yet
    assert read(tmp_path, COPY.format(1), workdir.POINT)["copied_from"] == SOURCE.format(1)


def _failed(record):
    os.remove(record / workdir.RESULT)
    workdir.write_status(str(record), workdir.FAILED, step=3, reason="fake failure")


# kind: (damage, the file named, what the line says)
DAMAGES = {
    "truncated point.json": (record_damage.truncate_point, workdir.POINT, "is not JSON (truncated?)"),
    "result.json not JSON": (record_damage.garble_result, workdir.RESULT, "is not JSON (truncated?)"),
    "env.json a list": (record_damage.env_list, workdir.ENV, "holds a list, not a JSON object"),
    "failed": (_failed, workdir.STATUS, "says failed, not done: not finished"),
}


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_or_unfinished_source_record_is_skipped_in_one_line(committed, recipes, kind):
    tmp_path = committed
    damage, name, what = DAMAGES[kind]
    if name == workdir.ENV:  # the fake trainer writes no env.json: give the record one to spoil
        (tmp_path / SOURCE.format(0) / workdir.ENV).write_text("{}\n")
    damage(tmp_path / SOURCE.format(0))
    path = f"{SOURCE.format(0)}/{name}"
    dry = run(tmp_path, "b", "--dry_run")
    no_traceback(dry)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert len(notes(dry)) == 1 and notes(dry)[0].startswith(f"grid.reuse_from: {path} {what}"), dry.stdout
    assert notes(dry)[0].endswith("; not copied") and dry.stdout.splitlines()[1] == notes(dry)[0]
    assert dry.stdout.rstrip().splitlines()[-1] == "status: 1 copy record, 7 new"

    proc = run(tmp_path, "b")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert notes(proc) == notes(dry)
    assert "7 trained, 1 copied from other recipes (1 from their run records)" in proc.stdout
    assert ("supcon", "0.1", "0") in trained(tmp_path) and ("supcon", "0.1", "1") not in trained(tmp_path)


def test_a_record_lacking_metrics_the_recipe_asks_for_is_not_copied(committed, recipes):
    """A record cannot be scored in eval mode (it has no checkpoint): the point is trained instead."""
    tmp_path = committed
    (recipes / "b.gin").write_text(B + "train_and_evaluate.corruptions = ['fog']\n"
                                   "train_and_evaluate.corruption_severities = [2]\n")
    proc = run(tmp_path, "b", "--dry_run", "--only", "METHOD=supcon", "--only", "TEMPERATURE=0.1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert notes(proc) == [f"grid.reuse_from: {SOURCE.format(s)}/result.json lacks 5 of the metrics recipes/b.gin "
                           "asks for, e.g. corruption/fog/2/top1; not copied" for s in (0, 1)], proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "status: 2 new"
