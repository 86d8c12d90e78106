"""The scoreboard: `reports/README.md` and `reports/claims.png`, every claim of the paper with the reports that test it.

Usage::

    python -m supcon.report.scoreboard [REPORTS_DIR]     # default: reports

Built from `supcon/paper_claims.csv` and every `REPORTS_DIR/*/claims.json` (`supcon.report.claims_record`) alone: no
run directory, no recipe, no TensorFlow. Every claim of the file is listed: those a report tests with each report's
verdict, statistic and 95% interval, n and scale (dataset, encoder, epochs), then those no report tests yet. The
figure draws each test's statistic and interval against zero, coloured by verdict, one panel per unit (pp, rank
correlation, ECE, mCE). The reporter rebuilds it after writing a report (`update`, called by `build.write_report`
for the report folder's parent), so it is never older than a report. The output is deterministic: the same inputs
give the same README bytes and the same PNG (no software stamp, no timestamps).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from supcon import workdir
from supcon.report import claims
from supcon.report.claims_record import (
    CLAIMS_JSON,
    ECE,
    MCE,
    PARSED,
    PP,
    PRECISIONS,
    RHO,
    UNITS,
    read_record,
)
from supcon.report.claims_section import mix_text, paper_cell
from supcon.report.data import MISSING
from supcon.report.header import DATASET_NAMES, PAPER_DATASETS
from supcon.report.tables import markdown_table

README = "README.md"
FIGURE = "claims.png"
MARKER = "<!-- scoreboard: written by python -m supcon.report.scoreboard (and the reporter); do not edit by hand -->"
PARSED_MARK = "†"
COLORS = {claims.REPRODUCED: "#2a9d3a", claims.CONTRADICTED: "#d62728", claims.INCONCLUSIVE: "#8c8c8c"}
UNIT_TITLES = {
    PP: "pp: difference of top-1 means (or of their spreads), percentage points",
    RHO: "rank correlation: Spearman's ρ of the metric on the swept value",
    ECE: "ECE: difference of expected calibration errors (a fraction)",
    MCE: "mCE: difference of mCE or relative mCE (× 100, the baseline scores 100)",
}
NOT_TESTED_NOTE = (
    "Why: no report in this folder has a claims.json naming these claims, so no recipe that tests them (one whose "
    "`report.claims` names them) has been run and reported here yet; the last column says why not, where the claims "
    "file knows (`not_tested_because`: a CPU cannot train the paper's setting, or no CPU-scale recipe names the "
    "claim yet). The paper's numbers and setting are beside each."
)


@dataclasses.dataclass(frozen=True)
class Test:
    """One verdict of one report: the report folder's name, its claims.json and the verdict's entry in it."""

    folder: str
    record: dict
    entry: dict
    superseded_by: str = ""  # the report whose verdict on the same claim replaces this one (its report.supersedes)

    @property
    def parsed(self) -> bool:
        return self.record["written_by"] == PARSED


def read_reports(reports_dir: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """(folder name, claims.json) of every report folder that has one, sorted by name, and one line per unreadable
    file (left out)."""
    found, problems = [], []
    names = sorted(os.listdir(reports_dir)) if os.path.isdir(reports_dir) else []
    for name in names:
        folder = os.path.join(reports_dir, name)
        if name.startswith(".") or not os.path.isdir(folder):
            continue
        try:
            record = read_record(folder)
        except ValueError as e:
            problems.append(f"`{name}/{CLAIMS_JSON}` left out: {str(e).split(': ', 1)[-1]}")
            continue
        if record is not None:
            found.append((name, record))
    return found, problems


def format_statistic(entry: dict) -> str:
    """As the report's Claims section prints it: `METHOD=a − METHOD=b: +0.31 pp [+0.13, +0.49]`, or
    `ρ = +0.91 [+0.78, +0.96]`; a margin test adds its 90% interval (`; 90% [-0.21, +0.41]`)."""
    value, low, high = entry["statistic"], entry["low"], entry["high"]
    if value is None or low is None or high is None:
        return MISSING
    unit = entry["unit"]
    if unit == RHO:
        return f"ρ = {value:+.2f} [{low:+.2f}, {high:+.2f}]"
    suffix = " pp" if unit == PP else ""

    def num(x: float) -> str:
        return f"{x:+.2f}" if unit == PP else f"{x:+.4f}" if unit == ECE else f"{x:+.4g}"

    text = f"{num(value)}{suffix} [{num(low)}, {num(high)}]"
    if entry.get("low90") is not None and entry.get("high90") is not None:
        text += f"; 90% [{num(entry['low90'])}, {num(entry['high90'])}]"
    return f"{entry['compared']}: {text}" if entry["compared"] else text


def format_n(entry: dict) -> str:
    """The test's n (`5 pairs`, `20 runs at 4 values`), else the finished runs of each compared group."""
    if entry["n"]:
        return entry["n"]
    groups = [g.get("n", 0) for g in entry["groups"] or []]
    if not groups:
        return MISSING
    if entry["unit"] == RHO:
        return f"{sum(groups)} finished runs at {len(groups)} values"
    return " vs ".join(str(n) for n in groups) + " finished runs"


def format_verdict(test: Test) -> str:
    entry = test.entry
    if test.superseded_by:
        was = format_verdict(dataclasses.replace(test, superseded_by=""))
        return f"superseded by [{test.superseded_by}]({test.superseded_by}/README.md), not counted (was: {was})"
    if entry["verdict"] == claims.INCONCLUSIVE:
        cell = f"inconclusive: {entry['reason']}" if entry["reason"] else "inconclusive"
    else:
        cell = f"**{entry['verdict']}**"
    if entry["below_bar"]:
        cell += "; below the bar: " + ", ".join(
            f"{b['row']} ({b['points_over_pixels']:+.2f} over pixels)" for b in entry["below_bar"]
        )
    elif not test.record.get("bar_checked"):
        cell += "; CPU-scale bar not checked"
    cell += mix_text([(row["row"], row["runs"]) for row in entry.get(PRECISIONS, [])])
    if test.record.get("smoke"):
        cell = "smoke run (the numbers mean nothing): " + cell
    return cell


def _number_key(text: str) -> tuple:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def scale_cells(record: dict) -> list[str]:
    """Dataset, encoder (its name without the details after the first comma) and pretraining epochs."""
    scale = record["scale"]
    datasets = " / ".join(DATASET_NAMES.get(d, d) for d in scale.get("dataset", [])) or "?"
    encoders = " / ".join(dict.fromkeys(e.split(",")[0] for e in scale.get("encoder", []))) or "?"
    epochs = " / ".join(sorted(scale.get("pretrain_epochs", []), key=_number_key)) or "?"
    return [datasets, encoders, epochs]


def _folder_cell(test: Test) -> str:
    cell = f"[{test.folder}]({test.folder}/README.md)" + (PARSED_MARK if test.parsed else "")
    return cell + (f" (`{test.record['recipe']}`)" if test.record["recipe"] != test.folder else "")


def _paper_side(claim: claims.Claim | None) -> str:
    if claim is None:
        return "?"
    if claim.kind == "equivalent":
        return f"within ±{claim.margin:g}"
    if claim.kind == "not_greater":
        return f"< +{claim.margin:g}"
    return "< 0" if claim.kind in ("less", "lower_spread") else "> 0"


def _summary(known: dict, tested: dict[str, list[Test]], tests: list[Test], reports: int) -> list[str]:
    superseded = sum(bool(t.superseded_by) for t in tests)
    tests = [t for t in tests if not t.superseded_by]
    count = {k: sum(t.entry["verdict"] == k for t in tests) for k in COLORS}
    below = sum(bool(t.entry["below_bar"]) for t in tests)
    untested = len(known) - len(tested)
    first = (
        f"**{len(known)} claims in supcon/paper_claims.csv: {len(tested)} tested by "
        f"{reports} report{'s' if reports != 1 else ''}, {untested} not tested yet.**"
    )
    second = (
        f"{len(tests)} claim test{'s' if len(tests) != 1 else ''} (one per claim, report and setting): "
        f"{count[claims.REPRODUCED]} reproduced, {count[claims.CONTRADICTED]} contradicted, "
        f"{count[claims.INCONCLUSIVE]} inconclusive; {below} rest on rows below the CPU-scale bar."
    )
    if superseded:
        second += (f" {superseded} more superseded by a later report's rerun of the same claim (shown, not counted, "
                   f"not drawn).")  # fmt: skip
    return [first, "", second, ""]


def _scale_note(records: list[tuple[str, dict]]) -> list[str]:
    small = []
    for _, record in records:
        scale = record["scale"]
        datasets = scale.get("dataset", [])
        paper_like = datasets and all(d in PAPER_DATASETS for d in datasets) and any(
            "50" in e for e in scale.get("encoder", [])
        )
        if not paper_like:
            small.append(record)
    if not small:
        return []
    datasets = sorted({DATASET_NAMES.get(d, d) for r in small for d in r["scale"].get("dataset", [])})
    encoders = sorted({e.split(",")[0] for r in small for e in r["scale"].get("encoder", [])})
    return [
        f"**Scale:** {len(small)} of {len(records)} reports are small-scale stand-ins ({', '.join(datasets) or '?'}; "
        f"{', '.join(encoders) or '?'}), not the paper's CIFAR-10/100 or ImageNet runs with ResNet-50: their "
        "verdicts are about orderings and gaps at that scale, not about the paper's numbers.",
        "",
    ]


LEGEND = (
    "Each row is one test: a claim, a report whose recipe names it (`report.claims`) and a setting of the report's "
    "other rows (a claim is never pooled across datasets or architectures). The statistic is as the report's "
    "Claims section prints it, with its 95% confidence interval: a difference of means in percentage points (pp; "
    "paired t over seeds, else Welch's t), Spearman's ρ for a rise along a swept value, a difference of ECE (a "
    "fraction) or of mCE (× 100), or of spreads (Brown-Forsythe). **reproduced**: the interval excludes 0 on the "
    "paper's side; **contradicted**: on the other side; inconclusive: otherwise, or too few runs. With a margin "
    "(named in the test column, in the claim's unit) the statistic is followed by its 90% interval: an equivalence "
    "(TOST, statsmodels) is **reproduced** when TOST's p < 0.05 (the 90% interval inside ±margin) and "
    "**contradicted** when the 95% interval lies entirely outside ±margin; a non-superiority claim (A not above B "
    "by more than the margin) is **reproduced** when the one-sided 95% upper bound (the 90% interval's upper end) "
    "is below +margin, **contradicted** when it is not and the 95% interval lies above 0. *below the "
    "bar*: a compared row whose mean top-1 is less than 5 points above raw-pixel logistic regression; such a "
    "verdict measures the training budget, not the method. n counts seeds (pairs), runs or settings as the test "
    "does. Scale: the report's dataset, encoder and pretraining epochs. " + PARSED_MARK + ": the verdict was parsed "
    "from the report's committed README.md (its run directories are gone), not written by the reporter. How the "
    "statistics are computed: docs/reports.md."
)


def build(reports_dir: str, claims_path: str = claims.PAPER_CLAIMS) -> tuple[str, list[Test]]:
    """The README markdown and the tests it lists (in table order), from the claims file and the report folders.

    Raises:
      claims.ClaimError: the claims file is malformed.
    """
    known = claims.load_claims(claims_path)
    records, problems = read_reports(reports_dir)
    tests = [Test(folder, record, entry) for folder, record in records for entry in record["verdicts"]]
    unknown = sorted({(t.folder, t.entry["claim"]) for t in tests if t.entry["claim"] not in known})
    problems += [f"`{folder}/{CLAIMS_JSON}` names claim `{cid}`, which is no longer in the claims file: left out"
                 for folder, cid in unknown]  # fmt: skip
    order = {cid: i for i, cid in enumerate(known)}
    tests = sorted((t for t in tests if t.entry["claim"] in known), key=lambda t: (order[t.entry["claim"]], t.folder))
    replaced = {(old, t.entry["claim"]): t.folder for t in tests for old in t.record.get("supersedes", [])}
    tests = [dataclasses.replace(t, superseded_by=replaced.get((t.folder, t.entry["claim"]), "")) for t in tests]
    tested: dict[str, list[Test]] = {}
    for test in tests:
        tested.setdefault(test.entry["claim"], []).append(test)
    reports = len({t.folder for t in tests})

    lines = [MARKER, "", "# The paper's claims at our scale", ""]
    lines += [
        "Every claim of Khosla et al., *Supervised Contrastive Learning* (NeurIPS 2020), in "
        "`supcon/paper_claims.csv`, with each report here that tests it, and the claims no report tests yet. Built by "
        "`python -m supcon.report.scoreboard` from that file and each report's `claims.json` alone; the reporter "
        "rebuilds it whenever it writes a report in this folder.",
        "",
    ]
    lines += _summary(known, tested, tests, reports) + _scale_note(records)
    lines += [f"![each claim test's statistic and 95% interval against zero, by unit]({FIGURE})", ""]
    lines += [
        "Each test's statistic and 95% interval against zero, one panel per unit, coloured by verdict (hollow: "
        "resting on a row below the CPU-scale bar); the label says on which side of zero the paper is. A test with a "
        "margin adds its 90% interval (the thick bar) and the margin (black ticks): within ±margin for an "
        "equivalence, below +margin for a non-superiority claim. Tests without a statistic (too few runs) are in "
        "the table only.",
        "",
    ]
    lines += ["## Tested claims", ""]
    header = ["claim", "source", "statement", "report", "setting", "verdict", "ours (95% CI)", "test", "n", "p",
              "dataset", "encoder", "pretrain epochs"]  # fmt: skip
    rows = []
    for cid, group in tested.items():
        for i, test in enumerate(group):
            entry = test.entry
            claim = known[cid]
            test_name = entry["test"] + (f" ({entry['note']})" if entry["note"] else "") if entry["test"] else MISSING
            p = MISSING if entry["p"] is None else f"{entry['p']:.1e}" if entry["p"] < 1e-3 else f"{entry['p']:.3f}"
            rows.append(
                [f"`{cid}`" if i == 0 else "", claim.source if i == 0 else "", claim.statement if i == 0 else "",
                 _folder_cell(test), entry["where"] or MISSING, format_verdict(test), format_statistic(entry),
                 test_name, format_n(entry), p, *scale_cells(test.record)]
            )  # fmt: skip
    lines += [markdown_table(header, rows), ""] if rows else ["None yet.", ""]
    lines += [LEGEND, ""]
    untested = [c for cid, c in known.items() if cid not in tested]
    lines += ["## Not tested yet", ""]
    if untested:
        lines += [NOT_TESTED_NOTE, ""]
        lines += [
            markdown_table(
                ["claim", "source", "statement", "paper", "not tested because"],
                [[f"`{c.id}`", c.source, c.statement, paper_cell(c), c.not_tested_because or MISSING]
                 for c in untested],
            ),
            "",
        ]  # fmt: skip
    else:
        lines += ["None: every claim is tested by a report.", ""]
    lines += ["## Reports", ""]
    report_rows = []
    for folder, record in records:
        verdicts = [e["verdict"] for e in record["verdicts"]]
        counts = ", ".join(f"{verdicts.count(k)} {k}" for k in COLORS)
        source = f"parsed from its README.md{PARSED_MARK}" if record["written_by"] == PARSED else "the reporter"
        report_rows.append([f"[{folder}]({folder}/README.md)", f"`{record['recipe']}`", str(len(verdicts)), counts,
                            source])  # fmt: skip
    if report_rows:
        lines += [markdown_table(["report", "recipe", "claim tests", "verdicts", "claims.json written by"],
                                 report_rows), ""]  # fmt: skip
    else:
        lines += ["No report here has a claims.json yet.", ""]
    if problems:
        lines += ["Problems:", ""] + [f"- {p}" for p in problems] + [""]
    return "\n".join(lines).rstrip("\n") + "\n", [t for t in tests if not t.superseded_by]


def _label(test: Test, claim: claims.Claim | None) -> str:
    where = f" · {test.entry['where']}" if test.entry["where"] else ""
    mark = PARSED_MARK if test.parsed else ""
    return f"{test.entry['claim']}{where} ({test.folder}{mark}; paper {_paper_side(claim)})"


def panels(tests: list[Test]) -> list[tuple[str, list[Test]]]:
    """The figure's panels: (unit, its tests with a statistic and interval, in table order), the units in UNITS
    order, then any other by name; tests without a statistic are not drawn."""
    drawn = [t for t in tests if None not in (t.entry["statistic"], t.entry["low"], t.entry["high"])]
    units = [u for u in UNITS if any(t.entry["unit"] == u for t in drawn)]
    units += sorted({t.entry["unit"] for t in drawn} - set(UNITS))
    return [(u, [t for t in drawn if t.entry["unit"] == u]) for u in units]


def _draw_margin(ax, y: float, entry: dict, claim: claims.Claim | None, color: str) -> None:
    """A margin test's 90% interval as a thick bar and its margin as black ticks (±margin for an equivalence,
    +margin for a non-superiority claim); nothing for other tests."""
    if entry.get("margin") is None:
        return
    if entry.get("low90") is not None and entry.get("high90") is not None:
        ax.plot([entry["low90"], entry["high90"]], [y, y], color=color, linewidth=5, alpha=0.45,
                solid_capstyle="butt")  # fmt: skip
    margin = entry["margin"]
    ticks = [margin] if claim is not None and claim.kind == "not_greater" else [-margin, margin]
    ax.plot(ticks, [y] * len(ticks), linestyle="", marker="|", color="black", markersize=13, markeredgewidth=1.5,
            gid="margin")  # fmt: skip


def figure(tests: list[Test], known: dict[str, claims.Claim] | None = None) -> Figure:
    """One panel per unit (`panels`), one row per test (top to bottom in table order): the statistic with its 95%
    interval as an error bar against a line at zero, coloured by verdict, hollow when it rests on a row below the
    CPU-scale bar (a margin test adds its 90% interval and margin: `_draw_margin`); each label names the claim,
    setting, report and the paper's side of zero (or of the margin)."""
    known = known or {}
    groups = panels(tests)
    if not groups:
        fig = Figure(figsize=(8, 1.2))
        fig.text(0.5, 0.5, "No claim test has a statistic yet.", ha="center", va="center")
        return fig
    ratios = [len(panel) + 1.6 for _, panel in groups]
    fig = Figure(figsize=(11, 0.32 * sum(ratios) + 0.8), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False, gridspec_kw={"height_ratios": ratios})[:, 0]
    for ax, (unit, panel) in zip(axes, groups, strict=True):
        ys = list(range(len(panel)))[::-1]
        for y, test in zip(ys, panel, strict=True):
            e = test.entry
            color = COLORS[e["verdict"]]
            ax.errorbar(
                [e["statistic"]], [y], xerr=[[e["statistic"] - e["low"]], [e["high"] - e["statistic"]]], fmt="o",
                color=color, ecolor=color, markerfacecolor="white" if e["below_bar"] else color, capsize=3,
                markersize=6, linewidth=1.5,
            )  # fmt: skip
            _draw_margin(ax, y, e, known.get(e["claim"]), color)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [_label(t, known.get(t.entry["claim"])) for t in panel], fontsize=8)
        ax.set_ylim(-0.7, len(panel) - 0.3)
        if unit == RHO:
            ax.set_xlim(-1.05, 1.05)
        ax.set_title(UNIT_TITLES.get(unit, unit), loc="left", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], marker="o", linestyle="", color=COLORS[k], label=k) for k in COLORS]
    handles.append(Line2D([], [], marker="o", linestyle="", color="black", markerfacecolor="white",
                          label="below the CPU-scale bar"))  # fmt: skip
    if any(t.entry.get("margin") is not None for _, panel in groups for t in panel):
        handles.append(Line2D([], [], marker="|", linestyle="", color="black", markersize=10, label="margin"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    return fig


def draw(tests: list[Test], path: str, known: dict[str, claims.Claim] | None = None) -> None:
    """Writes `figure(tests, known)` as a PNG at `path`, without a software stamp (the same tests, the same bytes)."""
    figure(tests, known).savefig(path, format="png", dpi=100, metadata={"Software": None})


def is_scoreboard(path: str) -> bool:
    """Whether `path` is a README this module wrote (its first line is the marker)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\n") == MARKER
    except OSError:
        return False


def write_scoreboard(reports_dir: str, claims_path: str = claims.PAPER_CLAIMS) -> str:
    """Writes `reports_dir/claims.png` then `reports_dir/README.md`, each by an atomic rename; returns the README's
    path.

    Raises:
      ValueError: `reports_dir/README.md` exists and is not a scoreboard (it is never overwritten), or the claims
        file is malformed.
    """
    readme = os.path.join(reports_dir, README)
    if os.path.exists(readme) and not is_scoreboard(readme):
        raise ValueError(f"{readme} exists and is not a scoreboard (no marker line): not overwritten")
    text, tests = build(reports_dir, claims_path)
    fd, tmp = tempfile.mkstemp(dir=reports_dir, prefix="." + FIGURE, suffix=".tmp")
    os.close(fd)
    try:
        draw(tests, tmp, claims.load_claims(claims_path))
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(reports_dir, FIGURE))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    workdir.write_text_atomic(readme, text)
    return readme


def update(reports_dir: str, claims_path: str = claims.PAPER_CLAIMS) -> str | None:
    """Rebuilds the scoreboard of a folder of reports after one of them was written (`build.write_report`): when the
    folder's README.md is a scoreboard, or it has none and some report in it has a claims.json. Returns the README's
    path, or None when there is nothing to do (another README is there: it is left alone)."""
    readme = os.path.join(reports_dir, README)
    if os.path.exists(readme):
        if not is_scoreboard(readme):
            return None
    elif not any(os.path.isfile(os.path.join(reports_dir, name, CLAIMS_JSON)) for name in os.listdir(reports_dir)):
        return None
    return write_scoreboard(reports_dir, claims_path)


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m supcon.report.scoreboard [REPORTS_DIR]`; prints the README's path, returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m supcon.report.scoreboard", description=__doc__.split("\n")[0])
    parser.add_argument("reports_dir", nargs="?", default="reports", help="the folder of reports (default: reports)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.reports_dir):
        print(f"error: {args.reports_dir}: no such folder", file=sys.stderr)
        return 2
    try:
        path = write_scoreboard(args.reports_dir)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: cannot write the scoreboard to {args.reports_dir}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
