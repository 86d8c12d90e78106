"""The scoreboard (supcon.report.scoreboard) from synthetic claims.json files, and the claims.json the reporter writes
beside a report (supcon.report.claims_record), which rebuilds the scoreboard of the report folder's parent."""

import json
import os
import re

import pytest
from test_report import make_run

from supcon.report import build as report
from supcon.report import claims, claims_record, scoreboard
from supcon.report import spec as report_spec

FMNIST = {
    "dataset": ["fashion_mnist"],
    "encoder": ["ResNet-18 x0.125, CIFAR stem (0.18 M params), input 14x14x1, mixed bfloat16"],
    "pretrain_epochs": ["100", "25", "50"],
    "linear_epochs": ["0", "20"],
}
DIGITS = {"dataset": ["digits"], "encoder": ["ResNet-18 x0.25, CIFAR stem (0.70 M params)"], "pretrain_epochs": ["15"]}


def entry(claim, verdict, unit, stat=None, where="", compared="", reason="", test="paired t (by SEED)", n="5 pairs",
          p=0.01, groups=(), below=None, note=""):  # fmt: skip
    low, high = (None, None) if stat is None else stat[1:]
    return {
        "claim": claim, "where": where, "verdict": verdict, "reason": reason, "compared": compared, "unit": unit,
        "statistic": None if stat is None else stat[0], "low": low, "high": high,
        "p": None if stat is None else p, "test": test if stat else "", "note": note, "n": n if stat else "",
        "groups": [{"label": label, "n": k} for label, k in groups], "below_bar": below,
    }  # fmt: skip


def record(recipe, verdicts, scale=FMNIST, written_by="reporter", bar=True):
    out = {"format": 1, "recipe": recipe, "written_by": written_by, "smoke": False, "scale": scale,
           "bar_checked": bar, "verdicts": verdicts}  # fmt: skip
    if written_by == "parsed":
        out["parsed_from"] = "README.md"
    return out


def write(reports, folder, rec):
    os.makedirs(reports / folder, exist_ok=True)
    (reports / folder / "claims.json").write_text(json.dumps(rec, indent=2, sort_keys=True, ensure_ascii=False))


@pytest.fixture
def reports(tmp_path):
    """Two reports with claims (one parsed from its README), one without."""
    root = tmp_path / "reports"
    write(root, "alpha", record("alpha", [
        entry("table2_supcon_gt_ce", "reproduced", "pp", (0.31, 0.13, 0.49),
              compared="METHOD=supcon − METHOD=cross_entropy", p=0.009, below=[]),
        entry("table2_supcon_gt_simclr", "reproduced", "pp", (6.21, 5.63, 6.80),
              compared="METHOD=supcon − METHOD=simclr", p=7.8e-06,
              below=[{"row": "METHOD=simclr", "points_over_pixels": 0.74}]),
        entry("fig4c_epochs_increasing", "reproduced", "rank correlation", (0.91, 0.78, 0.96), where="METHOD=supcon",
              test="Spearman ρ (Fisher-z CI)", n="20 runs at 4 values", p=3.3e-08, below=[]),
        entry("fig3_supcon_rel_mce_lt_ce", "contradicted", "mCE", (17.47, 8.518, 26.43), p=0.006, below=[],
              compared="METHOD=supcon − METHOD=cross_entropy"),
        entry("table6_supcon_clean_ece_lt_ce", "contradicted", "ECE", (0.0208, 0.0174, 0.0242), p=6.9e-05, below=[]),
    ]))  # fmt: skip
    write(root, "beta", record("quickstart", [
        entry("table2_supcon_gt_ce", "inconclusive", "pp",
              reason="n = 1 vs 1: Welch's test needs at least 2 runs per row",
              groups=[("METHOD=supcon", 1), ("METHOD=cross_entropy", 1)]),
    ], scale=DIGITS, written_by="parsed", bar=False))  # fmt: skip
    (root / "gamma").mkdir()
    (root / "gamma" / "README.md").write_text("# a report that tests no claim\n")
    return root


def table_rows(text, section):
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    headers = ("| claim |", "| report |")
    return [line for line in body.splitlines() if line.startswith("| ") and not line.startswith(headers)]


def test_every_claim_is_listed_once_tested_or_not(reports):
    text, tests = scoreboard.build(str(reports))
    known = claims.load_claims()
    tested = table_rows(text, "Tested claims")
    untested = table_rows(text, "Not tested yet")
    listed = [re.match(r"\| `([a-z0-9_]+)` \|", row)[1] for row in tested + untested if row.startswith("| `")]
    assert sorted(listed) == sorted(known) and len(listed) == len(set(listed))
    ids_tested = {"table2_supcon_gt_ce", "table2_supcon_gt_simclr", "fig4c_epochs_increasing",
                  "fig3_supcon_rel_mce_lt_ce", "table6_supcon_clean_ece_lt_ce"}  # fmt: skip
    assert {re.match(r"\| `([a-z0-9_]+)`", r)[1] for r in untested} == set(known) - ids_tested
    summary = f"**{len(known)} claims in supcon/paper_claims.csv: 5 tested by 2 reports, {len(known) - 5} not tested"
    assert summary + " yet.**" in text
    assert ("6 claim tests (one per claim, report and setting): 3 reproduced, 2 contradicted, 1 inconclusive; 1 rest "
            "on") in text
    assert "Why: no report in this folder has a claims.json naming these claims" in text
    # the untested rows carry the paper's numbers; the tested rows follow the claims file's order
    assert "| `table3_supcon_gt_ce` | Table 3 | SupCon's top-1 is above cross-entropy's (our implementation)" in text
    assert [t.entry["claim"] for t in tests] == [c for c in known if c in ids_tested for _ in
                                                 range(2 if c == "table2_supcon_gt_ce" else 1)]  # fmt: skip
    assert "gamma" not in text  # a report without claims.json contributes nothing


def test_tested_rows_show_verdict_statistic_interval_n_and_scale(reports):
    text, _ = scoreboard.build(str(reports))
    rows = table_rows(text, "Tested claims")
    assert rows[0] == (
        "| `table2_supcon_gt_ce` | Table 2 | SupCon's top-1 is above cross-entropy's | [alpha](alpha/README.md) | "
        "– | **reproduced** | METHOD=supcon − METHOD=cross_entropy: +0.31 pp [+0.13, +0.49] | paired t (by SEED) | "
        "5 pairs | 0.009 | Fashion-MNIST | ResNet-18 x0.125 | 25 / 50 / 100 |"
    )
    # the same claim in a second report: claim cells left blank, the parsed report marked, no statistic
    assert rows[1] == (
        "|  |  |  | [beta](beta/README.md)† (`quickstart`) | – | inconclusive: n = 1 vs 1: Welch's test needs at "
        "least 2 runs per row; CPU-scale bar not checked | – | – | 1 vs 1 finished runs | – | "
        "scikit-learn digits | ResNet-18 x0.25 | 15 |"
    )
    assert "| **reproduced**; below the bar: METHOD=simclr (+0.74 over pixels) | METHOD=supcon − METHOD=simclr: " \
           "+6.21 pp [+5.63, +6.80] |" in rows[2]  # fmt: skip
    assert ("| METHOD=supcon | **reproduced** | ρ = +0.91 [+0.78, +0.96] | Spearman ρ (Fisher-z CI) | "
            "20 runs at 4 values | 3.3e-08 |") in rows[3]
    assert "| **contradicted** | METHOD=supcon − METHOD=cross_entropy: +17.47 [+8.518, +26.43] |" in rows[4]
    assert "| **contradicted** | +0.0208 [+0.0174, +0.0242] |" in rows[5]
    reports_table = table_rows(text, "Reports")
    assert reports_table == [
        "| [alpha](alpha/README.md) | `alpha` | 5 | 3 reproduced, 2 contradicted, 0 inconclusive | the reporter |",
        "| [beta](beta/README.md) | `quickstart` | 1 | 0 reproduced, 0 contradicted, 1 inconclusive | parsed from its "
        "README.md† |",
    ]
    assert "**Scale:** 2 of 2 reports are small-scale stand-ins (Fashion-MNIST, scikit-learn digits;" in text


def test_figure_groups_tests_by_unit_and_is_drawn(reports, tmp_path):
    _, tests = scoreboard.build(str(reports))
    groups = scoreboard.panels(tests)
    assert [(unit, [t.entry["claim"] for t in panel]) for unit, panel in groups] == [
        ("pp", ["table2_supcon_gt_ce", "table2_supcon_gt_simclr"]),  # beta's test has no statistic: not drawn
        ("rank correlation", ["fig4c_epochs_increasing"]),
        ("ECE", ["table6_supcon_clean_ece_lt_ce"]),
        ("mCE", ["fig3_supcon_rel_mce_lt_ce"]),
    ]
    fig = scoreboard.figure(tests, claims.load_claims())
    axes = fig.axes
    assert [ax.get_title(loc="left") for ax in axes] == [scoreboard.UNIT_TITLES[u] for u, _ in groups]
    labels = [[t.get_text() for t in ax.get_yticklabels()] for ax in axes]
    assert labels[0] == ["table2_supcon_gt_ce (alpha; paper > 0)", "table2_supcon_gt_simclr (alpha; paper > 0)"]
    assert list(axes[0].get_yticks()) == [1, 0]  # table order from the top
    assert labels[1] == ["fig4c_epochs_increasing · METHOD=supcon (alpha; paper > 0)"]
    assert labels[3] == ["fig3_supcon_rel_mce_lt_ce (alpha; paper < 0)"]
    assert axes[1].get_xlim() == (-1.05, 1.05)
    path = tmp_path / "claims.png"
    scoreboard.draw(tests, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_untested_claims_say_why_not_yet(reports):
    text, _ = scoreboard.build(str(reports))
    untested = {re.match(r"\| `([a-z0-9_]+)`", row)[1]: row for row in table_rows(text, "Not tested yet")}
    known = claims.load_claims()
    assert "| claim | source | statement | paper | not tested because |" in text
    assert untested["table3_supcon_gt_ce"].endswith(f"| {known['table3_supcon_gt_ce'].not_tested_because} |")
    assert "a CPU cannot train" in untested["table3_supcon_gt_ce"]
    assert untested["joint_two_stage_equivalent"].endswith(f"| {known['joint_two_stage_equivalent'].not_tested_because} |")
    assert "fmnist_joint.gin" in untested["joint_two_stage_equivalent"]
    assert untested["table1_out_gt_in"].endswith("| – |")  # the claims file gives no reason


def test_a_margin_test_shows_its_90_interval_and_margin(reports, tmp_path):
    margin_entry = entry("ce_longer_not_greater", "inconclusive", "pp", (0.12, -0.31, 0.55), p=0.19,
                         compared="A − B", test="non-superiority paired t (by SEED), margin +0.5 pp", below=[],
                         reason="the one-sided 95% upper bound is not below +margin and the 95% interval includes 0")
    margin_entry.update(margin=0.5, low90=-0.2, high90=0.51)
    write(reports, "eta", record("eta", [margin_entry]))
    text, tests = scoreboard.build(str(reports))
    row = next(r for r in table_rows(text, "Tested claims") if "`ce_longer_not_greater`" in r)
    assert ("| A − B: +0.12 pp [-0.31, +0.55]; 90% [-0.20, +0.51] | non-superiority paired t (by SEED), margin "
            "+0.5 pp | 5 pairs | 0.190 |") in row
    assert "With a margin" in text and "(the thick bar) and the margin (black ticks)" in text
    fig = scoreboard.figure(tests, claims.load_claims())
    pp = fig.axes[0]
    labels = [t.get_text() for t in pp.get_yticklabels()]
    assert labels[-1] == "ce_longer_not_greater (eta; paper < +0.5)"
    assert [list(line.get_xdata()) for line in pp.lines if line.get_gid() == "margin"] == [[0.5]]  # one side only
    assert "margin" in [t.get_text() for t in fig.legends[0].get_texts()]
    scoreboard.draw(tests, str(tmp_path / "claims.png"))


def test_written_twice_byte_identical_with_figure(reports):
    readme = scoreboard.write_scoreboard(str(reports))
    first = (open(readme, "rb").read(), (reports / "claims.png").read_bytes())
    second_path = scoreboard.write_scoreboard(str(reports))
    assert (open(second_path, "rb").read(), (reports / "claims.png").read_bytes()) == first
    text = first[0].decode()
    assert text.splitlines()[0] == scoreboard.MARKER and "![each claim test's statistic" in text
    assert "(claims.png)" in text and b"Software" not in first[1][:2000]
    assert not [p for p in os.listdir(reports) if p.startswith(".")]  # no temporary file left


def test_no_claims_at_all_lists_every_claim_as_untested(tmp_path):
    text, tests = scoreboard.build(str(tmp_path))
    assert tests == [] and "## Tested claims\n\nNone yet." in text
    assert len(table_rows(text, "Not tested yet")) == len(claims.load_claims())
    scoreboard.draw(tests, str(tmp_path / "claims.png"))  # an empty figure says so
    assert (tmp_path / "claims.png").exists()


def test_a_malformed_or_stale_claims_json_is_named_not_fatal(reports):
    (reports / "delta").mkdir()
    (reports / "delta" / "claims.json").write_text("{not json")
    write(reports, "epsilon", record("epsilon", [{"claim": "x"}]))
    write(reports, "zeta", record("zeta", [entry("old_claim_id", "reproduced", "pp", (1.0, 0.5, 1.5))]))
    text, _ = scoreboard.build(str(reports))
    problems = text.split("Problems:", 1)[1]
    assert "- `delta/claims.json` left out: unreadable (JSONDecodeError:" in problems
    assert "- `epsilon/claims.json` left out: verdict 0 needs [" in problems
    assert "- `zeta/claims.json` names claim `old_claim_id`, which is no longer in the claims file: left out" \
        in problems
    assert "tested by 2 reports" in text


def test_update_never_overwrites_another_readme(reports, tmp_path):
    readme = reports / "README.md"
    readme.write_text("# my notes\n")
    assert scoreboard.update(str(reports)) is None and readme.read_text() == "# my notes\n"
    assert scoreboard.main([str(reports)]) == 2
    readme.unlink()
    assert scoreboard.update(str(reports)) == str(readme) and scoreboard.is_scoreboard(str(readme))
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    assert scoreboard.update(str(empty)) is None and os.listdir(empty) == ["a"]


def test_cli_writes_the_scoreboard(reports, capsys):
    assert scoreboard.main([str(reports)]) == 0
    assert capsys.readouterr().out.strip() == str(reports / "README.md")
    assert (reports / "claims.png").exists()
    assert scoreboard.main([str(reports / "missing")]) == 2
    assert "error: " in capsys.readouterr().err


# -------------------------------------------------------------------------------------------------------------
# claims.json written by the reporter


SPEC = {"rows": ["METHOD"], "claims": ["table2_supcon_gt_ce", "table2_supcon_gt_simclr", "table2_ce_gt_simclr"]}


@pytest.fixture
def grid_with_claims(tmp_path):
    """Table 2's three methods x 3 seeds, whose report names the three table2 claims."""
    root = tmp_path / "runs" / "table2_demo"
    root.mkdir(parents=True)
    top1 = {"cross_entropy": (0.80, 0.81, 0.823), "simclr": (0.70, 0.712, 0.719), "supcon": (0.84, 0.85, 0.86)}
    loss = {"cross_entropy": "@ce", "simclr": "@simclr/contrastive", "supcon": "@supcon/contrastive"}
    for method, tops in top1.items():
        for seed, value in enumerate(tops):
            make_run(str(root), {"METHOD": method, "LOSS": loss[method], "SEED": seed}, spec=SPEC, top1=value)
    return str(root)


def test_write_report_writes_claims_json_and_rebuilds_the_scoreboard(grid_with_claims, tmp_path):
    reports = tmp_path / "reports"
    parsed = entry("table1_out_gt_in", "inconclusive", "pp", (0.41, -0.06, 0.87))
    write(reports, "other", record("fmnist_table1", [parsed], written_by="parsed"))
    out = reports / "table2_demo"
    text = open(report.write_report(grid_with_claims, str(out), plots=False)).read()
    rec = json.loads((out / "claims.json").read_text())
    assert claims_record.check_record(rec, "claims.json") is rec
    assert rec["written_by"] == "reporter" and rec["recipe"] == "table2_demo" and rec["smoke"] is False
    assert rec["scale"]["dataset"] == ["fashion_mnist"] and rec["scale"]["pretrain_epochs"] == ["2"]
    assert rec["bar_checked"] is False  # no pixel baselines for synthetic fashion_mnist runs
    assert [v["claim"] for v in rec["verdicts"]] == ["table2_supcon_gt_ce", "table2_supcon_gt_simclr",
                                                     "table2_ce_gt_simclr"]  # fmt: skip
    first = rec["verdicts"][0]
    assert first["unit"] == "pp" and first["test"] == "paired t (by SEED)" and first["n"] == "3 pairs"
    assert first["groups"] == [{"label": "METHOD=supcon", "n": 3}, {"label": "METHOD=cross_entropy", "n": 3}]
    assert first["statistic"] == pytest.approx(3.9, abs=1e-6)
    assert first["low"] < first["statistic"] < first["high"]
    assert first["below_bar"] is None
    # the same numbers as the Claims section prints, row by row
    section = text.split("## Claims", 1)[1].split("## Results", 1)[0]
    for v in rec["verdicts"]:
        row = next(line for line in section.splitlines() if f"(`{v['claim']}`)" in line)
        assert f"| {scoreboard.format_statistic(v)} | {v['test']} | {v['n']} |" in row
        assert f"**{v['verdict']}**" in row
    # the parent's scoreboard now holds both reports, the reporter's unmarked
    board = (reports / "README.md").read_text()
    assert scoreboard.is_scoreboard(str(reports / "README.md")) and (reports / "claims.png").exists()
    assert ("| [table2_demo](table2_demo/README.md) | – | **reproduced**; CPU-scale bar not checked | "
            "METHOD=supcon − METHOD=cross_entropy: +3.90 pp [") in board
    assert "| [other](other/README.md)† (`fmnist_table1`) |" in board
    assert "tested by 2 reports" in board
    # a rerun gives the same bytes
    files = (out / "claims.json", reports / "README.md", reports / "claims.png")
    before = [f.read_bytes() for f in files]
    report.write_report(grid_with_claims, str(out), plots=False)
    assert [f.read_bytes() for f in files] == before


def test_a_report_without_claims_removes_its_claims_json(grid_with_claims, tmp_path):
    out = tmp_path / "reports" / "table2_demo"
    report.write_report(grid_with_claims, str(out), plots=False)
    assert (out / "claims.json").exists() and "tested by 1 report," in (out.parent / "README.md").read_text()
    for point in os.listdir(grid_with_claims):  # the recipe drops report.claims
        path = os.path.join(grid_with_claims, point, "point.json")
        data = json.load(open(path))
        data["report"] = {k: v for k, v in data["report"].items() if k != "claims"}
        json.dump(data, open(path, "w"))
    report.write_report(grid_with_claims, str(out), plots=False, records=False)
    assert not (out / "claims.json").exists()
    assert "tested by 0 reports," in (out.parent / "README.md").read_text()


def test_a_rerun_that_supersedes_a_report_replaces_its_verdict_on_the_claims_both_test(reports):
    """fmnist_table2_fair's report.supersedes = ['fmnist_table2']: alpha's table2_supcon_gt_ce verdict is shown as
    superseded and left out of the counts and the figure; alpha's other claims and beta's verdict still count."""
    rerun = record("delta", [entry("table2_supcon_gt_ce", "inconclusive", "pp", (0.0, -0.28, 0.29),
                                   compared="METHOD=supcon − METHOD=cross_entropy", p=0.97, below=[],
                                   reason="the 95% interval includes 0")])  # fmt: skip
    write(reports, "delta", dict(rerun, supersedes=["alpha"]))
    text, tests = scoreboard.build(str(reports))
    rows = [r for r in table_rows(text, "Tested claims") if "[alpha](alpha/README.md)" in r]
    replaced = [r for r in rows if "superseded by [delta](delta/README.md), not counted (was: **reproduced**)" in r]
    assert len(replaced) == 1 and "+0.31" in replaced[0]
    assert sum("superseded" in r for r in rows) == 1  # alpha's other claims stand
    assert ("6 claim tests (one per claim, report and setting): 2 reproduced, 2 contradicted, 2 inconclusive; "
            "1 rest on rows below the CPU-scale bar. 1 more superseded by a later report's rerun of the same claim "
            "(shown, not counted, not drawn).") in text  # fmt: skip
    assert [t.folder for t in tests if t.entry["claim"] == "table2_supcon_gt_ce"] == ["beta", "delta"]
    write(reports, "delta", rerun)  # without report.supersedes both verdicts count
    text, tests = scoreboard.build(str(reports))
    assert "superseded" not in text and len(tests) == 7


def test_report_supersedes_must_name_reports():
    assert report_spec.parse({"supersedes": ["fmnist_table2"]})["supersedes"] == ["fmnist_table2"]
    assert report_spec.parse({})["supersedes"] == []
    for bad in ("fmnist_table2", ["reports/fmnist_table2"], [3]):
        with pytest.raises(report_spec.SpecError, match="report.supersedes"):
            report_spec.parse({"supersedes": bad})
