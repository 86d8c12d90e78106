"""Every top-level recipe: its grid expands, and every point parses strictly in the trainer's gin registry and
passes the configuration checks, both as written and with the smoke overlay (one validation process)."""

import glob
import json
import os
import subprocess
import sys

import pytest

from supcon.experiment import grid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = sorted(
    p for p in glob.glob(os.path.join(ROOT, "recipes", "*.gin")) if os.path.basename(p) != "smoke.gin"
)
SMOKE = os.path.join(ROOT, "recipes", "smoke.gin")


def test_there_are_recipes_for_the_paper():
    names = {os.path.basename(p) for p in RECIPES}
    for expected in ("quickstart.gin", "paper_table1.gin", "paper_table2.gin", "paper_table3.gin",
                     "fmnist_table1.gin", "fmnist_table2.gin", "supcon_imagenet_resnet50.gin"):
        assert expected in names


@pytest.mark.parametrize("path", RECIPES, ids=os.path.basename)
def test_recipe_header_and_grid(path):
    with open(path) as f:
        head = [next(f) for _ in range(4)]
    for line, key in zip(head, ("# Reproduces:", "# Run:", "# Cost:", "# Expect:"), strict=True):
        assert line.startswith(key), (path, line)
    assert grid.expand(grid.load_recipe(path))


@pytest.mark.slow  # one trainer process validates every point of every recipe (30 s); the recipes' text is checked above
def test_every_point_of_every_recipe_validates(tmp_path):
    spec = []
    for path in RECIPES:
        for point in grid.expand(grid.load_recipe(path)):
            bindings = tmp_path / f"{point.recipe_stem}-{point.id}.gin"
            bindings.write_text(point.gin_text())
            for smoke in (False, True):
                files = [path, str(bindings)] + ([SMOKE] if smoke else [])
                spec.append({"name": f"{point.recipe_stem}/{point.slug}/smoke={smoke}", "gin_files": files})
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "supcon.main", "--validate", str(spec_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(spec), proc.stderr[-2000:]
    errors = [r for r in results if r["error"]]
    assert not errors, errors[:5]
    assert proc.returncode == 0


@pytest.mark.slow  # the runner with the real trainer is also run by test_legacy_run and test_first_run
def test_smoke_run_of_an_imagenet_recipe_end_to_end(tmp_path):
    """The runner with the real trainer: ImageNet is unavailable here, so the smoke overlay falls back to
    the bundled digits (and their splits); the point trains, evaluates and is reported; a rerun skips it."""
    cmd = [
        sys.executable, "runner.py", "recipes/supcon_imagenet_resnet50.gin", "--smoke",
        "--runs_dir", str(tmp_path / "runs"), "--report_dir", str(tmp_path / "reports"),
    ]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    run_dir = tmp_path / "runs" / "smoke" / "supcon_imagenet_resnet50" / "default"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["eval/examples"] == 64 and 0.0 <= result["eval/top1"] <= 1.0
    assert (tmp_path / "reports" / "smoke" / "supcon_imagenet_resnet50" / "README.md").is_file()
    again = subprocess.run(cmd + ["--noreport"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "1 already done" in again.stdout, again.stdout[-2000:]


def test_the_trainer_names_a_typo_and_its_nearest_name(tmp_path):
    """`python -m supcon.main --validate` (as the runner calls it, and as a run by hand parses): a misspelt
    macro, configurable, parameter or scope, and a file that is not UTF-8, are one-line errors."""
    tiny = os.path.join(ROOT, "tests", "fixtures", "train", "digits_tiny.gin")
    latin1 = tmp_path / "latin1.gin"
    latin1.write_bytes(b"include '" + tiny.encode() + b"'\ntrain_and_evaluate.dataset = 'caf\xe9'\n")
    cases = {
        "macro": ([tiny], ["TEMPERATUR = 0.2"],
                  "--gin_param 'TEMPERATUR = 0.2': nothing reads the macro TEMPERATUR (no binding refers to "
                  "%TEMPERATUR); did you mean TEMPERATURE?"),
        "parameter": ([tiny], ["contrastive.temperatur = 0.2"],
                      "Configurable 'contrastive' doesn't have a parameter named 'temperatur'; did you mean "
                      "temperature?"),
        "configurable": ([tiny], ["contrastiv.temperature = 0.2"],
                         "No configurable matching 'contrastiv'; did you mean contrastive?"),
        "scope": ([tiny], ["supcn/contrastive.temperature = 0.2"], "nothing enters the scope supcn/"),
        "method": ([tiny], ["METHOD = 'supcom'"], "METHOD = 'supcom' names no method: nothing is bound in the "
                   "scope supcom/; did you mean supcon?"),
        "encoding": ([str(latin1)], [], "latin1.gin:2: not UTF-8 text (byte 0xe9"),
        "valid": ([tiny], ["TEMPERATURE = 0.2"], None),
    }
    spec = [{"name": k, "gin_files": f, "gin_params": p} for k, (f, p, _) in cases.items()]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "supcon.main", "--validate", str(tmp_path / "spec.json")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    errors = {r["name"]: r["error"] for r in map(json.loads, proc.stdout.splitlines())}
    assert errors["valid"] is None and proc.returncode == 1
    for name, (_, _, message) in cases.items():
        if message:
            assert message in errors[name] and "\n" not in errors[name], (name, errors[name])


def test_a_missing_dataset_says_what_to_do_without_gins_noise(tmp_path):
    tiny = os.path.join(ROOT, "tests", "fixtures", "train", "digits_tiny.gin")
    cmd = [sys.executable, "-m", "supcon.main", "--workdir", str(tmp_path / "run"), "--gin_file", tiny,
           "--gin_param", "train_and_evaluate.dataset = 'mnist'",
           "--gin_param", f"train_and_evaluate.data_dir = '{tmp_path / 'nowhere'}'"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("FAILED: FileNotFoundError: dataset 'mnist' is not available offline")
    assert last.endswith("pass data_dir=DATA_DIR") and "In call to configurable" not in last, last
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["reason"] == last.removeprefix("FAILED: ")
