"""Every recipe with `report.paper` lines up with the paper: each point of its grid lands on the paper's row and
column it reproduces, in a real run and in a smoke run (digits fallback, `point.json` smoke flag).

No training: the grid is expanded and one finished run directory is written per point (point.json as the runner
writes it, env.json with the dataset the trainer would record, result.json), then the reporter's own table code
places the paper's numbers beside ours. EXPECTED holds, per recipe, the paper's top-1 (percent) for every table
cell; None marks a point the paper gives no number for (said in the recipe).
"""

import functools
import glob
import os

import pytest

from supcon import workdir
from supcon.experiment import grid
from supcon.report import spec as report_spec
from supcon.report import tables as report_tables
from supcon.report.data import choose_layout, load_runs, table_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = sorted(
    p for p in glob.glob(os.path.join(ROOT, "recipes", "*.gin")) if os.path.basename(p) != "smoke.gin"
)
NO_COLUMN = ""  # the column label of a recipe without report.columns

_SUPCON_R50, _CE_R50 = 78.7, 77.6
EXPECTED = {
    "paper_table1": {("outside", ""): 78.7, ("inside", ""): 67.4},
    "fmnist_table1": {("outside", ""): 78.7, ("inside", ""): 67.4},
    "paper_table2": {
        ("simclr", "cifar10"): 93.6, ("cross_entropy", "cifar10"): 95.0, ("supcon", "cifar10"): 96.0,
        ("simclr", "cifar100"): 70.7, ("cross_entropy", "cifar100"): 75.3, ("supcon", "cifar100"): 76.5,
    },
    "fmnist_table2": {("simclr", ""): 93.6, ("cross_entropy", ""): 95.0, ("supcon", ""): 96.0},
    "fmnist_table2_fair": {("cross_entropy", ""): 95.0, ("supcon", ""): 96.0},
    "paper_table3": {
        ("supcon / 50 / autoaugment", ""): _SUPCON_R50,
        ("supcon / 101 / autoaugment", ""): 80.2,
        ("supcon / 101 / stacked_randaugment", ""): 80.2,
        ("supcon / 200 / stacked_randaugment", ""): 81.4,
        ("cross_entropy / 50 / autoaugment", ""): _CE_R50,
        ("cross_entropy / 200 / autoaugment", ""): 80.6,
        ("cross_entropy / 200 / stacked_randaugment", ""): 80.9,
    },
    "supcon_imagenet_resnet50": {("all", ""): _SUPCON_R50},
    "supcon_imagenet_resnet101": {("all", ""): 80.2},
    "supcon_imagenet_resnet200": {("all", ""): 81.4},
    "cross_entropy_imagenet_resnet50": {("all", ""): _CE_R50},
    "cross_entropy_imagenet_resnet200": {("all", ""): 80.9},
    "simclr_imagenet_resnet50": {("all", ""): 70.2},
    "train_classification_head_from_pretrained_encoder": {("all", ""): 70.2},
    "supcon_cifar10_resnet50": {("all", ""): 96.0},
    "supcon_cifar100_resnet50": {("all", ""): 76.5},
    "simclr_cifar10_resnet50": {("all", ""): 93.6},
    "cross_entropy_cifar10_resnet50": {("all", ""): 95.0},
    "ablation_positives_cap": {
        ("0", ""): 69.3, ("2", ""): 76.6, ("4", ""): 78.0, ("6", ""): 78.4, ("8", ""): 78.3, ("-1", ""): 78.5,
    },
    "fmnist_table5": {("0", ""): 69.3, ("2", ""): 76.6, ("8", ""): 78.3, ("-1", ""): 78.5},
    "ablation_optimizers": {
        (f"@pretrain/{a}", f"@linear/{b}"): value
        for (a, b), value in {
            ("lars", "lars"): 78.2, ("lars", "rmsprop"): 78.7, ("lars", "sgd"): 77.6,
            ("rmsprop", "lars"): 77.4, ("rmsprop", "rmsprop"): 77.8, ("rmsprop", "sgd"): 76.9,
            ("sgd", "lars"): 77.7, ("sgd", "rmsprop"): 76.1, ("sgd", "sgd"): 77.7,
        }.items()
    },
    "ablation_augmentations": {
        (f"@pretrain/{a}", f"@linear/{b}"): value
        for a, values in {
            "autoaugment": (78.6, 78.1, 75.4, 77.4),
            "simclr_augment": (76.1, 75.9, 77.9, 76.4),
            "randaugment": (78.3, 78.4, 76.3, 75.8),
            "stacked_randaugment": (78.1, 78.2, 77.9, 75.9),
        }.items()
        for b, value in zip(("autoaugment", "randaugment", "simclr_augment", "stacked_randaugment"), values, strict=True)
    },
    "ablation_memory": {("0", ""): None, ("2048", ""): None, ("8192", ""): 79.1, ("16384", ""): None},
    "fmnist_fig4d": {
        ("0.05", ""): None, ("0.07", ""): None, ("0.1", ""): _SUPCON_R50, ("0.2", ""): None, ("0.5", ""): None,
    },
    "ablation_temperature": {
        ("0.05", ""): None, ("0.07", ""): None, ("0.1", ""): _SUPCON_R50, ("0.2", ""): None, ("0.5", ""): None,
    },
    "ablation_batch_size": {
        **{(str(b), ""): None for b in (256, 512, 1024, 2048, 4096)}, ("6144", ""): _SUPCON_R50,
    },
    "ablation_joint": {("supcon", ""): _SUPCON_R50, ("supcon_joint", ""): _SUPCON_R50},
}
# Table 3's top-5 column, for the recipes of Table 3 (their only other paper metric).
TOP5 = {
    "paper_table3": {
        ("supcon / 50 / autoaugment", ""): 94.3, ("supcon / 101 / autoaugment", ""): 94.7,
        ("supcon / 101 / stacked_randaugment", ""): 94.7, ("supcon / 200 / stacked_randaugment", ""): 95.9,
        ("cross_entropy / 50 / autoaugment", ""): 95.3, ("cross_entropy / 200 / autoaugment", ""): 95.3,
        ("cross_entropy / 200 / stacked_randaugment", ""): 95.2,
    },
    "supcon_imagenet_resnet50": {("all", ""): 94.3},
    "supcon_imagenet_resnet101": {("all", ""): 94.7},
    "supcon_imagenet_resnet200": {("all", ""): 95.9},
    "cross_entropy_imagenet_resnet50": {("all", ""): 95.3},
    "cross_entropy_imagenet_resnet200": {("all", ""): 95.2},
}


@functools.cache  # parsing all the recipes takes ~1 s: once per test process, not once per test
def _recipes_with_paper() -> dict[str, grid.Recipe]:
    recipes = {}
    for path in RECIPES:
        recipe = grid.load_recipe(path)
        if recipe.report.get("paper"):
            recipes[recipe.stem] = recipe
    return recipes


def write_runs(recipe: grid.Recipe, root: str, smoke: bool) -> None:
    """One finished run directory per grid point, as the runner and the trainer write them."""
    for point in grid.expand(recipe):
        path = os.path.join(root, point.slug)
        os.makedirs(path)
        workdir.write_json_atomic(os.path.join(path, workdir.POINT), {
            "recipe": os.path.relpath(recipe.path, ROOT), "recipe_stem": recipe.stem, "id": point.id,
            "slug": point.slug, "bindings": point.bindings, "values": point.values, "gin_files": [],
            "gin_params": [], "smoke": smoke, "report": recipe.report, "header": recipe.header,
        })  # fmt: skip
        dataset = "digits" if smoke else point.values.get("DATASET", recipe.macros.get("DATASET"))
        workdir.write_json_atomic(os.path.join(path, workdir.ENV), {"scale": {"dataset": dataset}})
        workdir.write_status(path, workdir.DONE, 10)
        workdir.write_json_atomic(os.path.join(path, workdir.RESULT), {
            "eval/top1": 0.5, "eval/top5": 0.9, "knn/top1": 0.4, "step": 10, "train_seconds": 1.0,
            "images_per_second": 1.0,
        })  # fmt: skip


def paper_cells(table: str, metric: str) -> dict[tuple[str, str], str]:
    """{(row label, column label): the paper's cell} of a results table, for one metric.

    Raises AssertionError when a column of that metric has no paper column beside it.
    """
    lines = [line.strip()[1:-1].split(" | ") for line in table.splitlines()]
    header, body = [c.strip() for c in lines[0]], lines[2:]
    suffix = f"{metric} (%)"
    first = next(j for j, h in enumerate(header) if h.endswith("(%)"))  # the first metric column
    cells = {}
    for j, title in enumerate(header):
        if not title.endswith(suffix):
            continue
        assert j + 1 < len(header) and header[j + 1].startswith("paper"), (title, header)
        column = title[: -len(suffix)].strip()
        for row in body:
            cells[(" / ".join(c.strip() for c in row[:first]), column)] = row[j + 1].strip()
    return cells


def report_table(runs_dir: str) -> str:
    """The results table exactly as `supcon.report.build.build_report` computes it."""
    runs = load_runs(runs_dir)
    spec = report_spec.spec_of_runs(runs)
    rows, columns, extra = choose_layout(runs, spec)
    assert not extra, f"rows split by {extra}: the declared rows and columns do not determine them"
    table, _ = report_tables.results_table(
        runs, spec, rows, columns, table_metrics(runs, spec), report_tables.load_paper_numbers()
    )
    return table


def test_every_recipe_with_paper_numbers_is_covered():
    assert set(_recipes_with_paper()) == set(EXPECTED)


@pytest.mark.parametrize("smoke", [False, True], ids=["real", "smoke"])
@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_every_point_lands_on_its_paper_row_and_column(stem, smoke, tmp_path):
    recipe = _recipes_with_paper()[stem]
    write_runs(recipe, str(tmp_path), smoke)
    table = report_table(str(tmp_path))
    for metric, expected in (("eval/top1", EXPECTED[stem]), ("eval/top5", TOP5.get(stem))):
        if expected is None:
            continue
        cells = paper_cells(table, metric)
        assert set(cells) == set(expected), table  # every point is a cell, and every cell is accounted for
        got = {key: None if cell == "–" else float(cell) for key, cell in cells.items()}
        assert got == expected, table
    header = table.splitlines()[0]
    if smoke:  # the column it would fill, marked, without a difference to a number it cannot approach
        assert report_tables.SMOKE_PAPER in header and "Δ" not in header, header
    else:
        assert report_tables.SMOKE_PAPER not in header and "Δ" in header, header


def test_ablation_memory_quotes_the_papers_79_1():
    recipe = _recipes_with_paper()["ablation_memory"]
    assert recipe.report["paper"] == "text"
    entry = report_tables.paper_lookup(
        report_tables.load_paper_numbers(), "text", recipe.report["paper_rows"][8192], "ImageNet", "eval/top1"
    )
    assert entry["value"] == 79.1 and "memory" in entry["source"]
