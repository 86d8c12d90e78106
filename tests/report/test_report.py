"""Tests for the reporter: synthetic run directories -> the expected markdown (a golden file) and PNGs.

The run directories are built here with the workdir helpers. To refresh the golden file after an intended
change of the report's format: `UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/report/test_report.py` (the golden
test rewrites the file and fails, saying so), then read the diff and rerun without UPDATE_GOLDEN.
"""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from supcon import workdir
from supcon.experiment import report_cli as reporting
from supcon.report import build as report
from supcon.report import data as report_data
from supcon.report import header as report_header
from supcon.report import plots as report_plots
from supcon.report import tables as report_tables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "fixtures", "report", "table2_demo.md")
SHA = "0123456789abcdef0123456789abcdef01234567"
BASE = {"ce": 0.80, "simclr": 0.70, "supcon": 0.84, "supcon_in": 0.75}
LOSS = {
    "ce": "@ce",
    "simclr": "@simclr/contrastive",
    "supcon": "@supcon/contrastive",
    "supcon_in": "@supcon_in/contrastive",
}
HEADER = [
    "# Reproduces: Table 2 (methods) at CPU scale",
    "# Run: python runner.py recipes/table2_demo.gin",
    "# Cost: 10 points, about 1 min each on 2 cores",
    "# Expect: SupCon >= CE > SimCLR",
]
SPEC = {
    "rows": ["METHOD"],
    "paper": "table2",
    "title": "Table 2 at CPU scale (synthetic fixture)",
    "paper_rows": {"ce": "Cross-Entropy", "simclr": "SimCLR", "supcon": "SupCon"},
    "paper_columns": {"fashion_mnist": "CIFAR-10"},
    "claims": ["table2_supcon_gt_ce", "table2_supcon_gt_simclr", "table2_ce_gt_simclr"],
}


def env_json(dataset="fashion_mnist"):
    return {
        "git_sha": SHA,
        "git_dirty": False,
        "versions": {"python": "3.11.2", "tensorflow": "2.21.0", "numpy": "2.4.6"},
        "devices": ["/CPU:0", "/CPU:1"],
        "strategy": "mirrored",
        "replicas": 2,
        "scale": {
            "dataset": dataset,
            "train_examples": 60000,
            "image_shape": [28, 28, 1],
            "encoder": "resnet18 x0.25, cifar stem",
            "pretrain_epochs": 2.0,
            "linear_epochs": 1.0,
            "global_batch_size": 256,
            "hardware": "2 CPU cores",
        },
    }


def make_run(
    root, values, state="done", spec=None, stem="table2_demo", top1=0.8, dataset="fashion_mnist"
):
    """Writes one synthetic run directory; `state` is done, failed, running or new."""
    slug = "point-" + re.sub(
        r"[^a-z0-9.]+", "_", "-".join(f"{k.lower()}{v}" for k, v in sorted(values.items()))
    )
    path = os.path.join(root, slug)
    os.makedirs(path)
    workdir.write_json_atomic(
        os.path.join(path, workdir.POINT),
        {
            "recipe": f"recipes/{stem}.gin",
            "recipe_stem": stem,
            "id": "0badc0de",
            "slug": slug,
            "bindings": {k: repr(v) for k, v in values.items()},
            "values": values,
            "gin_files": [],
            "gin_params": [],
            "smoke": False,
            "report": spec if spec is not None else SPEC,
            "header": HEADER,
        },
    )
    if state == "new":
        return path
    workdir.write_json_atomic(os.path.join(path, workdir.ENV), env_json(dataset))
    for step in range(0, 101, 20):
        workdir.append_jsonl(
            os.path.join(path, workdir.METRICS),
            {
                "kind": "train",
                "stage": "pretrain",
                "step": step,
                "loss": 5.0 - step / 40 + top1,
                "learning_rate": 0.1,
                "images_per_second": 100.0,
                "time": 1.0,
            },
        )
    if state == "failed":
        workdir.write_status(
            path, "failed", step=12, reason="loss is NaN at step 12\nTraceback ..."
        )
    elif state == "running":
        workdir.write_status(path, "running", step=40)
    else:
        finish_run(path, values.get("SEED", 0), top1)
    return path


def finish_run(path, seed, top1):
    """Adds the linear stage, evals, embeddings and result.json of a finished run."""
    for step in (120, 140):
        workdir.append_jsonl(
            os.path.join(path, workdir.METRICS),
            {
                "kind": "train",
                "stage": "linear",
                "step": step,
                "loss": 1.0 - top1 / 2,
                "learning_rate": 0.1,
                "images_per_second": 300.0,
                "time": 2.0,
            },
        )
        workdir.append_jsonl(
            os.path.join(path, workdir.METRICS),
            {
                "kind": "eval",
                "step": step,
                "eval/top1": top1 - 0.02 * (step == 120),
                "eval/top5": 0.99,
                "knn/top1": top1 - 0.01,
            },
        )
    rng = np.random.default_rng(seed)
    labels = np.arange(60) % 10
    emb = rng.normal(size=(60, 8)).astype(np.float32) + labels[:, None] * top1
    np.savez(os.path.join(path, workdir.EMBEDDINGS), embeddings=emb, labels=labels)
    workdir.write_json_atomic(
        os.path.join(path, workdir.RESULT),
        {
            "eval/top1": top1,
            "eval/top5": 0.99,
            "knn/top1": top1 - 0.01,
            "eval/loss": 0.5,
            "step": 140,
            "train_seconds": 60.0 + 5 * seed,
            "images_per_second": 150.0,
        },
    )
    workdir.write_status(path, "done", step=140)


@pytest.fixture
def demo_runs(tmp_path):
    """Four methods x 3 seeds: one failed, one running without result, two seeds never launched."""
    root = tmp_path / "runs" / "table2_demo"
    root.mkdir(parents=True)
    states = {("simclr", 1): "running", ("supcon", 2): "failed"}
    for method in ("ce", "simclr", "supcon", "supcon_in"):
        for seed in (0,) if method == "supcon_in" else (0, 1, 2):
            values = {"METHOD": method, "LOSS": LOSS[method], "SEED": seed}
            make_run(
                str(root),
                values,
                states.get((method, seed), "done"),
                top1=BASE[method] + 0.01 * seed,
            )
    return str(root)


def test_report_matches_golden_file(demo_runs, tmp_path):
    out = str(tmp_path / "reports" / "table2_demo")
    text = open(report.write_report(demo_runs, out)).read()
    if os.environ.get("UPDATE_GOLDEN"):  # rewrites, then fails: an update never passes as a check
        os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
        with open(GOLDEN, "w") as f:
            f.write(text)
        pytest.fail(f"UPDATE_GOLDEN is set: rewrote {os.path.relpath(GOLDEN, ROOT)}; read its diff, then rerun "
                    "without UPDATE_GOLDEN")
    assert text == open(GOLDEN).read()


def test_failed_and_missing_points_are_listed(demo_runs, tmp_path):
    text = open(report.write_report(demo_runs, str(tmp_path / "out"), plots=False)).read()
    problems = text.split("## Failed and missing points")[1].split("## All runs")[0]
    assert (
        "METHOD=supcon | 2 | failed | 12 | loss is NaN at step 12 | `point-loss_supcon_contrastive_methodsupcon_seed2`"
        in problems
    )
    assert "METHOD=simclr | 1 | partial | 40 | no result.json: running |" in problems
    assert problems.count("no run directory (other points ran SEED=") == 2
    assert "12 planned: 8 done, 1 failed, 3 missing or unfinished." in text
    # Cells carry the real n: simclr and supcon finished 2 of 3 seeds, supcon_in 1 of 3.
    assert "| simclr | 71.00 ± 1.41 (2/3) | 93.6 | -22.60 |" in text
    assert "75.00 ± – (1/3)" in text


def test_pngs_are_written_and_linked_relatively(demo_runs, tmp_path):
    out = tmp_path / "out"
    text = open(report.write_report(demo_runs, str(out))).read()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == ["curves.png", "embeddings.png"]  # no numeric swept axis here
    for link in links:
        assert not os.path.isabs(link) and "/" not in link
        assert (out / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".report-")]  # staging removed


def test_unreadable_embeddings_are_reported_not_fatal(demo_runs, tmp_path):
    bad = os.path.join(demo_runs, "point-loss_ce_methodce_seed2", workdir.EMBEDDINGS)
    np.savez(bad, embeddings=np.zeros((5, 4)), labels=np.zeros(3))
    text = open(report.write_report(demo_runs, str(tmp_path / "out"))).read()
    assert (
        "- problem: point-loss_ce_methodce_seed2: embeddings unreadable (ValueError: labels" in text
    )
    assert (tmp_path / "out" / "embeddings.png").exists()


def test_rerun_is_identical_and_removes_stale_pngs(demo_runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep_old.png").write_bytes(b"old")
    (out / "notes.txt").write_text("kept")
    first = open(report.write_report(demo_runs, str(out))).read()
    second = open(report.write_report(demo_runs, str(out))).read()
    assert first == second
    assert not (out / "sweep_old.png").exists() and (out / "notes.txt").exists()


def test_numeric_axis_gets_a_sweep_plot_and_default_rows(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    for t in (0.05, 0.1, 0.5):
        for seed in (0, 1):
            make_run(
                str(root),
                {"TEMPERATURE": t, "SEED": seed},
                spec={},
                stem="temp",
                top1=0.8 - abs(t - 0.1) + 0.01 * seed,
            )
    text = open(report.write_report(str(root), str(tmp_path / "out"))).read()
    assert "![TEMPERATURE sweep](sweep_temperature.png)" in text
    assert (tmp_path / "out" / "sweep_temperature.png").exists()
    table = text.split("## Results")[1].split("Cells are")[0]
    assert re.findall(r"^\| (0\.05|0\.1|0\.5) \|", table, re.M) == ["0.05", "0.1", "0.5"]
    assert "| TEMPERATURE | eval/top1 (%) | eval/top5 (%) | knn/top1 (%) |" in table
    assert "# Report: temp" in text and "None: every planned point finished." in text


def test_columns_layout_names_the_papers_dataset(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    spec = {
        "rows": ["METHOD"],
        "columns": ["DATASET"],
        "metrics": ["eval/top1"],
        "paper": "table2",
        "paper_rows": {"ce": "Cross-Entropy", "supcon": "SupCon"},
        "paper_columns": {"fashion_mnist": "CIFAR-10", "mnist": "CIFAR-100"},
    }
    for method in ("ce", "supcon"):
        for dataset in ("fashion_mnist", "mnist"):
            for seed in (0, 1, 2):
                make_run(
                    str(root),
                    {"METHOD": method, "DATASET": dataset, "SEED": seed},
                    spec=spec,
                    top1=BASE[method] + 0.01 * seed,
                    dataset=dataset,
                )
    text = open(report.write_report(str(root), str(tmp_path / "out"), plots=False)).read()
    assert (
        "| METHOD | fashion_mnist eval/top1 (%) | paper (CIFAR-10, ResNet-50) | Δ | "
        "mnist eval/top1 (%) | paper (CIFAR-100, ResNet-50) | Δ |"
    ) in text
    assert "| supcon | 85.00 ± 1.00 (3) | 96.0 | -11.00 | 85.00 ± 1.00 (3) | 76.5 | +8.50 |" in text
    assert "- Table 2, CIFAR-100, SupCon (ResNet-50): 76.5" in text
    assert "not a CIFAR-10/100 or ImageNet result" in text
    assert "**The paper's numbers come from a different experiment:**" in text


def test_unrequested_varying_macro_splits_rows(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    for method, loss in (("ce", "@ce"), ("supcon", "@supcon")):
        for t in (0.1, 0.5):
            make_run(
                str(root),
                {"METHOD": method, "LOSS": loss, "TEMPERATURE": t, "SEED": 0},
                spec={"rows": ["METHOD"]},
            )
    text = open(report.write_report(str(root), str(tmp_path / "out"), plots=False)).read()
    assert (
        "| METHOD | TEMPERATURE | eval/top1 (%)" in text
    )  # LOSS is determined by METHOD: not split
    assert "Rows are also split by TEMPERATURE" in text


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"rows": 3}, "report.rows must be a list"),
        ({"paper": "tabel2"}, "report.paper must be one of"),
        ({"paper_rows": ["ce"]}, "report.paper_rows must be a dict"),
        ({"colums": ["X"]}, "unknown binding report.colums"),
    ],
)
def test_invalid_spec_names_the_binding(tmp_path, spec, message):
    make_run(str(tmp_path / "runs"), {"SEED": 0}, spec=spec)
    with pytest.raises(ValueError, match=re.escape(message)):
        report.write_report(str(tmp_path / "runs"), str(tmp_path / "out" / "x"))
    assert not (tmp_path / "out").exists()


def test_cli_errors_write_nothing(tmp_path, capsys):
    out = tmp_path / "reports" / "x"
    assert reporting.main([str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert reporting.main([str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "holds no run directory" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


def test_cli_module_runs_without_tensorflow(demo_runs, tmp_path):
    code = (
        "import sys, supcon.experiment.report_cli; assert 'tensorflow' not in sys.modules, 'tf imported'; "
        f"sys.exit(supcon.experiment.report_cli.main([{demo_runs!r}, '--out', {str(tmp_path / 'o')!r}, '--no_plots']))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(os.path.join("o", "README.md"))
    done = subprocess.run(
        [sys.executable, "-m", "supcon.report", str(tmp_path / "none")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: runs_dir")


def test_value_labels_and_order():
    label, key = report_data.value_label, report_data.sort_key
    assert [label(v) for v in (0.1, 1e-4, 4096, True, None, "@ce", (2048, 128))] == [
        "0.1",
        "0.0001",
        "4096",
        "True",
        "–",
        "@ce",
        "[2048, 128]",
    ]
    assert sorted([None, "b", 10, 2.5, "a"], key=key) == [2.5, 10, "a", "b", None]


def test_cells_and_numbers():
    assert report_tables.summarize([0.8, 0.82, 0.84]) == pytest.approx((0.82, 0.02, 3))
    assert report_tables.format_cell(0.82, 0.02, 3, 3, True) == "82.00 ± 2.00 (3)"
    assert report_tables.format_cell(0.82, None, 1, 3, True) == "82.00 ± – (1/3)"
    assert report_tables.format_cell(None, None, 0, 2, False) == "– (0/2)"
    assert report_tables.format_cell(0.51234, 0.01, 2, 2, False) == "0.5123 ± 0.01 (2)"
    assert (
        report_header.format_seconds(59.6) == "1 min 00 s"
        and report_header.format_seconds(7380) == "2 h 03 min"
    )
    assert report_tables.markdown_table(["a"], [["x|y"]]) == "| a |\n|---|\n| x\\|y |"


def test_paper_numbers_file_and_lookup():
    numbers = report_tables.load_paper_numbers()
    keys = [(n["table"], n["row"], n["column"], n["metric"]) for n in numbers]
    assert len(keys) == len(set(keys))
    assert {n["table"] for n in numbers} == {
        "table1",
        "table2",
        "table3",
        "table5",
        "table8",
        "table9",
        "figure3",
        "table6",
        "table7",
        "text",
    }
    assert report_tables.paper_lookup(numbers, "table1", "L_in", None, "eval/top1")["value"] == 67.4
    assert (
        report_tables.paper_lookup(numbers, "table2", "SupCon", None, "eval/top1") is None
    )  # 3 columns
    top5 = report_tables.paper_lookup(
        numbers, "table3", "SupCon, AutoAugment", "ImageNet", "eval/top5"
    )
    assert top5["value"] == 94.3
    assert any(n["value"] == 79.1 and "memory bank" in n["source"] for n in numbers)


def test_pca_finds_the_main_direction():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])  # [N, D]
    xy = report_plots.pca_2d(x)
    assert xy.shape == (200, 2)
    assert np.var(xy[:, 0]) > np.var(xy[:, 1]) > 5 * np.var(x[:, 2])
    assert report_plots.pca_2d(x[:, :1]).shape == (200, 2)
    with pytest.raises(ValueError, match="x must be"):
        report_plots.pca_2d(x[:1])


def test_paper_rows_and_columns_match_our_names_without_a_mapping(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    spec = {"rows": ["METHOD"], "columns": ["DATASET"], "metrics": ["eval/top1"], "paper": "table2"}
    for method in ("cross_entropy", "simclr", "supcon"):
        for dataset in ("cifar10", "cifar100"):
            make_run(str(root), {"METHOD": method, "DATASET": dataset}, spec=spec, dataset=dataset)
    text = open(report.write_report(str(root), str(tmp_path / "out"), plots=False)).read()
    assert (
        "| cross_entropy | 80.00 ± – (1) | 95.0 | -15.00 | 80.00 ± – (1) | 75.3 | +4.70 |" in text
    )
    assert "| simclr | 80.00 ± – (1) | 93.6 | -13.60 | 80.00 ± – (1) | 70.7 | +9.30 |" in text


def test_single_point_recipe_finds_its_paper_row_from_the_stem(tmp_path):
    make_run(
        str(tmp_path),
        {},
        spec={"paper": "table2"},
        stem="supcon_cifar10_resnet50",
        top1=0.95,
        dataset="cifar10",
    )
    text = open(report.write_report(str(tmp_path), str(tmp_path / "out"), plots=False)).read()
    assert "| runs | eval/top1 (%) | paper (CIFAR-10, ResNet-50) | Δ |" in text
    assert "| all | 95.00 ± – (1) | 96.0 | -1.00 |" in text
    assert "these runs use the same dataset" in text


def test_paper_labels_normalise_names_but_not_numbers():
    label = report_tables.paper_label
    assert label("cross_entropy") == label("Cross-Entropy") == label("ce")
    assert label("outside") == label("L_out") and label("imagenet2012") == label("ImageNet")
    assert label("-1") != label("1")
    numbers = report_tables.load_paper_numbers()
    assert report_tables.infer_paper_row(numbers, "table2", "simclr_cifar10_resnet50") == "SimCLR"
    assert report_tables.infer_paper_row(numbers, "table5", "paper_table5") is None


PAPER_HEADER = "table,row,column,metric,value,model,source\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "paper.csv: empty (no header and no row)"),
        (b"table,row,value\n", "paper.csv: the header must be table,row,column,metric,value,model,source"),
        (PAPER_HEADER.encode() + b"table2,SupCon,CIFAR-10,eval/top1,96.0,R50\n", "paper.csv:2: 6 fields, expected 7"),
        (PAPER_HEADER.encode() + b"table2,SupCon,CIFAR-10,eval/top1,9b,R50,s\n", "paper.csv:2: value '9b' is not a number"),
        (PAPER_HEADER.encode() + b"table2,SupCon,CIFAR-10,eval/top1,nan,R50,s\n", "is not a finite number"),
        (PAPER_HEADER.encode() + b"table2,SupCon,CIFAR-10,top1,96.0,R50,s\n", "paper.csv:2: metric 'top1' is not one a run writes"),
        (PAPER_HEADER.encode() + b",SupCon,CIFAR-10,eval/top1,96.0,R50,s\n", "paper.csv:2: empty table"),
        (PAPER_HEADER.encode() + b"t,SupCon,C,eval/top1,1,R,s\n# note\nt,supcon,C,eval/top1,2,R,s\n",
         "paper.csv:4: the same table, row, column and metric as line 2"),
        (PAPER_HEADER.encode() + b"table2,Sup\xe9Con,CIFAR-10,eval/top1,96.0,R50,s\n", "paper.csv: not UTF-8 text"),
    ],
)
def test_a_malformed_paper_numbers_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "paper.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        report_tables.load_paper_numbers(str(path))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_unusable_run_dirs_are_skipped_with_their_reason(demo_runs, tmp_path):
    """Truncated or foreign files never crash the report: such a run directory is skipped and listed, files it
    can do without are noted, and every other run is reported as before."""
    done = os.path.join(demo_runs, "point-loss_ce_methodce_seed0")
    with open(os.path.join(done, workdir.RESULT), "w") as f:
        f.write('{"eval/top1": 0.8')  # truncated
    foreign = make_run(demo_runs, {"METHOD": "other", "SEED": 0}, stem="another_recipe")
    older = make_run(demo_runs, {"METHOD": "old", "SEED": 0})
    point = os.path.join(older, workdir.POINT)
    workdir.write_json_atomic(point, {k: v for k, v in read_json(point).items() if k != "values"})
    garbled = make_run(demo_runs, {"METHOD": "garbled", "SEED": 0})
    with open(os.path.join(garbled, workdir.POINT), "wb") as f:
        f.write(b"\xff\xfe")
    failed = os.path.join(demo_runs, "point-loss_supcon_contrastive_methodsupcon_seed2")
    with open(os.path.join(failed, workdir.STATUS), "w") as f:
        f.write('{"state": "fai')
    noisy = os.path.join(demo_runs, "point-loss_ce_methodce_seed1")
    with open(os.path.join(noisy, workdir.METRICS), "a") as f:
        f.write('[1, 2]\n"text"\n{"kind": "train", "step": "x", "loss": 1.0}\n{"kind": "tra')
    with open(os.path.join(noisy, workdir.ENV), "w") as f:
        f.write("[]")
    best_ce = os.path.join(demo_runs, "point-loss_ce_methodce_seed2")  # drawn in the embeddings plot
    with open(os.path.join(best_ce, workdir.EMBEDDINGS), "wb") as f:
        f.write(b"PK\x03\x04 truncated")
    with open(os.path.join(best_ce, workdir.CONFIG), "wb") as f:
        f.write(b"x = \xff\n")

    text = open(report.write_report(demo_runs, str(tmp_path / "out"))).read()
    problems = text.split("## Failed and missing points")[1].split("## All runs")[0]
    skipped = {line.split("|")[-2].strip(" `"): line for line in problems.splitlines() if "| skipped |" in line}
    assert "result.json is not JSON (truncated?): Expecting ',' delimiter" in skipped[os.path.basename(done)]
    assert "left by recipe 'another_recipe'; the other runs here are 'table2_demo''s (not used)" in (
        skipped[os.path.basename(foreign)])
    assert "point.json is from an older version of the runner (no values)" in skipped[os.path.basename(older)]
    assert "point.json is not UTF-8 text" in skipped[os.path.basename(garbled)]
    assert "12 planned: 7 done, 0 failed, 5 missing or unfinished. 4 run directories skipped" in text
    assert "| ce | 81.50 ± 0.71 (2/3) |" in text  # the truncated seed is out of the numbers, not a crash
    assert "other" not in text.split("## Results")[1].split("## Failed")[0]  # nor the foreign run's values
    # 3 bad lines (an array, a string, a truncated last line); the record with "step": "x" is an object: the
    # reader keeps it and the curves skip it
    assert (
        "- `point-loss_ce_methodce_seed1`: env.json holds a list, not a JSON object; metrics.jsonl: 3 line(s) "
        "not a JSON object, skipped (line 11, 12, 14)" in problems
    )
    assert "| METHOD=supcon | 2 | partial | 0 | no result.json; status.json is not JSON (truncated?): " in problems
    assert "- problem: point-loss_ce_methodce_seed2: embeddings unreadable (BadZipFile" in text
    assert (tmp_path / "out" / "curves.png").exists()
    assert "config.gin is unreadable" in text  # the pixel baselines say why they have no setting for it


def read_json(path):
    return workdir.read_json(path)


def test_report_cli_write_errors_are_one_line(demo_runs, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("")
    assert reporting.main([demo_runs, "--out", str(target), "--no_plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the report to") and err.count("\n") == 1
