"""A point that leaves a macro at the recipe's binding is shown with the recipe's value, when it trains with it or
the macro only labels points; a macro it does not read stays '–' (`report_cli.shown_values`)."""

import os

from supcon import workdir
from supcon.experiment import report_cli
from supcon.report import data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _recipe(stem):
    return report_cli.read_recipe(os.path.join(ROOT, "recipes", f"{stem}.gin"), [], [])


def test_a_label_macro_and_a_read_macro_take_the_recipes_value():
    recipe = _recipe("fmnist_table8_search")
    shown = sorted((v["PRETRAIN_OPTIMIZER"], v["PRETRAIN_LR"]) for v in recipe.points.values())
    # PRETRAIN_OPTIMIZER is bound to 'lars' and read by no binding (a label); PRETRAIN_LR is read by training.
    assert shown[:2] == [("lars", 4.0), ("lars", 8.0)]
    assert {o for o, _ in shown} == {"lars", "momentum", "rmsprop"}


def test_a_macro_the_point_does_not_read_stays_unset():
    recipe = _recipe("fmnist_ce_budget")
    supcon = [v for v in recipe.points.values() if v["METHOD"] == "supcon"]
    assert supcon and all(v["BATCH_SIZE"] == 256 for v in supcon)  # SupCon trains at the recipe's batch size
    assert all("CE_EPOCHS" not in v for v in supcon)  # cross-entropy's epochs: not a SupCon setting


def test_a_run_of_the_point_is_shown_with_the_filled_values(tmp_path):
    recipe = _recipe("fmnist_table8_search")
    pid, values = next((k, v) for k, v in recipe.points.items() if v.get("PRETRAIN_LR") == 4.0)
    bare = {"METHOD": "supcon", "SEED": 0}  # what point.json records for the recipe's default point
    run = tmp_path / "default"
    run.mkdir()
    workdir.write_json_atomic(str(run / workdir.POINT), {
        "recipe": "recipes/fmnist_table8_search.gin", "recipe_stem": "fmnist_table8_search", "id": pid,
        "slug": "default", "values": bare, "bindings": {}, "gin_files": [], "gin_params": [], "smoke": False})
    runs = data.load_runs(str(tmp_path), recipe)
    found = [r for r in runs if r.slug == "default"]
    assert len(found) == 1 and found[0].values == values
    assert found[0].values["PRETRAIN_OPTIMIZER"] == "lars" and found[0].state == "new"
    labels = {key for key, _ in data.group_runs(runs, ["PRETRAIN_OPTIMIZER", "PRETRAIN_LR"])}
    assert ("lars", "4") in labels and data.MISSING not in {part for key in labels for part in key}
