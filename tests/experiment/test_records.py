"""Run records beside each report (supcon/report/records.py, issue 24): what a record holds, a report rebuilt from
its records alone (`runner.py --report_only`), a grid split over two clones of the repository, and damaged records.

Every test runs `python runner.py` in a subprocess with the fake trainer the runner tests use
(tests/fixtures/runner/fake_main.py; `FAKE_RECORDS` makes it write what a real run leaves), in temporary "clones":
folders holding a copy of the runner's recipe fixtures under recipes/, where the runner runs with `--runs_dir runs
--report_dir reports`, as a user would in a checkout.
"""

import gzip
import json
import os
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import record_damage

from supcon import workdir
from supcon.report import baselines, records
from supcon.report import data as report_data
from supcon.report import plots as report_plots

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "runner")
RUNNER = os.path.join(ROOT, "runner.py")
RECIPE = "recipes/records.gin"  # tests/fixtures/runner/records.gin: METHOD 2 x TEMPERATURE 2 x SEED 2
STEM = "records"
MB = 1 << 20
SUPCON = [f"method-supcon_temperature-{t}_seed-{s}" for t in (0.1, 0.5) for s in (0, 1)]
CE = [f"method-ce_temperature-{t}_seed-{s}" for t in (0.1, 0.5) for s in (0, 1)]
DAMAGED = "method-ce_temperature-0.1_seed-0"  # the record the damage tests spoil


def make_clone(path):
    """A folder standing for a checkout: the runner's recipe fixtures under recipes/."""
    os.makedirs(path / "recipes")
    for name in os.listdir(FIXTURES):
        if name.endswith(".gin"):
            shutil.copyfile(os.path.join(FIXTURES, name), path / "recipes" / name)
    return path


def env_for(clone):
    return dict(os.environ, PYTHONPATH=FIXTURES, FAKE_TRAIN_LOG=str(clone / "train.log"),
                FAKE_VALIDATE_LOG=str(clone / "validate.log"))  # fmt: skip


def runner_cmd(*args, recipe=RECIPE):
    return [sys.executable, RUNNER, recipe, *args, "--runs_dir", "runs", "--report_dir", "reports",
            "--main_module", "fake_main"]  # fmt: skip


def run(clone, *args, recipe=RECIPE):
    return subprocess.run(runner_cmd(*args, recipe=recipe), cwd=clone, env=env_for(clone), capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def trained(clone):
    """The run dirs the fake trainer trained in this clone, one entry per training run."""
    path = clone / "train.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [os.path.basename(json.loads(line)["workdir"]) for line in lines]


def report_dir(clone, stem=STEM):
    return clone / "reports" / stem


def records_of(clone, stem=STEM):
    return report_dir(clone, stem) / workdir.RECORDS_DIR


def recorded(clone, stem=STEM):
    """The slugs recorded beside the report (the records' folder also holds the baselines' cache)."""
    folder = records_of(clone, stem)
    return sorted(n for n in os.listdir(folder) if (folder / n).is_dir())


def files(path):
    """{relative path: bytes} of every file under `path`."""
    return {
        os.path.relpath(os.path.join(d, n), path): open(os.path.join(d, n), "rb").read()
        for d, _, names in os.walk(path) for n in names
    }  # fmt: skip


def pngs(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".png"))


def assert_same_report(got, want):
    """README byte-identical, the same PNGs pixel-identical (matplotlib.image.imread) and byte-identical."""
    assert (got / "README.md").read_bytes() == (want / "README.md").read_bytes()
    assert pngs(got) == pngs(want) and pngs(want)
    for name in pngs(want):
        assert np.array_equal(matplotlib.image.imread(got / name), matplotlib.image.imread(want / name)), name
        assert (got / name).read_bytes() == (want / name).read_bytes(), name


def section(readme, title):
    """The text of one `## title` section of a README."""
    text = readme.split(f"## {title}\n", 1)[1]
    return text.split("\n## ", 1)[0]


def all_runs(readme):
    """{run dir: state} of the README's All runs table."""
    rows = [line.split(" | ") for line in section(readme, "All runs").splitlines() if line.startswith("| `")]
    return {row[0].strip("| `"): row[2] for row in rows}


def no_traceback(proc):
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# What a record holds


def test_records_hold_the_small_files_and_thinned_curves_of_finished_runs(tmp_path):
    """Every finished point gets a record beside the report with exactly point, status, result, env, calibration,
    as the run wrote them (records.COPIED), config.gin gzipped, metrics.jsonl with 100 of the 150 training lines of each
    stage (first and last kept, floats as logged to 6 significant digits) and every evaluation line, and the 2-D PCA of the
    embeddings; no checkpoint, TensorBoard, export, log or operative config. The raw-pixel baselines' cache is kept
    beside the records, not the runs. The records stay under 1 MB."""
    clone = make_clone(tmp_path / "clone")
    proc = run(clone)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert recorded(clone) == sorted(SUPCON + CE)
    assert (records_of(clone) / baselines.CACHE).is_file() and not (clone / "runs" / STEM / baselines.CACHE).exists()
    for slug in SUPCON + CE:
        run_dir, record = clone / "runs" / STEM / slug, records_of(clone) / slug
        copied = {n for n in records.COPIED if (run_dir / n).is_file()}
        assert copied >= {workdir.POINT, workdir.STATUS, workdir.RESULT, workdir.ENV, workdir.CALIBRATION}
        assert set(os.listdir(record)) == copied | {workdir.METRICS, workdir.EMBEDDINGS, workdir.CONFIG_GZ}
        for name in copied - {workdir.POINT}:
            assert (record / name).read_bytes() == (run_dir / name).read_bytes(), name
        assert gzip.decompress((record / workdir.CONFIG_GZ).read_bytes()) == (run_dir / workdir.CONFIG).read_bytes()
        # point.json as the run wrote it but for its gin files: relative to the checkout, no machine paths
        point, kept_point = (json.loads((d / workdir.POINT).read_text()) for d in (run_dir, record))
        assert all(os.path.isabs(f) for f in point[workdir.GIN_FILES])
        assert kept_point[workdir.GIN_FILES] == [RECIPE, f"runs/{STEM}/{slug}/point.gin"]
        assert os.path.abspath(clone / kept_point["recipe"]) == os.path.abspath(clone / point["recipe"])
        assert {**kept_point, workdir.GIN_FILES: point[workdir.GIN_FILES], "recipe": point["recipe"]} == point
        assert str(tmp_path) not in (record / workdir.POINT).read_text()

        logged = [json.loads(line) for line in (run_dir / workdir.METRICS).read_text().splitlines()]
        kept = [json.loads(line) for line in (record / workdir.METRICS).read_text().splitlines()]
        assert [r for r in kept if r["kind"] == "eval"] == [r for r in logged if r["kind"] == "eval"]
        by_step = {r["step"]: r for r in logged if r["kind"] == "train"}
        for stage in ("pretrain", "linear"):
            steps = [r["step"] for r in logged if r.get("stage") == stage]
            got = [r for r in kept if r.get("stage") == stage]
            assert len(steps) == 150 and len(got) == records.CURVE_POINTS
            assert [r["step"] for r in got] == sorted({r["step"] for r in got})
            assert got[0]["step"] == steps[0] and got[-1]["step"] == steps[-1]
            for r in got:
                assert r.keys() == by_step[r["step"]].keys()
                for key, value in by_step[r["step"]].items():  # floats to records.SIGNIFICANT digits
                    shown = float(f"{value:.{records.SIGNIFICANT}g}") if isinstance(value, float) else value
                    assert r[key] == shown, (key, r["step"])

        with np.load(run_dir / workdir.EMBEDDINGS) as full, np.load(record / workdir.EMBEDDINGS) as small:
            assert small["embeddings"].shape == (300, 2) and small["embeddings"].dtype == np.float16
            assert small["labels"].dtype == np.uint8
            assert np.array_equal(small["labels"], full["labels"])
            want = report_plots.pca_2d(np.asarray(full["embeddings"], np.float64))
            np.testing.assert_allclose(small["embeddings"], want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    size = records.size(str(report_dir(clone)))
    print(f"records of {RECIPE} (8 points, 150 training lines per stage): {size} bytes")
    assert size < MB


def test_only_finished_and_failed_points_are_recorded(tmp_path):
    """cases.gin: the failed point is recorded (status.json, no result.json), the crashed one (a checkpoint, no
    result) is not until a rerun finishes it; a rerun refreshes the record of the point it retried."""
    clone = make_clone(tmp_path / "clone")
    proc = run(clone, recipe="recipes/cases.gin")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the failing point
    slug = {os.path.basename(d).split("_")[0]: os.path.basename(d) for d in os.listdir(clone / "runs" / "cases")}
    folder = records_of(clone, "cases")
    assert recorded(clone, "cases") == [slug["case-fail"], slug["case-ok"]]
    failed = folder / slug["case-fail"]
    assert set(os.listdir(failed)) == {workdir.POINT, workdir.STATUS}
    assert json.loads((failed / workdir.STATUS).read_text())["state"] == workdir.FAILED
    assert set(os.listdir(folder / slug["case-ok"])) == {workdir.POINT, workdir.STATUS, workdir.RESULT}
    first = (failed / workdir.STATUS).read_bytes()

    proc = run(clone, recipe="recipes/cases.gin")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert sorted(trained(clone)) == sorted(slug[c] for c in ("case-ok", "case-fail", "case-fail", "case-crash",
                                                               "case-crash"))  # fmt: skip
    assert recorded(clone, "cases") == sorted(slug.values())
    assert (failed / workdir.STATUS).read_bytes() != first  # the retry's status, recorded again
    size = records.size(str(report_dir(clone, "cases")))
    print(f"records of recipes/cases.gin (3 points): {size} bytes")
    assert size < MB


# ---------------------------------------------------------------------------------------------------------------
# --report_only

NO_TF_MAIN = (
    "import runpy, sys\n"
    "sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
    "try:\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    "sys.exit(code)\n"
)


def test_report_only_rebuilds_the_report_from_its_records_alone(tmp_path):
    """With no runs directory, `--report_only` rebuilds README byte-identical and the PNGs pixel- and
    byte-identical, leaves the records as they were, and imports no TensorFlow."""
    clone = make_clone(tmp_path / "clone")
    assert run(clone).returncode == 0
    committed = tmp_path / "committed"
    shutil.copytree(report_dir(clone), committed)
    shutil.rmtree(clone / "runs")
    os.remove(clone / "train.log")
    for name in os.listdir(report_dir(clone)):  # the rebuild must draw every file again
        if name != workdir.RECORDS_DIR:
            os.remove(report_dir(clone) / name)

    cmd = [sys.executable, "-c", NO_TF_MAIN, *runner_cmd("--report_only")[1:]]
    proc = subprocess.run(cmd, cwd=clone, env=dict(env_for(clone), PYTHONPATH=f"{ROOT}{os.pathsep}{FIXTURES}"),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "report: reports/records/README.md (from 8 run records)"
    assert not (clone / "runs").exists() and not trained(clone)
    assert_same_report(report_dir(clone), committed)
    assert files(records_of(clone)) == files(committed / workdir.RECORDS_DIR)


def test_report_only_takes_the_baselines_from_the_records(committed, tmp_path):
    """The raw-pixel baselines' cache is committed with the records, so a clone rebuilds the report without the
    data: --report_only shows the cached numbers (here edited, to tell them from computed ones)."""
    clone = tmp_path / "clone"
    shutil.copytree(committed, clone)
    cache = records_of(clone) / baselines.CACHE
    numbers = json.loads(cache.read_text())
    assert len(numbers) == 1 and "pixels + logistic regression | 92.78 |" in (report_dir(clone) / "README.md").read_text()
    for entry in numbers.values():
        entry["logreg_top1"] = 0.5
    cache.write_text(json.dumps(numbers))
    proc = run(clone, "--report_only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| pixels + logistic regression | 50.00 |" in (report_dir(clone) / "README.md").read_text()


def test_report_only_without_records_is_one_line(tmp_path):
    clone = make_clone(tmp_path / "clone")
    proc = run(clone, "--report_only")
    assert proc.returncode == 2
    assert proc.stderr == "runner.py: error: reports/records/runs: no run records to rebuild the report from\n"
    assert not (clone / "reports").exists()


# ---------------------------------------------------------------------------------------------------------------
# A grid split over two clones


@pytest.mark.slow  # nine runner processes; --report_only from records alone and recorded points are tested apart
def test_a_grid_split_over_two_clones_reports_like_one_runner(tmp_path):
    """Clone A trains the SupCon half (--only); its records are committed and pulled into clone B, where
    --dry_run lists them as `recorded` and the runner trains only the cross-entropy half. B's report equals the
    report of one runner that trained the whole grid in clone C; A, pulling B's records, rebuilds the same one."""
    one, a, b = (make_clone(tmp_path / name) for name in ("one", "a", "b"))
    proc = run(one)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(trained(one)) == sorted(SUPCON + CE)

    proc = run(a, "--only", "METHOD=supcon")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(trained(a)) == sorted(SUPCON)
    assert recorded(a) == sorted(SUPCON)

    shutil.copytree(records_of(a), records_of(b))  # A commits its records, B pulls them
    proc = run(b, "--dry_run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = {line.split()[-1].split("/")[-1]: line.split()[0] for line in proc.stdout.splitlines()
              if line.startswith("  ")}  # fmt: skip
    assert listed == {**{s: "recorded" for s in SUPCON}, **{s: "new" for s in CE}}, proc.stdout
    assert proc.stdout.splitlines()[-1] == "status: 4 new, 4 recorded"

    proc = run(b)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(trained(b)) == sorted(CE)
    assert "summary: 8 points in runs/records: 4 trained, 4 already done, 0 failed" in proc.stdout
    for slug in SUPCON:
        assert f"skip    {slug} (recorded)" in proc.stdout
    assert_same_report(report_dir(b), report_dir(one))
    assert recorded(b) == sorted(SUPCON + CE)

    shutil.rmtree(records_of(a))  # B commits the whole grid's records, A pulls them
    shutil.copytree(records_of(b), records_of(a))
    proc = run(a, "--report_only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_same_report(report_dir(a), report_dir(one))
    proc = run(a)
    assert proc.returncode == 0 and sorted(trained(a)) == sorted(SUPCON), proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# Damaged records (issue 24 item 4): never a traceback; the file is named in one line, the others reported


def _edit_point(record, **changes):
    point = json.loads((record / workdir.POINT).read_text())
    for key, value in changes.items():
        point[key] = value(point[key]) if callable(value) else value
    (record / workdir.POINT).write_text(json.dumps(point))


def _other_recipe(record):
    _edit_point(record, recipe="recipes/axes.gin", recipe_stem="axes")


def _other_settings(record):
    _edit_point(record, training_settings=lambda s: dict(s, FAKE_RECORDS="200"))


# kind: (damage, the file named, what the line says, whether the record is still used)
DAMAGES = {
    "truncated point.json": (record_damage.truncate_point, workdir.POINT, "is not JSON (truncated?)", False),
    "result.json not JSON": (record_damage.garble_result, workdir.RESULT, "is not JSON (truncated?)", False),
    "env.json a list": (record_damage.env_list, workdir.ENV, "holds a list, not a JSON object", True),
    "another recipe's record": (_other_recipe, workdir.POINT, "holds a point of recipe 'axes', not of 'records'",
                                False),
    "other settings": (_other_settings, workdir.POINT, "was trained with other settings than recipes/records.gin's "
                       f"point {DAMAGED} now: FAKE_RECORDS = 200 (record) vs 150 (recipe)", False),
}  # fmt: skip


@pytest.fixture(scope="module")
def committed(built_once):
    """A clone whose report and records were committed after training the whole grid; its runs are gone. Built
    once per session (tests copy it)."""

    def build(folder):
        clone = make_clone(folder / "clone")
        proc = run(clone)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        shutil.rmtree(clone / "runs")
        os.remove(clone / "train.log")

    return built_once("records_committed", build) / "clone"


def damaged_clone(committed, tmp_path, kind):
    clone = tmp_path / "clone"
    shutil.copytree(committed, clone)
    DAMAGES[kind][0](records_of(clone) / DAMAGED)
    return clone


def named_lines(proc, name):
    """The output lines naming the damaged file."""
    path = f"reports/records/runs/{DAMAGED}/{name}"
    return [line for line in (proc.stdout + proc.stderr).splitlines() if path in line]


def assert_reported(clone, kind):
    """The report lists the 7 other points as done, and the damaged one under Failed and missing points."""
    readme = (report_dir(clone) / "README.md").read_text()
    states = all_runs(readme)
    assert {s: states[s] for s in SUPCON + CE if s != DAMAGED} == {s: "done" for s in SUPCON + CE if s != DAMAGED}
    problems = section(readme, "Failed and missing points")
    assert DAMAGED in problems, problems
    if DAMAGES[kind][3]:  # used: the point is done, the file noted
        assert states[DAMAGED] == "done" and f"`{DAMAGED}`: {DAMAGES[kind][1]} " in problems
    else:
        assert "None: every planned point finished." not in problems
        assert states.get(DAMAGED, "left out") != "done"
    return readme


# make test keeps one damage per behaviour: a record still used, one left out (and, for --report_only, other
# settings, named in the report); the other kinds take those same paths (runner subprocesses of a few seconds
# each) and run with -m slow.
KEPT = ("env.json a list", "truncated point.json", "other settings")


def kinds(*leave_out):
    return [pytest.param(k, marks=() if k in KEPT else pytest.mark.slow) for k in DAMAGES if k not in leave_out]


@pytest.mark.parametrize("kind", kinds())
def test_report_only_names_a_damaged_record_and_reports_the_others(committed, tmp_path, kind):
    """`--report_only`: one line naming the damaged file, no traceback, the other points reported, the damaged one
    under Failed and missing points; exit 1 when the record is left out (the report is written all the same)."""
    _, name, what, used = DAMAGES[kind]
    clone = damaged_clone(committed, tmp_path, kind)
    every = report_data.record_problems(str(records_of(clone)), STEM)
    for slug in (DAMAGED, CE[1]):  # one record's check (only=) finds what the folder's finds for it
        mine = report_data.record_problems(str(records_of(clone)), STEM, only=slug)
        assert mine == [p for p in every if p.slug == slug]
    assert not report_data.record_problems(str(records_of(clone)), STEM, only=CE[1])  # an undamaged record
    proc = run(clone, "--report_only")
    no_traceback(proc)
    assert proc.returncode == (0 if used else 1), proc.stdout + proc.stderr
    assert proc.stderr == ""
    then = "the rest of it is used" if used else "not used"
    lines = named_lines(proc, name)
    assert len(lines) == 1 and lines[0].startswith(f"damaged run record: reports/records/runs/{DAMAGED}/{name} "
                                                   f"{what}") and lines[0].endswith(then), proc.stdout
    left_out = "" if used else ", 1 left out as damaged"
    assert proc.stdout.splitlines()[-1] == f"report: reports/records/README.md (from {8 - (not used)} run records" \
        f"{left_out})"
    readme = assert_reported(clone, kind)
    if kind == "other settings":
        assert f"its run dir {DAMAGED} was trained with other settings" in readme


@pytest.mark.parametrize("kind", kinds("other settings"))
def test_the_runner_names_a_damaged_record_and_trains_its_point(committed, tmp_path, kind):
    """The runner: one line naming the damaged file, no traceback; with --only SEED=1 it trains nothing (the
    points are recorded) and the report lists the damaged one under Failed and missing points; a whole run trains
    that point alone (none when the record is still used) and its fresh record replaces the damaged one."""
    _, name, what, used = DAMAGES[kind]
    clone = damaged_clone(committed, tmp_path, kind)
    proc = run(clone, "--only", "SEED=1")
    no_traceback(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = named_lines(proc, name)
    assert len(lines) == 1 and f"{name} {what}" in lines[0], proc.stdout
    assert not trained(clone)
    assert_reported(clone, kind)

    proc = run(clone)
    no_traceback(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(named_lines(proc, name)) == 1
    assert trained(clone) == ([] if used else [DAMAGED])
    readme = (report_dir(clone) / "README.md").read_text()
    assert all_runs(readme) == {s: "done" for s in SUPCON + CE}
    problems = report_data.record_problems(str(records_of(clone)), STEM)
    assert [(p.slug, os.path.basename(p.path)) for p in problems] == ([(DAMAGED, name)] if used else [])


def test_a_record_trained_with_other_settings_stops_the_runner(committed, tmp_path):
    """The runner (and --dry_run): a one-line error naming the record and the recipe's point, exit 2, nothing
    written."""
    clone = damaged_clone(committed, tmp_path, "other settings")
    before = files(clone)
    for args in ((), ("--dry_run",), ("--only", "SEED=1")):
        proc = run(clone, *args)
        no_traceback(proc)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr == (
            f"runner.py: error: reports/records/runs/{DAMAGED}/point.json: recorded with other settings than "
            f"recipes/records.gin's point {DAMAGED} now: FAKE_RECORDS = 200 (record) vs 150 (recipe); remove the "
            "record to train the point again\n"
        )
        assert files(clone) == before and not (clone / "runs").exists()


def test_a_record_folder_without_point_json_is_named_and_left_alone(committed, tmp_path):
    """A stray folder in the records (no point.json) is named in one line; the report is the committed one."""
    clone = tmp_path / "clone"
    shutil.copytree(committed, clone)
    (records_of(clone) / "stray").mkdir()
    (records_of(clone) / "stray" / workdir.RESULT).write_text("{}")
    (records_of(clone) / ".record-partial").mkdir()  # a record being written: not a record yet, not named
    proc = run(clone, "--report_only")
    no_traceback(proc)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "damaged run record: reports/records/runs/stray holds no point.json: not a run record; not used"
    )
    assert (report_dir(clone) / "README.md").read_bytes() == (report_dir(committed) / "README.md").read_bytes()


def test_a_large_grid_keeps_fewer_curve_points_per_record():
    """Up to FULL_CURVES_UP_TO runs keep CURVE_POINTS training lines per stage; more runs keep fewer, in
    proportion, never below MIN_CURVE_POINTS; thin_curves keeps exactly that many of a longer stage."""
    assert records.curve_points(1) == records.curve_points(records.FULL_CURVES_UP_TO) == records.CURVE_POINTS
    assert records.curve_points(20) == records.CURVE_POINTS // 2
    assert records.curve_points(10_000) == records.MIN_CURVE_POINTS
    lines = [{"kind": "train", "stage": "pretrain", "step": i, "loss": 1.0 / (i + 1)} for i in range(300)]
    lines += [{"kind": "eval", "step": 300, "eval/top1": 0.5}]
    kept = records.thin_curves(lines, 40)
    train = [r for r in kept if r["kind"] == "train"]
    assert len(train) == 40 and train[0]["step"] == 0 and train[-1]["step"] == 299 and kept[-1]["kind"] == "eval"


def test_portable_point_keeps_paths_inside_the_checkout_relative_and_others_by_name(tmp_path):
    """A record's point.json names its gin files relative to the checkout (or by base name when they lie outside
    it, e.g. an overlay from elsewhere); relative paths and non-point objects pass unchanged."""
    root = tmp_path / "checkout"
    point = {"id": "x", "recipe": str(root / "recipes" / "a.gin"),
             workdir.GIN_FILES: [str(root / "recipes" / "a.gin"), str(tmp_path / "elsewhere" / "b.gin"), "recipes/c.gin"]}
    got = workdir.portable_point(point, str(root))
    assert got == {"id": "x", "recipe": "recipes/a.gin", workdir.GIN_FILES: ["recipes/a.gin", "b.gin", "recipes/c.gin"]}
    assert point[workdir.GIN_FILES][0].startswith(str(root))  # the run's own point.json is not changed
    assert workdir.portable_point(None, str(root)) is None and workdir.portable_point({"id": 1}, "/") == {"id": 1}
