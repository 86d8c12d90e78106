"""Tests for supcon.experiment.grid: reading recipes, expanding grids, point ids, slugs, --shard and --only."""

import glob
import os
import re
import subprocess
import sys

import pytest

from supcon.experiment import grid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "runner")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._+-]*$")


def fixture(name):
    return os.path.join(FIXTURES, name)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "name, count",
    [("grid.gin", 4), ("axes.gin", 6), ("single.gin", 1), ("cases.gin", 3), ("invalid.gin", 2), ("die.gin", 3),
     ("fresh.gin", 3)],
)
def test_fixture_recipes_expand(name, count):
    points = grid.expand(grid.load_recipe(fixture(name)))
    assert len(points) == count
    assert len({p.id for p in points}) == count
    assert len({p.slug for p in points}) == count
    for p in points:
        assert re.fullmatch(r"[0-9a-f]{8}", p.id)
        assert SLUG_RE.match(p.slug) and len(p.slug) <= grid.MAX_SLUG, p.slug


def test_every_fixture_recipe_is_covered():
    names = {os.path.basename(p) for p in glob.glob(os.path.join(FIXTURES, "*.gin"))}
    assert names == {"base.gin", "grid.gin", "axes.gin", "single.gin", "cases.gin", "invalid.gin", "die.gin",
                     "fresh.gin", "records.gin"}


def test_recipe_contents_follow_includes_and_header():
    recipe = grid.load_recipe(fixture("grid.gin"))
    assert recipe.stem == "grid"
    assert recipe.header[0].startswith("Reproduces: nothing")
    assert [h.split(":")[0] for h in recipe.header] == ["Reproduces", "Run", "Cost", "Expect"]
    assert recipe.axes == {"SEED": [0, 1]}
    assert recipe.points == [
        {"METHOD": "supcon", "LOSS": "@supcon"},
        {"METHOD": "ce", "LOSS": "@ce"},
    ]
    assert recipe.report == {"rows": ["METHOD"], "metrics": ["eval/top1"], "title": "Fixture grid"}
    assert recipe.keys == ["METHOD", "LOSS", "SEED"]
    assert recipe.macros["TEMPERATURE"] == 0.1  # from base.gin, included relative to grid.gin
    assert recipe.files == [fixture("grid.gin"), fixture("base.gin")]


def test_points_times_axes_in_declaration_order():
    points = grid.expand(grid.load_recipe(fixture("grid.gin")))
    assert [p.slug for p in points] == [
        "method-supcon_loss-supcon_seed-0",
        "method-supcon_loss-supcon_seed-1",
        "method-ce_loss-ce_seed-0",
        "method-ce_loss-ce_seed-1",
    ]
    assert points[0].bindings == {"METHOD": "'supcon'", "LOSS": "@supcon", "SEED": "0"}
    assert points[0].gin_text() == "METHOD = 'supcon'\nLOSS = @supcon\nSEED = 0\n"
    assert points[2].values == {"METHOD": "ce", "LOSS": "@ce", "SEED": 0}


def test_later_bindings_win_and_overlays_apply(tmp_path):
    path = write(tmp_path, "r.gin", "grid.axes = {'SEED': [0, 1, 2]}\nX = 1\nSEED = 0\ntrain.x = %X\n")
    overlay = write(tmp_path, "o.gin", "X = 2\n")
    recipe = grid.load_recipe(path, overlays=[overlay], gin_params=["grid.axes = {'SEED': [5]}"])
    assert recipe.macros["X"] == 2
    assert [p.values for p in grid.expand(recipe)] == [{"SEED": 5}]


def test_include_resolves_from_recipes_dir(tmp_path):
    recipes = tmp_path / "recipes"
    (recipes / "base").mkdir(parents=True)
    (recipes / "base" / "b.gin").write_text("Y = 3\n")
    path = write(tmp_path, "top.gin", "include 'base/b.gin'\ngrid.axes = {'SEED': [0]}\nSEED = 1\nt.y = %Y\n")
    assert grid.load_recipe(path, recipes_dir=str(recipes)).macros["Y"] == 3


def test_ids_are_stable_across_processes_and_dict_order(tmp_path):
    ids = [p.id for p in grid.expand(grid.load_recipe(fixture("axes.gin")))]
    code = (
        "from supcon.experiment import grid;"
        f"print(' '.join(p.id for p in grid.expand(grid.load_recipe({fixture('axes.gin')!r}))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONHASHSEED="123"),
    )
    assert out.stdout.split() == ids
    a = write(
        tmp_path, "same.gin", "grid.axes = {'LR': [0.1, 1.0], 'SEED': [0, 1]}\nLR = 1\nSEED = 0\n"
    )
    sub = tmp_path / "other"
    sub.mkdir()
    b = str(sub / "same.gin")
    with open(b, "w") as f:
        f.write("SEED = 0\nLR = 1\ngrid.axes = {'SEED': [0, 1], 'LR': [0.1, 1.0]}\n")
    ids_a = {p.id: p.values for p in grid.expand(grid.load_recipe(a))}
    ids_b = {p.id: p.values for p in grid.expand(grid.load_recipe(b))}
    assert ids_a == ids_b


def test_ids_depend_on_recipe_stem_and_values():
    assert grid.point_id("a", {"SEED": "0"}) != grid.point_id("b", {"SEED": "0"})
    assert grid.point_id("a", {"SEED": "0"}) != grid.point_id("a", {"SEED": "1"})
    assert grid.point_id("a", {"X": "1", "Y": "2"}) == grid.point_id("a", {"Y": "2", "X": "1"})


def test_slugs_are_filesystem_safe_unique_and_short(tmp_path):
    path = write(
        tmp_path,
        "s.gin",
        "grid.points = [{'NAME': 'a/b c', 'LR': -0.5}, {'NAME': 'a b/c', 'LR': -0.5},"
        " {'NAME': '..', 'LR': 1e-05}]\n"
        f"grid.axes = {{'LONG': ['{'x' * 150}', 'y'], 'SEED': [0]}}\n"
        "train.name = %NAME\ntrain.lr = %LR\ntrain.long = %LONG\ntrain.seed = %SEED\n",
    )
    points = grid.expand(grid.load_recipe(path))
    slugs = [p.slug for p in points]
    assert len(set(slugs)) == len(slugs) == 6
    for p in points:
        assert SLUG_RE.match(p.slug) and len(p.slug) <= grid.MAX_SLUG, p.slug
    # LONG overflows: SEED (one value) and LR (NAME determines it) tell no two points apart and are left out
    assert slugs[0].endswith(points[0].id) and slugs[2].endswith(points[2].id)  # still long: cut + id
    assert slugs[1] == "name-a-b-c_long-y-" + points[1].id  # collides with [3]
    assert slugs[5] == "name-none_long-y"  # ".." is no path component
    assert grid.make_slug({"LR": -0.5, "SEED": 0}, "0badc0de") == "lr--0.5_seed-0"  # the sign is kept


def test_slugs_leave_out_keys_a_point_never_reads(tmp_path):
    """A cross-entropy point's slug does not list the pretraining values it ignores; labels stay."""
    text = (
        "METHOD = 'supcon'\nEPOCHS = 1\nCE_EPOCHS = 1\nNOTE = ''\nSEED = 0\n"
        "train.seed = %SEED\nsupcon/train.epochs = %EPOCHS\nce/train.epochs = %CE_EPOCHS\n"
        "grid.points = [{'METHOD': 'supcon', 'EPOCHS': 5, 'NOTE': 'a'}, "
        "{'METHOD': 'ce', 'EPOCHS': 5, 'CE_EPOCHS': 3, 'NOTE': 'b'}]\n"
        "grid.axes = {'SEED': [0, 1]}\n"
    )
    recipe = grid.load_recipe(write(tmp_path, "m.gin", text))
    points = grid.expand(recipe)
    assert [p.slug for p in points] == [
        "method-supcon_epochs-5_note-a_seed-0",
        "method-supcon_epochs-5_note-a_seed-1",
        "method-ce_ce_epochs-3_note-b_seed-0",  # EPOCHS is read only in the scope supcon/
        "method-ce_ce_epochs-3_note-b_seed-1",
    ]
    assert grid.unread_keys(recipe, points[2].values) == {"EPOCHS"}
    assert points[2].values["EPOCHS"] == 5  # still bound (point.json and the report keep it)


def test_long_slugs_keep_the_keys_that_tell_points_apart(tmp_path):
    """paper_table2's shape: METHOD and DATASET vary independently, the rest follows from them."""
    points = "[" + ", ".join(
        f"{{'METHOD': '{m}', 'BATCH_SIZE': {b}, 'LR': {lr}, 'DATASET': '{d}', 'MEAN': {mean}}}"
        for d, mean in (("cifar10", (-0.0172, -0.0356, -0.107)), ("cifar100", (0.0142, -0.0266, -0.1184)))
        for m, b, lr in (("supcon", 4096, 0.5), ("simclr", 1024, 0.5), ("other", 1024, 0.1))
    ) + "]"
    text = (
        "METHOD = ''\nBATCH_SIZE = 1\nLR = 1\nDATASET = ''\nMEAN = ()\nSEED = 0\nSTAGE_AUGMENTER_WITH_A_LONG_NAME = @aug\n"
        "t.b = %BATCH_SIZE\nt.lr = %LR\nt.d = %DATASET\nt.m = %MEAN\nt.s = %SEED\n"
        "t.a = %STAGE_AUGMENTER_WITH_A_LONG_NAME\n"
        f"grid.points = {points}\ngrid.axes = {{'SEED': [0, 1], 'STAGE_AUGMENTER_WITH_A_LONG_NAME': ['@x/a']}}\n"
    )
    slugs = [p.slug for p in grid.expand(grid.load_recipe(write(tmp_path, "t.gin", text)))]
    assert slugs[:4] == [
        "method-supcon_dataset-cifar10_seed-0", "method-supcon_dataset-cifar10_seed-1",
        "method-simclr_dataset-cifar10_seed-0", "method-simclr_dataset-cifar10_seed-1",
    ]
    assert len(set(slugs)) == 12 and all(len(s) <= grid.MAX_SLUG for s in slugs)


def test_every_recipe_has_unique_readable_slugs():
    """Every recipe's slugs tell its points apart without the id; paper_table2's CIFAR-10 and CIFAR-100 points
    differ, and its cross-entropy points list no pretraining or linear values (they read none)."""
    for path in sorted(glob.glob(os.path.join(ROOT, "recipes", "*.gin"))):
        if os.path.basename(path) == "smoke.gin":
            continue
        points = grid.expand(grid.load_recipe(path))
        slugs = [p.slug for p in points]
        assert len(set(slugs)) == len(slugs), (path, slugs)
        for p in points:
            assert SLUG_RE.match(p.slug) and len(p.slug) <= grid.MAX_SLUG and not p.slug.endswith(p.id), (path, p)
    table2 = grid.expand(grid.load_recipe(os.path.join(ROOT, "recipes", "paper_table2.gin")))
    assert {p.values["DATASET"] for p in table2 if "dataset-cifar100" in p.slug} == {"cifar100"}
    assert {p.values["DATASET"] for p in table2 if "dataset-cifar10_" in p.slug + "_"} == {"cifar10"}
    for p in table2:
        if p.values["METHOD"] == "cross_entropy":
            assert "pretrain" not in p.slug and "linear" not in p.slug, p.slug


@pytest.mark.parametrize(
    "text, message",
    [
        ("grid.axes = {'seed': [0, 1]}", "key 'seed' must be an UPPER_CASE"),
        ("grid.axes = {'SEED': 0}", "grid.axes['SEED'] must be a non-empty list"),
        ("grid.axes = {'SEED': []}", "grid.axes['SEED'] must be a non-empty list"),
        ("grid.axes = [0, 1]", "grid.axes must be a dict"),
        ("grid.points = [{'A': 1}, 2]", "grid.points[1] must be a dict"),
        ("grid.points = [{'A': 1}, {'TYPO': 2}]", "grid key TYPO is neither bound"),
        ("grid.axes = {'TYPO': [1]}", "grid key TYPO is neither bound"),
        ("grid.points = []", "grid.points must be a non-empty list"),
        ("grid.points = [{'a': 1}]", "grid.points[0] key 'a'"),
        (
            "grid.points = [{'A': 1}]\ngrid.axes = {'A': [1]}",
            "A is in both grid.axes and grid.points",
        ),
        ("grid.points = [{'A': 1}, {'A': 1}]", "duplicate grid point"),
        ("grid.axes = {'A': [1, 1]}", "duplicate grid point"),
        ("grid.axis = {'A': [1]}", "unknown binding grid.axis"),
        ("train/grid.axes = {'A': [1]}", "must not be scoped"),
        ("include 'missing.gin'", "include 'missing.gin' not found"),
        ("X = [1, 2", "EOF in multi-line statement"),
        ("X = foo", "cannot parse the value foo"),
        (
            "report.colums = ['A']",
            "unknown binding report.colums (allowed: report.rows, report.columns",
        ),
        (
            "grid.axes = {'A': [1, 2]}\nreport.claims = ['no_such_claim']",
            "report.claims: unknown claim 'no_such_claim'",
        ),
        (
            "grid.axes = {'A': [1, 2]}\nreport.claims = ['table2_supcon_gt_ce']",
            "table2_supcon_gt_ce does not fit this grid: no grid point has METHOD=supcon",
        ),
        # report settings: types, names that match no macro, metrics no run writes, the paper's labels
        ("grid.axes = {'A': [1, 2]}\nreport.rows = 3", "report.rows must be a list of macro names"),
        ("grid.axes = {'A': [1, 2]}\nreport.title = 3", "report.title must be a string"),
        ("grid.axes = {'A': [1, 2]}\nreport.claims = 'x'", "report.claims must be a list of claim ids"),
        (
            "grid.axes = {'TEMPERATURE': [1, 2]}\nt.x = %TEMPERATURE\nreport.rows = ['TEMPERATUR']",
            "report.rows names TEMPERATUR, which no grid point sets (the grid's macros: TEMPERATURE); did "
            "you mean TEMPERATURE?",
        ),
        ("grid.axes = {'A': [1, 2]}\nreport.columns = ['A', 'A']", "report.columns names an entry twice"),
        (
            "grid.axes = {'A': [1, 2]}\nreport.metrics = ['eval/top2']",
            "report.metrics names eval/top2, which no run writes",
        ),
        ("grid.axes = {'A': [1, 2]}\nreport.paper = 'tabel2'", "did you mean table2?"),
        (
            "grid.axes = {'A': [1, 2]}\nreport.paper_rows = {'1': 'SupCon'}",
            "report.paper_rows needs report.paper",
        ),
        (
            "grid.axes = {'A': [1, 2]}\nreport.paper = 'table2'\nreport.paper_rows = {'1': 'SupKon'}",
            "maps '1' to 'SupKon', which is not a row of table2",
        ),
        (
            "grid.axes = {'A': [1, 2]}\nreport.rows = ['A']\nreport.paper = 'table2'\n"
            "report.paper_rows = {'3': 'SupCon'}",
            "report.paper_rows has '3', which is no value of report.rows (1, 2;",
        ),
    ],
)
def test_bad_recipes_name_file_and_binding(tmp_path, text, message):
    path = write(tmp_path, "bad.gin", "# header\nA = 0\nB = 0\nSEED = 0\n" + text + "\n")
    with pytest.raises(grid.GridError) as info:
        grid.expand(grid.load_recipe(path))
    error = str(info.value)
    assert message in error
    assert re.search(r"bad.gin:[5-9]", error), error
    assert "\n" not in error


def test_points_may_bind_different_macros(tmp_path):
    text = (
        "A = 0\nB = 0\nSEED = 0\n"
        "grid.points = [{'A': 1, 'B': 2}, {'A': 2}]\ngrid.axes = {'SEED': [0, 1]}\n"
    )
    recipe = grid.load_recipe(write(tmp_path, "h.gin", text))
    assert recipe.keys == ["A", "B", "SEED"]
    points = grid.expand(recipe)
    assert [p.slug for p in points] == [
        "a-1_b-2_seed-0",
        "a-1_b-2_seed-1",
        "a-2_seed-0",
        "a-2_seed-1",
    ]
    assert [p.slug for p in grid.select(points, {"B": ["2"]})] == [
        "a-1_b-2_seed-0",
        "a-1_b-2_seed-1",
    ]


def test_include_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.gin", "include 'b.gin'\n")
    write(tmp_path, "b.gin", "include 'a.gin'\n")
    with pytest.raises(grid.GridError, match="include cycle"):
        grid.load_recipe(str(tmp_path / "a.gin"))


@pytest.mark.parametrize(
    "files, message",
    [
        ({"r.gin": b"# latin-1\nT = 0.1\nt.name = 'caf\xe9'\n"}, "r.gin:3: not UTF-8 text (byte 0xe9 at offset 31); save it as UTF-8"),
        ({"r.gin": b"include 'i.gin'\n", "i.gin": b"\xff\xfe"}, "i.gin:1: not UTF-8 text (byte 0xff at offset 0)"),
        ({"r.gin": b"\xef\xbb\xbfX = 1\n"}, "r.gin:1: starts with a byte-order mark; save it as UTF-8 without BOM"),
        ({"r.gin": b""}, "r.gin: the recipe is empty (no include and no binding): an unsaved or truncated file?"),
        ({"r.gin": b"# only comments\n\n"}, "r.gin: the recipe is empty (no include and no binding)"),
        ({"r.gin": b"include 'i.gin'\n", "i.gin": b"# nothing\n"}, "i.gin: the included file is empty"),
        ({"r.gin": b"include 'r.gin'\n"}, "r.gin:1: include 'r.gin' closes an include cycle: r.gin -> r.gin"),
        ({"r.gin": b"include 'i.gin'\n", "i.gin": b"include 'r.gin'\n"}, "i.gin:1: include 'r.gin' closes an include cycle"),
        ({"r.gin": b"include 'base/none.gin'\n"}, "r.gin:1: include 'base/none.gin' not found"),
        ({}, "r.gin: cannot read: No such file or directory"),
    ],
)
def test_malformed_recipe_files_are_one_line_errors(tmp_path, monkeypatch, files, message):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(grid.GridError) as info:
        grid.load_recipe("r.gin")
    assert message in str(info.value) and "\n" not in str(info.value)


def bindings_recipe(tmp_path, extra="", **kwargs):
    """A recipe with two methods in their own scopes (as the protocols) and a grid that runs only supcon."""
    write(tmp_path, "protocol.gin", (
        "METHOD = 'supcon'\nTEMPERATURE = 0.1\nSIMCLR_TEMPERATURE = 0.5\nSEED = 0\n"
        "supcon/root.loss = @supcon/loss()\nsimclr/root.loss = @simclr/loss()\n"
        "supcon/loss.temperature = %TEMPERATURE\nsimclr/loss.temperature = %SIMCLR_TEMPERATURE\n"
        "root.seed = %SEED\n"
    ))  # fmt: skip
    path = write(tmp_path, "r.gin", "include 'protocol.gin'\ngrid.axes = {'SEED': [0, 1]}\n" + extra)
    return grid.load_recipe(path, **kwargs)


def test_bindings_a_grid_does_not_read_in_included_files_are_fine(tmp_path):
    """The protocol binds simclr's holes although no point runs simclr: not the user's typo."""
    recipe = bindings_recipe(tmp_path, "LABEL = 'x'\ngrid.points = [{'LABEL': 'a'}]\n")
    assert [p.values for p in grid.expand(recipe)] == [{"LABEL": "a", "SEED": 0}, {"LABEL": "a", "SEED": 1}]
    bindings_recipe(tmp_path, overlays=[write(tmp_path, "o.gin", "CE_EPOCHS = 1\nother/x.y = 2\n")])


@pytest.mark.parametrize(
    "extra, params, message",
    [
        ("", ["TEMPERATUR = 0.2"],
         "--gin_param 'TEMPERATUR = 0.2': nothing reads the macro TEMPERATUR (no binding refers to "
         "%TEMPERATUR); did you mean TEMPERATURE?"),
        ("TEMPERATUR = 0.2\n", [], "r.gin:3: nothing reads the macro TEMPERATUR"),
        ("", ["supcon/loss.temperature = %TEMPERATUR"],
         "supcon/loss.temperature refers to %TEMPERATUR, which nothing binds (TEMPERATUR = ...); did you mean "
         "TEMPERATURE?"),
        ("", ["supconn/loss.temperature = 0.2"],
         "nothing enters the scope supconn/ of supconn/loss.temperature (no @supconn/... reference and no "
         "METHOD = 'supconn'); did you mean supcon?"),
        ("", ["simclr/loss.temperature = 0.2"],
         "--gin_param 'simclr/loss.temperature = 0.2': no point of the grid enters the scope simclr/, so nothing "
         "reads simclr/loss.temperature (the points' METHOD: supcon)"),
        ("grid.points = [{'METHOD': 'supcom'}]\n", [],
         "r.gin:3: METHOD = 'supcom' names no method: nothing is bound in the scope supcom/; did you mean supcon?"),
        ("SIMCLR_TEMPERATURE = 0.3\n", [],
         "r.gin:3: no point of the grid reads the macro SIMCLR_TEMPERATURE: only simclr/loss.temperature refer "
         "to it, in scopes no point enters (the points' METHOD: supcon)"),
    ],
)
def test_a_binding_nothing_reads_is_an_error_with_the_nearest_name(tmp_path, extra, params, message):
    with pytest.raises(grid.GridError) as info:
        bindings_recipe(tmp_path, extra, gin_params=params)
    assert message in str(info.value), str(info.value)


def test_an_override_read_by_some_point_is_fine(tmp_path):
    recipe = bindings_recipe(
        tmp_path, "grid.points = [{'METHOD': 'supcon'}, {'METHOD': 'simclr'}]\n",
        gin_params=["SIMCLR_TEMPERATURE = 0.3", "simclr/loss.temperature = %SIMCLR_TEMPERATURE"],
    )  # fmt: skip
    assert recipe.macros["SIMCLR_TEMPERATURE"] == 0.3


@pytest.mark.parametrize(
    "value",
    [0, -3, 0.1, 1e-5, True, None, "text", "it's", [1, 2.5], (1,), (0.08, 1.0), {"a": [1, "b"]}],
)
def test_format_value_round_trips_through_gin(value):
    [statement] = grid.parse_statements(f"X = {grid.format_value(value)}", "t")
    assert statement.value == value and type(statement.value) is type(value)


def test_references_stay_unquoted():
    assert grid.format_value("@supcon/contrastive") == "@supcon/contrastive"
    assert grid.format_value("%BATCH") == "%BATCH"
    assert grid.format_value(["@a", "b"]) == "[@a, 'b']"


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
def test_shards_are_disjoint_and_cover_the_grid(count):
    points = grid.expand(grid.load_recipe(fixture("axes.gin")))
    slices = [grid.shard(points, i, count) for i in range(count)]
    ids = [p.id for s in slices for p in s]
    assert sorted(ids) == sorted(p.id for p in points)  # covering, and disjoint (no repeats)
    assert max(map(len, slices)) - min(map(len, slices)) <= 1  # balanced
    for s in slices:  # grid order kept inside a slice
        assert [p.index for p in s] == sorted(p.index for p in s)


@pytest.mark.parametrize("text", ["3/2", "2/2", "abc", "1/0", "-1/2", "1/", "", "1/2/3"])
def test_parse_shard_rejects_bad_values(text):
    with pytest.raises(grid.GridError, match="--shard"):
        grid.parse_shard(text)


def test_parse_shard_accepts_zero_based():
    assert grid.parse_shard("0/1") == (0, 1)
    assert grid.parse_shard("3/4") == (3, 4)


def test_only_filters_and_rejects_unknown_axes():
    points = grid.expand(grid.load_recipe(fixture("grid.gin")))
    keys = ["METHOD", "LOSS", "SEED"]
    pick = grid.select(points, grid.parse_only(["METHOD=ce"], keys))
    assert [p.slug for p in pick] == ["method-ce_loss-ce_seed-0", "method-ce_loss-ce_seed-1"]
    pick = grid.select(points, grid.parse_only(["METHOD='ce'", "SEED=1", "SEED=0"], keys))
    assert len(pick) == 2
    pick = grid.select(points, grid.parse_only(["LOSS=@supcon", "SEED=1"], keys))
    assert [p.slug for p in pick] == ["method-supcon_loss-supcon_seed-1"]
    with pytest.raises(grid.GridError, match="has no axis TEMPERATURE"):
        grid.parse_only(["TEMPERATURE=0.1"], keys)
    with pytest.raises(grid.GridError, match="must be KEY=VALUE"):
        grid.parse_only(["SEED"], keys)
    with pytest.raises(grid.GridError, match="matches no point"):
        grid.select(points, grid.parse_only(["SEED=7"], keys))


def test_only_compares_values_not_text():
    points = grid.expand(grid.load_recipe(fixture("axes.gin")))
    pick = grid.select(points, {"TEMPERATURE": ["0.50"]})
    assert {p.values["TEMPERATURE"] for p in pick} == {0.5}


def test_grid_imports_no_tensorflow():
    code = "import sys, supcon.experiment.grid; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_checking_report_claims_stays_light():
    """The runner loads recipes: checking report.claims imports neither TensorFlow, scipy nor pandas."""
    code = (
        "import sys, supcon.experiment.grid; r = supcon.experiment.grid.load_recipe('recipes/fmnist_table2.gin'); "
        "assert r.report['claims']; heavy = {'tensorflow', 'scipy', 'pandas'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
