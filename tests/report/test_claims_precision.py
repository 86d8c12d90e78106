"""A verdict whose compared runs did not all compute in one precision says so: in the Claims section's verdict cell,
in its claims.json entry (`precisions`) and on the scoreboard; a verdict within one precision says nothing."""

import json
import os

import pytest
from test_report import make_run
from test_scoreboard import entry, record, write

from supcon import workdir
from supcon.report import build as report
from supcon.report import claims, claims_record, scoreboard
from supcon.report import claims_section as report_claims
from supcon.report import data as report_data

SPEC = {"rows": ["METHOD"], "claims": ["table2_supcon_gt_ce"]}
TOP1 = {"supcon": (0.84, 0.85, 0.86), "cross_entropy": (0.80, 0.81, 0.823)}


def grid(root, precision):
    """SupCon and cross-entropy x 3 seeds; `precision(method, seed)` -> env.json's mixed_precision (None: absent)."""
    os.makedirs(root)
    for method, tops in TOP1.items():
        for seed, top1 in enumerate(tops):
            path = make_run(str(root), {"METHOD": method, "SEED": seed}, spec=SPEC, top1=top1)
            mixed = precision(method, seed)
            if mixed is not None:
                env = workdir.read_json(os.path.join(path, workdir.ENV))
                workdir.write_json_atomic(os.path.join(path, workdir.ENV), env | {"mixed_precision": mixed})
    return str(root)


def verdict_of(root):
    return claims.evaluate_claims(SPEC["claims"], report_data.load_runs(root), ["METHOD"])[0]


def test_the_mix_counts_each_compared_rows_finished_runs_by_precision(tmp_path):
    root = grid(tmp_path / "mixed", lambda method, seed: method == "cross_entropy" and seed < 2)
    mix = report_claims.precision_mix(verdict_of(root))
    assert mix == [
        ("METHOD=supcon", {"float32": 3}),
        ("METHOD=cross_entropy", {"float32": 1, "mixed bfloat16": 2}),
    ]
    assert report_claims.mix_text(mix) == (
        "; precisions differ: METHOD=supcon: 3 float32; METHOD=cross_entropy: 1 float32, 2 mixed bfloat16"
    )


@pytest.mark.parametrize(
    "name, precision",
    [
        ("all float32", lambda method, seed: False),
        ("all bfloat16", lambda method, seed: True),
        ("one run unrecorded", lambda method, seed: None if seed == 0 and method == "supcon" else method == "supcon"),
    ],
)
def test_no_mix_within_one_precision_or_when_a_run_did_not_record_it(tmp_path, name, precision):
    mix = report_claims.precision_mix(verdict_of(grid(tmp_path / "g", precision)))
    assert mix == [] and report_claims.mix_text(mix) == ""


def test_report_claims_json_and_scoreboard_name_the_mix(tmp_path):
    root = grid(tmp_path / "runs" / "table2_demo", lambda method, seed: method == "cross_entropy")
    out = tmp_path / "reports" / "table2_demo"
    text = open(report.write_report(root, str(out), plots=False)).read()
    row = next(line for line in text.splitlines() if "(`table2_supcon_gt_ce`)" in line)
    assert row.endswith(
        "| **reproduced**; precisions differ: METHOD=supcon: 3 float32; METHOD=cross_entropy: 3 mixed bfloat16 |"
    )
    assert "*precisions differ* names, for a verdict whose finished runs" in text  # the legend explains it
    rec = json.loads((out / "claims.json").read_text())
    assert rec["verdicts"][0]["precisions"] == [
        {"row": "METHOD=supcon", "runs": {"float32": 3}},
        {"row": "METHOD=cross_entropy", "runs": {"mixed bfloat16": 3}},
    ]
    board = (tmp_path / "reports" / "README.md").read_text()
    assert ("**reproduced**; CPU-scale bar not checked; precisions differ: METHOD=supcon: 3 float32; "
            "METHOD=cross_entropy: 3 mixed bfloat16 |") in board  # fmt: skip


def test_one_precision_adds_no_key_no_text_and_no_legend(tmp_path):
    root = grid(tmp_path / "runs" / "table2_demo", lambda method, seed: False)
    out = tmp_path / "reports" / "table2_demo"
    text = open(report.write_report(root, str(out), plots=False)).read()
    assert "precisions differ" not in text
    assert "precisions" not in json.loads((out / "claims.json").read_text())["verdicts"][0]


@pytest.mark.parametrize(
    "precisions",
    [
        "float32",
        [{"row": "METHOD=supcon"}],
        [{"row": "METHOD=supcon", "runs": {"float32": "3"}}],
    ],
)
def test_a_malformed_precisions_entry_is_named(tmp_path, precisions):
    bad = entry("table2_supcon_gt_ce", "reproduced", "pp", (0.31, 0.13, 0.49)) | {"precisions": precisions}
    with pytest.raises(ValueError, match=r"^where: verdict 0: precisions must be a list of"):
        claims_record.check_record(record("alpha", [bad]), "where")
    write(tmp_path, "alpha", record("alpha", [bad]))
    text, tests = scoreboard.build(str(tmp_path))  # named on the scoreboard, not fatal
    assert not tests and "alpha/claims.json" in text
