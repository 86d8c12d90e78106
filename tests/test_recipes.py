"""Every top-level recipe: its grid expands, and every point parses strictly in the trainer's gin registry and
passes the configuration checks, both as written and with the smoke overlay (one validation process)."""

import glob
import json
import os
import subprocess
import sys

import pytest

from supcon import grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
