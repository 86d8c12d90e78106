"""Tests for supcon.report.claims: the claims file, the statistics (checked against scipy and hand values), every
verdict of every kind of claim on synthetic run directories, the summary line, and report.claims errors."""

import json
import math
import os
import re

import numpy as np
import pytest
from scipy import stats

from supcon import workdir
from supcon.experiment import grid
from supcon.report import build as report
from supcon.report import claims, claims_stats
from supcon.report import claims_section as report_claims
from supcon.report import data as report_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_run(root, values, top1=None, state="done", claim_ids=(), within=("METHOD",)):
    """One synthetic run directory: point.json, and result.json when done (status.json either way)."""
    slug = "_".join(f"{k.lower()}-{v}" for k, v in values.items()) or "default"
    path = os.path.join(str(root), slug)
    os.makedirs(path)
    spec = {"rows": list(within), "claims": list(claim_ids)}
    workdir.write_json_atomic(
        os.path.join(path, workdir.POINT),
        {"recipe_stem": "claims_demo", "values": values, "report": spec, "header": []},
    )
    if state == "done":
        workdir.write_json_atomic(
            os.path.join(path, workdir.RESULT),
            {"eval/top1": top1, "step": 10, "train_seconds": 1.0},
        )
        workdir.write_status(path, "done", step=10)
    else:
        workdir.write_status(path, "failed", step=3, reason="loss is NaN")
    return path


def rows_of(root, table: dict, axis="METHOD", failed=()):
    """Writes {axis value: [top1 of seed 0, seed 1, ...]} as run directories."""
    for value, tops in table.items():
        for seed, top1 in enumerate(tops):
            state = "failed" if (value, seed) in failed else "done"
            make_run(root, {axis: value, "SEED": seed}, top1, state)
    return report_data.load_runs(str(root))


def only(verdicts):
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


def test_the_claims_file_holds_the_papers_claims():
    known = claims.load_claims()
    for claim_id in (
        "table2_supcon_gt_ce", "table2_supcon_gt_simclr", "table2_ce_gt_simclr", "table1_out_gt_in",
        "table5_cap_increasing", "table5_cap1_lowest", "fig4a_supcon_lower_spread", "fig4c_epochs_increasing",
    ):  # fmt: skip
        assert claim_id in known
    supcon_ce = known["table2_supcon_gt_ce"]
    assert (supcon_ce.kind, supcon_ce.a, supcon_ce.b) == (
        "greater", {"METHOD": "supcon"}, {"METHOD": "cross_entropy"},
    )  # fmt: skip
    assert (supcon_ce.paper_a, supcon_ce.paper_b, supcon_ce.source) == (96.0, 95.0, "Table 2")
    assert (known["table2_ce_gt_simclr"].paper_a, known["table2_ce_gt_simclr"].paper_b) == (
        95.0,
        93.6,
    )
    assert (known["table1_out_gt_in"].paper_a, known["table1_out_gt_in"].paper_b) == (78.7, 67.4)
    cap = known["table5_cap_increasing"]
    assert cap.axis == "POSITIVES_CAP" and cap.axis_map == {"-1": math.inf}
    assert "1: 69.3" in cap.paper_values and "no cap: 78.5" in cap.paper_values
    assert known["fig4a_supcon_lower_spread"].kind == "lower_spread"
    assert known["fig4c_epochs_increasing"].axis == "PRETRAIN_EPOCHS"


@pytest.mark.parametrize(
    "row, message",
    [
        ("x,Table 2,greater,eval/top1,METHOD=a,,,,,,,,,s,", "claim x (greater) needs a value for b"),
        ("x,Table 2,bigger,eval/top1,METHOD=a,METHOD=b,,,,,,,,s,", "kind 'bigger' must be one of"),
        (
            "x,Table 2,greater,eval/top1,method=a,METHOD=b,,,,,,,,s,",
            "row 'method=a' must be MACRO=value",
        ),
        ("x,Table 2,greater,eval/top1,METHOD=a,METHOD=b,,,,high,,,,s,", "'high' is not a number"),
        ("x,Table 5,lowest,eval/top1,METHOD=a,,CAP,,,,,,,s,", "must be one value of its axis CAP"),
        ("X,Table 2,greater,eval/top1,METHOD=a,METHOD=b,,,,,,,,s,", "id 'X' must be lower_case"),
        ("x,Table 2,greater,eval/top2,METHOD=a,METHOD=b,,,,,,,,s,", "metric 'eval/top2' is not one a run writes"),
        ("x,Table 2,greater,eval/top1,METHOD=a,METHOD=b,,,,,,,s,", "14 fields, expected 15"),
    ],
)
def test_a_malformed_claims_file_names_the_line(tmp_path, row, message):
    path = tmp_path / "claims.csv"
    path.write_text("# comment\n" + ",".join(claims.FIELDS) + "\n" + row + "\n")
    with pytest.raises(claims.ClaimError, match=re.escape(message)) as error:
        claims.load_claims(str(path))
    assert ":3: " in str(error.value) and "\n" not in str(error.value)


def test_a_duplicate_id_and_a_bad_header_are_errors(tmp_path):
    path = tmp_path / "claims.csv"
    row = "x,Table 2,greater,eval/top1,METHOD=a,METHOD=b,,,,,,,,s,"
    path.write_text(",".join(claims.FIELDS) + f"\n{row}\n{row}\n")
    with pytest.raises(claims.ClaimError, match=r":3: duplicate claim id x"):
        claims.load_claims(str(path))
    path.write_text("id,source\n")
    with pytest.raises(claims.ClaimError, match="the header must be id,source,kind"):
        claims.load_claims(str(path))


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty (no header and no row)"), (b"# only a comment\n", "empty (no header and no row)"),
     (b"id,source\xff\n", "not UTF-8 text (byte offset 9)")],
)
def test_an_empty_or_non_utf8_claims_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "claims.csv"
    path.write_bytes(content)
    with pytest.raises(claims.ClaimError, match=re.escape(f"claims.csv: {message}")) as error:
        claims.load_claims(str(path))
    assert "\n" not in str(error.value)


# -------------------------------------------------------------------------------------------------------------
# A > B


GREATER = {
    "reproduced": ([0.80, 0.82, 0.84], [0.70, 0.73, 0.71]),
    "contradicted": ([0.70, 0.73, 0.71], [0.80, 0.82, 0.84]),
    "inconclusive": ([0.80, 0.70, 0.75], [0.76, 0.74, 0.72]),
}


@pytest.mark.parametrize("expected", list(GREATER))
def test_greater_paired_by_seed_gives_each_verdict(tmp_path, expected):
    supcon, ce = GREATER[expected]
    runs = rows_of(tmp_path, {"supcon": supcon, "cross_entropy": ce})
    verdict = only(claims.evaluate_claims(["table2_supcon_gt_ce"], runs, ["METHOD"]))
    assert verdict.verdict == expected
    est = verdict.estimate
    assert est.test == "paired t (by SEED)" and est.n == "3 pairs"
    ref = stats.ttest_rel(supcon, ce)
    ci = ref.confidence_interval(0.95)
    assert est.value == pytest.approx(np.mean(np.subtract(supcon, ce)))
    assert (est.low, est.high, est.p) == pytest.approx((ci.low, ci.high, ref.pvalue))
    assert verdict.compared == "METHOD=supcon − METHOD=cross_entropy"


def test_paired_t_matches_hand_values():
    # differences 0.1, 0.09, 0.13: mean 0.1066667, sd 0.0208167, se 0.0120185, t(2, 0.975) = 4.302653
    est = claims_stats.paired_difference([0.8, 0.82, 0.84], [0.7, 0.73, 0.71])
    assert est.value == pytest.approx(0.1066667, abs=1e-6)
    assert (est.low, est.high) == pytest.approx((0.0549552, 0.1583781), abs=1e-6)
    assert est.p == pytest.approx(2 * stats.t.sf(0.1066667 / 0.0120185, 2), rel=1e-4)


def test_welch_when_the_rows_finished_different_seeds(tmp_path):
    supcon, ce = [0.80, 0.82, 0.84], [0.70, 0.73, 0.71]
    runs = rows_of(tmp_path, {"supcon": supcon, "cross_entropy": ce}, failed={("cross_entropy", 2)})
    verdict = only(claims.evaluate_claims(["table2_supcon_gt_ce"], runs, ["METHOD"]))
    est = verdict.estimate
    assert est.test == "Welch t" and est.note == "the rows finished different SEED values"
    assert est.n == "3 vs 2; 3/3 and 2/3 finished"
    ref = stats.ttest_ind(supcon, ce[:2], equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (est.value, est.low, est.high, est.p) == pytest.approx(
        (np.mean(supcon) - np.mean(ce[:2]), ci.low, ci.high, ref.pvalue)
    )
    assert verdict.verdict == "reproduced"


def test_welch_without_a_seed_axis(tmp_path):
    for method, tops in (("supcon", (0.80, 0.83)), ("cross_entropy", (0.60, 0.66))):
        for lr, top1 in zip((0.1, 0.5), tops, strict=True):
            make_run(tmp_path, {"METHOD": method, "LR": lr}, top1)
    runs = report_data.load_runs(str(tmp_path))
    verdict = only(claims.evaluate_claims(["table2_supcon_gt_ce"], runs, ["METHOD"]))
    assert verdict.estimate.test == "Welch t" and verdict.estimate.note == "no SEED axis"
    assert verdict.estimate.n == "2 vs 2"


def test_one_seed_per_row_is_inconclusive_with_the_reason(tmp_path):
    runs = rows_of(tmp_path, {"supcon": [0.9], "cross_entropy": [0.7]})
    verdict = only(claims.evaluate_claims(["table2_supcon_gt_ce"], runs, ["METHOD"]))
    assert verdict.verdict == "inconclusive" and verdict.estimate is None
    assert verdict.reason == "1 pair(s) of seeds: a paired test needs at least 2"


def test_missing_and_failed_rows_are_inconclusive_not_errors(tmp_path):
    runs = rows_of(tmp_path, {"supcon": [0.9, 0.8]}, failed=set())
    verdict = only(claims.evaluate_claims(["table2_supcon_gt_ce"], runs, ["METHOD"]))
    assert (verdict.verdict, verdict.reason) == ("inconclusive", "no run has METHOD=cross_entropy")
    runs = rows_of(
        tmp_path / "b", {"supcon": [0.9, 0.8], "cross_entropy": [0.7, 0.7]},
        failed={("cross_entropy", 0), ("cross_entropy", 1)},
    )  # fmt: skip
    verdict = only(claims.evaluate_claims(["table2_supcon_gt_ce"], runs, ["METHOD"]))
    assert (verdict.verdict, verdict.reason) == (
        "inconclusive",
        "no run of METHOD=cross_entropy finished",
    )


def test_a_claim_is_tested_within_each_dataset_never_pooled(tmp_path):
    gaps = {"cifar10": 0.05, "cifar100": -0.05}
    for dataset, gap in gaps.items():
        for seed in range(3):
            make_run(
                tmp_path,
                {"METHOD": "supcon", "DATASET": dataset, "SEED": seed},
                0.8 + gap + 0.01 * seed,
            )
            make_run(
                tmp_path,
                {"METHOD": "cross_entropy", "DATASET": dataset, "SEED": seed},
                0.8 + 0.011 * seed,
            )
    make_run(
        tmp_path, {"METHOD": "supcon", "DATASET": "mnist", "SEED": 0}, 0.99
    )  # no CE there: skipped
    runs = report_data.load_runs(str(tmp_path))
    verdicts = claims.evaluate_claims(["table2_supcon_gt_ce"], runs, ["METHOD", "DATASET"])
    assert [(v.where, v.verdict) for v in verdicts] == [
        ("DATASET=cifar10", "reproduced"),
        ("DATASET=cifar100", "contradicted"),
    ]
    assert claims.summary(verdicts) == (
        "1 of 2 claim tests reproduced at this scale (1 contradicted, 0 inconclusive)."
    )


# -------------------------------------------------------------------------------------------------------------
# lowest / highest


LOWEST = {
    "reproduced": {
        0: [0.69, 0.70, 0.71],
        2: [0.76, 0.77, 0.76],
        4: [0.78, 0.78, 0.79],
        -1: [0.79, 0.78, 0.8],
    },
    "contradicted": {
        0: [0.80, 0.82, 0.80],
        2: [0.70, 0.71, 0.70],
        4: [0.78, 0.78, 0.79],
        -1: [0.79, 0.8, 0.8],
    },
    "inconclusive": {
        0: [0.70, 0.76, 0.73],
        2: [0.74, 0.72, 0.75],
        4: [0.78, 0.78, 0.79],
        -1: [0.79, 0.8, 0.8],
    },
}


@pytest.mark.parametrize("expected", list(LOWEST))
def test_lowest_compares_with_the_next_lowest_value(tmp_path, expected):
    table = LOWEST[expected]
    runs = rows_of(tmp_path, table, axis="POSITIVES_CAP")
    verdict = only(claims.evaluate_claims(["table5_cap1_lowest"], runs, ["POSITIVES_CAP"]))
    assert verdict.verdict == expected
    others = {k: np.mean(v) for k, v in table.items() if k != 0}
    nearest = min(others, key=others.get)
    assert verdict.compared == f"POSITIVES_CAP={nearest} (next lowest) − POSITIVES_CAP=0"
    ci = stats.ttest_rel(table[nearest], table[0]).confidence_interval(0.95)
    assert (verdict.estimate.low, verdict.estimate.high) == pytest.approx((ci.low, ci.high))


def test_highest_temperature(tmp_path):
    table = {0.05: [0.70, 0.71], 0.1: [0.80, 0.805], 0.5: [0.74, 0.75]}
    runs = rows_of(tmp_path, table, axis="TEMPERATURE")
    verdict = only(claims.evaluate_claims(["fig4d_temperature_best"], runs, ["TEMPERATURE"]))
    assert verdict.compared == "TEMPERATURE=0.1 − TEMPERATURE=0.5 (next highest)"
    assert verdict.verdict == "reproduced"
    assert verdict.estimate.value == pytest.approx(0.0575)


# -------------------------------------------------------------------------------------------------------------
# increasing


INCREASING = {
    "reproduced": {50: [0.60, 0.62], 100: [0.66, 0.65], 200: [0.70, 0.72], 400: [0.73, 0.71]},
    "contradicted": {50: [0.73, 0.71], 100: [0.70, 0.72], 200: [0.66, 0.65], 400: [0.60, 0.62]},
    "inconclusive": {50: [0.70, 0.66], 100: [0.72, 0.65], 200: [0.68, 0.71], 400: [0.66, 0.70]},
}


def fisher_ci(r, n):
    """Fisher's z interval of a correlation, by hand."""
    half = stats.norm.ppf(0.975) / math.sqrt(n - 3)
    return math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)


@pytest.mark.parametrize("expected", list(INCREASING))
def test_increasing_gives_each_verdict(tmp_path, expected):
    table = INCREASING[expected]
    runs = rows_of(tmp_path, table, axis="PRETRAIN_EPOCHS")
    verdict = only(claims.evaluate_claims(["fig4c_epochs_increasing"], runs, ["PRETRAIN_EPOCHS"]))
    assert verdict.verdict == expected
    x = [e for e, tops in table.items() for _ in tops]
    y = [t for tops in table.values() for t in tops]
    rho, p = stats.spearmanr(x, y)
    est = verdict.estimate
    assert (est.value, est.p) == pytest.approx((rho, p))
    assert (est.low, est.high) == pytest.approx(fisher_ci(rho, len(x)))
    assert est.n == "8 runs at 4 values" and est.test == "Spearman ρ (Fisher-z CI)"


@pytest.mark.parametrize(
    "table, verdict_word, p_exact",
    [  # every run in rank order: 5 runs at 5 values (2 of 5! orderings are as extreme), 4 at 4 (2 of 4!)
        ({50: [0.60], 100: [0.65], 200: [0.70], 400: [0.72], 800: [0.73]}, "reproduced", 2 / 120),
        ({50: [0.73], 100: [0.72], 200: [0.70], 400: [0.65], 800: [0.60]}, "contradicted", 2 / 120),
        ({50: [0.60], 100: [0.65], 200: [0.70], 400: [0.72]}, "inconclusive", 2 / 24),
    ],
)
def test_a_perfect_order_takes_its_p_from_the_permutations(tmp_path, table, verdict_word, p_exact):
    # At |rho| = 1 Fisher's interval is the point and the t approximation gives p = 0: four runs in order would be
    # "reproduced" by the interval alone, though 2 of their 24 orderings are as extreme.
    runs = rows_of(tmp_path, table, axis="PRETRAIN_EPOCHS")
    verdict = only(claims.evaluate_claims(["fig4c_epochs_increasing"], runs, ["PRETRAIN_EPOCHS"]))
    assert verdict.verdict == verdict_word
    if verdict_word == "inconclusive":
        assert verdict.estimate is None and "permutation p 0.083" in verdict.reason
        return
    sign = 1.0 if verdict_word == "reproduced" else -1.0
    est = verdict.estimate
    assert (est.value, est.low, est.high) == (sign, sign, sign)
    assert est.p == pytest.approx(p_exact) and est.test.startswith("Spearman ρ (permutation p")


def test_the_axis_map_orders_no_cap_last(tmp_path):
    table = {0: [0.69, 0.70], 2: [0.76, 0.75], 4: [0.78, 0.77], -1: [0.80, 0.79]}
    runs = rows_of(tmp_path, table, axis="POSITIVES_CAP")
    verdict = only(claims.evaluate_claims(["table5_cap_increasing"], runs, ["POSITIVES_CAP"]))
    x = [math.inf if c == -1 else c for c, tops in table.items() for _ in tops]
    y = [t for tops in table.values() for t in tops]
    assert verdict.estimate.value == pytest.approx(stats.spearmanr(x, y)[0])
    assert verdict.estimate.value > 0.9 and verdict.verdict == "reproduced"
    naive = stats.spearmanr([c for c, tops in table.items() for _ in tops], y)[0]
    assert naive < 0.5  # -1 read as a number would put "no cap" first


def test_a_trend_needs_four_runs(tmp_path):
    runs = rows_of(tmp_path, {50: [0.6], 100: [0.7], 200: [0.8]}, axis="PRETRAIN_EPOCHS")
    verdict = only(claims.evaluate_claims(["fig4c_epochs_increasing"], runs, ["PRETRAIN_EPOCHS"]))
    assert verdict.verdict == "inconclusive"
    assert verdict.reason == "3 finished runs: a rank correlation interval needs at least 4"


# -------------------------------------------------------------------------------------------------------------
# lower spread


TIGHT = [0.80, 0.81, 0.79, 0.80, 0.805]
WIDE = [0.55, 0.80, 0.65, 0.75, 0.45]
SPREAD = {
    "reproduced": (TIGHT, WIDE),
    "contradicted": (WIDE, TIGHT),
    "inconclusive": (WIDE, WIDE[::-1]),
}


@pytest.mark.parametrize("expected", list(SPREAD))
def test_lower_spread_gives_each_verdict(tmp_path, expected):
    supcon, ce = SPREAD[expected]
    for method, tops in (("supcon", supcon), ("cross_entropy", ce)):
        for lr, top1 in zip((0.01, 0.1, 0.5, 1.0, 2.0), tops, strict=True):
            for seed in (0, 1):  # seeds averaged per setting
                make_run(tmp_path, {"METHOD": method, "LR": lr, "SEED": seed}, top1 + 0.002 * seed)
    runs = report_data.load_runs(str(tmp_path))
    verdict = only(claims.evaluate_claims(["fig4a_supcon_lower_spread"], runs, ["METHOD", "LR"]))
    assert verdict.verdict == expected and verdict.where == ""
    a, b = np.array(supcon) + 0.001, np.array(ce) + 0.001
    est = verdict.estimate
    assert est.p == pytest.approx(stats.levene(a, b, center="median").pvalue)
    dev_a, dev_b = np.abs(a - np.median(a)), np.abs(b - np.median(b))
    ci = stats.ttest_ind(dev_a, dev_b).confidence_interval(0.95)
    assert (est.value, est.low, est.high) == pytest.approx(
        (dev_a.mean() - dev_b.mean(), ci.low, ci.high)
    )
    assert est.spreads == pytest.approx((np.std(a, ddof=1), np.std(b, ddof=1)))
    assert est.n == "5 vs 5 settings" and est.test == "Brown-Forsythe"


def slugs(verdict):
    """{group label: the slugs of its runs} of a verdict."""
    return {label: sorted(r.slug for r in members) for label, members in verdict.groups}


def test_a_verdict_records_the_groups_of_runs_it_compares(tmp_path):
    runs = rows_of(tmp_path / "g", {"supcon": [0.8, 0.82], "cross_entropy": [0.7, 0.73], "simclr": [0.6]})
    greater = only(claims.evaluate_claims(["table2_supcon_gt_ce"], runs, ["METHOD"]))
    assert slugs(greater) == {  # simclr is not compared
        "METHOD=supcon": ["method-supcon_seed-0", "method-supcon_seed-1"],
        "METHOD=cross_entropy": ["method-cross_entropy_seed-0", "method-cross_entropy_seed-1"],
    }
    assert [label for label, _ in greater.groups] == ["METHOD=supcon", "METHOD=cross_entropy"]
    table = {0: [0.69, 0.70], 2: [0.72, 0.71], 4: [0.78, 0.77], -1: [0.80, 0.79]}
    runs = rows_of(tmp_path / "cap", table, axis="POSITIVES_CAP")
    lowest = only(claims.evaluate_claims(["table5_cap1_lowest"], runs, ["POSITIVES_CAP"]))
    assert slugs(lowest) == {  # row a and the other value with the lowest mean, the one it is compared with
        "POSITIVES_CAP=0": ["positives_cap-0_seed-0", "positives_cap-0_seed-1"],
        "POSITIVES_CAP=2": ["positives_cap-2_seed-0", "positives_cap-2_seed-1"],
    }
    rising = only(claims.evaluate_claims(["table5_cap_increasing"], runs, ["POSITIVES_CAP"]))
    assert [label for label, _ in rising.groups] == [  # in axis_map order: no cap (-1 = inf) last
        "POSITIVES_CAP=0", "POSITIVES_CAP=2", "POSITIVES_CAP=4", "POSITIVES_CAP=-1",
    ]  # fmt: skip
    assert all(len(members) == 2 for _, members in rising.groups)
    for method, tops in (("supcon", TIGHT), ("cross_entropy", WIDE)):
        for lr, top1 in zip((0.01, 0.1, 0.5, 1.0, 2.0), tops, strict=True):
            make_run(tmp_path / "lr", {"METHOD": method, "LR": lr, "SEED": 0}, top1)
    runs = report_data.load_runs(str(tmp_path / "lr"))
    spread = only(claims.evaluate_claims(["fig4a_supcon_lower_spread"], runs, ["METHOD", "LR"]))
    assert [(label, len(members)) for label, members in spread.groups] == [
        ("METHOD=supcon", 5), ("METHOD=cross_entropy", 5),
    ]  # fmt: skip
    runs = rows_of(tmp_path / "one", {"supcon": [0.8]})
    missing = only(claims.evaluate_claims(["table2_supcon_gt_ce"], runs, ["METHOD"]))
    assert missing.verdict == "inconclusive" and missing.groups == ()  # nothing to compare


def test_brown_forsythe_t_squared_is_levenes_w():
    a, b = [1.0, 2.0, 3.0, 4.0], [1.0, 5.0, 9.0, 13.0]
    est = claims_stats.spread_difference(a, b)
    assert est.p == pytest.approx(
        0.0452562653, rel=1e-6
    )  # levene(a, b, center='median'): W = 6.3529
    assert est.value == pytest.approx(1.0 - 4.0)  # mean |x - median|: 1 vs 4


# -------------------------------------------------------------------------------------------------------------
# Summary, recipes, report


def test_summary_line():
    known = list(claims.load_claims().values())
    kinds = ("reproduced", "reproduced", "contradicted")
    verdicts = [claims.Verdict(c, "", v) for c, v in zip(known, kinds, strict=False)]
    assert claims.summary(verdicts) == (
        "2 of 3 claims reproduced at this scale (1 contradicted, 0 inconclusive)."
    )
    assert claims.summary(verdicts[:1]) == (
        "1 of 1 claim reproduced at this scale (0 contradicted, 0 inconclusive)."
    )


RECIPE = """METHOD = 'supcon'
SEED = 0
grid.axes = {'METHOD': ['supcon', 'cross_entropy'], 'SEED': [0, 1]}
report.claims = %s
"""


@pytest.mark.parametrize(
    "claims_text, message",
    [
        ("['table2_supcon_gt_cee']", "r.gin:4: report.claims: unknown claim 'table2_supcon_gt_cee'"),
        ("['table1_out_gt_in']", "r.gin:4: report.claims: table1_out_gt_in does not fit this grid: no grid "
                                 "point has SUMMATION=outside"),
        ("['fig4c_epochs_increasing']", "does not fit this grid: fewer than 2 values of PRETRAIN_EPOCHS"),
        ("['fig4a_supcon_lower_spread']", "METHOD=supcon has 1 hyperparameter setting(s) in the grid"),
        ("'table2_supcon_gt_ce'", "r.gin:4: report.claims must be a list of claim ids"),
    ],
)  # fmt: skip
def test_report_claims_errors_at_recipe_load(tmp_path, claims_text, message):
    path = tmp_path / "r.gin"
    path.write_text(RECIPE % claims_text)
    with pytest.raises(grid.GridError, match=re.escape(message)) as error:
        grid.load_recipe(str(path))
    assert "\n" not in str(error.value)


def test_a_fitting_claim_loads():
    recipe = grid.load_recipe(os.path.join(ROOT, "recipes", "fmnist_table2.gin"))
    assert recipe.report["claims"] == [
        "table2_supcon_gt_ce",
        "table2_supcon_gt_simclr",
        "table2_ce_gt_simclr",
    ]
    table1 = grid.load_recipe(os.path.join(ROOT, "recipes", "fmnist_table1.gin"))
    assert table1.report["claims"] == ["table1_out_gt_in"]  # overrides the included table 2 claims
    cap = grid.load_recipe(os.path.join(ROOT, "recipes", "ablation_positives_cap.gin"))
    assert cap.report["claims"] == ["table5_cap_increasing", "table5_cap1_lowest"]


def test_the_runner_refuses_an_unknown_claim_in_one_line(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "r.gin"
    path.write_text(RECIPE % "['nope']")
    done = subprocess.run(
        [sys.executable, "runner.py", str(path), "--dry_run", "--runs_dir", str(tmp_path / "runs")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "unknown claim 'nope'" in done.stderr


def test_the_claims_section_comes_first_in_the_report(tmp_path):
    ids = ["table2_supcon_gt_ce", "table2_supcon_gt_simclr", "table2_ce_gt_simclr"]
    table = {
        "supcon": [0.84, 0.85, 0.86],
        "cross_entropy": [0.80, 0.81, 0.83],
        "simclr": [0.86, 0.88, 0.87],
    }
    root = tmp_path / "runs"
    for method, tops in table.items():
        for seed, top1 in enumerate(tops):
            make_run(root, {"METHOD": method, "SEED": seed}, top1, claim_ids=ids)
    text = open(report.write_report(str(root), str(tmp_path / "out"), plots=False)).read()
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert sections[:3] == ["Claims", "Results", "Raw-pixel baselines"]
    assert text.index("- **Points:**") < text.index("## Claims")
    assert "**1 of 3 claims reproduced at this scale (1 contradicted, 1 inconclusive).**" in text
    line = next(row for row in text.splitlines() if "`table2_supcon_gt_ce`" in row)
    ref = stats.ttest_rel(table["supcon"], table["cross_entropy"])
    ci = ref.confidence_interval(0.95)
    assert (
        f"| 96.0 vs 95.0 — CIFAR-10, ResNet-50 (CIFAR-100: 76.5 vs 75.3; ImageNet: 78.7 vs 78.2) | "
        f"METHOD=supcon − METHOD=cross_entropy: +3.67 pp [{100 * ci.low:+.2f}, {100 * ci.high:+.2f}] | "
        f"paired t (by SEED) | 3 pairs | {ref.pvalue:.3f} | **reproduced** |"
    ) in line
    rows = {i: next(r for r in text.splitlines() if f"`{i}`" in r) for i in ids}
    assert rows["table2_supcon_gt_simclr"].endswith("| inconclusive: the 95% interval includes 0 |")
    assert rows["table2_ce_gt_simclr"].endswith("| **contradicted** |")
    # No pixel baselines (no run wrote env.json): no verdict is held to the CPU-scale bar.
    section = text.split("## Claims")[1].split("\n## ")[0]
    assert "below the bar" not in section and "CPU-scale bar" not in section
    assert section.strip().endswith(report_claims.CLAIMS_LEGEND)


def test_a_report_without_claims_says_it_tests_none(tmp_path):
    make_run(tmp_path / "runs", {"SEED": 0}, 0.5)
    text = open(
        report.write_report(str(tmp_path / "runs"), str(tmp_path / "out"), plots=False)
    ).read()
    assert "## Raw-pixel baselines" in text
    section = text.split("## Claims")[1].split("\n## ")[0]
    assert "**No claim of the paper is tested by this grid** (`report.claims` names none)." in section
    assert "| claim |" not in section and "verdict" not in section


def test_an_unknown_claim_in_point_json_fails_the_report_and_writes_nothing(tmp_path):
    make_run(tmp_path / "runs", {"SEED": 0}, 0.5, claim_ids=["gone"])
    with pytest.raises(ValueError, match=r"report.claims: unknown claim\(s\) gone"):
        report.write_report(str(tmp_path / "runs"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    point = json.loads((tmp_path / "runs" / "seed-0" / "point.json").read_text())
    point["report"]["claims"] = "table2_supcon_gt_ce"
    (tmp_path / "runs" / "seed-0" / "point.json").write_text(json.dumps(point))
    with pytest.raises(ValueError, match="report.claims must be a list of claim ids"):
        report.write_report(str(tmp_path / "runs"), str(tmp_path / "out"))
