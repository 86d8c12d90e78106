"""A point that leaves a macro at the recipe's binding is shown with the recipe's value, when it trains with it or
the macro only labels points; a macro it does not read stays '–' (`grid.shown_values`); claims see the same."""

import os

import pytest

from supcon import workdir
from supcon.experiment import grid, report_cli
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


def test_a_claim_can_select_a_point_by_the_recipes_value_of_a_label_macro(tmp_path):
    # The LARS point leaves PRETRAIN_OPTIMIZER (a label) at the recipe's 'lars', so that it trains with exactly the
    # settings of a search run that did the same; table8_lars_best selects PRETRAIN_OPTIMIZER=lars all the same.
    (tmp_path / "t8.gin").write_text(
        f"include '{os.path.join(ROOT, 'recipes', 'fmnist_table8_search.gin')}'\n"
        "grid.points = [{'METHOD': 'supcon', 'PRETRAIN_LR': 8.0},\n"
        "    {'METHOD': 'supcon', 'PRETRAIN_OPTIMIZER': 'momentum', 'PRETRAIN_OPTIMIZER_FN': '@pretrain/sgd',\n"
        "     'PRETRAIN_LR': 3.0}]\n"
        "report.claims = ['table8_lars_best']\n")
    recipe = grid.load_recipe(str(tmp_path / "t8.gin"), [], [])
    grid.check_report(recipe)  # raises GridError if no point had PRETRAIN_OPTIMIZER=lars
    (tmp_path / "bad.gin").write_text((tmp_path / "t8.gin").read_text().replace(
        "{'METHOD': 'supcon', 'PRETRAIN_LR': 8.0}", "{'METHOD': 'supcon', 'PRETRAIN_OPTIMIZER': 'rmsprop'}"))
    with pytest.raises(grid.GridError, match="table8_lars_best does not fit this grid: no grid point has "
                                             "PRETRAIN_OPTIMIZER=lars"):
        grid.check_report(grid.load_recipe(str(tmp_path / "bad.gin"), [], []))


def test_a_points_own_bindings_read_as_an_overlay_do_not_relabel_the_others(tmp_path):
    # A trainer parses the recipe with its point's bindings as an overlay (python -m supcon.main): a momentum
    # point's PRETRAIN_OPTIMIZER = 'momentum' must not make the LARS point, which leaves the label at the recipe's
    # 'lars', a momentum point too (and the claim's check fail).
    recipe_path = os.path.join(ROOT, "recipes", "fmnist_table8.gin")
    overlay = tmp_path / "point.gin"
    overlay.write_text("PRETRAIN_OPTIMIZER = 'momentum'\nPRETRAIN_OPTIMIZER_FN = @pretrain/sgd\nPRETRAIN_LR = 3.0\n")
    recipe = grid.load_recipe(recipe_path, [str(overlay)], [])  # raised GridError before: no point had lars
    shown = grid.shown_values(recipe, grid.expand(recipe))
    assert sorted({v["PRETRAIN_OPTIMIZER"] for v in shown.values()}) == ["lars", "momentum", "rmsprop"]
