"""Claims with a margin (supcon.report.claims): `equivalent` (TOST) and `not_greater` (non-superiority), each verdict
paired by SEED and unpaired (Welch) on synthetic run directories, checked against statsmodels, scipy and hand values;
the margin column's errors; the claims added with them (issue 25); and how a report and its claims.json show them."""

import json
import math
import re

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats import weightstats
from test_claims import make_run, only

from supcon.experiment import grid
from supcon.report import build as report
from supcon.report import claims, claims_stats, scoreboard
from supcon.report import claims_section as report_claims
from supcon.report import data as report_data

MARGIN = 0.005  # 0.5 pp of top-1, as the claims file's 0.5
EQUIVALENT, NOT_GREATER = "linear_10_epochs_equivalent", "ce_longer_not_greater"
ROWS = {  # the claims' rows, as run values
    EQUIVALENT: ({"LINEAR_EPOCHS": 10}, {"LINEAR_EPOCHS": 50}),
    NOT_GREATER: ({"METHOD": "cross_entropy", "CE_EPOCHS": 200}, {"METHOD": "cross_entropy", "CE_EPOCHS": 50}),
}


def two_rows(root, claim_id, a, b, paired=True, claim_ids=()):
    """Row a's and row b's runs of a claim: on seeds 0, 1, ... (paired by SEED), or without a SEED axis, replicates
    told apart by another macro (Welch)."""
    for row, values in zip(ROWS[claim_id], (a, b), strict=True):
        for i, top1 in enumerate(values):
            replicate = {"SEED": i} if paired else {"LR": 0.1 * (i + 1)}
            make_run(root, {**row, **replicate}, top1, claim_ids=claim_ids, within=list(ROWS[claim_id][0]))
    return report_data.load_runs(str(root))


def reference(a, b, paired):
    """scipy's t test of a - b (the intervals come from it)."""
    return stats.ttest_rel(a, b) if paired else stats.ttest_ind(a, b, equal_var=False)


def check_intervals(est, a, b, paired):
    ref = reference(a, b, paired)
    ci95, ci90 = ref.confidence_interval(0.95), ref.confidence_interval(0.90)
    assert est.value == pytest.approx(np.mean(a) - np.mean(b))
    assert (est.low, est.high) == pytest.approx((ci95.low, ci95.high))
    assert est.ci90 == pytest.approx((ci90.low, ci90.high))
    assert est.margin == pytest.approx(MARGIN)


# -------------------------------------------------------------------------------------------------------------
# equivalent: TOST


EQUIVALENT_PAIRED = {  # differences by seed: -0.001 +0.001 -0.001; +0.020 +0.021 +0.019; 0 +0.010 -0.008
    "reproduced": ([0.800, 0.810, 0.820], [0.801, 0.809, 0.821]),
    "contradicted": ([0.820, 0.831, 0.839], [0.800, 0.810, 0.820]),
    "inconclusive": ([0.800, 0.820, 0.812], [0.800, 0.810, 0.820]),
}
UNPAIRED = {
    "reproduced": ([0.800, 0.802, 0.798, 0.801], [0.799, 0.801, 0.800, 0.802]),
    "contradicted": ([0.830, 0.832, 0.828], [0.800, 0.801, 0.799]),
    "inconclusive": ([0.800, 0.820, 0.790], [0.810, 0.790, 0.800]),
}
EQUIVALENT_REASON = "the 90% interval is not inside ±margin (TOST p ≥ 0.05) and the 95% interval overlaps it"


@pytest.mark.parametrize("expected", list(EQUIVALENT_PAIRED))
def test_equivalent_paired_by_seed_gives_each_verdict(tmp_path, expected):
    a, b = EQUIVALENT_PAIRED[expected]
    verdict = only(claims.evaluate_claims([EQUIVALENT], two_rows(tmp_path, EQUIVALENT, a, b), ["LINEAR_EPOCHS"]))
    assert verdict.verdict == expected
    assert verdict.reason == (EQUIVALENT_REASON if expected == "inconclusive" else "")
    est = verdict.estimate
    assert est.test == "TOST paired t (by SEED), ±0.5 pp" and est.n == "3 pairs" and est.note == ""
    assert verdict.compared == "LINEAR_EPOCHS=10 − LINEAR_EPOCHS=50"
    check_intervals(est, a, b, paired=True)
    assert est.p == pytest.approx(weightstats.ttost_paired(np.array(a), np.array(b), -MARGIN, MARGIN)[0])
    assert (est.p < 0.05) == (-MARGIN < est.ci90[0] and est.ci90[1] < MARGIN)


@pytest.mark.parametrize("expected", list(UNPAIRED))
def test_equivalent_unpaired_uses_welch_tost(tmp_path, expected):
    a, b = UNPAIRED[expected]
    runs = two_rows(tmp_path, EQUIVALENT, a, b, paired=False)
    verdict = only(claims.evaluate_claims([EQUIVALENT], runs, ["LINEAR_EPOCHS"]))
    assert verdict.verdict == expected
    est = verdict.estimate
    assert est.test == "TOST Welch t, ±0.5 pp" and est.note == "no SEED axis"
    assert est.n == f"{len(a)} vs {len(b)}"
    check_intervals(est, a, b, paired=False)
    assert est.p == pytest.approx(weightstats.ttost_ind(a, b, -MARGIN, MARGIN, usevar="unequal")[0])
    assert (est.p < 0.05) == (-MARGIN < est.ci90[0] and est.ci90[1] < MARGIN)


def test_tost_and_non_superiority_match_hand_values():
    # differences -0.001, +0.001, -0.001: mean -1/3000, sd sqrt(4/3)/1000, se 2/3000, df 2. Against ±0.005 the
    # lower test's t is (mean + 0.005) / se = 7 and the upper test's (mean - 0.005) / se = -8; with df = 2 the t
    # tail is P(T > t) = (1 - t / sqrt(t^2 + 2)) / 2.
    a, b = [0.800, 0.810, 0.820], [0.801, 0.809, 0.821]
    tost = claims_stats.equivalence(a, b, MARGIN, paired=True)
    assert tost.value == pytest.approx(-1 / 3000)
    assert tost.p == pytest.approx((1 - 7 / math.sqrt(51)) / 2, rel=1e-6)  # the larger one-sided p
    half90 = stats.t.ppf(0.95, 2) * 2 / 3000
    assert tost.ci90 == pytest.approx((-1 / 3000 - half90, -1 / 3000 + half90))
    inferior = claims_stats.non_superiority(a, b, MARGIN, paired=True)
    assert inferior.p == pytest.approx((1 - 8 / math.sqrt(66)) / 2, rel=1e-6)  # P(T < -8)
    assert inferior.ci90 == tost.ci90 and (inferior.low, inferior.high) == (tost.low, tost.high)


def test_a_margin_test_needs_two_runs_and_a_spread(tmp_path):
    verdict = only(claims.evaluate_claims([EQUIVALENT], two_rows(tmp_path / "one", EQUIVALENT, [0.8], [0.8]),
                                          ["LINEAR_EPOCHS"]))  # fmt: skip
    assert (verdict.verdict, verdict.estimate) == ("inconclusive", None)
    assert verdict.reason == "1 pair(s) of seeds: a paired test needs at least 2"
    flat = two_rows(tmp_path / "flat", NOT_GREATER, [0.75, 0.5], [0.75, 0.5])  # no difference at all
    verdict = only(claims.evaluate_claims([NOT_GREATER], flat, ["METHOD", "CE_EPOCHS"]))
    assert verdict.verdict == "inconclusive"
    assert verdict.reason == "the differences do not vary across seeds: the t interval is undefined"
    with pytest.raises(ValueError, match="margin must be a positive number"):
        claims_stats.equivalence([0.1, 0.2], [0.1, 0.3], 0.0, paired=True)


# -------------------------------------------------------------------------------------------------------------
# not_greater: non-superiority


NOT_GREATER_PAIRED = {
    "reproduced": EQUIVALENT_PAIRED["reproduced"],
    "contradicted": EQUIVALENT_PAIRED["contradicted"],
    "inconclusive": EQUIVALENT_PAIRED["inconclusive"],
}
NOT_GREATER_REASON = "the one-sided 95% upper bound is not below +margin and the 95% interval includes 0"


def non_superiority_p(a, b, paired):
    """The one-sided p of H0: a - b >= margin by scipy, shifting a by the margin (a second method)."""
    shifted = np.array(a) - MARGIN
    if paired:
        return stats.ttest_rel(shifted, b, alternative="less").pvalue
    return stats.ttest_ind(shifted, b, equal_var=False, alternative="less").pvalue


@pytest.mark.parametrize("expected", list(NOT_GREATER_PAIRED))
def test_not_greater_paired_by_seed_gives_each_verdict(tmp_path, expected):
    a, b = NOT_GREATER_PAIRED[expected]
    runs = two_rows(tmp_path, NOT_GREATER, a, b)
    verdict = only(claims.evaluate_claims([NOT_GREATER], runs, ["METHOD", "CE_EPOCHS"]))
    assert verdict.verdict == expected
    assert verdict.reason == (NOT_GREATER_REASON if expected == "inconclusive" else "")
    est = verdict.estimate
    assert est.test == "non-superiority paired t (by SEED), margin +0.5 pp" and est.n == "3 pairs"
    assert verdict.compared == "METHOD=cross_entropy & CE_EPOCHS=200 − METHOD=cross_entropy & CE_EPOCHS=50"
    check_intervals(est, a, b, paired=True)
    assert est.p == pytest.approx(non_superiority_p(a, b, paired=True))
    upper = stats.ttest_rel(a, b, alternative="less").confidence_interval(0.95).high  # one-sided 95% bound
    assert est.ci90[1] == pytest.approx(upper)
    assert (est.p < 0.05) == (upper < MARGIN)


@pytest.mark.parametrize("expected", list(UNPAIRED))
def test_not_greater_unpaired_uses_welch(tmp_path, expected):
    a, b = UNPAIRED[expected]
    runs = two_rows(tmp_path, NOT_GREATER, a, b, paired=False)
    verdict = only(claims.evaluate_claims([NOT_GREATER], runs, ["METHOD", "CE_EPOCHS"]))
    assert verdict.verdict == expected
    est = verdict.estimate
    assert est.test == "non-superiority Welch t, margin +0.5 pp"
    assert est.note == "no SEED axis" and est.n == f"{len(a)} vs {len(b)}"
    check_intervals(est, a, b, paired=False)
    assert est.p == pytest.approx(non_superiority_p(a, b, paired=False))
    assert est.p == pytest.approx(
        weightstats.ttest_ind(a, b, alternative="smaller", usevar="unequal", value=MARGIN)[1]
    )


def test_not_greater_holds_for_a_gain_below_the_margin_and_for_a_loss(tmp_path):
    # a above b by 0.25 pp, significantly (the 95% interval above 0) but surely by less than 0.5 pp: reproduced,
    # not contradicted; a far below b: reproduced too (no gain at all).
    small_gain = two_rows(tmp_path / "gain", NOT_GREATER, [0.8020, 0.8125, 0.8230], [0.800, 0.810, 0.820])
    verdict = only(claims.evaluate_claims([NOT_GREATER], small_gain, ["METHOD", "CE_EPOCHS"]))
    assert verdict.estimate.low > 0 and verdict.estimate.ci90[1] < MARGIN
    assert verdict.verdict == "reproduced"
    loss = two_rows(tmp_path / "loss", NOT_GREATER, [0.78, 0.79, 0.80], [0.80, 0.811, 0.819])
    assert only(claims.evaluate_claims([NOT_GREATER], loss, ["METHOD"])).verdict == "reproduced"


def test_margin_verdict_rules_at_their_edges():
    def estimate(low, high, low90, high90, p=0.5):
        return claims_stats.Estimate(0.0, low, high, p, "t", "3 pairs", margin=0.5, ci90=(low90, high90))

    eq, ns = claims_stats.equivalence_verdict, claims_stats.non_superiority_verdict
    assert eq(estimate(-0.6, 0.6, -0.4, 0.4, p=0.04))[0] == "reproduced"
    assert eq(estimate(0.51, 0.9, 0.55, 0.85))[0] == "contradicted"
    assert eq(estimate(-0.9, -0.51, -0.85, -0.55))[0] == "contradicted"  # below -margin is not equivalent either
    assert eq(estimate(0.5, 0.9, 0.55, 0.85))[0] == "inconclusive"  # touching the margin
    assert ns(estimate(0.1, 0.6, 0.2, 0.49))[0] == "reproduced"
    assert ns(estimate(0.01, 0.6, 0.1, 0.5))[0] == "contradicted"
    assert ns(estimate(-0.3, 0.9, -0.2, 0.8))[0] == "inconclusive"
    assert ns(estimate(-3.0, -1.0, -2.8, -1.2))[0] == "reproduced"


# -------------------------------------------------------------------------------------------------------------
# the claims file: margin column and the new claims


def write_claims(tmp_path, row):
    path = tmp_path / "claims.csv"
    path.write_text(",".join(claims.FIELDS) + "\n" + row + "\n")
    return str(path)


@pytest.mark.parametrize(
    "row, message",
    [
        ("x,text,equivalent,eval/top1,METHOD=a,METHOD=b,,,,,,,,s,",
         "claims.csv:2: claim x (equivalent) needs a value for margin (in the metric's unit, e.g. 0.5 for 0.5 pp of "
         "top-1)"),
        ("y,text,not_greater,eval/top1,METHOD=a,METHOD=b,,,,,,,,s,", "claim y (not_greater) needs a value for margin"),
        ("x,Table 2,greater,eval/top1,METHOD=a,METHOD=b,,,0.5,,,,,s,",
         "claim x (greater) takes no margin (only equivalent and not_greater do)"),
        ("x,text,equivalent,eval/top1,METHOD=a,METHOD=b,,,-0.5,,,,,s,", "claim x: margin '-0.5' must be a positive"),
        ("x,text,equivalent,eval/top1,METHOD=a,METHOD=b,,,half,,,,,s,", "'half' is not a number"),
    ],
)  # fmt: skip
def test_the_margin_column_errors_name_the_claim(tmp_path, row, message):
    with pytest.raises(claims.ClaimError, match=re.escape(message)) as error:
        claims.load_claims(write_claims(tmp_path, row))
    assert "\n" not in str(error.value)


def test_a_margin_is_in_the_metrics_unit(tmp_path):
    path = write_claims(tmp_path, "x,text,equivalent,eval/ece,METHOD=a,METHOD=b,,,0.01,,,,,s,")
    ece = claims.load_claims(path)["x"]
    assert (ece.margin, ece.metric_margin, ece.unit_suffix) == (0.01, 0.01, "")
    top1 = claims.load_claims()[EQUIVALENT]
    assert (top1.margin, top1.metric_margin, top1.unit_suffix) == (0.5, 0.005, " pp")


NEW_CLAIMS = {  # id: (source, kind, a, b, axis, margin, paper_a, paper_b)
    "joint_two_stage_equivalent": ("text", "equivalent", "METHOD=supcon_joint", "METHOD=supcon", "", 0.5, None,
                                   None),
    "ce_double_batch_lt_supcon": ("text", "less", "METHOD=cross_entropy & BATCH_SIZE=512", "METHOD=supcon", "",
                                  None, 77.5, 78.7),
    "ce_longer_not_greater": ("text", "not_greater", "METHOD=cross_entropy & CE_EPOCHS=200",
                              "METHOD=cross_entropy & CE_EPOCHS=50", "", 0.5, 77.0, 78.2),
    "memory_queue_gt_no_queue": ("text", "greater", "BATCH_SIZE=64 & MEMORY_SIZE=4096",
                                 "BATCH_SIZE=64 & MEMORY_SIZE=0", "", None, 79.1, None),
    "memory_small_batch_not_below_large": ("text", "not_greater", "BATCH_SIZE=256 & MEMORY_SIZE=0",
                                           "BATCH_SIZE=64 & MEMORY_SIZE=4096", "", 0.5, 78.7, 79.1),
    "table8_lars_best": ("Table 8", "highest", "PRETRAIN_OPTIMIZER=lars", "", "PRETRAIN_OPTIMIZER", None, 78.7,
                         77.8),
    "table9_same_augmentation_best": ("Table 9", "greater", "PRETRAIN_AUGMENT=@simclr_augment & LINEAR_AUGMENT=@simclr_augment",
                                      "PRETRAIN_AUGMENT=@simclr_augment & LINEAR_AUGMENT=@randaugment", "", None, 77.9, 75.9),
    "table9_same_augmentation_best_randaugment": ("Table 9", "greater",
                                                  "PRETRAIN_AUGMENT=@randaugment & LINEAR_AUGMENT=@randaugment",
                                                  "PRETRAIN_AUGMENT=@randaugment & LINEAR_AUGMENT=@simclr_augment", "",
                                                  None, 78.4, 76.3),
    "fig7_supcon_gt_ce_every_magnitude": ("Fig. 7", "greater", "METHOD=supcon", "METHOD=cross_entropy", "", None,
                                          None, None),
    "linear_10_epochs_equivalent": ("text", "equivalent", "LINEAR_EPOCHS=10", "LINEAR_EPOCHS=50", "", 0.5, None,
                                    None),
}  # fmt: skip


def test_the_new_claims_parse_as_written():
    known = claims.load_claims()
    for claim_id, (source, kind, a, b, axis, margin, paper_a, paper_b) in NEW_CLAIMS.items():
        claim = known[claim_id]
        assert (claim.source, claim.kind, claim.metric) == (source, kind, "eval/top1"), claim_id
        assert (claims.format_selector(claim.a), claims.format_selector(claim.b), claim.axis) == (a, b, axis)
        assert (claim.margin, claim.paper_a, claim.paper_b) == (margin, paper_a, paper_b), claim_id
        assert claim.not_tested_because and claim.statement and claim.paper_setting, claim_id  # each says why
    assert known["table8_lars_best"].paper_values == "LARS: 78.7; RMSProp: 77.8; Momentum: 76.1"
    assert "RMSProp" in known["table8_lars_best"].paper_setting  # the column the numbers come from
    assert "RANDAUGMENT_MAGNITUDE" in known["fig7_supcon_gt_ce_every_magnitude"].statement
    assert "CPU cannot" in known["table3_supcon_gt_ce"].not_tested_because
    assert known["table2_supcon_gt_ce"].not_tested_because == "" and known["table2_supcon_gt_ce"].margin is None


@pytest.mark.parametrize("claim_id", list(NEW_CLAIMS))
def test_a_grid_of_the_new_claims_rows_fits_them(claim_id):
    claim = claims.load_claims()[claim_id]
    points = [dict(claim.a, SEED="0"), dict(claim.b, SEED="0")] if claim.b else []
    if claim.axis:
        points = [{claim.axis: v, "SEED": "0"} for v in ("lars", "rmsprop", "momentum")]
    assert claims.grid_misfit(claim, points) is None
    assert claims.grid_misfit(claim, points[:1]) is not None  # a missing row is named


def test_fig7_is_tested_at_each_randaugment_magnitude(tmp_path):
    gaps = {5: 0.02, 9: 0.03, 15: -0.02}  # SupCon - cross-entropy
    for magnitude, gap in gaps.items():
        for seed in range(3):
            make_run(tmp_path, {"METHOD": "supcon", "RANDAUGMENT_MAGNITUDE": magnitude, "SEED": seed},
                     0.8 + gap + 0.002 * seed * seed)  # fmt: skip
            make_run(tmp_path, {"METHOD": "cross_entropy", "RANDAUGMENT_MAGNITUDE": magnitude, "SEED": seed},
                     0.8 + 0.001 * seed)  # fmt: skip
    runs = report_data.load_runs(str(tmp_path))
    within = ["METHOD", "RANDAUGMENT_MAGNITUDE"]  # the report's rows or columns include the magnitude
    verdicts = claims.evaluate_claims(["fig7_supcon_gt_ce_every_magnitude"], runs, within)
    assert [(v.where, v.verdict) for v in verdicts] == [
        ("RANDAUGMENT_MAGNITUDE=5", "reproduced"), ("RANDAUGMENT_MAGNITUDE=9", "reproduced"),
        ("RANDAUGMENT_MAGNITUDE=15", "contradicted"),
    ]  # fmt: skip
    pooled = only(claims.evaluate_claims(["fig7_supcon_gt_ce_every_magnitude"], runs, ["METHOD"]))
    assert pooled.where == "" and pooled.estimate.note == "several runs per SEED"  # not split: pooled (Welch)


def test_table8_highest_on_named_optimizers(tmp_path):
    table = {"lars": [0.80, 0.81, 0.805], "rmsprop": [0.79, 0.801, 0.794], "momentum": [0.76, 0.77, 0.765]}
    for optimizer, tops in table.items():
        for seed, top1 in enumerate(tops):
            make_run(tmp_path, {"PRETRAIN_OPTIMIZER": optimizer, "SEED": seed}, top1)
    runs = report_data.load_runs(str(tmp_path))
    verdict = only(claims.evaluate_claims(["table8_lars_best"], runs, ["PRETRAIN_OPTIMIZER"]))
    assert verdict.compared == "PRETRAIN_OPTIMIZER=lars − PRETRAIN_OPTIMIZER=rmsprop (next highest)"
    assert verdict.verdict == "reproduced" and verdict.estimate.value == pytest.approx(0.01)


# -------------------------------------------------------------------------------------------------------------
# the report and its claims.json


def test_a_report_shows_a_margin_test_and_records_it_in_claims_json(tmp_path):
    a, b = EQUIVALENT_PAIRED["reproduced"]
    two_rows(tmp_path / "runs", EQUIVALENT, a, b, claim_ids=[EQUIVALENT])
    out = tmp_path / "reports" / "demo"
    text = open(report.write_report(str(tmp_path / "runs"), str(out), plots=False)).read()
    entry = only(json.loads((out / "claims.json").read_text())["verdicts"])
    est = claims_stats.equivalence(a, b, MARGIN, paired=True)
    assert (entry["margin"], entry["unit"], entry["verdict"]) == (0.5, "pp", "reproduced")
    assert (entry["low90"], entry["high90"]) == pytest.approx((100 * est.ci90[0], 100 * est.ci90[1]), abs=1e-6)
    assert entry["test"] == "TOST paired t (by SEED), ±0.5 pp"
    section = text.split("## Claims", 1)[1].split("## Results", 1)[0]
    row = next(line for line in section.splitlines() if f"(`{EQUIVALENT}`)" in line)
    assert f"| {scoreboard.format_statistic(entry)} | TOST paired t (by SEED), ±0.5 pp | 3 pairs |" in row
    assert re.search(r": -0\.03 pp \[-0\.\d\d, \+0\.\d\d\]; 90% \[-0\.23, \+0\.16\] \|", row)
    assert row.endswith("| **reproduced** |") and report_claims.MARGIN_LEGEND in section
    # the scoreboard draws the margin (ticks at ±0.5) and says where the paper is
    _, tests = scoreboard.build(str(tmp_path / "reports"))
    fig = scoreboard.figure(tests, claims.load_claims())
    ticks = [line.get_xdata() for line in fig.axes[0].lines if line.get_gid() == "margin"]
    assert [list(t) for t in ticks] == [[-0.5, 0.5]]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == [f"{EQUIVALENT} (demo; paper within ±0.5)"]


def test_an_inconclusive_margin_test_without_statistic_still_records_its_margin(tmp_path):
    two_rows(tmp_path / "runs", NOT_GREATER, [0.8], [0.8], claim_ids=[NOT_GREATER])
    out = tmp_path / "reports" / "demo"
    report.write_report(str(tmp_path / "runs"), str(out), plots=False)
    entry = only(json.loads((out / "claims.json").read_text())["verdicts"])
    assert (entry["margin"], entry["low90"], entry["high90"], entry["statistic"]) == (0.5, None, None, None)
    assert entry["verdict"] == "inconclusive"


def test_a_recipe_naming_a_margin_claim_loads(tmp_path):
    path = tmp_path / "r.gin"
    path.write_text(
        "LINEAR_EPOCHS = 10\nSEED = 0\ngrid.axes = {'LINEAR_EPOCHS': [10, 50], 'SEED': [0, 1, 2]}\n"
        f"report.claims = ['{EQUIVALENT}']\n"
    )
    assert grid.load_recipe(str(path)).report["claims"] == [EQUIVALENT]


def test_a_shared_row_is_compared_in_every_setting_of_the_macros_it_does_not_name(tmp_path):
    """fmnist_ce_budget's SupCon point names neither BATCH_SIZE nor CE_EPOCHS (it reads neither, and so trains as
    fmnist_table2_fair's): each claim finds it beside the cross-entropy rows it is compared with."""
    tops = {("supcon", None, None): [0.905, 0.906, 0.904], ("cross_entropy", 256, 50): [0.903, 0.904, 0.902],
            ("cross_entropy", 512, 50): [0.899, 0.900, 0.898], ("cross_entropy", 256, 200): [0.902, 0.903, 0.901]}
    for (method, batch, epochs), values in tops.items():
        for seed, top1 in enumerate(values):
            point = {"METHOD": method, "SEED": seed}
            if batch:
                point.update(BATCH_SIZE=batch, CE_EPOCHS=epochs)
            make_run(tmp_path, point, top1)
    runs = report_data.load_runs(str(tmp_path))
    within = ["METHOD", "BATCH_SIZE", "CE_EPOCHS"]
    doubled = only(claims.evaluate_claims(["ce_double_batch_lt_supcon"], runs, within))
    assert doubled.where == "CE_EPOCHS=50" and doubled.verdict == "reproduced"
    assert doubled.estimate.value == pytest.approx(-0.006)  # cross-entropy at 512 minus SupCon, paired by seed
    longer = only(claims.evaluate_claims(["ce_longer_not_greater"], runs, within))
    assert longer.where == "BATCH_SIZE=256" and longer.estimate.value == pytest.approx(-0.001)
    # Without the shared row, no setting holds both compared rows of the first claim.
    alone = [r for r in runs if r.values["METHOD"] != "supcon"]
    assert only(claims.evaluate_claims(["ce_double_batch_lt_supcon"], alone, within)).verdict == "inconclusive"
