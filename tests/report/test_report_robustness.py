"""The reporter's robustness side on synthetic run directories: mCE and relative mCE per run against a grid-row
baseline (a hand-computed table) and AlexNet's, the Robustness section's presence, numbers and paper columns, the
plots, the report.robustness errors, and the robustness claims' verdicts (reproduced / contradicted /
inconclusive)."""

import os
import re

import numpy as np
import pytest

from supcon import workdir
from supcon.experiment import grid
from supcon.report import build as report
from supcon.report import claims
from supcon.report import data as report_data
from supcon.report import metrics as report_metrics
from supcon.report import robust_data as report_robust_data
from supcon.report import robust_plots as report_robust_plots
from supcon.report import spec as report_spec
from supcon.report.metrics import corruption_key, severity_key
from supcon.robust import metrics as robustness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROBUST_CE = {"baseline": {"METHOD": "cross_entropy"}}


def result_of(top1, errors, ece=None, severity_ece=None):
    """result.json of a run scored on corrupted sets: errors = {corruption: [error at severity 1..5]}."""
    result = {"eval/top1": top1, "eval/top5": 0.99, "step": 10, "train_seconds": 1.0}
    if ece is not None:
        result["eval/ece"] = ece
    for name, by in errors.items():
        for severity, error in enumerate(by, 1):
            result[corruption_key(name, severity, "top1")] = 1.0 - error
            result[corruption_key(name, severity, "ece")] = 0.01 * severity
    for s in range(1, 6):
        at = [1 - by[s - 1] for by in errors.values() if len(by) >= s]
        if at:
            result[severity_key(s, "top1")] = float(np.mean(at))
        if at or not errors:
            result[severity_key(s, "ece")] = (severity_ece or [0.02 * k for k in range(1, 6)])[
                s - 1
            ]
    if errors:
        result[report_metrics.MEAN_TOP1] = float(
            np.mean([1 - e for by in errors.values() for e in by])
        )
    return result


def make_run(
    root, values, result=None, spec=None, state="done", calibration=None, dataset="imagenet2012"
):
    """One synthetic run directory (point.json, env.json, status.json; result.json and calibration.json when
    given)."""
    slug = "_".join(f"{k.lower()}-{v}" for k, v in values.items())
    path = os.path.join(str(root), slug)
    spec = spec if spec is not None else {"rows": ["METHOD"], "robustness": ROBUST_CE}
    workdir.write_json_atomic(
        os.path.join(path, workdir.POINT),
        {
            "recipe": "recipes/robust_demo.gin",
            "recipe_stem": "robust_demo",
            "id": slug[:8],
            "slug": slug,
            "bindings": {},
            "values": values,
            "gin_files": [],
            "gin_params": [],
            "smoke": False,
            "report": spec,
            "header": [],
        },
    )
    workdir.write_json_atomic(os.path.join(path, workdir.ENV), {"scale": {"dataset": dataset}})
    if calibration is not None:
        workdir.write_json_atomic(os.path.join(path, report_metrics.CALIBRATION), calibration)
    if state == "done":
        workdir.write_json_atomic(os.path.join(path, workdir.RESULT), result)
        workdir.write_status(path, "done", step=10)
    else:
        workdir.write_status(path, "failed", step=3, reason="loss is NaN")
    return path


# A hand-computed table (errors at severities 1..5; two corruptions; the baseline is the cross-entropy row):
#   CE seed 0:     gaussian_noise .2 .3 .4 .5 .6 (sum 2.0), fog .1 .1 .2 .2 .4 (sum 1.0), clean error .1
#   CE seed 1:     gaussian_noise .3 .4 .5 .6 .7 (sum 2.5), fog .1 .2 .2 .3 .2 (sum 1.0), clean error .2
#   baseline = their mean: gaussian_noise sum 2.25, fog sum 1.0, clean error .15
#   SupCon seed 0: gaussian_noise sum 1.8, fog sum 0.5, clean error .08
#     mCE = (1.8 / 2.25 + 0.5 / 1.0) / 2 x 100 = (80 + 50) / 2 = 65
#     relative = ((1.8 - 5 x .08) / (2.25 - 5 x .15) + (0.5 - .4) / (1.0 - .75)) / 2 x 100 = (93.33 + 40) / 2 = 66.67
#   SupCon seed 1: gaussian_noise sum 2.0, fog sum 0.75, clean error .1
#     mCE = (88.89 + 75) / 2 = 81.94; relative = ((2.0 - .5) / 1.5 + (.75 - .5) / .25) / 2 x 100 = 100
#   CE seeds: mCE (88.89 + 100) / 2 = 94.44 and (111.11 + 100) / 2 = 105.56, mean 100
HAND = {
    ("cross_entropy", 0): (
        0.9,
        {"gaussian_noise": [0.2, 0.3, 0.4, 0.5, 0.6], "fog": [0.1, 0.1, 0.2, 0.2, 0.4]},
    ),
    ("cross_entropy", 1): (
        0.8,
        {"gaussian_noise": [0.3, 0.4, 0.5, 0.6, 0.7], "fog": [0.1, 0.2, 0.2, 0.3, 0.2]},
    ),
    ("supcon", 0): (
        0.92,
        {"gaussian_noise": [0.2, 0.3, 0.3, 0.4, 0.6], "fog": [0.1, 0.1, 0.1, 0.1, 0.1]},
    ),
    ("supcon", 1): (
        0.9,
        {"gaussian_noise": [0.3, 0.3, 0.4, 0.5, 0.5], "fog": [0.1, 0.1, 0.2, 0.2, 0.15]},
    ),
}
EXPECTED_MCE = {
    ("cross_entropy", 0): (200 / 2.25 + 100) / 2,
    ("cross_entropy", 1): (250 / 2.25 + 100) / 2,
    ("supcon", 0): 65.0,
    ("supcon", 1): (200 / 2.25 + 75) / 2,
}
EXPECTED_RELATIVE = {("supcon", 0): (140 / 1.5 + 40) / 2, ("supcon", 1): 100.0}


def hand_runs(root, spec=None, **kw):
    for (method, seed), (top1, errors) in HAND.items():
        make_run(
            root, {"METHOD": method, "SEED": seed}, result_of(top1, errors, ece=0.03), spec, **kw
        )
    return report_data.load_runs(str(root))


def build(root, out, plots=True):
    os.makedirs(out, exist_ok=True)
    return report.build_report(str(root), str(out), plots=plots)


def test_mce_per_run_against_a_grid_row_matches_the_hand_computed_table(tmp_path):
    runs = hand_runs(tmp_path / "runs")
    robust = report_robust_data.derive(
        runs, report_spec.parse({"robustness": ROBUST_CE})["robustness"], ["METHOD"]
    )
    assert not robust.notes
    ((where, base),) = robust.baselines
    assert where == "" and base.runs == 2 and base.clean_error == pytest.approx(0.15)
    assert sum(base.errors["gaussian_noise"].values()) == pytest.approx(2.25)
    by_values = {(r.values["METHOD"], r.values["SEED"]): r for r in robust.runs}
    for key, expected in EXPECTED_MCE.items():
        assert by_values[key].metric("robust/mce") == pytest.approx(expected), key
    for key, expected in EXPECTED_RELATIVE.items():
        assert by_values[key].metric("robust/relative_mce") == pytest.approx(expected), key
    assert robust.scores[by_values[("supcon", 0)].slug].per_corruption == pytest.approx(
        {"gaussian_noise": 80.0, "fog": 50.0}
    )
    ce = [by_values[("cross_entropy", s)].metric("robust/mce") for s in (0, 1)]
    assert np.mean(ce) == pytest.approx(100.0)  # the baseline row against itself


def test_mce_against_alexnet_uses_its_published_errors(tmp_path):
    """Every corruption at half AlexNet's error: mCE 50; relative mCE by the formula, clean error .2."""
    alexnet = robustness.ALEXNET_IMAGENET_C_ERRORS
    errors = {name: [0.5 * e] * 5 for name, e in alexnet.items()}
    spec = {"rows": ["METHOD"], "robustness": {"baseline": "alexnet"}}
    make_run(tmp_path / "runs", {"METHOD": "supcon", "SEED": 0}, result_of(0.8, errors), spec)
    make_run(
        tmp_path / "runs",
        {"METHOD": "supcon", "SEED": 1},
        result_of(0.8, {"fog": [0.3, 0.4]}),
        spec,
    )
    runs = report_data.load_runs(str(tmp_path / "runs"))
    robust = report_robust_data.derive(runs, report_spec.parse(spec)["robustness"], ["METHOD"])
    full = next(r for r in robust.runs if r.values["SEED"] == 0)
    assert full.metric("robust/mce") == pytest.approx(50.0)
    clean = robustness.ALEXNET_CLEAN_ERROR
    relative = np.mean([(0.5 * e - 0.2) / (e - clean) for e in alexnet.values()]) * 100
    assert full.metric("robust/relative_mce") == pytest.approx(relative)
    partial = next(r for r in robust.runs if r.values["SEED"] == 1)
    assert partial.metric("robust/mce") is None
    assert any("means over severities 1-5" in n and partial.slug in n for n in robust.notes)


def test_a_grid_baseline_is_chosen_within_each_setting_of_the_other_rows(tmp_path):
    """Baseline METHOD=cross_entropy with rows METHOD and DEPTH: each depth is normalised by its own CE row."""
    spec = {"rows": ["METHOD", "DEPTH"], "robustness": ROBUST_CE}
    for depth, scale in ((50, 1.0), (200, 0.5)):
        ce = {"fog": [scale * e for e in (0.2, 0.2, 0.2, 0.2, 0.2)]}
        sc = {"fog": [scale * e for e in (0.1, 0.1, 0.1, 0.1, 0.1)]}
        make_run(
            tmp_path / "runs",
            {"METHOD": "cross_entropy", "DEPTH": depth, "SEED": 0},
            result_of(0.9, ce),
            spec,
        )
        make_run(
            tmp_path / "runs",
            {"METHOD": "supcon", "DEPTH": depth, "SEED": 0},
            result_of(0.9, sc),
            spec,
        )
    runs = report_data.load_runs(str(tmp_path / "runs"))
    robust = report_robust_data.derive(
        runs, report_spec.parse(spec)["robustness"], ["METHOD", "DEPTH"]
    )
    assert [w for w, _ in robust.baselines] == ["DEPTH=50", "DEPTH=200"]
    assert {
        (r.values["METHOD"], r.values["DEPTH"]): r.metric("robust/mce") for r in robust.runs
    } == pytest.approx(
        {
            ("cross_entropy", 50): 100.0,
            ("supcon", 50): 50.0,
            ("cross_entropy", 200): 100.0,
            ("supcon", 200): 50.0,
        }
    )


def test_the_robustness_section_shows_the_hand_computed_numbers(tmp_path):
    hand_runs(tmp_path / "runs")
    text = build(tmp_path / "runs", tmp_path / "out")
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert (
        sections.index("Robustness") == sections.index("Results") + 2
    )  # after the raw-pixel baselines
    section = text[text.index("## Robustness") : text.index("## Plots")]
    assert (
        "Baseline: METHOD=cross_entropy, the mean of its 2 finished run(s); clean error 15.00%."
        in section
    )
    assert "Scored: gaussian_noise, fog; mCE averages over these only." in section
    supcon = [EXPECTED_MCE[("supcon", s)] for s in (0, 1)]
    relative = list(EXPECTED_RELATIVE.values())
    row = next(line for line in section.splitlines() if line.startswith("| supcon |"))
    assert row == (
        f"| supcon | {np.mean(supcon):.2f} ± {np.std(supcon, ddof=1):.2f} (2) | "
        f"{np.mean(relative):.2f} ± {np.std(relative, ddof=1):.2f} (2) | 91.00 ± 1.41 (2) | "
        f"{100 * np.mean([1 - e for s in (0, 1) for b in HAND[('supcon', s)][1].values() for e in b]):.2f} ± "
        f"{100 * np.std([np.mean([1 - e for b in HAND[('supcon', s)][1].values() for e in b]) for s in (0, 1)], ddof=1):.2f}"
        " (2) |"
    )
    assert "| METHOD | mCE | relative mCE | clean top-1 (%) | mean corrupted top-1 (%) |" in section
    assert "| METHOD | clean | 1 | 2 | 3 | 4 | 5 |" in section  # severity tables
    assert "| supcon | 0.030 ± 0.000 (2) | 0.020 ± 0.000 (2) |" in section  # ECE: clean, severity 1
    assert "| corruption | cross_entropy | supcon |" in section
    assert "| fog | 100.00 ± 0.00 (2) | 62.50 ± 17.68 (2) |" in section  # CE_c of fog: 50 and 75
    assert "![top-1 and ECE vs severity](robust_severity.png)" in section
    assert os.path.isfile(tmp_path / "out" / "robust_severity.png")
    # robust/mce is a metric like any other for the appendix and report.metrics
    assert "paper" not in section.split("### Top-1")[0]  # no paper row mapped: no paper columns


def test_the_paper_columns_quote_figure_3_and_table_6(tmp_path):
    spec = {
        "rows": ["METHOD"],
        "robustness": {
            "baseline": "alexnet",
            "paper_rows": {"supcon": "SupCon R50", "cross_entropy": "CE R50"},
        },
    }
    alexnet = robustness.ALEXNET_IMAGENET_C_ERRORS
    for method, factor in (("supcon", 0.6), ("cross_entropy", 0.7)):
        errors = {name: [factor * e] * 5 for name, e in alexnet.items()}
        make_run(
            tmp_path / "runs",
            {"METHOD": method, "SEED": 0},
            result_of(0.78, errors, ece=0.03),
            spec,
        )
    text = build(tmp_path / "runs", tmp_path / "out", plots=False)
    section = text[text.index("## Robustness") : text.index("## Plots")]
    assert "Baseline: AlexNet (its published ImageNet-C errors" in section
    assert (
        "| METHOD | mCE | paper | Δ | relative mCE | paper | Δ | clean top-1 (%) | paper | Δ | "
        "mean corrupted top-1 (%) |"
    ) in section
    assert "| supcon | 60.00 ± – (1) | 67.2 | -7.20 |" in section
    assert "| cross_entropy | 70.00 ± – (1) | 68.6 | +1.40 |" in section
    assert (
        "| paper (Table 6, SupCon R50) | 78.81 | 65.39 | 55.55 | 48.64 | 37.27 | 26.92 |" in section
    )
    assert "| paper (Table 6, CE R50) | 0.039 | 0.033 | 0.032 | 0.047 | 0.072 | 0.098 |" in section
    assert (
        "- Figure 3 (left): mCE, relative mCE of CE R50 (ResNet-50); SupCon R50 (ResNet-50)"
        in section
    )
    assert "Not drawn (--no_plots)." in section
    assert "AlexNet's errors are ImageNet-C's" not in section


def test_alexnet_on_another_dataset_is_flagged(tmp_path):
    spec = {"rows": ["METHOD"], "robustness": {"baseline": "alexnet"}}
    errors = {name: [0.5] * 5 for name in robustness.ALEXNET_IMAGENET_C_ERRORS}
    make_run(
        tmp_path / "runs",
        {"METHOD": "supcon", "SEED": 0},
        result_of(0.8, errors),
        spec,
        dataset="fashion_mnist",
    )
    text = build(tmp_path / "runs", tmp_path / "out", plots=False)
    assert "**AlexNet's errors are ImageNet-C's, while these runs are fashion_mnist:**" in text


def test_runs_without_corruption_results_say_how_to_get_them(tmp_path):
    make_run(tmp_path / "runs", {"METHOD": "supcon", "SEED": 0}, {"eval/top1": 0.8, "step": 1})
    make_run(
        tmp_path / "runs", {"METHOD": "cross_entropy", "SEED": 0}, {"eval/top1": 0.7, "step": 1}
    )
    text = build(tmp_path / "runs", tmp_path / "out", plots=False)
    assert "No finished run has corrupted-test-set results" in text
    assert "train_and_evaluate.corruptions" in text


def calibration(accuracy, confidence, counts):
    edges = np.linspace(0, 1, 16).tolist()
    return {
        "bin_edges": edges,
        "counts": counts,
        "accuracy": [None if c == 0 else a for a, c in zip(accuracy, counts, strict=True)],
        "confidence": [None if c == 0 else f for f, c in zip(confidence, counts, strict=True)],
    }


def test_reliability_diagrams_pool_the_seeds_bins(tmp_path):
    """Two seeds: bin 14 holds 10 at accuracy .9 and 30 at accuracy .5 -> 40 at .6; the pooled ECE is that of
    all predictions together."""
    counts_a = [0] * 14 + [10]
    counts_b = [0] * 13 + [20, 30]
    conf = [0.0] * 13 + [0.9, 0.95]
    a = calibration([0.0] * 14 + [0.9], conf, counts_a)
    b = calibration([0.0] * 13 + [0.8, 0.5], conf, counts_b)
    root = tmp_path / "runs"
    for seed, cal in enumerate((a, b)):
        make_run(
            root,
            {"METHOD": "supcon", "SEED": seed},
            result_of(0.8, {"fog": [0.2] * 5}),
            calibration={"clean": cal, "severity_5": cal},
        )
    runs = report_data.load_runs(str(root))
    diagram, used, problems = report_robust_data.pooled_diagram(runs, 0)
    assert used == 2 and not problems
    assert diagram.counts.tolist() == [0] * 13 + [20, 40]
    assert diagram.accuracy[14] == pytest.approx(0.6) and diagram.confidence[14] == pytest.approx(
        0.95
    )
    assert diagram.ece == pytest.approx((20 * 0.1 + 40 * 0.35) / 60)
    drawn, problems = report_robust_plots.reliability_plot(
        [("supcon", runs)], [0, 5], str(tmp_path / "r.png")
    )
    assert drawn and not problems and os.path.isfile(tmp_path / "r.png")


def test_a_broken_calibration_file_is_a_problem_line_not_a_failure(tmp_path):
    root = tmp_path / "runs"
    path = make_run(
        root,
        {"METHOD": "supcon", "SEED": 0},
        result_of(0.8, {"fog": [0.2] * 5}),
        calibration={"clean": {"bin_edges": [0, 1], "counts": [1, 2]}},
    )
    text = build(root, tmp_path / "out")
    assert "No reliability diagram" in text
    assert (
        f"- problem: `{os.path.basename(path)}`: calibration.json ['clean']: an entry lacks" in text
    )


@pytest.mark.parametrize(
    "robust, message",
    [
        ("3", "report.robustness must be a dict such as {'baseline': 'alexnet'}"),
        ("{'baseline': 'alex'}", "report.robustness['baseline'] must be 'alexnet'"),
        (
            "{'basline': 'alexnet'}",
            "unknown key 'basline' (allowed: baseline, paper_rows, reliability); did you",
        ),
        (
            "{'baseline': {'METHOD': 'ce'}}",
            "report.robustness['baseline']: no grid point has METHOD=ce",
        ),
        ("{'baseline': {'METHD': 'supcon'}}", "names METHD, which no grid point sets"),
        (
            "{'baseline': 'alexnet', 'reliability': [9]}",
            "['reliability'] must be a list of 'clean' and severities",
        ),
        (
            "{'baseline': 'alexnet', 'paper_rows': {'supcon': 'SupCon R5'}}",
            "which is no row of figure3/table6/table7",
        ),
        (
            "{'baseline': 'alexnet', 'paper_rows': {'supcn': 'SupCon R50'}}",
            "has 'supcn', which is no row of the report",
        ),
    ],
)
def test_report_robustness_errors_at_recipe_load_name_the_binding(tmp_path, robust, message):
    path = tmp_path / "r.gin"
    path.write_text(RECIPE + f"report.robustness = {robust}\n")
    with pytest.raises(grid.GridError, match=re.escape(message)) as error:
        grid.load_recipe(str(path))
    assert "r.gin:5: " in str(error.value) and "\n" not in str(error.value)


RECIPE = """METHOD = 'supcon'
SEED = 0
grid.axes = {'METHOD': ['supcon', 'cross_entropy'], 'SEED': [0, 1]}
report.rows = ['METHOD']
"""


def test_a_claim_on_mce_without_report_robustness_is_a_load_error(tmp_path):
    path = tmp_path / "r.gin"
    path.write_text(RECIPE + "report.claims = ['fig3_supcon_mce_lt_ce']\n")
    with pytest.raises(
        grid.GridError,
        match=re.escape(
            "r.gin:5: report.claims: fig3_supcon_mce_lt_ce tests robust/mce, which needs report.robustness"
        ),
    ):
        grid.load_recipe(str(path))
    path.write_text(
        RECIPE
        + "report.claims = ['fig3_supcon_mce_lt_ce']\nreport.robustness = {'baseline': 'alexnet'}\n"
    )
    assert grid.load_recipe(str(path)).report["robustness"] == {"baseline": "alexnet"}


# Claims: SupCon vs cross-entropy at 3 seeds against AlexNet (factor = error / AlexNet's error), per depth.
def claim_runs(root, factors, eces=None, severity_eces=None, ids=()):
    """{method: [error factor per seed]} -> run dirs; eces: {method: [clean ECE per seed]}."""
    spec = {"rows": ["METHOD"], "robustness": {"baseline": "alexnet"}, "claims": list(ids)}
    for method, per_seed in factors.items():
        for seed, factor in enumerate(per_seed):
            errors = {
                name: [factor * e] * 5 for name, e in robustness.ALEXNET_IMAGENET_C_ERRORS.items()
            }
            ece = (eces or {}).get(method, [0.03] * len(per_seed))[seed]
            sev = (severity_eces or {}).get(method)
            make_run(
                root, {"METHOD": method, "SEED": seed}, result_of(0.78, errors, ece, sev), spec
            )
    return report_data.load_runs(str(root))


def verdicts(root, ids):
    runs = report_data.load_runs(str(root))
    spec = report_spec.spec_of_runs(runs)
    robust = report_robust_data.derive(runs, spec["robustness"], ["METHOD"])
    return {
        v.claim.id + (f" [{v.where}]" if v.where else ""): v
        for v in claims.evaluate_claims(ids, robust.runs, ["METHOD"])
    }


@pytest.mark.parametrize(
    "factors, expected",
    [
        ({"supcon": [0.60, 0.62, 0.61], "cross_entropy": [0.70, 0.71, 0.73]}, claims.REPRODUCED),
        ({"supcon": [0.75, 0.77, 0.76], "cross_entropy": [0.70, 0.71, 0.73]}, claims.CONTRADICTED),
        ({"supcon": [0.60, 0.80, 0.70], "cross_entropy": [0.70, 0.71, 0.69]}, claims.INCONCLUSIVE),
    ],
)
def test_the_mce_claims_give_each_verdict(tmp_path, factors, expected):
    claim_runs(tmp_path, factors)
    found = verdicts(tmp_path, ["fig3_supcon_mce_lt_ce", "fig3_supcon_rel_mce_lt_ce"])
    mce = found["fig3_supcon_mce_lt_ce"]
    assert mce.verdict == expected, mce
    diff = 100 * (np.mean(factors["supcon"]) - np.mean(factors["cross_entropy"]))
    assert mce.estimate.value == pytest.approx(diff)  # mCE = 100 x factor against AlexNet
    assert mce.compared == "METHOD=supcon − METHOD=cross_entropy"
    assert found["fig3_supcon_rel_mce_lt_ce"].verdict == expected


def test_one_seed_is_inconclusive(tmp_path):
    claim_runs(tmp_path, {"supcon": [0.6], "cross_entropy": [0.7]})
    mce = verdicts(tmp_path, ["fig3_supcon_mce_lt_ce"])["fig3_supcon_mce_lt_ce"]
    assert mce.verdict == claims.INCONCLUSIVE and "at least 2" in mce.reason


@pytest.mark.parametrize(
    "eces, expected",
    [
        (
            {"supcon": [0.020, 0.022, 0.025], "cross_entropy": [0.040, 0.038, 0.041]},
            claims.REPRODUCED,
        ),
        (
            {"supcon": [0.050, 0.052, 0.055], "cross_entropy": [0.040, 0.038, 0.041]},
            claims.CONTRADICTED,
        ),
    ],
)
def test_the_clean_ece_claim(tmp_path, eces, expected):
    claim_runs(tmp_path, {"supcon": [0.6] * 3, "cross_entropy": [0.7] * 3}, eces=eces)
    ece = verdicts(tmp_path, ["table6_supcon_clean_ece_lt_ce"])["table6_supcon_clean_ece_lt_ce"]
    assert ece.verdict == expected
    assert ece.estimate.value == pytest.approx(
        np.mean(eces["supcon"]) - np.mean(eces["cross_entropy"])
    )


def test_ece_rising_with_severity_is_tested_per_method(tmp_path):
    """SupCon's ECE rises with severity (reproduced); cross-entropy's falls (contradicted): one verdict each."""
    claim_runs(
        tmp_path,
        {"supcon": [0.6] * 2, "cross_entropy": [0.7] * 2},
        eces={"supcon": [0.02, 0.03], "cross_entropy": [0.09, 0.10]},
        severity_eces={
            "supcon": [0.03, 0.04, 0.06, 0.08, 0.1],
            "cross_entropy": [0.08, 0.07, 0.05, 0.04, 0.02],
        },
    )
    found = verdicts(tmp_path, ["table6_ece_increasing_with_severity"])
    supcon = found["table6_ece_increasing_with_severity [METHOD=supcon]"]
    ce = found["table6_ece_increasing_with_severity [METHOD=cross_entropy]"]
    assert supcon.verdict == claims.REPRODUCED and ce.verdict == claims.CONTRADICTED
    assert (
        supcon.estimate.n == "12 runs at 6 values" and "once per severity" in supcon.estimate.note
    )


def test_a_severity_claim_without_corruption_results_is_inconclusive(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path, {"METHOD": "supcon", "SEED": seed}, {"eval/top1": 0.8, "eval/ece": 0.03})
    runs = report_data.load_runs(str(tmp_path))
    (found,) = claims.evaluate_claims(["table6_ece_increasing_with_severity"], runs, ["METHOD"])
    assert (
        found.verdict == claims.INCONCLUSIVE
        and "no finished run reports a corrupted test set" in found.reason
    )


def test_the_claims_section_states_the_robustness_verdicts(tmp_path):
    ids = ["fig3_supcon_mce_lt_ce", "table6_supcon_clean_ece_lt_ce"]
    claim_runs(
        tmp_path / "runs",
        {"supcon": [0.60, 0.62, 0.61], "cross_entropy": [0.70, 0.71, 0.73]},
        eces={"supcon": [0.020, 0.022, 0.025], "cross_entropy": [0.040, 0.038, 0.041]},
        ids=ids,
    )
    text = build(tmp_path / "runs", tmp_path / "out", plots=False)
    assert "**2 of 2 claims reproduced at this scale (0 contradicted, 0 inconclusive).**" in text
    mce = next(line for line in text.splitlines() if "`fig3_supcon_mce_lt_ce`" in line)
    assert "| Fig. 3 | 67.2 vs 68.6 — ImageNet-C, ResNet-50" in mce
    assert "METHOD=supcon − METHOD=cross_entropy: -10.33 [" in mce and mce.endswith(
        "**reproduced** |"
    )
    ece = next(line for line in text.splitlines() if "`table6_supcon_clean_ece_lt_ce`" in line)
    assert "| Table 6 | 0.024 vs 0.039 — ImageNet test set" in ece


def test_a_claims_file_rejects_severity_on_other_kinds(tmp_path):
    path = tmp_path / "claims.csv"
    row = "x,Table 6,greater,eval/ece,METHOD=a,METHOD=b,SEVERITY,,,,,,,s,"
    path.write_text(",".join(claims.FIELDS) + "\n" + row + "\n")
    with pytest.raises(claims.ClaimError, match="axis SEVERITY .* needs kind increasing"):
        claims.load_claims(str(path))


def test_paper_figure3_rows_land_on_figure_3_and_table_6(tmp_path):
    """The recipe's grid, one finished run per point (as the runner and trainer write them): each row meets its
    paper row's mCE, relative mCE and Table 6 numbers, and every claim gets a verdict line."""
    recipe = grid.load_recipe(os.path.join(ROOT, "recipes", "paper_figure3.gin"))
    errors = {name: [0.6 * e] * 5 for name, e in robustness.ALEXNET_IMAGENET_C_ERRORS.items()}
    for point in grid.expand(recipe):
        path = tmp_path / "runs" / point.slug
        workdir.write_json_atomic(str(path / workdir.POINT), {
            "recipe": "recipes/paper_figure3.gin", "recipe_stem": recipe.stem, "id": point.id, "slug": point.slug,
            "bindings": point.bindings, "values": point.values, "gin_files": [], "gin_params": [], "smoke": False,
            "report": recipe.report, "header": recipe.header,
        })  # fmt: skip
        workdir.write_json_atomic(str(path / workdir.ENV), {"scale": {"dataset": "imagenet2012"}})
        workdir.write_json_atomic(str(path / workdir.RESULT), result_of(0.78, errors, ece=0.03))
        workdir.write_status(str(path), "done", step=10)
    text = build(tmp_path / "runs", tmp_path / "out", plots=False)
    section = text[text.index("## Robustness") : text.index("## Plots")]
    expected = {
        "supcon / 50": (67.2, 94.6, 78.81), "supcon / 200": (50.6, 66.5, 81.38),
        "cross_entropy / 50": (68.6, 96.2, 78.24), "cross_entropy / 200": (52.4, 69.1, 80.81),
    }  # fmt: skip
    for label, (mce, relative, top1) in expected.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| {label} | 60.00"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert (cells[2], cells[5], cells[8]) == (f"{mce:.1f}", f"{relative:.1f}", f"{top1:.2f}"), (
            row
        )
    assert section.count("| paper (Table 6, ") == 8  # top-1 and ECE rows for each of the four
    claim_lines = [
        line for line in text.splitlines() if line.startswith("| ") and "(`fig3_" in line
    ]
    assert len(claim_lines) == 4  # two claims x two depths
    assert all("inconclusive" in line for line in claim_lines)  # one run per point, as the paper
